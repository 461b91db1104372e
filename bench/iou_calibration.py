"""Is a model's predicted IoU calibrated, and how often does one point give a mask that SAM's
pre-fill filters would keep? (issue 4: the automatic generator keeps nothing at SAM's
defaults with the shipped model; this says whether that is the IoU head or the masks.)

Usage: ``python bench/iou_calibration.py [--model default] [--points 8] [--every 20]``.

Photos: COCO_MVal, every ``--every``-th by name (every 20th = the 40 the shipped default
model held out from training), one ground-truth object each. Per object ``--points``
positive points drawn uniformly inside the object (seeded), each decoded alone with
multimask output, as one point of the generator's grid on that object is
(``engine.predictor.predict``, torch); per candidate: the predicted IoU, the actual IoU with
the object, and SAM's stability score (IoU of the logits thresholded at +1 and -1,
``segment_anything.utils.amg.calculate_stability_score``, offset 1.0).

Prints, and appends to BENCHMARKS.md: actual IoU by predicted-IoU bin (a calibrated head
has the two about equal), the correlation, and the share of candidates that pass SAM's
default filters (predicted IoU > 0.88 and stability >= 0.95) against the share whose actual
IoU is >= 0.88.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from segment_anything.utils.amg import calculate_stability_score  # noqa: E402

from bench.machine import load_avg, machine  # noqa: E402
from engine import build_model, embed, load_image  # noqa: E402
from engine.evaluate import load_dataset  # noqa: E402
from engine.predictor import predict  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "coco_mval"
BINS = [(0.0, 0.3), (0.3, 0.5), (0.5, 0.6), (0.6, 0.7), (0.7, 0.8), (0.8, 0.88), (0.88, 1.01)]


def measure(model_name: str, data: Path, every: int, points: int, seed: int) -> np.ndarray:
    """Rows (predicted IoU, actual IoU, stability score) for every candidate of every point."""
    model = build_model(model_name)
    items = sorted(load_dataset(data), key=lambda it: it.name)[::every]
    rng = np.random.default_rng(seed)
    rows = []
    for it in items:
        image = load_image(it.image_path)
        emb = embed(model, image).numpy()
        gt = it.gt.astype(bool)
        ys, xs = np.nonzero(gt)
        for k in rng.choice(len(ys), min(points, len(ys)), replace=False):
            out = predict(model, emb, gt.shape, np.array([[xs[k], ys[k]]], np.float32), np.array([1], np.float32))
            logits = torch.from_numpy(out["masks"][1:])
            stability = calculate_stability_score(logits, 0.0, 1.0).numpy()
            for j in range(3):
                m = out["masks"][j + 1] > 0
                union = (m | gt).sum()
                rows.append((out["iou_predictions"][j + 1], (m & gt).sum() / union if union else 0.0, stability[j]))
    return np.asarray(rows, np.float64)


def report(rows: np.ndarray, args, seconds: float, load_start: str) -> str:
    pred, actual, stab = rows[:, 0], rows[:, 1], rows[:, 2]
    lines = [
        f"## IoU head calibration ({args.model}), {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC",
        "",
        f"`python bench/iou_calibration.py --model {args.model} --points {args.points} --every {args.every}` on "
        f"{machine()}; load average {load_start} at the start, {load_avg()} at the end; {seconds:.0f} s. "
        f"{len(rows) // 3} single positive points inside COCO_MVal objects (every {args.every}th photo by name, "
        f"{args.points} uniform points each), 3 candidates each = {len(rows)} masks.",
        "",
        "| predicted IoU | candidates | actual IoU, mean | median | share >= 0.75 | share >= 0.88 |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for lo, hi in BINS:
        sel = (pred >= lo) & (pred < hi)
        if not sel.any():
            lines.append(f"| [{lo:.2f}, {min(hi, 1.0):.2f}) | 0 | | | | |")
            continue
        a = actual[sel]
        lines.append(f"| [{lo:.2f}, {min(hi, 1.0):.2f}) | {sel.sum()} | {a.mean():.3f} | {np.median(a):.3f} | "
                     f"{(a >= 0.75).mean():.2f} | {(a >= 0.88).mean():.2f} |")
    passes = (pred > 0.88) & (stab >= 0.95)
    lines += [
        "",
        f"Correlation predicted/actual {np.corrcoef(pred, actual)[0, 1]:.3f}; predicted IoU max {pred.max():.3f}, "
        f"stability score max {stab.max():.3f} (quantiles 50/90/99%: {np.quantile(stab, [.5, .9, .99]).round(3).tolist()}). "
        f"Pass SAM's default filters (predicted IoU > 0.88, stability >= 0.95): {passes.mean():.3f} of the candidates; "
        f"actual IoU >= 0.88: {(actual >= 0.88).mean():.3f}; best candidate per point by predicted IoU, "
        f"mean actual IoU {_best(rows):.3f}.",
        "",
    ]
    return "\n".join(lines)


def _best(rows: np.ndarray) -> float:
    per_point = rows.reshape(-1, 3, 3)
    pick = per_point[np.arange(len(per_point)), per_point[:, :, 0].argmax(1)]
    return float(pick[:, 1].mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="default")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--every", type=int, default=20)
    parser.add_argument("--points", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-write", action="store_true", help="print only, do not append to BENCHMARKS.md")
    args = parser.parse_args()
    load_start = load_avg()
    t0 = time.time()
    rows = measure(args.model, args.data, args.every, args.points, args.seed)
    text = report(rows, args, time.time() - t0, load_start)
    print(text)
    if not args.no_write:
        with open(ROOT / "BENCHMARKS.md", "a") as fh:
            fh.write("\n" + text)


if __name__ == "__main__":
    main()
