"""Retraining from accepted masks: fine-tune a model's mask decoder on stored embeddings.

The data engine's loop (Kirillov et al., 2023, §4: the model was retrained 6 times in the
assisted-manual stage and 5 times in the semi-automatic stage as masks accumulated). Here a
project's accepted masks and the image embeddings the server already stored for them are
the training data; the image encoder is not run at all, so this works for every model the
tool serves (the shipped default and the official ViT-B/L/H alike) and the embeddings stay
valid for the fine-tuned model (same encoder weights).

Recipe: the same simulated interactive sessions as :mod:`engine.training.train` (SAM App.
A: a point or a jittered box, then clicks from the error region, previous low-res logits
fed back, focal + dice 20:1 on the best candidate / the single-mask token, MSE on the
predicted IoU); only the prompt encoder and the mask decoder train. Before and after, the
standard click protocol (:mod:`engine.evaluate`) measures NoC@85 / NoC@90 on a held-out
set of objects, so a caller can keep the new weights only if they are better.

Torch-only, never imports Django.
"""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..evaluate import EvalItem, SamSegmenter, evaluate_item, summarize
from .features import mask_to_lowres
from .train import TrainConfig, run_session

log = logging.getLogger(__name__)


@dataclass
class EmbeddedObject:
    """One accepted mask with the stored embedding of its image.

    Attributes:
        name: for reports (e.g. ``"<image id>/<annotation id>"``).
        embedding: 256x64x64 or 1x256x64x64 float array, the model's embedding of the image
            (resized so the longest side is 1024, padded bottom/right, as SAM does).
        image_size: (H, W) of the image in pixels, as the user sees it.
        mask: HxW bool, the accepted mask.
    """

    name: str
    embedding: np.ndarray
    image_size: tuple[int, int]
    mask: np.ndarray


@dataclass
class FinetuneConfig:
    """Hyper-parameters of a decoder fine-tune (defaults sized for a CPU worker)."""

    steps: int = 200
    batch: int = 4
    lr: float = 1e-4
    weight_decay: float = 0.01
    warmup: int = 10
    seed: int = 0
    iterations: int = 11  # SAM's 11-iteration sessions
    loss_iters: int = 3  # iterations with a loss (the rest only simulate the session); 0 = all
    threads: int = 0  # torch intra-op threads (0: leave torch's setting)
    # bf16 autocast for the decoder (see TrainConfig.bf16): None = on where the CPU computes
    # bf16 natively (about 2x faster steps), off elsewhere (emulated bf16 is ~10x slower).
    bf16: bool | None = None
    extra: dict = field(default_factory=dict)  # other TrainConfig fields (box_prob, focal_alpha, ...)


def _check_object(obj: EmbeddedObject) -> tuple[torch.Tensor, np.ndarray]:
    emb = np.asarray(obj.embedding, dtype=np.float32)
    if emb.ndim == 4 and emb.shape[0] == 1:
        emb = emb[0]
    if emb.shape != (256, 64, 64):
        raise ValueError(f"{obj.name}: embedding shape {emb.shape}, expected 256x64x64")
    mask = np.asarray(obj.mask).astype(bool)
    if mask.shape != tuple(obj.image_size):
        raise ValueError(f"{obj.name}: mask shape {mask.shape} != image size {tuple(obj.image_size)}")
    if not mask.any():
        raise ValueError(f"{obj.name}: empty mask")
    return torch.from_numpy(emb), mask_to_lowres(mask)


