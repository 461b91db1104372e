"""Pure helpers of the bench scripts, on hand-made input (no timing)."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def enc():
    return _load("encoder_throughput")


STATUS = """Name:\tpython
VmPeak:\t 5000000 kB
VmHWM:\t  123456 kB
VmRSS:\t   65432 kB
Threads:\t2
"""


def test_status_kb_reads_fields(enc):
    assert enc.status_kb(STATUS, "VmHWM") == 123456
    assert enc.status_kb(STATUS, "VmRSS") == 65432
    with pytest.raises(KeyError):
        enc.status_kb(STATUS, "VmSwap")


def test_self_status_peak_is_at_least_rss(enc):
    assert enc.self_status_kb("VmHWM") >= enc.self_status_kb("VmRSS") > 0


def test_median_and_throughput(enc):
    assert enc.median([3.0, 1.0, 2.0]) == 2.0
    assert enc.median([4.0, 1.0, 2.0, 3.0]) == 2.5
    with pytest.raises(ValueError):
        enc.median([])
    assert enc.throughput(4, 2.0) == (2.0, 0.5)


def test_relative_error(enc):
    ref = np.array([[1.0, -4.0], [2.0, 0.0]])
    assert enc.relative_error(ref, ref) == 0.0
    assert enc.relative_error(ref + np.array([[0.0, 0.0], [0.0, 0.004]]), ref) == pytest.approx(1e-3)


def test_markdown_table_aligns_numbers_right_and_escapes_pipes(enc):
    rows = [{"model": "vit_b", "batch": 2, "images/s": 0.12345, "peak MB": 4321.7, "notes": "a|b"},
            {"model": "default", "batch": 1, "images/s": None, "notes": "failed"}]
    text = enc.markdown_table(rows, ["model", "batch", "images/s", "peak MB", "notes"])
    assert text.splitlines() == [
        "| model | batch | images/s | peak MB | notes |",
        "|---|---:|---:|---:|---|",
        "| vit_b | 2 | 0.123 | 4322 | a\\|b |",
        "| default | 1 |  |  | failed |",
    ]


def test_cpu_configs_skip_batched_onnx_without_a_graph(enc):
    cfgs = enc.cpu_configs(["default", "vit_b"], batch=4, vit_batch=2, onnx={"default": None})
    keys = [(c["model"], c["backend"], c["attention"], c["batch"]) for c in cfgs]
    assert ("default", "onnxruntime", "-", 1) in keys  # the worker's engine.embed path
    assert ("default", "onnxruntime", "-", 4) not in keys
    assert not any(m == "vit_b" and b == "onnxruntime" for m, b, _, _ in keys)
    assert ("vit_b", "torch", "sdpa", 2) in keys and ("vit_b", "torch", "segment-anything", 1) in keys
    assert all(c["device"] == "cpu" and c["precision"] == "fp32" for c in cfgs)


def test_gpu_configs(enc):
    cfgs = enc.gpu_configs(8)
    assert {(c["precision"], c["batch"]) for c in cfgs} == {("fp32", 1), ("fp32", 8), ("bf16", 1), ("bf16", 8)}
    assert all(c["model"] == "vit_h" and c["device"] == "cuda" for c in cfgs)


def test_sdpa_attention_matches_segment_anything(enc):
    """The bench's SDPA forward against segment-anything's Attention on a small block (the
    class itself is not patched here)."""
    import torch
    from segment_anything.modeling.image_encoder import Attention

    torch.manual_seed(0)
    block = Attention(dim=32, num_heads=4, use_rel_pos=True, input_size=(6, 5)).eval()
    with torch.no_grad():
        block.rel_pos_h.normal_(0, 0.5)
        block.rel_pos_w.normal_(0, 0.5)
        x = torch.randn(2, 6, 5, 32)
        assert enc.relative_error(enc.sdpa_attention_forward(block, x), block(x)) < 1e-5


def test_iou_calibration_report_bins_and_best_candidate():
    cal = _load("iou_calibration")
    # Two points, 3 candidates each: (predicted IoU, actual IoU, stability).
    rows = np.array([[0.20, 0.10, 0.1], [0.90, 0.95, 0.97], [0.55, 0.40, 0.5],
                     [0.65, 0.70, 0.6], [0.10, 0.05, 0.0], [0.75, 0.30, 0.9]])
    assert cal._best(rows) == pytest.approx((0.95 + 0.30) / 2)  # the highest predicted IoU of each point

    class Args:
        model, points, every = "default", 3, 20

    text = cal.report(rows, Args, 1.0, "0.00/0.00/0.00")
    assert "| [0.88, 1.00) | 1 | 0.950 | 0.950 | 1.00 | 1.00 |" in text
    assert "| [0.60, 0.70) | 1 | 0.700 |" in text
    assert "| [0.80, 0.88) | 0 |" in text
    assert "SAM's default filters (predicted IoU > 0.88, stability >= 0.95): 0.167 of the candidates" in text
    assert "actual IoU >= 0.88: 0.167" in text
