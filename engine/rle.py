"""COCO run-length encoding: validation and conversion of masks.

Format (pycocotools ``maskApi.c``): column-major runs starting with a run of zeros;
compressed ``counts`` strings store each run (from the third on, as a delta to the run
two before) in 5-bit groups, offset by 48, with 0x20 as the continuation bit.
Encoding/decoding of pixels is done by pycocotools; the string parser here exists to
reject malformed input with a clear error before it reaches pycocotools' C code.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pycocotools import mask as mask_utils


class RLEError(ValueError):
    """An RLE object is malformed: wrong type, bad characters, runs not summing to H*W."""


def counts_from_string(counts: str) -> list[int]:
    """Decode a compressed COCO ``counts`` string to run lengths (mirror of ``rleFrString``).

    Raises:
        RLEError: characters outside '0'..'o', a truncated value, or a negative run.
    """
    runs: list[int] = []
    p, n = 0, len(counts)
    while p < n:
        x, k, more = 0, 0, True
        while more:
            if p >= n:
                raise RLEError("counts string ends in the middle of a value")
            c = ord(counts[p]) - 48
            if not 0 <= c < 64:
                raise RLEError(f"invalid character {counts[p]!r} at position {p} of counts")
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and (c & 0x10):
                x |= -1 << (5 * k)
        if len(runs) > 2:
            x += runs[-2]
        if x < 0:
            raise RLEError(f"run {len(runs)} is negative ({x})")
        runs.append(x)
    return runs


def validate_rle(obj: Any, expected_size: tuple[int, int] | None = None) -> dict[str, Any]:
    """Check an RLE object and return it as compressed COCO RLE.

    Args:
        obj: ``{"size": [H, W], "counts": str}`` (compressed) or with ``counts`` a list of
            ints (uncompressed, as in ``iscrowd`` annotations).
        expected_size: (H, W) the mask must have, e.g. the image's.

    Returns:
        ``{"size": [H, W], "counts": str}``.

    Raises:
        RLEError: with a message saying what is wrong.
    """
    if not isinstance(obj, dict):
        raise RLEError(f"RLE must be an object with 'size' and 'counts', got {type(obj).__name__}")
    size, counts = obj.get("size"), obj.get("counts")
    if (not isinstance(size, (list, tuple)) or len(size) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size)):
        raise RLEError(f"RLE 'size' must be [height, width] of positive integers, got {size!r}")
    h, w = int(size[0]), int(size[1])
    if expected_size is not None and (h, w) != tuple(expected_size):
        raise RLEError(f"RLE size {[h, w]} does not match the image size {list(expected_size)}")
    if isinstance(counts, str):
        runs = counts_from_string(counts)
    elif isinstance(counts, list):
        if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in counts):
            raise RLEError("uncompressed RLE 'counts' must be non-negative integers")
        runs = counts
    else:
        raise RLEError(f"RLE 'counts' must be a string or a list of integers, got {type(counts).__name__}")
    total = sum(runs)
    if total != h * w:
        raise RLEError(f"RLE runs sum to {total} pixels but size {h}x{w} has {h * w}")
    if isinstance(counts, list):
        compressed = mask_utils.frPyObjects({"size": [h, w], "counts": runs}, h, w)
        return {"size": [h, w], "counts": compressed["counts"].decode("ascii")}
    return {"size": [h, w], "counts": counts}


def _c(rle: dict[str, Any]) -> dict[str, Any]:
    counts = rle["counts"]
    return {"size": list(rle["size"]), "counts": counts.encode("ascii") if isinstance(counts, str) else counts}


def mask_to_rle(mask: np.ndarray) -> dict[str, Any]:
    """HxW boolean/0-1 mask -> compressed COCO RLE with ``counts`` as str (pycocotools.encode)."""
    if mask.ndim != 2:
        raise ValueError(f"mask must be HxW, got shape {mask.shape}")
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def rle_to_mask(rle: dict[str, Any]) -> np.ndarray:
    """Compressed COCO RLE -> HxW uint8 {0, 1} mask (pycocotools.decode)."""
    return mask_utils.decode(_c(rle))


def rle_area(rle: dict[str, Any]) -> int:
    """Mask pixel count."""
    return int(mask_utils.area(_c(rle)))


def rle_bbox(rle: dict[str, Any]) -> list[float]:
    """Tight box of the mask, XYWH in pixels ([0, 0, 0, 0] for an empty mask)."""
    return [float(v) for v in mask_utils.toBbox(_c(rle))]


# ---------------------------------------------------------------- polygons
#
# COCO polygons are in continuous pixel coordinates: pixel (x, y) is the unit square
# [x, x+1] x [y, y+1], and pycocotools rasterises a polygon by even-odd parity along each
# column (``rleFrPoly``), so a polygon that runs along the pixel *edges* ("crack" outline)
# decodes to exactly the original pixels. The polygons of one annotation are *unioned*
# (``frPyObjects`` + ``merge``), so a hole cannot be a polygon of its own: it is joined to
# its outer ring by a zero-width bridge (walked there and back, which leaves the parity
# unchanged), giving one polygon per connected piece.


def _crack_ring(contour: np.ndarray, x0: int, y0: int) -> list[tuple[int, int]]:
    """A cv2 contour traced on a 2x-upsampled mask -> the ring of pixel corners it follows.

    On the 2x grid every pixel is a 2x2 block, so the contour's sub-pixels sit on the
    block's outer half; ``(X + 1) // 2`` maps both the even (left/top) and odd
    (right/bottom) sub-pixel to the pixel edge beside it. Diagonal steps (concave corners)
    collapse to the shared corner; repeated and collinear points are dropped.
    """
    pts = contour.reshape(-1, 2)
    ring: list[tuple[int, int]] = []
    for X, Y in pts:
        p = ((int(X) + 1) // 2 + x0, (int(Y) + 1) // 2 + y0)
        if not ring or ring[-1] != p:
            ring.append(p)
    while len(ring) > 1 and ring[0] == ring[-1]:
        ring.pop()
    # Drop middle points of straight runs (axis-aligned after the mapping).
    changed = True
    while changed and len(ring) > 4:
        changed = False
        out: list[tuple[int, int]] = []
        n = len(ring)
        for i in range(n):
            a, b, c = ring[i - 1], ring[i], ring[(i + 1) % n]
            if (a[0] == b[0] == c[0] and (a[1] - b[1]) * (c[1] - b[1]) < 0) or \
               (a[1] == b[1] == c[1] and (a[0] - b[0]) * (c[0] - b[0]) < 0):
                changed = True
                continue
            out.append(b)
        ring = out
    return ring


def mask_to_polygons(mask: np.ndarray) -> list[list[float]]:
    """HxW mask -> COCO polygons ``[[x0, y0, x1, y1, ...], ...]`` that decode to the same pixels.

    One polygon per 8-connected piece (a mask in several pieces stays one annotation with
    several polygons); the piece's holes are bridged into its polygon (see above). Vertices
    are pixel corners (integers, as floats), so ``pycocotools.mask.frPyObjects`` gives back
    the mask exactly; every polygon has at least 4 vertices (pycocotools reads a 4-number
    list as a box). Contours by OpenCV (``cv2.findContours``, ``RETR_CCOMP``: outer
    borders and the borders of their holes; an island inside a hole is a piece of its own).

    Returns:
        list of flat coordinate lists, x then y, in pixels; ``[]`` for an empty mask.
    """
    if mask.ndim != 2:
        raise ValueError(f"mask must be HxW, got shape {mask.shape}")
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if len(rows) == 0:
        return []
    y0, y1, x0, x1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    return _crop_polygons(mask[y0:y1, x0:x1], x0, y0)


def rle_to_polygons(rle: dict[str, Any]) -> list[list[float]]:
    """Compressed COCO RLE -> polygons with holes bridged (:func:`mask_to_polygons`).

    Crops to the RLE's box (``toBbox``, no decoding) before tracing, so the cost follows
    the mask's extent rather than the image's.
    """
    x, y, w, h = (int(v) for v in mask_utils.toBbox(_c(rle)))
    if w == 0 or h == 0:
        return []
    return _crop_polygons(rle_to_mask(rle)[y:y + h, x:x + w], x, y)


def _crop_polygons(crop: np.ndarray, x0: int, y0: int) -> list[list[float]]:
    import cv2

    crop = np.ascontiguousarray(crop != 0, dtype=np.uint8)
    up = np.pad(np.repeat(np.repeat(crop, 2, axis=0), 2, axis=1), 1)
    contours, hierarchy = cv2.findContours(up, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    if hierarchy is None:
        return []
    hierarchy = hierarchy[0]
    # The padding shifts the 2x grid by one sub-pixel: undo it before mapping to corners.
    shifted = [c.reshape(-1, 2) - 1 for c in contours]
    polygons: list[list[float]] = []
    for i, (_next, _prev, child, parent) in enumerate(hierarchy):
        if parent != -1:
            continue
        ring = _crack_ring(shifted[i], x0, y0)
        holes = []
        c = child
        while c != -1:
            hole = _crack_ring(shifted[c], x0, y0)
            if len(hole) >= 3:
                holes.append(hole)
            c = hierarchy[c][0]
        ring = _bridge_holes(ring, holes)
        polygons.append([float(v) for p in ring for v in p])
    return polygons


def _bridge_holes(ring: list[tuple[int, int]], holes: list[list[tuple[int, int]]]) -> list[tuple[int, int]]:
    """Splice each hole into the outer ring: outer vertex -> hole ring (closed) -> same outer vertex.

    The bridge goes from the hole's first vertex to the nearest vertex of the ring built so
    far; it is walked in both directions, so pycocotools' parity fill cancels it out.
    """
    out = list(ring)
    for hole in holes:
        hx, hy = hole[0]
        j = min(range(len(out)), key=lambda k: (out[k][0] - hx) ** 2 + (out[k][1] - hy) ** 2)
        out = out[: j + 1] + hole + [hole[0]] + out[j:]
    return out


def polygons_to_rle(polygons: list[list[float]], height: int, width: int) -> dict[str, Any]:
    """COCO polygons -> compressed RLE ``{"size": [H, W], "counts": str}`` (their union).

    Raises:
        RLEError: not a list of flat numeric lists with an even count of at least 6
            (three points) each.
    """
    if not isinstance(polygons, list) or not polygons:
        raise RLEError("polygon segmentation must be a non-empty list of [x0, y0, x1, y1, ...] lists")
    for i, poly in enumerate(polygons):
        if not isinstance(poly, list) or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v) for v in poly):
            raise RLEError(f"polygon {i} must be a list of numbers")
        if len(poly) < 6 or len(poly) % 2:
            raise RLEError(f"polygon {i} has {len(poly)} numbers; it needs an even count of at least 6")
    rles = mask_utils.frPyObjects([[float(v) for v in p] for p in polygons], height, width)
    rle = mask_utils.merge(rles)
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def segmentation_to_rle(segmentation: Any, height: int, width: int) -> dict[str, Any]:
    """Any COCO ``segmentation`` (polygons, compressed or uncompressed RLE) -> compressed RLE.

    Args:
        height, width: the image's size; an RLE of another size is refused.

    Raises:
        RLEError: malformed input, or an RLE whose size is not (height, width).
    """
    if isinstance(segmentation, list):
        return polygons_to_rle(segmentation, height, width)
    return validate_rle(segmentation, (height, width))
