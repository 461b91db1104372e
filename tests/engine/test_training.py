"""Tiny training smoke test: a feature cache of 2 synthetic photos, a few steps of the
SAM recipe, finite losses, and a checkpoint that resumes."""

import math

import numpy as np
import pytest
import torch

from engine.training.features import FeatureCache, Sample, build_cache
from engine.training.train import TrainConfig, train
from engine.modeling import LiteImageEncoder


def _samples():
    rng = np.random.default_rng(0)
    for i in range(2):
        h, w = (120, 160) if i == 0 else (160, 100)
        img = (rng.random((h, w, 3)) * 60).astype(np.uint8)
        mask = np.zeros((h, w), bool)
        mask[h // 4 : 3 * h // 4, w // 5 : w // 2 + i * 10] = True
        img[mask] += 150
        yield Sample(f"synthetic{i}", img, [mask])


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("cache")
    build_cache(_samples(), out, LiteImageEncoder(pretrained_backbone=False).eval(), progress=False, threads=1)
    return out


def test_cache_layout(cache):
    fc = FeatureCache(cache)
    assert len(fc) == 2 and fc.f8.shape == (2, 40, 64, 64) and fc.f32.shape == (2, 320, 32, 32)
    assert fc.masks.shape == (2, 256, 256) and set(np.unique(fc.masks)) <= {0, 1, 255}


def test_train_steps_finite_and_resume(cache, tmp_path):
    cfg = TrainConfig(caches=[str(cache)], out_dir=str(tmp_path / "run"), steps=2, batch=2, iterations=3,
                      val_every=2, val_images=0, ckpt_every=1, threads=1, warmup=1,
                      export_path=str(tmp_path / "w.safetensors"))
    first = train(cfg, progress=False)
    assert first["step"] == 2 and math.isfinite(first["last"]["loss"]) and first["last"]["loss"] > 0
    state = torch.load(tmp_path / "run" / "last.pt", weights_only=False)
    assert state["step"] == 2 and all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
    cfg.steps = 4
    cfg.crop = 32  # the object-centred crop path, resumed from the full-grid checkpoint
    resumed = train(cfg, progress=False)
    assert resumed["step"] == 4 and math.isfinite(resumed["last"]["loss"])
    assert torch.load(tmp_path / "run" / "last.pt", weights_only=False)["step"] == 4
