"""The standard click protocol on hand-made masks, and the NoC/mIoU bookkeeping."""

import numpy as np
import pytest
from PIL import Image

from engine.clicks import Click, iou, next_click, random_error_click
from engine.evaluate import load_dataset, noc, summarize


def test_first_click_is_deepest_interior_point():
    gt = np.zeros((40, 60), bool)
    gt[10:31, 5:26] = True  # 21x21 square: its centre is (15, 20)
    click = next_click(np.zeros_like(gt), gt)
    assert click == Click(x=15, y=20, is_positive=True)


def test_image_border_counts_as_edge():
    gt = np.zeros((40, 60), bool)
    gt[:, :20] = True  # touches three borders: without them as edges x=0 would be deepest
    click = next_click(np.zeros_like(gt), gt)
    assert click.is_positive and click.x in (9, 10) and 9 <= click.y <= 30


def test_deepest_point_of_l_shape_is_in_the_thick_part():
    gt = np.zeros((50, 50), bool)
    gt[5:45, 5:15] = True  # thin vertical bar, 10 wide
    gt[25:45, 5:45] = True  # thick foot, 20 high
    click = next_click(np.zeros_like(gt), gt)
    assert 25 <= click.y < 45 and click.x >= 13


def test_false_positive_gives_negative_click():
    gt = np.zeros((40, 60), bool)
    gt[10:20, 10:20] = True
    pred = gt.copy()
    pred[5:35, 30:55] = True  # a large false-positive blob
    click = next_click(pred, gt)
    assert not click.is_positive
    assert 30 <= click.x < 55 and 5 <= click.y < 35
    assert not gt[click.y, click.x]


def test_larger_error_region_wins():
    gt = np.zeros((60, 60), bool)
    gt[5:45, 5:45] = True
    pred = np.zeros_like(gt)
    pred[5:45, 5:15] = True  # large false negative remains
    pred[50:53, 50:53] = True  # tiny false positive
    assert next_click(pred, gt).is_positive


def test_ignore_band_is_never_clicked_nor_scored():
    gt = np.zeros((40, 40), bool)
    gt[10:30, 10:30] = True
    ignore = np.zeros_like(gt)
    ignore[8:32, 8:32] = True
    ignore[12:28, 12:28] = False  # a 4-px band around the edge
    pred = np.zeros_like(gt)
    pred[12:28, 12:28] = True  # misses the outer band entirely
    pred[8:10, 8:32] = True  # and spills into the band outside
    assert iou(pred, gt, ignore) == 1.0
    assert next_click(pred, gt, ignore) is None
    assert iou(pred, gt) < 1.0


def test_no_error_returns_none_and_shapes_checked():
    gt = np.zeros((10, 10), bool)
    gt[2:5, 2:5] = True
    assert next_click(gt.copy(), gt) is None
    with pytest.raises(ValueError):
        next_click(np.zeros((5, 5), bool), gt)


def test_random_error_click_is_in_the_error_region():
    rng = np.random.default_rng(0)
    gt = np.zeros((30, 30), bool)
    gt[5:25, 5:25] = True
    pred = np.zeros_like(gt)
    pred[5:25, 5:15] = True
    for _ in range(20):
        c = random_error_click(pred, gt, rng, p_deepest=0.0)
        assert pred[c.y, c.x] != gt[c.y, c.x] and c.is_positive == gt[c.y, c.x]


def test_noc_and_summary():
    curves = {"a": [0.5, 0.86, 0.95] + [0.95] * 17, "b": [0.2] * 20}
    assert noc(curves["a"], 0.85) == 2 and noc(curves["a"], 0.90) == 3 and noc(curves["b"], 0.85) == 20
    s = summarize(curves)
    assert s["NoC@85"] == pytest.approx(11.0) and s["NoC@90"] == pytest.approx(11.5)
    assert s["NoF@90"] == 1 and s["mIoU@1"] == pytest.approx(0.35)


def test_grabcut_style_folder_reads_the_128_band(tmp_path):
    (tmp_path / "data_GT").mkdir()
    (tmp_path / "boundary_GT").mkdir()
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(tmp_path / "data_GT" / "x.jpg")
    m = np.zeros((20, 30), np.uint8)
    m[5:15, 5:15] = 255
    m[4, 4:16] = 128
    Image.fromarray(m).save(tmp_path / "boundary_GT" / "x.bmp")
    (item,) = load_dataset(tmp_path)
    assert item.gt.sum() == 100 and item.ignore.sum() == 12 and not (item.gt & item.ignore).any()


def test_plain_folder_pairs(tmp_path):
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "a.jpg")
    Image.fromarray(np.full((8, 8), 255, np.uint8)).save(tmp_path / "a_mask.png")
    (item,) = load_dataset(tmp_path)
    assert item.name == "a" and item.gt.all()
