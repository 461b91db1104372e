"""Click simulation for interactive segmentation: the standard evaluation protocol
(Xu et al., 2016; as implemented in RITM, Sofiiuk et al., 2022, ``get_next_points``) and
the random error-region clicks of SAM's training recipe (Kirillov et al., 2023, App. A).

Pure numpy/scipy helpers; masks are HxW bool arrays, points are (x, y) pixel coordinates.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import distance_transform_edt


@dataclass(frozen=True)
class Click:
    """A simulated click: pixel (x, y) and whether it is positive (foreground)."""

    x: int
    y: int
    is_positive: bool


def _edge_distance(region: np.ndarray) -> np.ndarray:
    """Euclidean distance of each pixel of ``region`` to the nearest pixel outside it,
    with the image border counted as outside (the region is padded by one 0 pixel)."""
    padded = np.pad(region, 1, mode="constant", constant_values=False)
    return distance_transform_edt(padded)[1:-1, 1:-1]


def next_click(pred: np.ndarray, gt: np.ndarray, ignore: np.ndarray | None = None) -> Click | None:
    """The standard protocol's next click: deepest point of the larger error region.

    False negatives (``gt & ~pred``) give a positive click, false positives
    (``~gt & pred``) a negative one; "larger" means the larger maximum distance to the
    region's edge (the image border counts as edge). Pixels in ``ignore`` (e.g. GrabCut's
    128 band) are never errors. Ties go to the first pixel in row-major order.

    Args:
        pred: HxW bool, current prediction (all False before the first click).
        gt: HxW bool, ground truth.
        ignore: HxW bool or None.

    Returns:
        The click, or None when there is no error left.

    Raises:
        ValueError: the arrays' shapes differ.
    """
    pred = np.asarray(pred, bool)
    gt = np.asarray(gt, bool)
    if pred.shape != gt.shape or (ignore is not None and ignore.shape != gt.shape):
        raise ValueError(f"shape mismatch: pred {pred.shape}, gt {gt.shape}")
    valid = ~ignore if ignore is not None else np.ones_like(gt)
    fn = gt & ~pred & valid
    fp = ~gt & pred & valid
    fn_dt = _edge_distance(fn)
    fp_dt = _edge_distance(fp)
    fn_max, fp_max = fn_dt.max(initial=0.0), fp_dt.max(initial=0.0)
    if fn_max == 0 and fp_max == 0:
        return None
    is_positive = bool(fn_max > fp_max)
    dt = fn_dt if is_positive else fp_dt
    y, x = np.unravel_index(int(np.argmax(dt)), dt.shape)
    return Click(int(x), int(y), is_positive)


def iou(pred: np.ndarray, gt: np.ndarray, ignore: np.ndarray | None = None) -> float:
    """Intersection over union of two HxW bool masks, pixels in ``ignore`` excluded.

    Returns 1.0 when both are empty."""
    pred = np.asarray(pred, bool)
    gt = np.asarray(gt, bool)
    if ignore is not None:
        pred = pred & ~ignore
        gt = gt & ~ignore
    union = np.logical_or(pred, gt).sum()
    return 1.0 if union == 0 else float(np.logical_and(pred, gt).sum() / union)


def random_error_click(pred: np.ndarray, gt: np.ndarray, rng: np.random.Generator,
                       valid: np.ndarray | None = None, p_deepest: float = 0.5) -> Click | None:
    """A training click from the error region (SAM App. A samples it uniformly).

    With probability ``p_deepest`` the standard protocol's click (:func:`next_click`),
    which matches how models are evaluated; otherwise a pixel drawn uniformly from the
    error region, positive when it is a false negative. None when there is no error.
    """
    ignore = None if valid is None else ~valid
    if rng.random() < p_deepest:
        return next_click(pred, gt, ignore)
    err = (pred != gt) if valid is None else ((pred != gt) & valid)
    ys, xs = np.nonzero(err)
    if len(ys) == 0:
        return None
    i = int(rng.integers(len(ys)))
    return Click(int(xs[i]), int(ys[i]), bool(gt[ys[i], xs[i]]))
