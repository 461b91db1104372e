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
        ints = {
            "points_per_side": (1, 128), "points_per_batch": (1, 256), "crop_n_layers": (0, 4),
            "crop_n_points_downscale_factor": (1, 64), "min_mask_region_area": (0, None),
        }
        for name, (lo, hi) in ints.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise ValueError(f"{name} must be an integer, got {value!r}")
            if value < lo or (hi is not None and value > hi):
                bounds = f"between {lo} and {hi}" if hi is not None else f">= {lo}"
                raise ValueError(f"{name} must be {bounds}, got {value}")
            object.__setattr__(self, name, int(value))
        floats = {  # name: (low, low inclusive, high, high inclusive)
            "pred_iou_thresh": (0.0, True, 1.0, True),
            "stability_score_thresh": (0.0, True, 1.0, True),
            "stability_score_offset": (0.0, False, math.inf, False),
            "box_nms_thresh": (0.0, False, 1.0, True),
            "crop_nms_thresh": (0.0, False, 1.0, True),
            "crop_overlap_ratio": (0.0, True, 1.0, False),
        }
        for name, (lo, lo_in, hi, hi_in) in floats.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
                raise ValueError(f"{name} must be a number, got {value!r}")
            value = float(value)
            ok = math.isfinite(value) and (value >= lo if lo_in else value > lo) and (value <= hi if hi_in else value < hi)
            if not ok:
                interval = f"{'[' if lo_in else '('}{lo:g}, {hi:g}{']' if hi_in else ')'}"
                raise ValueError(f"{name} must be in {interval}, got {value}")
            object.__setattr__(self, name, value)
        smallest = self.points_per_side // self.crop_n_points_downscale_factor ** self.crop_n_layers
        if smallest < 1:
            raise ValueError(
                f"points_per_side {self.points_per_side} with crop_n_points_downscale_factor "
                f"{self.crop_n_points_downscale_factor} leaves no points in crop layer {self.crop_n_layers}"
            )

    def to_dict(self) -> dict[str, Any]:
        """All fields as a JSON-ready dict."""
        return asdict(self)

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