def finetune_decoder(sam, objects: list[EmbeddedObject], cfg: FinetuneConfig | None = None,
                     progress: Callable[[int, int, float], None] | None = None):
    """Fine-tune a copy of ``sam``'s prompt encoder and mask decoder on ``objects``.

    Args:
        sam: a ``segment_anything`` ``Sam`` (or an ``engine.LoadedModel``); not modified.
        objects: training masks with their stored embeddings (at least one).
        cfg: hyper-parameters.
        progress: called as ``progress(step, steps, loss)`` after every step.

    Returns:
        (fine-tuned ``Sam`` copy in eval mode, stats dict: steps, seconds, first/last loss
        (mean of the first/last 10 steps; None with no steps), sessions).

    Raises:
        ValueError: no objects, or an object with a wrong embedding shape, a mask that does
            not match its image size, or an empty mask.
    """
    cfg = cfg or FinetuneConfig()
    if not objects:
        raise ValueError("no training masks")
    base = getattr(sam, "sam", sam)
    data = [_check_object(o) for o in objects]
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    model = copy.deepcopy(base).cpu().float()
    model.train()
    params = []
    for name, p in model.named_parameters():
        train_it = name.startswith("mask_decoder.") or name.startswith("prompt_encoder.")
        p.requires_grad_(train_it)
        if train_it:
            params.append(p)
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    from .train import cpu_has_native_bf16

    bf16 = cpu_has_native_bf16() if cfg.bf16 is None else cfg.bf16
    tcfg = TrainConfig(iterations=cfg.iterations, loss_iters=cfg.loss_iters, seed=cfg.seed,
                       bf16=bf16, **cfg.extra)
    losses: list[float] = []
    t0 = time.time()
    for step in range(cfg.steps):
        rng = np.random.default_rng((cfg.seed, step))
        idx = rng.choice(len(data), size=min(cfg.batch, len(data)), replace=False)
        emb = torch.stack([data[i][0] for i in idx])
        low = np.stack([data[i][1] for i in idx])
        gt = torch.from_numpy((low == 1).astype(np.float32))
        valid = torch.from_numpy(low != 255)
        warm = min(1.0, (step + 1) / max(1, cfg.warmup))
        for g in opt.param_groups:
            g["lr"] = cfg.lr * warm
        opt.zero_grad(set_to_none=True)
        stats = run_session(model, emb, gt, valid, tcfg, rng)
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        losses.append(stats["loss"])
        if progress:
            progress(step + 1, cfg.steps, stats["loss"])
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    # None, not NaN, without steps: the stats go into JSON columns (PostgreSQL refuses NaN).
    first = float(np.mean(losses[:10])) if losses else None
    last = float(np.mean(losses[-10:])) if losses else None
    return model, {"steps": cfg.steps, "seconds": round(time.time() - t0, 1), "loss_first": first,
                   "loss_last": last, "sessions": cfg.steps * min(cfg.batch, len(data))}


class StoredEmbeddingSegmenter(SamSegmenter):
    """:class:`engine.evaluate.SamSegmenter` on an embedding that is already computed."""

    def __init__(self, model, embedding: np.ndarray, image_size: tuple[int, int]) -> None:
        super().__init__(model)
        emb = np.asarray(embedding, np.float32)
        self._embedding = emb if emb.ndim == 4 else emb[None]
        self._size = tuple(image_size)

    def start(self, image: np.ndarray | None) -> None:
        self.embedding = self._embedding
        self.size = self._size
        self.low_res = None


@torch.no_grad()
def evaluate_objects(sam, objects: list[EmbeddedObject], max_clicks: int = 20) -> dict:
    """Standard-protocol NoC@85 / NoC@90 / mIoU by click on stored embeddings.

    Same protocol and convention as ``python -m engine evaluate`` (first click at the
    deepest interior point, next clicks in the larger error region, one click -> the
    best-predicted candidate, then the single-mask output with the previous logits fed
    back), without running the image encoder.

    Returns:
        :func:`engine.evaluate.summarize`'s dict (n, NoC@85, NoC@90, NoF@90, mIoU@k,
        mIoU_by_click) plus ``per_item``.

    Raises:
        ValueError: no objects, or a malformed object (see :func:`finetune_decoder`).
    """
    if not objects:
        raise ValueError("no objects to evaluate")
    model = getattr(sam, "sam", sam)
    per_item: dict[str, list[float]] = {}
    for obj in objects:
        _check_object(obj)
        mask = np.asarray(obj.mask).astype(bool)
        item = EvalItem(obj.name, Path(""), mask, np.zeros_like(mask))
        seg = StoredEmbeddingSegmenter(model, obj.embedding, obj.image_size)
        per_item[obj.name] = evaluate_item(seg, None, item, max_clicks)
    out = summarize(per_item, max_clicks)
    out["per_item"] = per_item
    return out


def save_weights(sam, path: str | Path, architecture: str = "default") -> Path:
    """Write the full ``Sam`` state dict at ``path`` (atomic replace) in the format
    ``engine.build_model(architecture, path)`` loads.

    ``default``: fp16 safetensors (the shipped model's format; its weights are fp16 already,
    so the unchanged image encoder round-trips exactly). ``vit_b`` / ``vit_l`` / ``vit_h``: a
    ``torch.save`` state dict in the official checkpoints' key layout, dtypes kept (fp32),
    so the encoder stays bit-identical and the base's embeddings stay valid.

    Raises:
        KeyError: an architecture ``engine.build_model`` does not know.
    """
    import os

    from ..build import MODEL_REGISTRY
    from .train import export_weights

    model = getattr(sam, "sam", sam)
    if architecture not in MODEL_REGISTRY:
        raise KeyError(f"unknown architecture {architecture!r}; known: {sorted(MODEL_REGISTRY)}")
    path = Path(path)
    if architecture == "default":
        return export_weights(model, path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
    return path
