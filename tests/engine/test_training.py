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


# ----------------------------------------------------------------- prompt geometry and data

def _blob_gt():
    gt = np.zeros((256, 256), bool)
    gt[150:200, 30:70] = True  # off-centre, so a frame mix-up (x/y swap, 64 vs 1024) misses it
    valid = np.ones((256, 256), bool)
    valid[:, 240:] = False  # padding on the right, as for a portrait photo
    return gt, valid


def test_first_prompt_lands_in_the_mask_in_the_1024_frame():
    """Training prompts are 1024-frame pixels, as predict() sends them: /4 is the 256 cell."""
    from engine.training.train import first_prompt

    gt, valid = _blob_gt()
    rng = np.random.default_rng(0)
    for _ in range(50):
        coords, labels = first_prompt(gt, valid, use_box=False, rng=rng)
        assert labels.tolist() == [1.0, -1.0]
        x, y = coords[0]
        assert gt[int(y // 4), int(x // 4)]
        box, labels = first_prompt(gt, valid, use_box=True, rng=rng)
        assert labels.tolist() == [2.0, 3.0]
        (x0, y0), (x1, y1) = box
        assert abs(x0 - 120) <= 20 and abs(y0 - 600) <= 20 and abs(x1 - 280) <= 20 and abs(y1 - 800) <= 20


def test_crop_keeps_prompts_and_positional_encoding_aligned():
    """A crop of the grid keeps absolute geometry: the crop's dense PE is the full PE at the
    crop, and a prompt drawn in the crop and shifted by the offset lands on the same object
    pixel of the full frame."""
    from engine.build import build_default_sam
    from engine.training.train import crop_batch, first_prompt

    torch.manual_seed(0)
    sam = build_default_sam(pretrained_backbone=False)
    gt, valid = _blob_gt()
    emb = torch.arange(64 * 64, dtype=torch.float32).reshape(1, 1, 64, 64).expand(1, 256, 64, 64)
    rng = np.random.default_rng(1)
    for _ in range(10):
        e, pos, g, v, off = crop_batch(sam, emb, torch.from_numpy(gt[None].astype(np.float32)),
                                       torch.from_numpy(valid[None]), 24, rng)
        x0, y0 = (off[0] / 4).astype(int)  # offset is on the 256 grid; the crop on the 64 grid
        assert float(e[0, 0, 0, 0]) == y0 * 64 + x0
        full_pe = sam.prompt_encoder.get_dense_pe()[0]
        assert torch.equal(pos[0], full_pe[:, y0 : y0 + 24, x0 : x0 + 24])
        coords, _ = first_prompt(g[0].numpy() > 0.5, v[0].numpy(), use_box=False, rng=rng)
        x, y = coords[0] + off[0] * 4.0  # as run_session shifts it
        assert gt[int(y // 4), int(x // 4)]


def test_mosaics_hold_several_targets_and_skip_validation_photos(tmp_path):
    """One mask per photo leaves the click's location uninformative; composites must give
    2 or 4 disjoint targets per image, and never use an excluded (validation) photo."""
    from PIL import Image

    from engine.training.features import mosaic_samples

    rng = np.random.default_rng(0)
    (tmp_path / "img").mkdir()
    (tmp_path / "gt").mkdir()
    for i in range(6):
        h, w = (60, 80) if i % 2 else (80, 50)
        Image.fromarray((rng.random((h, w, 3)) * 255).astype(np.uint8)).save(tmp_path / "img" / f"p{i}.jpg")
        m = np.zeros((h, w), np.uint8)
        m[10:40, 10:30] = 255
        Image.fromarray(m).save(tmp_path / "gt" / f"p{i}.png")
    samples = list(mosaic_samples(tmp_path, 8, exclude={"p0", "p1"}, seed=0, size=128))
    assert len(samples) == 8
    for s in samples:
        parts = s.name.split("+")
        assert len(parts) in (2, 4) and not {"p0", "p1"} & set(parts)
        assert s.image.shape == (128, 128, 3) and len(s.masks) == len(parts)
        assert all(m.any() for m in s.masks)
        assert np.sum([m.astype(int) for m in s.masks], axis=0).max() == 1  # disjoint targets


def test_train_data_keeps_composites_of_validation_photos_out(tmp_path):
    from engine.training.train import TrainData

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    samples = []
    for name in ("a", "b", "c", "d", "a+c", "b+d"):
        img = (rng.random((64, 64, 3)) * 255).astype(np.uint8)
        m = np.zeros((64, 64), bool)
        m[8:30, 8:30] = True
        samples.append(Sample(name, img, [m, ~m] if "+" in name else [m]))
    out = build_cache(samples, tmp_path / "c", LiteImageEncoder(pretrained_backbone=False).eval(),
                      progress=False, threads=1)
    data = TrainData([str(out)], val_images=2)  # bases a b c d -> validation a, c
    fc = FeatureCache(out)
    val = sorted(fc.names[fc.mask_image[mi]] for _, mi in data.val)
    train_names = sorted(fc.names[fc.mask_image[mi]] for _, mi in data.train)
    assert val == ["a", "c"] and train_names == ["b", "b+d", "b+d", "d"]


def test_training_teaches_the_click_location():
    """Two objects with the SAME features, one 16x16 window of the grid: only the click's
    position tells the targets apart. A few dozen steps of the recipe (prompts as training
    draws them) must make a click on either object, encoded by SAM's own PromptEncoder from
    pixel coordinates as predict() does, give that object and not the other. A model that
    ignores the prompt's location (wrong frame, crop shift, flip) fails this."""
    from engine.build import build_default_sam
    from engine.predictor import coords_to_1024
    from engine.training.train import actual_iou, decode_batch, run_session, trainable_parameters

    torch.manual_seed(0)
    torch.set_num_threads(2)
    sam = build_default_sam(pretrained_backbone=False)
    g = torch.Generator().manual_seed(0)
    obj, bg = torch.randn(256, generator=g), torch.randn(256, generator=g)
    emb = bg.reshape(1, 256, 1, 1).repeat(1, 1, 16, 16)
    emb[..., 2:7, 2:7] = obj.reshape(1, 256, 1, 1)
    emb[..., 9:14, 8:14] = obj.reshape(1, 256, 1, 1)
    emb = emb + 0.1 * torch.randn(emb.shape, generator=g)
    gts = torch.zeros(2, 64, 64)
    gts[0, 8:28, 8:28] = 1  # the 256 grid: token (row, col) covers cells 4*row..4*row+3
    gts[1, 36:56, 32:56] = 1
    valid = torch.ones(2, 64, 64, dtype=torch.bool)
    pos = sam.prompt_encoder.get_dense_pe()[:, :, :16, :16].expand(2, -1, -1, -1).detach()
    cfg = TrainConfig(iterations=1, box_prob=0.0, focal_alpha=0.5, bf16=False)  # no avx512_bf16 here
    params = trainable_parameters(sam)
    opt = torch.optim.AdamW(params, lr=1e-3)
    sam.train()
    for step in range(40):
        opt.zero_grad(set_to_none=True)
        run_session(sam, emb.expand(2, -1, -1, -1), gts, valid, cfg, np.random.default_rng(step), pos=pos)
        opt.step()
    sam.eval()
    with torch.no_grad():
        masks = []
        for px in ((4.5 * 16, 4.5 * 16), (11 * 16, 11.5 * 16)):  # object centres, 1024-frame pixels
            pc = torch.as_tensor(coords_to_1024(np.array([px]), 1024, 1024), dtype=torch.float32)[None]
            sparse, _ = sam.prompt_encoder(points=(pc, torch.ones(1, 1)), boxes=None, masks=None)
            low, _ = decode_batch(sam, emb, sparse, None, pos[:1])
            masks.append(low[:, 1:])
    def best(logits, target):  # best of the 3 candidates against one target
        return float(actual_iou(logits, gts[target : target + 1], valid[:1]).max())

    iou_aa, iou_bb, iou_ab, iou_ba = best(masks[0], 0), best(masks[1], 1), best(masks[0], 1), best(masks[1], 0)
    assert iou_aa > 0.6 and iou_bb > 0.6, (iou_aa, iou_bb)
    assert iou_ab < 0.3 and iou_ba < 0.3, (iou_ab, iou_ba)
