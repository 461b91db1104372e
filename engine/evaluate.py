"""Interactive-segmentation evaluation: clicks needed to reach a good mask.

The standard protocol (Xu et al., 2016; RITM, Sofiiuk et al., 2022): start from an empty
mask; each next click goes to the point deepest inside the larger error region (the image
border counts as edge; see ``engine.clicks.next_click``); 20 clicks per object. Reports
NoC@85 / NoC@90 (mean clicks to reach the IoU, 20 if never), how many objects never
reach 90, and mIoU after k clicks. GrabCut's 128 "unknown" band is ignored in IoU and
never clicked. A classical baseline (scikit-image's random walker, Grady 2006) runs
through the same protocol so every report shows the learned model beside it.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Protocol

import numpy as np
from PIL import Image

from .clicks import Click, iou, next_click

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


@dataclass
class EvalItem:
    """One object to segment: image path, ground truth and the pixels to ignore."""

    name: str
    image_path: Path
    gt: np.ndarray  # HxW bool
    ignore: np.ndarray  # HxW bool (GrabCut's 128 band; all False elsewhere)


def _read_mask(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """8-bit mask file -> (object, ignore): 255/1 object, 0 background, 128 ignored."""
    m = np.asarray(Image.open(path).convert("L"))
    if m.max() == 1:
        return m == 1, np.zeros(m.shape, bool)
    return m > 128 + 64, (m > 64) & (m <= 128 + 64)


def _find_by_stem(folder: Path, stem: str) -> Path | None:
    for p in folder.iterdir():
        if p.stem == stem and p.suffix.lower() in IMAGE_EXTS:
            return p
    return None


def load_dataset(root: str | Path) -> list[EvalItem]:
    """Objects of an evaluation folder, in name order.

    Layouts recognised:
      * GrabCut-style: ``data_GT/<id>.*`` images, ``boundary_GT/<id>.bmp`` masks (128 = ignore);
      * COCO_MVal-style: ``img/<name>.jpg``, ``gt/<name>.png``;
      * plain: ``images/`` + ``masks/`` with matching file stems, or one folder of
        ``<name>.jpg`` + ``<name>.png`` / ``<name>_mask.png`` pairs.

    Raises:
        FileNotFoundError: the folder does not exist or holds no image/mask pair.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"no such folder: {root}")
    pairs: list[tuple[str, Path, Path]] = []
    for img_dir, mask_dir in (("data_GT", "boundary_GT"), ("img", "gt"), ("images", "masks")):
        if (root / img_dir).is_dir() and (root / mask_dir).is_dir():
            for mp in sorted((root / mask_dir).iterdir()):
                if mp.suffix.lower() not in IMAGE_EXTS:
                    continue
                stem = mp.stem[:-5] if mp.stem.endswith("_mask") else mp.stem
                ip = _find_by_stem(root / img_dir, stem)
                if ip is not None:
                    pairs.append((stem, ip, mp))
            break
    else:
        files = sorted(p for p in root.iterdir() if p.suffix.lower() in IMAGE_EXTS)
        for mp in files:
            if mp.stem.endswith("_mask"):
                ip = _find_by_stem(root, mp.stem[:-5])
                if ip is not None:
                    pairs.append((ip.stem, ip, mp))
            elif mp.suffix.lower() == ".png":
                ip = next((f for f in files if f.stem == mp.stem and f != mp), None)
                if ip is not None:
                    pairs.append((mp.stem, ip, mp))
    if not pairs:
        raise FileNotFoundError(f"{root}: no image/mask pairs found")
    items = []
    for name, ip, mp in pairs:
        gt, ignore = _read_mask(mp)
        items.append(EvalItem(name, ip, gt, ignore))
    return items


class ClickSegmenter(Protocol):
    """A method under evaluation: ``start(image)`` then ``segment(clicks) -> HxW bool``."""

    name: str

    def start(self, image: np.ndarray) -> None: ...

    def segment(self, clicks: list[Click]) -> np.ndarray: ...


