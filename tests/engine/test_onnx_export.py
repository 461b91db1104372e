"""The exported decoder matches the torch decoder on several aspect ratios."""

import numpy as np
import onnxruntime as ort
import pytest
import torch

import engine


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return engine.build_model("default", allow_untrained=True)


@pytest.fixture(scope="module")
def session(model, tmp_path_factory):
    path = engine.export_decoder(model, tmp_path_factory.mktemp("onnx") / "decoder.onnx")
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


@pytest.mark.parametrize("height,width", [(480, 640), (640, 480), (300, 1200), (1200, 300), (517, 517)])
@pytest.mark.parametrize("prompt", ["point", "points+mask", "box"])
def test_onnx_matches_torch(model, session, height, width, prompt):
    rng = np.random.default_rng(height * 7 + width)
    emb = rng.standard_normal((1, 256, 64, 64)).astype(np.float32)
    kwargs = {}
    if prompt == "point":
        kwargs = dict(point_coords=[[width * 0.4, height * 0.6]], point_labels=[1])
    elif prompt == "points+mask":
        kwargs = dict(point_coords=[[width * 0.4, height * 0.6], [width * 0.9, height * 0.1]],
                      point_labels=[1, 0], mask_input=rng.standard_normal((1, 1, 256, 256)))
    else:
        kwargs = dict(box=[width * 0.1, height * 0.2, width * 0.7, height * 0.9])
    feeds = engine.decoder_feeds(emb, (height, width), **kwargs)
    masks, iou, low_res = session.run(None, feeds)
    ref = engine.predict(model, emb, (height, width), **kwargs)
    assert masks.shape == (1, 4, height, width)
    assert low_res.shape == (1, 4, 256, 256)
    np.testing.assert_allclose(iou[0], ref["iou_predictions"], atol=1e-4)
    np.testing.assert_allclose(low_res[0], ref["low_res_masks"], atol=1e-3)
    for k in range(4):
        assert _iou(masks[0, k] > 0, ref["masks"][k] > 0) >= 0.99


def test_quantized_export_is_smaller_and_close(model, tmp_path):
    fp32 = engine.export_decoder(model, tmp_path / "fp32.onnx")
    q = engine.export_decoder(model, tmp_path / "q.onnx", quantize=True)
    assert q.stat().st_size < fp32.stat().st_size / 2.5
    sess = ort.InferenceSession(str(q), providers=["CPUExecutionProvider"])
    emb = np.random.default_rng(1).standard_normal((1, 256, 64, 64)).astype(np.float32)
    out = sess.run(None, engine.decoder_feeds(emb, (480, 640), point_coords=[[100, 100]], point_labels=[1]))
    assert out[0].shape == (1, 4, 480, 640)


def test_feeds_follow_the_contract():
    emb = np.zeros((1, 256, 64, 64), np.float32)
    feeds = engine.decoder_feeds(emb, (500, 1000), point_coords=[[100, 50]], point_labels=[1])
    # One padding point (0, 0) labelled -1 is appended when there is no box.
    np.testing.assert_allclose(feeds["point_coords"], [[[102.4, 51.2], [0, 0]]], atol=1e-4)
    np.testing.assert_array_equal(feeds["point_labels"], [[1, -1]])
    boxed = engine.decoder_feeds(emb, (500, 1000), box=[0, 0, 1000, 500])
    np.testing.assert_array_equal(boxed["point_labels"], [[2, 3]])
    np.testing.assert_allclose(boxed["point_coords"], [[[0, 0], [1024, 512]]], atol=1e-4)
    with pytest.raises(ValueError):
        engine.decoder_feeds(emb, (10, 10))
