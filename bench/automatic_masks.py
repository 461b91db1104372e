"""Automatic masks on COCO_MVal photos: engine.generate_masks (from the stored embedding)
against segment_anything's SamAutomaticMaskGenerator, same model and parameters.

Usage: ``python bench/automatic_masks.py [--images 20] [--official-images 20]
[--params '{"points_per_side": 32}'] [--extra-params '{...}'] [--model default]``.

Per photo (COCO_MVal files that are the same photo are grouped; all their object masks
are its ground truth): the embedding is computed first as the worker does (untimed); ours
is timed alone; the official generator is timed whole (its own torch encoder pass
included) and without ``set_image``. Recall@t = share of ground-truth objects with a
proposal of mask IoU >= t. ``--extra-params`` runs ours once more with other
thresholds (e.g. looser ones for a model whose predicted IoU is low). Prints a table
and appends it to BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402
from pycocotools import mask as mask_utils  # noqa: E402

import segment_anything  # noqa: E402
from engine import AutomaticMaskParams, build_model, embed, generate_masks, load_image  # noqa: E402
from engine.predictor import embedding_from_bytes, embedding_to_bytes  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "coco_mval"


def photos(root: Path, n: int) -> tuple[list[tuple[Path, list[Path]]], int, int]:
    """n photos spread evenly over the (name-sorted) distinct photos, with all their GT masks;
    also the number of distinct photos and the step."""
    groups: dict[str, tuple[Path, list[Path]]] = {}
    for img in sorted((root / "img").glob("*.jpg")):
        key = hashlib.md5(img.read_bytes()).hexdigest()
        gt = root / "gt" / f"{img.stem}.png"
        if gt.exists():
            groups.setdefault(key, (img, []))[1].append(gt)
    ordered = list(groups.values())
    step = max(1, len(ordered) // n)
    return ordered[::step][:n], len(ordered), step


def gt_rles(paths: list[Path]) -> list[dict]:
    out = []
    for p in paths:
        m = np.asarray(Image.open(p).convert("L")) > 127
        out.append(mask_utils.encode(np.asfortranarray(m.astype(np.uint8))))
    return out


def as_rle(seg: dict) -> dict:
    counts = seg["counts"]
    return {"size": seg["size"], "counts": counts.encode() if isinstance(counts, str) else counts}


def best_ious(records: list[dict], gts: list[dict]) -> np.ndarray:
    """Best proposal IoU for each GT object (0 when there is no proposal)."""
    if not records:
        return np.zeros(len(gts))
    props = [as_rle(r["segmentation"]) for r in records]
    return np.asarray(mask_utils.iou(props, gts, [0] * len(gts))).reshape(len(props), len(gts)).max(0)


def official_generator(sam, params: AutomaticMaskParams):
    from segment_anything import SamAutomaticMaskGenerator

    gen = SamAutomaticMaskGenerator(sam, output_mode="coco_rle", **params.to_dict())
    timer = {"encoder": 0.0, "encoder_cpu": 0.0}
    original = gen.predictor.set_image

    def timed_set_image(image, image_format="RGB"):
        t0, c0 = time.perf_counter(), time.process_time()
        original(image, image_format)
        timer["encoder"] += time.perf_counter() - t0
        timer["encoder_cpu"] += time.process_time() - c0

    gen.predictor.set_image = timed_set_image
    return gen, timer


def agreement(ours: list[dict], official: list[dict]) -> float:
    """Share of the official generator's masks that ours reproduces with mask IoU > 0.9."""
    if not official:
        return float("nan")  # nothing to reproduce
    if not ours:
        return 0.0
    iou = mask_utils.iou([as_rle(r["segmentation"]) for r in ours], [as_rle(r["segmentation"]) for r in official],
                         [0] * len(official))
    return float((np.asarray(iou).reshape(len(ours), len(official)).max(0) > 0.9).mean())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(DEFAULT_DATA))
    p.add_argument("--images", type=int, default=20, help="distinct photos (default 20)")
    p.add_argument("--official-images", type=int, default=None,
                   help="run the official generator on the first K of them (default: all)")
    p.add_argument("--repeats", type=int, default=1, help="timed runs of ours per photo (median taken)")
    p.add_argument("--model", default="default")
    p.add_argument("--checkpoint")
    p.add_argument("--params", default="{}", help="AutomaticMaskParams as JSON (default: SAM's)")
    p.add_argument("--extra-params", help="a second parameter set for ours only, JSON")
    p.add_argument("--no-append", action="store_true")
    a = p.parse_args()

    model = build_model(a.model, checkpoint=a.checkpoint)
    params = AutomaticMaskParams.from_dict(json.loads(a.params))
    extra = AutomaticMaskParams.from_dict({**json.loads(a.params), **json.loads(a.extra_params)}) if a.extra_params else None
    chosen, n_distinct, step = photos(Path(a.data), a.images)
    k_official = len(chosen) if a.official_images is None else min(a.official_images, len(chosen))
    runs: dict[str, dict[str, list]] = {}

    def add(name: str, seconds: float, cpu: float, records: list[dict], ious: np.ndarray, **more) -> None:
        r = runs.setdefault(name, {"seconds": [], "cpu": [], "masks": [], "ious": [], "encoder": [],
                                   "encoder_cpu": [], "agree": []})
        r["seconds"].append(seconds)
        r["cpu"].append(cpu)
        r["masks"].append(len(records))
        r["ious"].extend(ious.tolist())
        for key, value in more.items():
            r[key].append(value)

    embed_s = []
    for i, (img_path, gt_paths) in enumerate(chosen):
        image = load_image(img_path)
        h, w = image.shape[:2]
        gts = gt_rles(gt_paths)
        t0 = time.perf_counter()
        emb = embed(model, image)
        embed_s.append(time.perf_counter() - t0)
        stored = embedding_from_bytes(embedding_to_bytes(emb))  # the worker's fp16 round trip
        line = f"[{i + 1}/{len(chosen)}] {img_path.name} {w}x{h}, {len(gts)} GT objects:"
        ours = None
        for name, prm in (("ours", params), ("ours, extra", extra)):
            if prm is None:
                continue
            times, cpus = [], []
            for _ in range(a.repeats):
                t0, c0 = time.perf_counter(), time.process_time()
                recs = generate_masks(model, stored, (h, w), prm)
                times.append(time.perf_counter() - t0)
                cpus.append(time.process_time() - c0)
            ious = best_ious(recs, gts)
            add(name, statistics.median(times), statistics.median(cpus), recs, ious)
            ours = recs if ours is None else ours
            line += (f" {name} {statistics.median(times):.1f} s ({statistics.median(cpus):.1f} CPU s) {len(recs)} masks"
                     f" best IoU {np.round(ious, 2).tolist()};")
        if i < k_official:
            gen, timer = official_generator(model.sam, params)
            t0, c0 = time.perf_counter(), time.process_time()
            recs = gen.generate(image)
            sec, cpu = time.perf_counter() - t0, time.process_time() - c0
            add("official", sec, cpu, recs, best_ious(recs, gts), encoder=timer["encoder"],
                encoder_cpu=timer["encoder_cpu"], agree=agreement(ours, recs))
            line += (f" official {sec:.1f} s ({cpu:.1f} CPU s; encoder {timer['encoder']:.1f} s) "
                     f"{len(recs)} masks best IoU {np.round(runs['official']['ious'][-len(gts):], 2).tolist()}")
        print(line, flush=True)

    def row(name: str, prm: AutomaticMaskParams) -> str:
        r = runs[name]
        ious = np.asarray(r["ious"])
        sec = statistics.median(r["seconds"])
        cpu = statistics.median(r["cpu"])
        minus = (f"{statistics.median([s - e for s, e in zip(r['seconds'], r['encoder'])]):.1f} / "
                 f"{statistics.median([s - e for s, e in zip(r['cpu'], r['encoder_cpu'])]):.1f}"
                 if r["encoder"] else "")
        agree = f"{np.nanmean(r['agree']):.2f}" if r["agree"] and not np.all(np.isnan(r["agree"])) else ""
        changed = {k: v for k, v in prm.to_dict().items() if v != AutomaticMaskParams().to_dict()[k]}
        label = name + (f" `{json.dumps(changed)}`" if changed else " (SAM defaults)")
        return (f"| {label} | {len(r['seconds'])} | {sec:.1f} / {cpu:.1f} | {minus} | {statistics.median(r['masks']):.0f} "
                f"({min(r['masks'])}-{max(r['masks'])}) | {len(ious)} | {(ious >= 0.5).mean():.3f} | "
                f"{(ious >= 0.75).mean():.3f} | {agree} |")

    header = ("| generator | photos | wall / CPU s per photo (median) | same without its encoder "
              "| masks per photo, median (range) "
              "| GT objects | recall@0.5 | recall@0.75 | official masks reproduced (IoU>0.9) |\n"
              "|---|---:|---:|---:|---|---:|---:|---:|---:|")
    rows = [row("ours", params)]
    if extra is not None:
        rows.append(row("ours, extra", extra))
    if "official" in runs:
        rows.append(row("official", params))
    table = "\n".join([header, *rows])
    print(table)
    print(f"embedding (not in ours' time): median {statistics.median(embed_s):.2f} s per photo")
    if a.no_append:
        return
    import cv2
    import torchvision

    with open(ROOT / "BENCHMARKS.md", "a") as fh:
        fh.write(
            f"\n## automatic masks, {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC\n\n"
            f"`python bench/automatic_masks.py {shlex.join(sys.argv[1:])}` on "
            f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
            f"torch {torch.__version__} ({torch.get_num_threads()} threads), torchvision {torchvision.__version__}, "
            f"segment-anything {getattr(segment_anything, '__version__', '1.0')}, pycocotools, OpenCV {cv2.__version__}; "
            f"model {model.model_id}. {len(chosen)} of the {n_distinct} distinct COCO_MVal photos (every "
            f"{step}th by name, files of the same photo grouped, all their object masks as "
            f"ground truth). Ours starts from the stored embedding (onnxruntime encoder, fp16 round trip; "
            f"median {statistics.median(embed_s):.2f} s per photo, not included); the official "
            f"SamAutomaticMaskGenerator runs its own torch encoder (time without it in its own column) "
            f"on the first {k_official} photos. CPU s = process CPU time (2 threads: about 2x wall on an "
            f"idle machine; less inflated than wall time by other load). Recall@t: share of GT objects with a proposal of mask IoU >= t. "
            f"Shared machine: other sessions' tests ran at the same time.\n\n{table}\n")


if __name__ == "__main__":
    main()
