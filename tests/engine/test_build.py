"""Model registry, strict checkpoint loading, image loading and embedding."""

import io

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

import engine
from engine.build import build_default_sam, load_state_strict

GRABCUT = __import__("pathlib").Path(__file__).resolve().parents[2].parent / "shared" / "data" / "grabcut"


def test_importing_rle_helpers_does_not_load_torch():
    import subprocess
    import sys

    code = "import sys, engine.rle, engine.identity; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_unknown_model_name():
    with pytest.raises(KeyError, match="unknown model"):
        engine.build_model("vit_xxl")


def test_official_models_need_a_checkpoint_file(tmp_path):
    with pytest.raises(engine.CheckpointError, match="needs the path"):
        engine.build_model("vit_b")
    with pytest.raises(engine.CheckpointError, match="not found"):
        engine.build_model("vit_b", tmp_path / "missing.pth")
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(engine.CheckpointError, match="not a loadable"):
        engine.build_model("vit_l", bad)


def test_default_weights_roundtrip_and_strict_keys(tmp_path):
    sam = build_default_sam(pretrained_backbone=False)
    state = {k: v.half().contiguous() for k, v in sam.state_dict().items()}
    path = tmp_path / "w.safetensors"
    save_file(state, str(path))
    loaded = engine.load_default(path)
    from engine.identity import model_id_for

    assert model_id_for("default", path) == loaded.model_id  # the torch-free id agrees
    assert loaded.model_id.startswith("default-") and len(loaded.model_id) == len("default-") + 12
    first = next(iter(state))
    torch.testing.assert_close(loaded.sam.state_dict()[first].half(), state[first])

    missing = dict(state)
    missing.pop(first)
    with pytest.raises(engine.CheckpointError, match="1 missing keys"):
        load_state_strict(build_default_sam(False), missing, "x")
    extra = dict(state, **{"bogus.weight": torch.zeros(1)})
    with pytest.raises(engine.CheckpointError, match="1 unexpected keys"):
        load_state_strict(build_default_sam(False), extra, "x")
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"\x00" * 10)
    with pytest.raises(engine.CheckpointError, match="not a readable"):
        engine.load_default(corrupt)


def test_load_image_applies_exif_and_refuses_garbage():
    img = Image.new("RGB", (30, 20), (0, 255, 0))
    exif = img.getexif()
    exif[0x0112] = 8
    buf = io.BytesIO()
    img.save(buf, "JPEG", exif=exif)
    assert engine.load_image(buf.getvalue()).shape == (30, 20, 3)
    gray = io.BytesIO()
    Image.new("L", (8, 6), 128).save(gray, "PNG")
    assert engine.load_image(gray.getvalue()).shape == (6, 8, 3)
    with pytest.raises(engine.ImageError, match="cannot decode"):
        engine.load_image(b"nope")
    with pytest.raises(engine.ImageError, match="over the limit"):
        engine.load_image(gray.getvalue(), max_pixels=10)


def test_embedding_of_a_real_photo():
    model = engine.build_model("default", allow_untrained=True)
    image = engine.load_image(GRABCUT / "data_GT" / "124080.jpg")
    emb = engine.embed(model, image)
    assert tuple(emb.shape) == engine.EMBEDDING_SHAPE and emb.dtype == torch.float32
    again = engine.embed(model, image)
    torch.testing.assert_close(emb, again, rtol=1e-3, atol=1e-3)
    data = engine.embedding_to_bytes(emb)
    assert len(data) == 2 * 256 * 64 * 64
    np.testing.assert_allclose(engine.embedding_from_bytes(data), emb.numpy(), atol=2e-2, rtol=1e-2)
    with pytest.raises(engine.ImageError):
        engine.embed(model, np.zeros((10, 10), np.uint8))


def test_vit_b_embeds_with_onnxruntime_on_cpu_like_torch(monkeypatch, tmp_path):
    """ViT-B's encoder runs in onnxruntime on a CPU (3x faster, bench/encoder_throughput.py) and
    gives torch's embedding. A small ViT in the official ViT-B layout keeps the export quick."""
    import functools

    import engine.build as build
    from engine import onnx_encoder
    from segment_anything.build_sam import _build_sam

    monkeypatch.setenv("ENGINE_CACHE_DIR", str(tmp_path / "onnx"))
    # Sessions are kept per process by model id: another test may have loaded this small ViT.
    monkeypatch.setattr(onnx_encoder, "_SESSIONS", {})
    tiny = functools.partial(_build_sam, encoder_embed_dim=64, encoder_depth=2, encoder_num_heads=2,
                             encoder_global_attn_indexes=[1])
    monkeypatch.setitem(build.MODEL_REGISTRY, "vit_b", build._official_builder(tiny, "vit_b"))
    torch.manual_seed(0)
    path = tmp_path / "sam_vit_b_tiny.pth"
    torch.save(tiny(checkpoint=None).state_dict(), path)
    model = engine.build_model("vit_b", path)
    image = engine.load_image(GRABCUT / "data_GT" / "124080.jpg")
    auto = engine.embed(model, image)
    assert model.model_id in onnx_encoder._SESSIONS  # the auto backend took onnxruntime
    assert list((tmp_path / "onnx").glob(f"{model.model_id}.encoder.onnx"))
    torch.testing.assert_close(auto, engine.embed(model, image, backend="torch"), rtol=1e-3, atol=1e-3)
