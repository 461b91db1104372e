"""RLE validation and conversion, on hand-made masks and the real COCO files in shared/data."""

import json
from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from engine.rle import RLEError, counts_from_string, mask_to_rle, rle_area, rle_bbox, rle_to_mask, validate_rle

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "coco_rle"


def test_roundtrip_hand_made_mask():
    mask = np.zeros((5, 7), np.uint8)
    mask[1:4, 2:6] = 1
    mask[0, 0] = 1
    rle = mask_to_rle(mask)
    assert validate_rle(rle, (5, 7)) == rle
    np.testing.assert_array_equal(rle_to_mask(rle), mask)
    assert rle_area(rle) == 13
    assert rle_bbox(rle) == [0.0, 0.0, 6.0, 4.0]
    assert sum(counts_from_string(rle["counts"])) == 35


def test_real_results_file_counts_parse_like_pycocotools():
    records = json.loads((DATA / "cocoapi" / "instances_val2014_fakesegm100_results.json").read_text())
    assert len(records) == 734
    for rec in records[:200]:
        seg = rec["segmentation"]
        ours = validate_rle(seg)
        decoded = mask_utils.decode({"size": seg["size"], "counts": seg["counts"].encode()})
        np.testing.assert_array_equal(rle_to_mask(ours), decoded)


def test_uncompressed_counts_are_converted_and_area_is_recomputed():
    data = json.loads((DATA / "mmdet_coco_dummy" / "instances_val2017_excerpt.json").read_text())
    crowd = next(a for a in data["annotations"] if a.get("iscrowd"))
    assert isinstance(crowd["segmentation"]["counts"], list)
    rle = validate_rle(crowd["segmentation"])
    assert isinstance(rle["counts"], str)
    # The stored area/bbox of this real file disagree with its mask: never trust them.
    assert crowd["area"] == 4015 and rle_area(rle) == 3386
    x, y, w, h = rle_bbox(rle)
    assert (w, h) == (253.0, 85.0)


@pytest.mark.parametrize("bad,message", [
    ("not a dict", "must be an object"),
    ({"size": [2, 2]}, "'counts' must be"),
    ({"size": [2], "counts": "4"}, "'size' must be"),
    ({"size": [2, 2], "counts": "5"}, "sum to 5 pixels"),
    ({"size": [2, 2], "counts": "4 "}, "invalid character"),
    ({"size": [2, 2], "counts": "\x7f"}, "invalid character"),
    ({"size": [2, 2], "counts": "P"}, "ends in the middle"),
    ({"size": [2, 2], "counts": [1, -1, 4]}, "non-negative"),
])
def test_malformed_rle_gives_clear_errors(bad, message):
    with pytest.raises(RLEError, match=message):
        validate_rle(bad)


def test_size_must_match_image():
    rle = mask_to_rle(np.ones((4, 4), np.uint8))
    with pytest.raises(RLEError, match="does not match the image size"):
        validate_rle(rle, (4, 5))