class SamSegmenter:
    """A SAM-architecture model under SAM's interactive convention: one embedding per
    image; one click -> the multimask candidate with the highest predicted IoU; more
    clicks -> the single-mask output (index 0); the chosen candidate's low-res logits are
    fed back as ``mask_input`` for the next click (Kirillov et al., 2023, §3 and App. A)."""

    def __init__(self, model, multimask_always: bool = False) -> None:
        self.model = model
        self.multimask_always = multimask_always  # diagnostic: best-predicted candidate at every click
        self.name = (model.model_id if hasattr(model, "model_id") else "sam") + ("-multimask" if multimask_always else "")

    def start(self, image: np.ndarray) -> None:
        from .predictor import embed

        self.embedding = embed(self.model, image).numpy()
        self.size = image.shape[:2]
        self.low_res: np.ndarray | None = None

    def segment(self, clicks: list[Click]) -> np.ndarray:
        from .predictor import predict

        coords = np.array([[c.x, c.y] for c in clicks], np.float64)
        labels = np.array([1.0 if c.is_positive else 0.0 for c in clicks])
        out = predict(self.model, self.embedding, self.size, point_coords=coords, point_labels=labels,
                      mask_input=self.low_res)
        single = len(clicks) > 1 and not self.multimask_always
        idx = 0 if single else int(np.argmax(out["iou_predictions"][1:]) + 1)
        self.low_res = out["low_res_masks"][idx][None, None]
        return out["masks"][idx] > 0


class RandomWalkerSegmenter:
    """Classical baseline: scikit-image's random walker (Grady, 2006) seeded by the clicks.

    Positive clicks seed the object, negative clicks and the image border the background
    (objects are assumed not to fill the frame). Runs on the image downscaled to ``max_side`` for speed, with the
    direct solver (``mode="bf"``: conjugate gradients stalled on some GrabCut images); each seed is
    a disc of ``radius`` pixels at that scale.
    """

    name = "random_walker"

    def __init__(self, max_side: int = 256, beta: float = 130.0, radius: int = 2) -> None:
        self.max_side, self.beta, self.radius = max_side, beta, radius

    def start(self, image: np.ndarray) -> None:
        h, w = image.shape[:2]
        self.scale = min(1.0, self.max_side / max(h, w))
        sw, sh = max(1, round(w * self.scale)), max(1, round(h * self.scale))
        self.size = (h, w)
        self.small = np.asarray(Image.fromarray(image).resize((sw, sh), Image.BILINEAR)).astype(np.float64) / 255.0

    def segment(self, clicks: list[Click]) -> np.ndarray:
        from skimage.segmentation import random_walker

        sh, sw = self.small.shape[:2]
        seeds = np.zeros((sh, sw), np.int32)
        # The image border always seeds the background (dropping it at the first negative
        # click made the curve dip); positive clicks on the border override it below.
        seeds[0, :] = seeds[-1, :] = seeds[:, 0] = seeds[:, -1] = 2
        yy, xx = np.mgrid[0:sh, 0:sw]
        for c in clicks:
            cx, cy = (c.x + 0.5) * self.scale - 0.5, (c.y + 0.5) * self.scale - 0.5
            seeds[(xx - cx) ** 2 + (yy - cy) ** 2 <= self.radius ** 2] = 1 if c.is_positive else 2
        if not (seeds == 1).any():
            return np.zeros(self.size, bool)
        labels = random_walker(self.small, seeds, beta=self.beta, mode="bf", channel_axis=-1)
        small = Image.fromarray(((labels == 1) * 255).astype(np.uint8))
        return np.asarray(small.resize((self.size[1], self.size[0]), Image.BILINEAR)) > 127


