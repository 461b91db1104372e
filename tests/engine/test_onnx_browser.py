"""The browser's decoder graph (engine/onnx_browser.py) gives the contract graph's outputs."""

import numpy as np
import onnxruntime as ort
import pytest
import torch
from segment_anything.build_sam import build_sam_vit_b

import engine
from engine.onnx_browser import BrowserDecoderOnnxModel, _conv_transpose_as_matmul, browser_feeds


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return engine.build_model("default", allow_untrained=True)


@pytest.fixture(scope="module")
def sessions(model, tmp_path_factory):
    d = tmp_path_factory.mktemp("onnx")
    contract = engine.export_decoder(model, d / "decoder.onnx")
    browser = engine.export_browser_decoder(model, d / "decoder.browser.onnx")
    return (ort.InferenceSession(str(contract), providers=["CPUExecutionProvider"]),
            ort.InferenceSession(str(browser), providers=["CPUExecutionProvider"]))


@pytest.mark.parametrize("prompt", ["point", "points+mask", "box", "box+points", "negative only"])
def test_browser_graph_equals_contract_graph(sessions, prompt):
    contract, browser = sessions
    height, width = 480, 640
    rng = np.random.default_rng(len(prompt))
    emb = rng.standard_normal((1, 256, 64, 64)).astype(np.float32)
    kwargs = {
        "point": dict(point_coords=[[width * 0.4, height * 0.6]], point_labels=[1]),
        "points+mask": dict(point_coords=[[width * 0.4, height * 0.6], [width * 0.9, height * 0.1], [3, 5]],
                            point_labels=[1, 0, 1], mask_input=rng.standard_normal((1, 1, 256, 256))),
        "box": dict(box=[width * 0.1, height * 0.2, width * 0.7, height * 0.9]),
        "box+points": dict(box=[10, 20, 300, 400], point_coords=[[100, 100]], point_labels=[0]),
        "negative only": dict(point_coords=[[width - 1, height - 1]], point_labels=[0]),
    }[prompt]
    feeds = engine.decoder_feeds(emb, (height, width), **kwargs)
    assert [i.name for i in browser.get_inputs()] == ["image_tokens", "point_coords", "point_labels", "mask_input",
                                                      "has_mask_input"]
    _, iou, low_res = contract.run(None, feeds)
    b_iou, b_low = browser.run(None, browser_feeds(feeds))
    assert b_low.shape == (1, 4, 256, 256) and b_iou.shape == (1, 4)
    np.testing.assert_allclose(b_iou, iou, atol=1e-5)
    np.testing.assert_allclose(b_low, low_res, atol=1e-4, rtol=1e-4)


def test_full_size_sam_decoder_graph_matches_torch():
    """ViT-B dimensions (MLP 2048): the rewrite does not depend on the default model's sizes."""
    torch.manual_seed(1)
    sam = build_sam_vit_b(None).eval()
    rng = np.random.default_rng(2)
    feeds = engine.decoder_feeds(rng.standard_normal((1, 256, 64, 64)).astype(np.float32), (300, 1200),
                                 point_coords=[[50, 60], [900, 200]], point_labels=[1, 0])
    iou, low = BrowserDecoderOnnxModel(sam).eval()(*[torch.as_tensor(v) for v in browser_feeds(feeds).values()])
    from engine.onnx_export import DecoderOnnxModel

    _, ref_iou, ref_low = DecoderOnnxModel(sam).eval()(*[torch.as_tensor(v) for v in feeds.values()])
    torch.testing.assert_close(iou, ref_iou, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(low, ref_low, atol=1e-4, rtol=1e-4)


def test_conv_transpose_as_matmul_is_the_convolution():
    torch.manual_seed(3)
    conv = torch.nn.ConvTranspose2d(8, 4, kernel_size=2, stride=2)
    x = torch.randn(1, 8, 5, 6)
    w, b = _conv_transpose_as_matmul(conv)
    y = (x[0].permute(1, 2, 0).reshape(30, 8) @ w + b).reshape(5, 6, 2, 2, 4).permute(4, 0, 2, 1, 3).reshape(4, 10, 12)
    torch.testing.assert_close(y, conv(x)[0], atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="2x2 stride-2"):
        _conv_transpose_as_matmul(torch.nn.ConvTranspose2d(8, 4, kernel_size=3, stride=2))


def test_quantized_browser_graph_is_smaller(model, tmp_path):
    fp32 = engine.export_browser_decoder(model, tmp_path / "b.onnx")
    q = engine.export_browser_decoder(model, tmp_path / "bq.onnx", quantize=True)
    # Less than the contract graph's 2.5x: the 4 MB positional-encoding constant (image_pe) and
    # the weights the regrouped attention reshapes (einsum, not MatMul) stay fp32.
    assert q.stat().st_size < fp32.stat().st_size * 0.6
    out = ort.InferenceSession(str(q), providers=["CPUExecutionProvider"]).run(
        None, browser_feeds(engine.decoder_feeds(np.zeros((1, 256, 64, 64), np.float32), (10, 10),
                                                 point_coords=[[5, 5]], point_labels=[1])))
    assert out[1].shape == (1, 4, 256, 256)
