"""Pure helpers of bench/browser_decoder.py (percentiles, tables, configurations, the click
plan, the native replay's feeds), on hand-made input; no browser, no timing."""

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_browser_decoder", ROOT / "bench" / "browser_decoder.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_percentile_interpolates_like_numpy(bench):
    values = [5.0, 1.0, 4.0, 2.0, 3.0, 10.0]
    for q in (0, 5, 50, 90, 95, 100):
        assert bench.percentile(values, q) == pytest.approx(float(np.percentile(values, q)))
    assert bench.percentile([7.0], 95) == 7.0
    assert math.isnan(bench.percentile([], 50))


def test_formatting_of_missing_values_and_ratios(bench):
    assert bench.fmt_ms(12.345) == "12.3"
    assert bench.fmt_ms(float("nan")) == bench.fmt_ms(None) == "n/a"
    assert bench.fmt_ratio(300.0, 150.0) == "2.00x"
    assert bench.fmt_ratio(None, 1.0) == bench.fmt_ratio(1.0, 0.0) == bench.fmt_ratio(float("nan"), 1.0) == "n/a"


def test_markdown_table(bench):
    text = bench.markdown_table(["a", "b"], [["x|y", 1.5], ["z", 2]], right=[False, True])
    assert text.splitlines() == ["| a | b |", "|---|---:|", "| x\\|y | 1.5 |", "| z | 2 |"]
    with pytest.raises(ValueError):
        bench.markdown_table(["a", "b"], [["only one"]])


def test_configurations(bench):
    names = bench.all_config_names(server_knob=False)
    assert names[:2] == ["default-fp32-t1", "default-fp32-t2"] and len(names) == 8 + 2
    assert not any("server" in n for n in names)
    assert "vit_b-server" in bench.all_config_names(server_knob=True)
    assert bench.select_configs(None, names) == names
    assert bench.select_configs("next-*, vit_b-quant-t2", names) == ["vit_b-quant-t2", "next-prefetch",
                                                                   "next-noprefetch"]
    with pytest.raises(ValueError):
        bench.select_configs("vit_h-*", names)
    cfg = bench.parse_config("vit_b-quant-t2")
    assert cfg == {"model": "vit_b", "decoder": "quant", "threads": 2}
    assert bench.page_query(cfg) == "&threads=2&quantized=1"
    assert bench.page_query(bench.parse_config("default-fp32-t1"), "?graph=contract") == "&threads=1&graph=contract"
    assert bench.page_query(bench.parse_config("default-server")) == "&decoder=server"
    with pytest.raises(ValueError):
        bench.parse_config("next-prefetch")


def test_page_source_and_status_parsing(bench):
    assert bench.server_knob_present("const mode = params.get('decoder') === 'server' ? 'server' : 'wasm';")
    assert bench.server_knob_present("s=a.get(`decoder`)===`server`?new Ze():null")  # the built bundle
    assert not bench.server_knob_present("const quantized = params.get('quantized') === '1';")
    assert bench.threads_in_status("Decoder: ready (Shipped default model, wasm, 2 threads, 812 ms)") == 2
    assert bench.threads_in_status("Decoder: ready (X, wasm, quantized, 1 thread, 90 ms)") == 1
    assert bench.threads_in_status("Decoder: ready (server)") is None
    assert bench.webgpu_text({"gpu": False}) == "no navigator.gpu"
    assert bench.webgpu_text({"gpu": True, "adapter": None}) == "navigator.gpu, no adapter"
    assert bench.webgpu_text({"gpu": True, "adapter": "yes"}) == "adapter"


def test_click_plan_clicks_like_a_person(bench):
    inside = np.zeros((60, 80), bool)
    inside[15:45, 20:60] = True
    plan = bench.click_plan(inside, 50, seed=3)
    clicks = [a for a in plan if a[0] == "click"]
    assert len(clicks) == 50 and plan[-1] == ("clear",)
    assert plan == bench.click_plan(inside, 50, seed=3)  # deterministic
    first_of_run = True
    runs = []
    for a in plan:
        if a[0] == "clear":
            first_of_run = True
            continue
        _, x, y, negative = a
        assert 0 <= x < 80 and 0 <= y < 60
        if first_of_run:
            assert not negative
            runs.append(0)
        runs[-1] += 1
        assert inside[y, x] != negative  # positives on the object, negatives off it
        first_of_run = False
    assert max(runs) <= 4 and min(runs) >= 1 and len(runs) > 5
    assert any(a[3] for a in clicks)  # some negative clicks
    with pytest.raises(ValueError):
        bench.click_plan(np.zeros((4, 4), bool), 3)


def test_default_candidate_mirrors_the_page(bench):
    iou = [0.9, 0.1, 0.7, 0.3]
    assert bench.default_candidate(1, False, iou) == 2  # best of the multimask outputs 1..3
    assert bench.default_candidate(0, True, iou) == 2
    assert bench.default_candidate(2, False, iou) == 0  # several prompts: the single-mask output
    assert bench.default_candidate(1, True, iou) == 0


def test_replay_native_chains_feeds_as_the_page_does(bench):
    h, w = 300, 600
    emb = np.zeros((1, 256, 64, 64), np.float32)
    seen = []

    def run(feeds):
        seen.append(feeds)
        k = len(seen)
        low_res = np.stack([np.full((256, 256), 10 * k + c, np.float32) for c in range(4)])[None]
        return {"iou_predictions": np.array([[0.1, 0.2, 0.9, 0.3]], np.float32), "low_res_masks": low_res}

    steps = [
        {"points": [{"x": 100, "y": 50, "label": 1}], "box": None},
        {"points": [{"x": 100, "y": 50, "label": 1}, {"x": 300, "y": 150, "label": 0}], "box": None},
        {"points": [{"x": 10, "y": 20, "label": 1}], "box": None},  # after Escape: a new run
    ]
    names = ["image_embeddings", "point_coords", "point_labels", "mask_input", "has_mask_input"]
    times = bench.replay_native(run, names, emb, h, w, steps)
    assert len(times) == 3 and all(t >= 0 for t in times)
    assert all(set(f) == set(names) for f in seen)  # orig_im_size left out: the graph does not take it
    scale = 1024 / 600
    np.testing.assert_allclose(seen[0]["point_coords"], [[[100 * scale, 50 * scale], [0, 0]]], rtol=1e-6)
    np.testing.assert_array_equal(seen[0]["point_labels"], [[1, -1]])
    assert seen[0]["has_mask_input"][0] == 0 and not seen[0]["mask_input"].any()
    # The refinement click gets the first step's chosen candidate (2: best IoU of 1..3).
    assert seen[1]["has_mask_input"][0] == 1 and np.all(seen[1]["mask_input"] == 12)
    np.testing.assert_array_equal(seen[1]["point_labels"], [[1, 0, -1]])
    assert seen[2]["has_mask_input"][0] == 0  # one point again: no mask fed back
    seen.clear()
    bench.replay_native(run, names + ["orig_im_size"], emb, h, w, steps[:1])
    np.testing.assert_array_equal(seen[0]["orig_im_size"], [h, w])