def evaluate_item(method: ClickSegmenter, image: np.ndarray, item: EvalItem, max_clicks: int = 20) -> list[float]:
    """IoU after each of ``max_clicks`` protocol clicks for one object (list of floats)."""
    method.start(image)
    pred = np.zeros_like(item.gt)
    clicks: list[Click] = []
    ious: list[float] = []
    for _ in range(max_clicks):
        click = next_click(pred, item.gt, item.ignore)
        if click is None:  # already perfect: further clicks change nothing
            ious.append(ious[-1] if ious else 1.0)
            continue
        clicks.append(click)
        pred = method.segment(clicks)
        ious.append(iou(pred, item.gt, item.ignore))
    return ious


def noc(ious: list[float], target: float, max_clicks: int = 20) -> int:
    """Clicks needed to reach ``target`` IoU (``max_clicks`` if never)."""
    for k, v in enumerate(ious[:max_clicks], 1):
        if v >= target:
            return k
    return max_clicks


def summarize(per_item: dict[str, list[float]], max_clicks: int = 20) -> dict:
    """NoC@85, NoC@90, never-reaching-90 count, mIoU@1/3/5 and the mean IoU curve."""
    curves = np.array(list(per_item.values()))
    noc85 = [noc(v, 0.85, max_clicks) for v in per_item.values()]
    noc90 = [noc(v, 0.90, max_clicks) for v in per_item.values()]
    mean_curve = curves.mean(0)
    return {
        "n": len(per_item),
        "NoC@85": float(np.mean(noc85)),
        "NoC@90": float(np.mean(noc90)),
        "NoF@90": int(sum(1 for v in per_item.values() if max(v[:max_clicks]) < 0.90)),
        **{f"mIoU@{k}": float(mean_curve[k - 1]) for k in (1, 3, 5) if k <= max_clicks},
        "mIoU_by_click": [float(x) for x in mean_curve],
    }


def evaluate(methods: list[ClickSegmenter], items: list[EvalItem], max_clicks: int = 20,
             progress: bool = True) -> dict:
    """Run every method on every object; returns {method name: summary + per-item IoUs}."""
    from tqdm import tqdm

    from .predictor import load_image

    results: dict[str, dict] = {}
    for method in methods:
        per_item: dict[str, list[float]] = {}
        t0 = time.time()
        for item in tqdm(items, desc=method.name, disable=not progress):
            per_item[item.name] = evaluate_item(method, load_image(item.image_path), item, max_clicks)
        summary = summarize(per_item, max_clicks)
        summary["seconds"] = round(time.time() - t0, 1)
        summary["per_item"] = per_item
        results[method.name] = summary
    return results


def plot(results: dict, path: Path, title: str) -> Path | None:
    """mIoU vs clicks for each method as a PNG; None when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    for name, r in results.items():
        curve = r["mIoU_by_click"]
        ax.plot(range(1, len(curve) + 1), curve, marker="o", ms=3,
                label=f"{name} (NoC@85 {r['NoC@85']:.2f}, NoC@90 {r['NoC@90']:.2f})")
    ax.axhline(0.85, color="grey", lw=0.5, ls="--")
    ax.axhline(0.90, color="grey", lw=0.5, ls="--")
    ax.set_xlabel("clicks")
    ax.set_ylabel("mIoU")
    ax.set_ylim(0, 1)
    ax.set_title(title)
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def format_table(results: dict) -> str:
    """Plain-text table of the summaries."""
    lines = [f"{'method':<28} {'NoC@85':>7} {'NoC@90':>7} {'>=20@90':>8} {'mIoU@1':>7} {'mIoU@3':>7} {'mIoU@5':>7}"]
    for name, r in results.items():
        lines.append(f"{name:<28} {r['NoC@85']:>7.2f} {r['NoC@90']:>7.2f} {r['NoF@90']:>8d} "
                     f"{r.get('mIoU@1', float('nan')):>7.3f} {r.get('mIoU@3', float('nan')):>7.3f} "
                     f"{r.get('mIoU@5', float('nan')):>7.3f}")
    return "\n".join(lines)
