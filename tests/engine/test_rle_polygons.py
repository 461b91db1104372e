"""Mask <-> COCO polygon helpers: polygons decoded by pycocotools give back the same pixels,
holes and several pieces included (hand-made, random and real COCO masks)."""

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_utils

from engine.rle import (
    RLEError,
    mask_to_polygons,
    mask_to_rle,
    polygons_to_rle,
    rle_to_mask,
    rle_to_polygons,
    segmentation_to_rle,
)

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "coco_rle"


def _error(mask: np.ndarray) -> int:
    polygons = mask_to_polygons(mask)
    if not polygons:
        return int(mask.sum())
    back = rle_to_mask(polygons_to_rle(polygons, *mask.shape))
    return int((back != mask).sum())


def test_ring_with_island_and_second_piece():
    mask = np.zeros((20, 30), np.uint8)
    mask[2:16, 2:16] = 1
    mask[5:12, 5:12] = 0
    mask[7:9, 7:9] = 1
    mask[17:19, 20:28] = 1
    polygons = mask_to_polygons(mask)
    assert len(polygons) == 3  # ring (hole bridged in), island, second piece
    assert all(len(p) >= 8 and len(p) % 2 == 0 for p in polygons)
    np.testing.assert_array_equal(rle_to_mask(polygons_to_rle(polygons, 20, 30)), mask)
    assert mask_to_polygons(np.zeros((4, 4), np.uint8)) == []


def test_single_pixel_and_diagonal_touching_pixels():
    mask = np.zeros((5, 5), np.uint8)
    mask[0, 0] = 1
    assert mask_to_polygons(mask) == [[0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 0.0]]
    mask[1, 1] = mask[2, 2] = mask[4, 4] = 1
    assert _error(mask) == 0


def test_random_and_smooth_masks_are_exact():
    rng = np.random.default_rng(0)
    for _ in range(500):
        h, w = rng.integers(1, 40, 2)
        assert _error((rng.random((h, w)) < rng.random()).astype(np.uint8)) == 0
    for _ in range(50):
        h, w = rng.integers(50, 200, 2)
        blur = cv2.GaussianBlur(rng.random((h, w)).astype(np.float32), (0, 0), rng.uniform(1, 6))
        assert _error((blur > np.median(blur)).astype(np.uint8)) == 0


def test_real_coco_masks_reconstruct_exactly():
    records = json.loads((DATA / "cocoapi" / "instances_val2014_fakesegm100_results.json").read_text())
    errors, pixels, min_iou = 0, 0, 1.0
    for rec in records:
        mask = rle_to_mask(rec["segmentation"])
        polygons = mask_to_polygons(mask)
        back = mask_utils.merge(mask_utils.frPyObjects(polygons, *mask.shape))
        iou = float(mask_utils.iou([back], [rec["segmentation"]], [0])[0][0])
        min_iou = min(min_iou, iou)
        errors += _error(mask)
        pixels += int(mask.sum())
    print(f"\n734 real COCO masks: min IoU {min_iou}, pixel error {errors} of {pixels} pixels")
    assert errors == 0 and min_iou == 1.0


def test_segmentation_to_rle_accepts_every_coco_form_and_refuses_bad_polygons():
    poly = segmentation_to_rle([[0, 0, 1, 0, 1, 2, 0, 2]], 10, 5)  # datumaro's polygon
    assert int(mask_utils.area({"size": poly["size"], "counts": poly["counts"].encode()})) == 2
    uncompressed = segmentation_to_rle({"size": [10, 5], "counts": [0, 20, 30]}, 10, 5)
    assert isinstance(uncompressed["counts"], str) and rle_to_mask(uncompressed).sum() == 20
    assert segmentation_to_rle(uncompressed, 10, 5) == uncompressed
    for bad in ([[0, 0, 1, 1]], [[0, 0, 1, 1, 2]], [["a", 0, 1, 1, 2, 2]], [], [[0, 0, 1, 0, float("nan"), 1]]):
        with pytest.raises(RLEError):
            segmentation_to_rle(bad, 10, 5)
    with pytest.raises(RLEError, match="does not match"):
        segmentation_to_rle(uncompressed, 5, 10)


def test_rle_to_polygons_crops_to_the_box_and_matches_mask_to_polygons():
    rng = np.random.default_rng(1)
    for _ in range(100):
        mask = np.zeros((60, 70), np.uint8)
        y, x = rng.integers(0, 50), rng.integers(0, 60)
        mask[y:y + 10, x:x + 10] = rng.random((10, 10)) < 0.6
        rle = mask_to_rle(mask)
        assert rle_to_polygons(rle) == mask_to_polygons(mask)
    assert rle_to_polygons(mask_to_rle(np.zeros((5, 5), np.uint8))) == []
