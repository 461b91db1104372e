"""Parameters of the automatic mask generator (``engine.automatic``), without torch: the web
process validates and stores a project's parameters without loading the model stack."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, Mapping

import numpy as np


@dataclass(frozen=True)
class AutomaticMaskParams:
    """Parameters of the automatic mask generator; defaults are SAM's (tuned for ViT-H).

    Attributes:
        points_per_side: the grid has points_per_side**2 single-point prompts (1..128).
        points_per_batch: prompts per decoder call (1..256); only speed and memory depend on
            it: about 20-25 MB per prompt for the per-prompt image tokens (measured peak
            +1.3 GB at 64, +1.6 GB with no thresholds; 640x481 photo).
        pred_iou_thresh: keep masks whose predicted IoU is above this (0..1; 0 keeps all).
        stability_score_thresh: keep masks whose stability score (IoU of the mask
            thresholded at +offset and -offset logits) is at least this (0..1; 0 keeps all).
        stability_score_offset: the logit offset of the stability score (> 0).
        box_nms_thresh: box IoU above which the lower-scored of two masks is dropped (0..1].
        crop_n_layers: extra layers of image crops, layer i with (2**i)**2 crops (0..4).
            Each crop needs its own encoder pass (see ``encode_fn`` of :func:`generate_masks`).
        crop_nms_thresh: box IoU for NMS between masks of different crops (0..1].
        crop_overlap_ratio: overlap of neighbouring crops in the first layer, as a
            fraction of the short image side ([0, 1)).
        crop_n_points_downscale_factor: layer i uses points_per_side / factor**i points per side (>= 1).
        min_mask_region_area: remove holes and islands smaller than this many pixels, then
            NMS again (0 = off; >= 0). SAM's App. A uses 100.
    """

    points_per_side: int = 32
    points_per_batch: int = 64
    pred_iou_thresh: float = 0.88
    stability_score_thresh: float = 0.95
    stability_score_offset: float = 1.0
    box_nms_thresh: float = 0.7
    crop_n_layers: int = 0
    crop_nms_thresh: float = 0.7
    crop_overlap_ratio: float = 512 / 1500
    crop_n_points_downscale_factor: int = 1
    min_mask_region_area: int = 0

    def __post_init__(self) -> None:
        for name in _RANGES:
            object.__setattr__(self, name, _checked(name, getattr(self, name)))
        problem = _crop_grid_problem(self.points_per_side, self.crop_n_points_downscale_factor, self.crop_n_layers)
        if problem:
            raise ValueError(problem)

    def to_dict(self) -> dict[str, Any]:
        """All fields as a JSON-ready dict."""
        return asdict(self)

    @classmethod
    def errors(cls, data: Mapping[str, Any]) -> dict[str, list[str]]:
        """Every problem of a (possibly partial) parameter dict at once, by field name: unknown
        keys, wrong types and out-of-range values (each message names the field and its
        allowed range), and under ``non_field_errors`` a crop grid left with no points.
        Empty when :meth:`from_dict` would accept ``data``."""
        known = {f.name for f in fields(cls)}
        out: dict[str, list[str]] = {}
        for name in sorted(set(data) - known):
            out[name] = [f"unknown automatic mask parameter {name!r}; known: {sorted(known)}"]
        checked: dict[str, Any] = {}
        for name in known & set(data):
            try:
                checked[name] = _checked(name, data[name])
            except ValueError as exc:
                out[name] = [str(exc)]
        if not out:
            merged = {**cls().to_dict(), **checked}
            problem = _crop_grid_problem(merged["points_per_side"], merged["crop_n_points_downscale_factor"],
                                         merged["crop_n_layers"])
            if problem:
                out["non_field_errors"] = [problem]
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> "AutomaticMaskParams":
        """Parameters from a (possibly partial) dict; missing fields take the defaults.

        Raises:
            ValueError: not a mapping, an unknown key, or a value of the wrong type or range.
        """
        if data is None:
            return cls()
        if not isinstance(data, Mapping):
            raise ValueError(f"automatic mask parameters must be an object, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown automatic mask parameters {unknown}; known: {sorted(known)}")
        return cls(**data)


# Allowed values per field. Integers: (low, high or None), both inclusive. Floats: (low, low
# inclusive, high, high inclusive).
_INT_RANGES: dict[str, tuple[int, int | None]] = {
    "points_per_side": (1, 128), "points_per_batch": (1, 256), "crop_n_layers": (0, 4),
    "crop_n_points_downscale_factor": (1, 64), "min_mask_region_area": (0, None),
}
_FLOAT_RANGES: dict[str, tuple[float, bool, float, bool]] = {
    "pred_iou_thresh": (0.0, True, 1.0, True),
    "stability_score_thresh": (0.0, True, 1.0, True),
    "stability_score_offset": (0.0, False, math.inf, False),
    "box_nms_thresh": (0.0, False, 1.0, True),
    "crop_nms_thresh": (0.0, False, 1.0, True),
    "crop_overlap_ratio": (0.0, True, 1.0, False),
}
_RANGES = (*_INT_RANGES, *_FLOAT_RANGES)


def param_range(name: str) -> tuple[str, str]:
    """``(kind, allowed values)`` of a field for people: ``("int", "1..128")``,
    ``("float", "[0, 1]")``, ``("int", ">= 0")``, ``("float", "> 0")``.

    Raises:
        KeyError: not a parameter.
    """
    if name in _INT_RANGES:
        lo, hi = _INT_RANGES[name]
        return "int", f"{lo}..{hi}" if hi is not None else f">= {lo}"
    lo_f, lo_in, hi_f, hi_in = _FLOAT_RANGES[name]
    if math.isinf(hi_f):
        return "float", f"{'>=' if lo_in else '>'} {lo_f:g}"
    return "float", f"{'[' if lo_in else '('}{lo_f:g}, {hi_f:g}{']' if hi_in else ')'}"


def _checked(name: str, value: Any) -> int | float:
    """``value`` as the field's type if it is in the field's range.

    Raises:
        ValueError: the wrong type, or out of range; the message names the field and the range.
    """
    if name in _INT_RANGES:
        lo, hi = _INT_RANGES[name]
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise ValueError(f"{name} must be an integer, got {value!r}")
        if value < lo or (hi is not None and value > hi):
            bounds = f"between {lo} and {hi}" if hi is not None else f">= {lo}"
            raise ValueError(f"{name} must be {bounds}, got {value}")
        return int(value)
    lo_f, lo_in, hi_f, hi_in = _FLOAT_RANGES[name]
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a number, got {value!r}")
    number = float(value)
    ok = (math.isfinite(number) and (number >= lo_f if lo_in else number > lo_f)
          and (number <= hi_f if hi_in else number < hi_f))
    if not ok:
        interval = f"{'[' if lo_in else '('}{lo_f:g}, {hi_f:g}{']' if hi_in else ')'}"
        raise ValueError(f"{name} must be in {interval}, got {number:g}")
    return number


def _crop_grid_problem(points_per_side: int, factor: int, layers: int) -> str:
    """Why the last crop layer's grid has no points ('' when it has some)."""
    if points_per_side // factor ** layers < 1:
        return (f"points_per_side {points_per_side} with crop_n_points_downscale_factor {factor} "
                f"leaves no points in crop layer {layers}")
    return ""
