"""SAM's training recipe on cached frozen-backbone features (Kirillov et al., 2023, App. A).

Per ground-truth mask, a simulated interactive session of 11 iterations: a first prompt
(one positive point or a box jittered by 10% of its side, at most 20 px), then clicks from
the error region of the previous prediction (false negative -> positive click, false
positive -> negative), with the previous low-res logits fed back as ``mask_input``; one
random iteration and the last one add no new point (mask refinement only). Loss per
iteration: focal + dice at 20:1 on the best of the 3 multimask candidates for the single
first prompt, on the single-mask token (index 0) once there are several prompts; plus the
MSE between predicted and actual IoU of every output.

Only the image encoder's neck (laterals + neck) and SAM's prompt encoder and mask decoder
train; the EfficientNet-Lite0 backbone is frozen and its features come from the cache
(``engine.training.features``). Everything runs at the 256x256 low-res mask grid.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F
from segment_anything.modeling import Sam

from ..build import build_default_sam
from ..clicks import next_click, random_error_click
from .features import LOWRES, FeatureCache

log = logging.getLogger(__name__)

N_ITERATIONS = 11
FOCAL_WEIGHT, DICE_WEIGHT = 20.0, 1.0


@dataclass
class TrainConfig:
    """Hyper-parameters of one run (saved in every checkpoint)."""

    caches: list[str] = field(default_factory=list)
    out_dir: str = "var/train/default"
    steps: int = 2000
    batch: int = 8
    lr: float = 8e-4
    weight_decay: float = 0.01
    warmup: int = 50
    seed: int = 0
    iterations: int = N_ITERATIONS
    box_prob: float = 0.5
    p_deepest: float = 0.5
    multimask_aux: float = 0.25  # weight of the best-of-3 loss on multi-prompt iterations
    # Iterations that get a loss and gradient (the first always; the rest drawn at random
    # per step). 0 = all 11, as in SAM; fewer trades gradient signal for CPU time, the
    # other iterations still run (without autograd) to simulate the session.
    loss_iters: int = 0
    val_every: int = 100
    ckpt_every: int = 25
    val_images: int = 40
    threads: int = 1
    # bf16 autocast for the decoder on CPU: 4x faster forward, 2x faster forward+backward
    # than fp32 where the CPU has avx512_bf16/amx_bf16; without them (avx2 only) torch
    # emulates bf16 and a step is about 10x SLOWER than fp32 (measured: 160 s vs 17 s).
    # None = decide from the CPU flags (cpu_has_native_bf16).
    bf16: bool | None = None
    # Focal loss alpha (weight of positives). 0.25 (Lin et al.'s default, SAM's) pushed
    # this small from-scratch decoder into predicting empty masks within 20 steps on
    # CPU-sized batches here; 0.5 weighs both classes alike.
    focal_alpha: float = 0.5
    crop: int = 0  # train on a crop x crop window of the 64x64 grid (0: full grid), see crop_batch
    init_weights: str = ""  # start a fresh run (no last.pt) from these safetensors weights
    export_path: str = ""  # fp16 safetensors of the best model by validation, if set


# --------------------------------------------------------------------------- model pieces

def fuse_cached(sam: Sam, f8p: torch.Tensor, f16: torch.Tensor, f32: torch.Tensor) -> torch.Tensor:
    """Neck on cached features: Bx40x64x64 (stride 8, already 2x2 average-pooled),
    Bx112x64x64, Bx320x32x32 -> Bx256x64x64. Same as ``LiteImageEncoder.fuse``."""
    enc = sam.image_encoder
    x = enc.lateral16(f16) + enc.lateral8[1](f8p)
    x = x + F.interpolate(enc.lateral32(f32), size=x.shape[-2:], mode="bilinear", align_corners=False)
    return enc.neck(x)


def embed_points(sam: Sam, coords: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """BxNx2 coords (1024 frame) and BxN labels (-1 pad, 0, 1, 2/3 box corners) ->
    BxNx256 sparse embeddings, exactly as the exported decoder computes them."""
    pe = sam.prompt_encoder
    emb = pe.pe_layer._pe_encoding((coords + 0.5) / 1024.0)
    lab = labels.unsqueeze(-1)
    emb = emb * (lab != -1) + pe.not_a_point_embed.weight * (lab == -1)
    for i in range(pe.num_point_embeddings):
        emb = emb + pe.point_embeddings[i].weight * (lab == i)
    return emb


def decode_batch(sam: Sam, emb: torch.Tensor, sparse: torch.Tensor, mask_input: torch.Tensor | None,
                 pos: torch.Tensor | None = None):
    """Batched SAM mask decoder, one prompt set per image (``MaskDecoder.predict_masks``
    repeats one image per prompt set; here each row has its own image).

    ``emb`` is BxCxhxw: the full 64x64 grid, or a crop of it with ``pos`` the matching
    crop of the dense positional encoding (and ``mask_input`` Bx1x4hx4w).

    Returns: low-res logits Bx4x4hx4w (256x256 for the full grid), predicted IoU Bx4."""
    dec = sam.mask_decoder
    pe = sam.prompt_encoder
    b, _, h, w = emb.shape
    if mask_input is None:
        dense = pe.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(b, -1, h, w)
    else:
        dense = pe.mask_downscaling(mask_input)
    out_tokens = torch.cat([dec.iou_token.weight, dec.mask_tokens.weight], dim=0)
    tokens = torch.cat((out_tokens.unsqueeze(0).expand(b, -1, -1), sparse), dim=1)
    src = emb + dense
    if pos is None:
        pos = pe.get_dense_pe().expand(b, -1, -1, -1)
    hs, src = dec.transformer(src, pos, tokens)
    iou_out = hs[:, 0, :]
    mask_out = hs[:, 1 : 1 + dec.num_mask_tokens, :]
    c = src.shape[-1]
    src = src.transpose(1, 2).reshape(b, c, h, w)
    up = dec.output_upscaling(src)
    hyper = torch.stack([dec.output_hypernetworks_mlps[i](mask_out[:, i, :]) for i in range(dec.num_mask_tokens)], 1)
    bb, cc, hh, ww = up.shape
    masks = (hyper @ up.reshape(bb, cc, hh * ww)).reshape(bb, -1, hh, ww)
    return masks, dec.iou_prediction_head(iou_out)


# --------------------------------------------------------------------------- losses

def mask_losses(logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor,
                alpha: float = 0.25, gamma: float = 2.0) -> torch.Tensor:
    """Per-mask focal + dice (SAM: 20:1). logits BxKxHxW, target/valid BxHxW -> BxK."""
    t = target.unsqueeze(1).expand_as(logits)
    v = valid.unsqueeze(1).float()
    nvalid = v.sum((2, 3)).clamp(min=1)
    prob = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, t, reduction="none")
    p_t = prob * t + (1 - prob) * (1 - t)
    focal = ce * (1 - p_t) ** gamma
    focal = focal * (alpha * t + (1 - alpha) * (1 - t))
    focal = (focal * v).sum((2, 3)) / nvalid
    pv = prob * v
    dice = 1 - (2 * (pv * t).sum((2, 3)) + 1) / (pv.sum((2, 3)) + (t * v).sum((2, 3)) + 1)
    return FOCAL_WEIGHT * focal + DICE_WEIGHT * dice


def actual_iou(logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """IoU of (logits > 0) with target over valid pixels: BxKxHxW -> BxK (no grad)."""
    with torch.no_grad():
        pred = (logits > 0) & valid.unsqueeze(1)
        t = (target > 0.5).unsqueeze(1)
        inter = (pred & t).sum((2, 3)).float()
        union = (pred | t).sum((2, 3)).float()
        return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))


# --------------------------------------------------------------------------- prompts

def _cell_to_1024(y: int, x: int, rng: np.random.Generator) -> tuple[float, float]:
    """A low-res grid cell -> a random (x, y) point inside it in the 1024 frame."""
    return (x + rng.random()) * 4.0, (y + rng.random()) * 4.0


def first_prompt(gt: np.ndarray, valid: np.ndarray, use_box: bool, rng: np.random.Generator):
    """Initial prompt for one mask on the 256 grid -> (coords Nx2, labels N) in the 1024 frame.

    A point: half the time the protocol's first click (deepest interior point), else
    uniform in the object. A box: the mask's box with each coordinate jittered by
    N(0, 0.1 * side), clipped to 20 px (SAM App. A), followed by no padding point.
    """
    if use_box:
        ys, xs = np.nonzero(gt)
        x0, x1 = xs.min() * 4.0, (xs.max() + 1) * 4.0
        y0, y1 = ys.min() * 4.0, (ys.max() + 1) * 4.0
        w, h = x1 - x0, y1 - y0
        j = rng.normal(0, 0.1, 4) * np.array([w, h, w, h])
        j = np.clip(j, -20, 20)
        box = np.array([x0, y0, x1, y1]) + j
        box = np.clip(box, 0, 1023)
        if box[2] <= box[0] or box[3] <= box[1]:
            box = np.array([x0, y0, x1, y1])
        return box.reshape(2, 2), np.array([2.0, 3.0])
    if rng.random() < 0.5:
        c = next_click(np.zeros_like(gt), gt, ~valid)
        x, y = _cell_to_1024(c.y, c.x, rng)
    else:
        ys, xs = np.nonzero(gt)
        i = int(rng.integers(len(ys)))
        x, y = _cell_to_1024(ys[i], xs[i], rng)
    return np.array([[x, y], [0.0, 0.0]]), np.array([1.0, -1.0])


# --------------------------------------------------------------------------- data

class TrainData:
    """Masks from one or more feature caches, split into train / validation by image."""

    def __init__(self, cache_dirs: list[str], val_images: int) -> None:
        self.caches = [FeatureCache(Path(d)) for d in cache_dirs]
        self.train: list[tuple[int, int]] = []
        self.val: list[tuple[int, int]] = []
        # Validation: every k-th base image of the first cache (its flip excluded from
        # training as well), so validation never sees a training photo.
        # Composites (names "a+b+...", see features.mosaic_samples) never validate, and
        # never train when they show a validation photo.
        first = self.caches[0]
        bases = sorted({n.split(":")[0] for n in first.names if "+" not in n})
        k = max(1, len(bases) // max(1, val_images)) if val_images else 0
        val_bases = set(bases[::k][:val_images]) if val_images else set()
        for ci, cache in enumerate(self.caches):
            for mi, row in enumerate(cache.mask_image):
                name = cache.names[row]
                parts = {part.split(":")[0] for part in name.split("+")}
                if parts & val_bases:
                    if ci == 0 and ":" not in name and "+" not in name:
                        self.val.append((ci, mi))
                else:
                    self.train.append((ci, mi))

    def batch(self, items: list[tuple[int, int]]):
        """Features (3 tensors), gt Bx256x256 float, valid Bx256x256 bool."""
        f8, f16, f32, gts = [], [], [], []
        for ci, mi in items:
            cache = self.caches[ci]
            row = int(cache.mask_image[mi])
            a, b, c = cache.features([row])
            f8.append(a); f16.append(b); f32.append(c)
            gts.append(np.asarray(cache.masks[mi]))
        g = np.stack(gts)
        return (torch.cat(f8), torch.cat(f16), torch.cat(f32),
                torch.from_numpy((g == 1).astype(np.float32)), torch.from_numpy(g != 255))


# --------------------------------------------------------------------------- session

def crop_batch(sam: Sam, emb: torch.Tensor, gt: torch.Tensor, valid: torch.Tensor, size: int,
               rng: np.random.Generator):
    """Crop each row to a ``size`` x ``size`` window of the 64x64 grid around its object.

    Training-speed device (not in SAM's recipe): the decoder's cost is linear in the
    number of image tokens, so a 40x40 window costs 2.5x less than the full grid. The
    dense positional encoding is cropped alike and prompts stay in absolute coordinates,
    so the decoder sees the same geometry as on the full grid (only the keys of its
    token-to-image attention are fewer); validation always runs on the full grid.

    Returns: emb Bx256xSxS, pos Bx256xSxS, gt and valid Bx4Sx4S, offset Bx2 (x, y) on the
    256 grid.
    """
    b = emb.shape[0]
    pe_full = sam.prompt_encoder.get_dense_pe()[0]
    embs, poss, gts, valids, offs = [], [], [], [], []
    g = gt.numpy() > 0.5
    v = valid.numpy()
    for i in range(b):
        ys, xs = np.nonzero(g[i])
        vy, vx = np.nonzero(v[i])
        hmax, wmax = (vy.max() + 1) // 4, (vx.max() + 1) // 4  # image extent on the 64 grid
        cy = (ys.min() + ys.max()) / 8 + np.clip(rng.normal(0, size / 8), -size / 4, size / 4)
        cx = (xs.min() + xs.max()) / 8 + np.clip(rng.normal(0, size / 8), -size / 4, size / 4)
        for _ in range(2):
            y0 = int(np.clip(round(cy - size / 2), 0, max(0, min(64 - size, hmax - size))))
            x0 = int(np.clip(round(cx - size / 2), 0, max(0, min(64 - size, wmax - size))))
            if g[i, 4 * y0 : 4 * (y0 + size), 4 * x0 : 4 * (x0 + size)].any():
                break
            j = int(rng.integers(len(ys)))  # e.g. a ring whose box centre is empty
            cy, cx = ys[j] / 4, xs[j] / 4
        embs.append(emb[i, :, y0 : y0 + size, x0 : x0 + size])
        poss.append(pe_full[:, y0 : y0 + size, x0 : x0 + size])
        gts.append(gt[i, 4 * y0 : 4 * (y0 + size), 4 * x0 : 4 * (x0 + size)])
        valids.append(valid[i, 4 * y0 : 4 * (y0 + size), 4 * x0 : 4 * (x0 + size)])
        offs.append((4 * x0, 4 * y0))
    gt_c = torch.stack(gts)
    # A crop that cut the whole object away cannot happen (it is centred on it), but a
    # crop can miss all of a huge object's background: both are valid training signals.
    return torch.stack(embs), torch.stack(poss), gt_c, torch.stack(valids), np.asarray(offs, np.float64)


def run_session(sam: Sam, emb: torch.Tensor, gt: torch.Tensor, valid: torch.Tensor, cfg: TrainConfig,
                rng: np.random.Generator, train: bool = True, pos: torch.Tensor | None = None,
                offset: np.ndarray | None = None) -> dict[str, float]:
    """One simulated interactive session for a batch; backpropagates each iteration's loss
    into ``emb`` (a leaf) and the decoder when ``train``. Returns mean losses/IoUs.

    With a crop (see :func:`crop_batch`): ``emb``/``pos`` Bx256xCxC, ``gt``/``valid``
    Bx4Cx4C and ``offset`` Bx2 the crop's (x, y) origin on the 256 grid; prompts are
    drawn in the crop and sent in absolute 1024-frame coordinates."""
    b = emb.shape[0]
    shift = np.zeros((b, 1, 2)) if offset is None else np.asarray(offset, np.float64).reshape(b, 1, 2) * 4.0
    gt_np = gt.numpy() > 0.5
    valid_np = valid.numpy()
    use_box = rng.random() < cfg.box_prob
    coords, labels = [], []
    for i in range(b):
        c, l = first_prompt(gt_np[i], valid_np[i], use_box, rng)
        coords.append(c); labels.append(l)
    coords = np.stack(coords); labels = np.stack(labels)
    coords = coords + shift * (labels[..., None] != -1)
    n_iter = cfg.iterations
    no_new = {n_iter - 1, int(rng.integers(1, max(2, n_iter - 1)))}
    if cfg.loss_iters and cfg.loss_iters < n_iter:
        grad_iters = {0} | set(rng.choice(np.arange(1, n_iter), cfg.loss_iters - 1, replace=False).tolist())
    else:
        grad_iters = set(range(n_iter))
    mask_input = None
    stats = {"loss": 0.0, "iou_first": 0.0, "iou_last": 0.0, "iou_mse": 0.0}
    for it in range(n_iter):
        with torch.set_grad_enabled(train and it in grad_iters):
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bool(cfg.bf16)):
                sparse = embed_points(sam, torch.from_numpy(coords).float(), torch.from_numpy(labels).float())
                low, iou_pred = decode_batch(sam, emb, sparse, mask_input, pos)
            low, iou_pred = low.float(), iou_pred.float()
            per_mask = mask_losses(low, gt, valid, alpha=cfg.focal_alpha)  # Bx4
        actual = actual_iou(low, gt, valid)
        single_prompt = it == 0 and not use_box
        best3 = per_mask[:, 1:].min(dim=1)
        if single_prompt:
            mloss = best3.values.mean()
        elif it == 0:  # a box: both the single-mask token and the best candidate
            mloss = per_mask[:, 0].mean() + best3.values.mean()
        else:
            mloss = per_mask[:, 0].mean() + cfg.multimask_aux * best3.values.mean()
        iou_loss = F.mse_loss(iou_pred, actual)
        loss = (mloss + iou_loss) / len(grad_iters)
        if it in grad_iters:
            if train:
                loss.backward()
            stats["loss"] += loss.item()
            stats["iou_mse"] += iou_loss.item() / len(grad_iters)
        # The mask fed back and used for the next click: the candidate with the highest
        # predicted IoU after one click (SAM's multimask convention), else the single mask.
        with torch.no_grad():
            if single_prompt:
                pick = iou_pred[:, 1:].argmax(dim=1) + 1
            else:
                pick = torch.zeros(b, dtype=torch.long)
            chosen = low.detach()[torch.arange(b), pick]
            chosen_iou = actual[torch.arange(b), pick]
        if it == 0:
            stats["iou_first"] = float(chosen_iou.mean())
        stats["iou_last"] = float(chosen_iou.mean())
        mask_input = chosen.unsqueeze(1).clone()
        if it + 1 < n_iter and (it + 1) not in no_new:
            pred = chosen.numpy() > 0
            new_c, new_l = [], []
            for i in range(b):
                click = random_error_click(pred[i], gt_np[i], rng, valid_np[i], cfg.p_deepest)
                if click is None:  # perfect already: a positive click inside the object
                    ys, xs = np.nonzero(gt_np[i])
                    j = int(rng.integers(len(ys)))
                    new_c.append(_cell_to_1024(ys[j], xs[j], rng)); new_l.append(1.0)
                else:
                    new_c.append(_cell_to_1024(click.y, click.x, rng)); new_l.append(1.0 if click.is_positive else 0.0)
            new_c = np.asarray(new_c)[:, None] + shift
            new_l = np.asarray(new_l)[:, None]
            if use_box:  # points first, then the box corners (the browser's order)
                coords = np.concatenate([coords[:, :-2], new_c, coords[:, -2:]], 1)
                labels = np.concatenate([labels[:, :-2], new_l, labels[:, -2:]], 1)
            else:  # points, then the single padding point
                coords = np.concatenate([coords[:, :-1], new_c, coords[:, -1:]], 1)
                labels = np.concatenate([labels[:, :-1], new_l, labels[:, -1:]], 1)
    return stats


@torch.no_grad()
def validate(sam: Sam, data: TrainData, clicks: int = 5, bf16: bool = True) -> list[float]:
    """Standard-protocol mIoU after 1..``clicks`` clicks on the held-out masks (256 grid)."""
    sam.eval()
    ious = np.zeros(clicks)
    n = 0
    for k in range(0, len(data.val), 8):
        items = data.val[k:k + 8]
        f8, f16, f32, gt, valid = data.batch(items)
        emb = fuse_cached(sam, f8, f16, f32)
        gt_np = gt.numpy() > 0.5
        valid_np = valid.numpy()
        b = len(items)
        pts = [[] for _ in range(b)]
        pred = np.zeros_like(gt_np)
        mask_input = None
        for c in range(clicks):
            for i in range(b):
                click = next_click(pred[i], gt_np[i], ~valid_np[i])
                if click is None:
                    click = pts[i][-1] if pts[i] else (0, 0, 1.0)
                else:
                    click = ((click.x + 0.5) * 4, (click.y + 0.5) * 4, 1.0 if click.is_positive else 0.0)
                pts[i].append(click)
            arr = np.asarray(pts, np.float64)  # B x (c+1) x 3
            coords = np.concatenate([arr[:, :, :2], np.zeros((b, 1, 2))], 1)
            labels = np.concatenate([arr[:, :, 2], -np.ones((b, 1))], 1)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                sparse = embed_points(sam, torch.from_numpy(coords).float(), torch.from_numpy(labels).float())
                low, iou_pred = decode_batch(sam, emb, sparse, mask_input)
            low, iou_pred = low.float(), iou_pred.float()
            pick = iou_pred[:, 1:].argmax(1) + 1 if c == 0 else torch.zeros(b, dtype=torch.long)
            chosen = low[torch.arange(b), pick]
            mask_input = chosen.unsqueeze(1)
            act = actual_iou(chosen.unsqueeze(1), gt, valid)[:, 0]
            ious[c] += float(act.sum())
            pred = chosen.numpy() > 0
        n += b
    sam.train()
    return list(ious / max(n, 1))


# --------------------------------------------------------------------------- loop

def cpu_has_native_bf16() -> bool:
    """True when the CPU computes bf16 natively (avx512_bf16 or amx_bf16 in /proc/cpuinfo)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def trainable_parameters(sam: Sam) -> list[torch.nn.Parameter]:
    """Neck (laterals + neck), prompt encoder, mask decoder; the backbone stays frozen."""
    params = []
    for name, p in sam.named_parameters():
        if name.startswith("image_encoder.backbone."):
            p.requires_grad_(False)
        else:
            params.append(p)
    return params


def export_weights(sam: Sam, path: Path) -> Path:
    """Full Sam state dict as fp16 safetensors at ``path`` (atomic replace)."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: (v.detach().half() if v.is_floating_point() else v.detach()).contiguous().cpu()
             for k, v in sam.state_dict().items()}
    tmp = path.with_suffix(".tmp")
    save_file(state, str(tmp), metadata={"format": "pt", "dtype": "float16"})
    os.chmod(tmp, 0o644)  # read by web/worker processes that may run as other users
    os.replace(tmp, path)
    return path


def _lr(step: int, cfg: TrainConfig) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    t = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, t))))


def train(cfg: TrainConfig, resume: bool = True, progress: bool = True) -> dict:
    """Run (or resume) training; returns the final state summary.

    Checkpoints (``out_dir/last.pt``: model, optimizer, step, config, best validation
    score) are written every ``ckpt_every`` steps and at the end; with ``resume`` an
    existing ``last.pt`` continues where it stopped. Deterministic for a given seed:
    step ``s`` draws its data and clicks from ``numpy.random.default_rng((seed, s))``.

    Raises:
        ValueError: no training masks in the caches.
    """
    from tqdm import tqdm

    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    if cfg.bf16 is None:
        cfg.bf16 = cpu_has_native_bf16()
        log.info("bf16 autocast %s (native bf16 on this CPU: %s)", "on" if cfg.bf16 else "off", cfg.bf16)
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    data = TrainData(cfg.caches, cfg.val_images)
    if not data.train:
        raise ValueError("no training masks in the caches")
    sam = build_default_sam(pretrained_backbone=True)
    params = trainable_parameters(sam)
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    step, best, history = 0, -1.0, []
    ckpt = out / "last.pt"
    if resume and ckpt.exists():
        state = torch.load(ckpt, map_location="cpu", weights_only=False)
        sam.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        step, best, history = state["step"], state["best"], state.get("history", [])
        log.info("resumed from %s at step %d", ckpt, step)
    elif cfg.init_weights:
        from safetensors.torch import load_file

        from ..build import load_state_strict

        load_state_strict(sam, load_file(cfg.init_weights), cfg.init_weights)
        log.info("initialised from %s", cfg.init_weights)
    sam.train()

    def save() -> None:
        tmp = out / "last.pt.tmp"
        torch.save({"model": sam.state_dict(), "optimizer": opt.state_dict(), "step": step,
                    "best": best, "config": asdict(cfg), "history": history}, tmp)
        os.replace(tmp, ckpt)

    bar = tqdm(total=cfg.steps, initial=step, disable=not progress, dynamic_ncols=True, mininterval=5)
    t_start, samples_done, ema = time.time(), 0, None
    while step < cfg.steps:
        rng = np.random.default_rng((cfg.seed, step))
        idx = rng.choice(len(data.train), size=min(cfg.batch, len(data.train)), replace=False)
        f8, f16, f32, gt, valid = data.batch([data.train[i] for i in idx])
        for g in opt.param_groups:
            g["lr"] = _lr(step, cfg)
        opt.zero_grad(set_to_none=True)
        emb = fuse_cached(sam, f8, f16, f32)
        pos = offset = None
        if cfg.crop and cfg.crop < 64:
            emb, pos, gt, valid, offset = crop_batch(sam, emb, gt, valid, cfg.crop, rng)
            pos = pos.detach()  # the positional encoding is a fixed random projection
        emb_leaf = emb.detach().requires_grad_(True)
        stats = run_session(sam, emb_leaf, gt, valid, cfg, rng, pos=pos, offset=offset)
        emb.backward(emb_leaf.grad)
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        step += 1
        samples_done += len(idx)
        ema = stats if ema is None else {k: 0.95 * ema[k] + 0.05 * stats[k] for k in stats}
        rate = samples_done / max(1e-6, time.time() - t_start)
        bar.set_postfix(loss=f"{ema['loss']:.3f}", iou1=f"{ema['iou_first']:.2f}",
                        iou11=f"{ema['iou_last']:.2f}", sess_s=f"{rate:.2f}")
        bar.update(1)
        if step % 10 == 0:
            log.info("step %d loss %.4f iou1 %.3f iou_last %.3f iou_mse %.4f lr %.2e %.2f sessions/s",
                     step, ema["loss"], ema["iou_first"], ema["iou_last"], ema["iou_mse"], _lr(step, cfg), rate)
        if step % cfg.val_every == 0 or step == cfg.steps:
            val = validate(sam, data, bf16=cfg.bf16) if data.val else []
            score = float(np.mean(val)) if val else 0.0
            history.append({"step": step, "val_miou_by_click": val, "time": time.time()})
            log.info("step %d validation mIoU by click %s (mean %.3f, best %.3f)", step,
                     [round(v, 3) for v in val], score, best)
            if score > best:
                best = score
                export_weights(sam, out / "best.safetensors")
                if cfg.export_path:
                    export_weights(sam, Path(cfg.export_path))
                    log.info("exported best weights to %s", cfg.export_path)
            save()
        elif step % cfg.ckpt_every == 0:
            save()
    save()
    bar.close()
    (out / "history.json").write_text(json.dumps(history, indent=1))
    return {"step": step, "best": best, "history": history, "last": ema or {}}


def main(argv: list[str] | None = None) -> None:
    """CLI: ``python -m engine.training.train --cache DIR [--cache DIR] --out DIR --steps N``."""
    import argparse

    p = argparse.ArgumentParser(description="Train the default model's neck + decoder (SAM recipe).")
    p.add_argument("--cache", action="append", required=True, help="feature cache dir (repeatable)")
    p.add_argument("--out", default=TrainConfig.out_dir)
    for name in ("steps", "batch", "warmup", "seed", "val_every", "ckpt_every", "val_images", "threads", "iterations",
                 "loss_iters", "crop"):
        p.add_argument(f"--{name.replace('_', '-')}", type=int, default=getattr(TrainConfig, name))
    for name in ("lr", "weight_decay", "box_prob", "p_deepest", "multimask_aux", "focal_alpha"):
        p.add_argument(f"--{name.replace('_', '-')}", type=float, default=getattr(TrainConfig, name))
    p.add_argument("--export", default="", help="write the best weights here (fp16 safetensors)")
    p.add_argument("--init", default="", help="start a fresh run from these weights (safetensors)")
    p.add_argument("--no-resume", action="store_true")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--fp32", action="store_true", help="no bf16 autocast (default: bf16 only on a CPU with native bf16)")
    g.add_argument("--bf16", action="store_true", help="bf16 autocast even without native bf16 (slow)")
    a = p.parse_args(argv)
    if any("grabcut" in c.lower() for c in a.cache):
        raise SystemExit("GrabCut is the evaluation set: never train on it")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    bf16 = False if a.fp32 else (True if a.bf16 else None)
    cfg = TrainConfig(caches=a.cache, out_dir=a.out, export_path=a.export, bf16=bf16, init_weights=a.init,
                      **{k: getattr(a, k) for k in ("steps", "batch", "warmup", "seed", "val_every", "ckpt_every",
                                                     "val_images", "threads", "iterations", "loss_iters", "crop", "lr", "weight_decay",
                                                     "box_prob", "p_deepest", "multimask_aux", "focal_alpha")})
    train(cfg, resume=not a.no_resume)


if __name__ == "__main__":
    main()
