"""Embedding time per photo for a model on this machine (median of several runs).

Usage: ``python bench/embed_speed.py [--model default] [--image PATH] [--runs 7]``.
Prints the medians for the onnxruntime and torch backends and appends a row to
BENCHMARKS.md. The issue's target is <= 0.5 s per photo on the 2-core CPU.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from engine import build_model, embed, load_image  # noqa: E402

DEFAULT_IMAGE = ROOT.parent / "shared" / "data" / "coco_mval" / "img" / "airplane00_000000281693.jpg"


def median_seconds(fn, runs: int) -> float:
    fn()  # warm-up (and the one-off ONNX export for the onnx backend)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="default")
    p.add_argument("--checkpoint")
    p.add_argument("--image", default=str(DEFAULT_IMAGE))
    p.add_argument("--runs", type=int, default=7)
    p.add_argument("--no-append", action="store_true")
    a = p.parse_args()
    model = build_model(a.model, checkpoint=a.checkpoint, allow_untrained=True)
    image = load_image(a.image)
    rows = []
    for backend in ("onnx", "torch"):
        sec = median_seconds(lambda: embed(model, image, backend=backend), a.runs)
        rows.append((backend, sec))
        print(f"{model.model_id} embed backend={backend}: median {sec:.3f} s over {a.runs} runs "
              f"({image.shape[1]}x{image.shape[0]} photo)")
    if not a.no_append:
        bench = ROOT / "BENCHMARKS.md"
        new = not bench.exists()
        with open(bench, "a") as fh:
            if new:
                fh.write("# Benchmarks\n\n")
            fh.write(f"\n## embed speed, {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC\n\n"
                     f"`python bench/embed_speed.py` on {platform.processor() or platform.machine()}, "
                     f"{os.cpu_count()} CPUs, torch {torch.__version__} ({torch.get_num_threads()} threads); "
                     f"model {model.model_id}; median of {a.runs} runs after one warm-up, image "
                     f"{Path(a.image).name} ({image.shape[1]}x{image.shape[0]}), load excluded.\n\n"
                     "| backend | seconds per photo |\n|---|---|\n")
            for backend, sec in rows:
                fh.write(f"| {backend} | {sec:.3f} |\n")


if __name__ == "__main__":
    main()
