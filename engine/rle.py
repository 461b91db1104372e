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
