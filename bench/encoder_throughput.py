"""Image encoder throughput (images/s) and peak memory on this machine, batch 1 and batched
(issue 7 item 3): the shipped default model through the worker's path, and a ViT-B-sized
SAM encoder (random weights: latency does not depend on them).

Usage: ``python bench/encoder_throughput.py [--runs 5] [--batch 4] [--vit-batch 2]
[--models default,vit_b] [--no-append]``.

Each configuration runs in a fresh child process (``--run-one``), so peak RSS (``VmHWM``)
belongs to that configuration alone. Timed per batch: SAM preprocessing (resize longest
side 1024, normalise, pad; as ``engine.embed`` does) and the encoder forward, on decoded
COCO_MVal photos (decoding excluded); median of ``--runs`` runs after one warm-up.

Rows (CPU):
- ``default`` onnxruntime batch 1: ``engine.embed(model, image)``, the Celery worker's call
  (its cached ONNX graph, exported beforehand so the export is not in the peak).
- ``default``/``vit_b`` onnxruntime batched (and ``vit_b`` batch 1): a dynamic-batch export of
  the same encoder made by this script (the worker embeds one image per task).
- torch eager fp32, ``segment-anything`` attention, and for ViT-B also
  ``F.scaled_dot_product_attention`` patched into its attention blocks at bench time only
  (checked against the original within 1e-4 relative).
With CUDA (``torch.cuda.is_available()``): ViT-H-sized, fp32 vs bf16 autocast, both
attentions, batch 1 and ``--gpu-batch``; peak = ``torch.cuda.max_memory_allocated``.
Prints a Markdown table and appends a dated section to BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.machine import machine  # noqa: E402
DEFAULT_IMAGES = ROOT.parent / "shared" / "data" / "coco_mval" / "img"
SDPA_TOLERANCE = 1e-4  # max |sdpa - reference| / max |reference|

COLUMNS = ["model", "device", "backend", "attention", "precision", "batch", "runs", "s per batch",
           "s per image", "images/s", "peak MB", "MB after load", "threads", "notes"]


# ---------------------------------------------------------------- pure helpers (tested)

def median(values: Iterable[float]) -> float:
    """Median of a non-empty sequence of numbers (``statistics.median``; ValueError if empty)."""
    values = list(values)
    if not values:
        raise ValueError("median of no values")
    return float(statistics.median(values))


def status_kb(status_text: str, field: str) -> int:
    """A ``kB`` field (``VmHWM``: peak RSS of this process image, ``VmRSS``) of the text of
    /proc/<pid>/status, in KiB.

    Raises:
        KeyError: the field is not in the text.
    """
    for line in status_text.splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(f"no {field} in status text")


def self_status_kb(field: str) -> int:
    """``status_kb`` of this process. VmHWM, not ru_maxrss: Linux carries ru_maxrss over
    execve, so a child started by a big parent would report the parent's size."""
    with open("/proc/self/status") as fh:
        return status_kb(fh.read(), field)


def throughput(batch: int, seconds_per_batch: float) -> tuple[float, float]:
    """(images per second, seconds per image) of one batch taking ``seconds_per_batch``."""
    return batch / seconds_per_batch, seconds_per_batch / batch


def relative_error(actual: Any, reference: Any) -> float:
    """max |actual - reference| / max |reference| of two arrays/tensors of the same shape."""
    import numpy as np

    a, r = np.asarray(actual, dtype=np.float64), np.asarray(reference, dtype=np.float64)
    return float(np.abs(a - r).max() / max(np.abs(r).max(), 1e-30))


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 100 else f"{value:.0f}"
    return str(value).replace("|", "\\|")


def markdown_table(rows: Sequence[dict[str, Any]], columns: Sequence[str] = COLUMNS) -> str:
    """A Markdown table of ``rows`` (dicts keyed by column name; missing keys are empty
    cells). Floats get 3 decimals (none from 100 up); text columns are left-aligned and
    number columns right-aligned, as in BENCHMARKS.md."""
    numeric = {c for c in columns if rows and all(isinstance(r.get(c), (int, float)) or r.get(c) is None
                                                  for r in rows) and any(r.get(c) is not None for r in rows)}
    lines = ["| " + " | ".join(columns) + " |",
             "|" + "|".join("---:" if c in numeric else "---" for c in columns) + "|"]
    for r in rows:
        lines.append("| " + " | ".join(_cell(r.get(c)) for c in columns) + " |")
    return "\n".join(lines)


def distinct_photos(folder: Path, n: int) -> list[Path]:
    """``n`` distinct photos (COCO_MVal has several files of one photo) spread evenly over the
    name-sorted folder."""
    seen: dict[str, Path] = {}
    for path in sorted(folder.glob("*.jpg")):
        seen.setdefault(hashlib.md5(path.read_bytes()).hexdigest(), path)
    photos = list(seen.values())
    step = max(1, len(photos) // max(n, 1))
    return photos[::step][:n]


# ---------------------------------------------------------------- models and attention

def sdpa_attention_forward(self, x):  # noqa: ANN001 - replaces segment_anything's Attention.forward
    """segment_anything ``Attention.forward`` with ``F.scaled_dot_product_attention``: the
    decomposed relative-position bias (MViTv2, as ``add_decomposed_rel_pos``) becomes the
    additive float ``attn_mask``; the scale is SDPA's default ``head_dim ** -0.5``, the same as
    ``self.scale``. x: BxHxWxC -> BxHxWxC. (The trick segment-anything-fast uses.)"""
    import torch
    import torch.nn.functional as F
    from segment_anything.modeling.image_encoder import get_rel_pos

    B, H, W, _ = x.shape
    qkv = self.qkv(x).reshape(B, H * W, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.unbind(0)  # each B x nHead x HW x C
    mask = None
    if self.use_rel_pos:
        r_q = q.reshape(B * self.num_heads, H, W, -1)
        rel_h = torch.einsum("bhwc,hkc->bhwk", r_q, get_rel_pos(H, H, self.rel_pos_h))
        rel_w = torch.einsum("bhwc,wkc->bhwk", r_q, get_rel_pos(W, W, self.rel_pos_w))
        mask = (rel_h[:, :, :, :, None] + rel_w[:, :, :, None, :]).reshape(B, self.num_heads, H * W, H * W)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    out = out.view(B, self.num_heads, H, W, -1).permute(0, 2, 3, 1, 4).reshape(B, H, W, -1)
    return self.proj(out)


def set_attention(kind: str) -> None:
    """Bench-time only: ``sdpa`` patches segment_anything's ViT ``Attention.forward``,
    ``segment-anything`` restores the original."""
    from segment_anything.modeling import image_encoder

    cls = image_encoder.Attention
    if not hasattr(cls, "_original_forward"):
        cls._original_forward = cls.forward
    cls.forward = sdpa_attention_forward if kind == "sdpa" else cls._original_forward


def build_vit(name: str):
    """A ViT-sized SAM (``vit_b``/``vit_h``) with seeded random weights. The relative-position
    tables (zero at init) are filled with small random values so that the SDPA check
    exercises the bias term."""
    import torch
    from segment_anything.build_sam import build_sam_vit_b, build_sam_vit_h

    torch.manual_seed(0)
    sam = {"vit_b": build_sam_vit_b, "vit_h": build_sam_vit_h}[name](checkpoint=None).eval()
    with torch.no_grad():
        for pname, p in sam.image_encoder.named_parameters():
            if "rel_pos" in pname:
                p.normal_(0, 0.02)
    return sam


def export_dynamic_batch(encoder, path: Path) -> dict[str, float]:
    """Export ``encoder`` (Bx3x1024x1024 -> Bx256x64x64) to ONNX with a dynamic batch axis and
    check onnxruntime against torch at batch 2. Returns export seconds and the check's
    relative error. Raises RuntimeError over 1e-3 relative."""
    import warnings

    import onnxruntime as ort
    import torch

    started = time.perf_counter()
    dummy = torch.randn(1, 3, 1024, 1024, generator=torch.Generator().manual_seed(0)).clamp(-2, 2)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(encoder, (dummy,), str(path), input_names=["image"], output_names=["image_embeddings"],
                          dynamic_axes={"image": {0: "batch"}, "image_embeddings": {0: "batch"}},
                          opset_version=17, dynamo=False)
    seconds = time.perf_counter() - started
    check = torch.cat([dummy, dummy.flip(-1)])
    with torch.inference_mode():
        ref = encoder(check).numpy()
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    err = relative_error(sess.run(None, {"image": check.numpy()})[0], ref)
    if err > 1e-3:
        raise RuntimeError(f"dynamic-batch ONNX encoder differs from torch at batch 2: {err:.2e} relative")
    return {"export_s": seconds, "check_rel_err": err}


# ---------------------------------------------------------------- child processes

def prepare(model_name: str, out: Path) -> dict[str, Any]:
    """Child: ONNX graphs the measured children load (so no export lands in their peak)."""
    import torch

    torch.set_grad_enabled(False)
    if model_name == "default":
        from engine import build_model
        from engine.onnx_encoder import encoder_session

        model = build_model("default")
        encoder_session(model.model_id, model.sam.image_encoder)  # the worker's cached graph
        encoder = model.sam.image_encoder
    else:
        encoder = build_vit(model_name).image_encoder
    return export_dynamic_batch(encoder, out)


def run_one(cfg: dict[str, Any]) -> dict[str, Any]:
    """Child: one configuration; returns its measurements (printed as a JSON line)."""
    import numpy as np
    import torch

    from engine import build_model, embed, load_image
    from engine.predictor import preprocess

    torch.set_grad_enabled(False)
    device = cfg["device"]
    if cfg["model"] == "default":
        loaded = build_model("default")
        sam, model_id = loaded.sam, loaded.model_id
    else:
        loaded, sam = None, build_vit(cfg["model"])
        model_id = f"{cfg['model']}-random"
    sam = sam.to(device)
    set_attention(cfg["attention"])
    images = [load_image(p) for p in cfg["images"]]
    batch = cfg["batch"]
    batches = [[images[(i * batch + j) % len(images)] for j in range(batch)] for i in range(cfg["runs"] + 1)]
    threads = f"torch {torch.get_num_threads()}"
    sess = None
    if cfg["backend"] == "onnxruntime":
        import onnxruntime as ort

        threads += ", ort default (0: one per physical core)"
        if cfg.get("onnx_path"):
            sess = ort.InferenceSession(cfg["onnx_path"], providers=["CPUExecutionProvider"])
    autocast = (torch.autocast(device, dtype=torch.bfloat16) if cfg["precision"] == "bf16"
                else torch.autocast(device, enabled=False))

    def encode(imgs: list[np.ndarray]):
        if cfg["backend"] == "onnxruntime" and sess is None:  # the worker's call, one image
            return embed(loaded, imgs[0])
        x = torch.cat([preprocess(sam, im) for im in imgs])
        if sess is not None:
            return sess.run(None, {"image": x.cpu().numpy()})[0]
        with torch.inference_mode(), autocast:
            return sam.image_encoder(x)

    def sync() -> None:
        if device == "cuda":
            torch.cuda.synchronize()

    rss_after_load = self_status_kb("VmRSS")
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    encode(batches[0])  # warm-up
    sync()
    times, last = [], None
    for b in batches[1:]:
        t0 = time.perf_counter()
        last = encode(b)
        sync()
        times.append(time.perf_counter() - t0)
    result = {"times": times, "peak_rss_mb": self_status_kb("VmHWM") / 1024,
              "rss_after_load_mb": rss_after_load / 1024, "threads": threads, "model_id": model_id}
    if device == "cuda":
        result["peak_cuda_mb"] = torch.cuda.max_memory_allocated() / 2**20
    if cfg["model"] != "default" and (cfg["attention"] != "segment-anything" or cfg["precision"] != "fp32"):
        # After the timing (so it is not in the peak): the first image against the plain
        # fp32 segment-anything encoder.
        set_attention("segment-anything")
        x = preprocess(sam, batches[-1][0])
        with torch.inference_mode():
            ref = sam.image_encoder(x).float().cpu()
        result["rel_err_vs_fp32"] = relative_error(torch.as_tensor(last[:1]).float().cpu(), ref)
    return result


def _child(args: list[str], timeout: float | None = None) -> dict[str, Any]:
    out = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, cwd=ROOT,
                         env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=timeout)
    if out.returncode != 0:
        raise RuntimeError(out.stderr.strip().splitlines()[-1] if out.stderr.strip() else f"exit {out.returncode}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------- the parent

def cpu_configs(models: list[str], batch: int, vit_batch: int, onnx: dict[str, str | None]) -> list[dict[str, Any]]:
    """The CPU configurations to measure, in table order."""
    cfgs = []
    for model in models:
        batches = [1, batch] if model == "default" else [1, vit_batch]
        for b in dict.fromkeys(batches):
            if model == "default":
                # batch 1 through engine.embed (the worker), batched through the dynamic graph
                cfgs.append({"model": model, "backend": "onnxruntime", "attention": "-", "batch": b,
                             "onnx_path": None if b == 1 else onnx.get(model)})
            elif onnx.get(model):
                cfgs.append({"model": model, "backend": "onnxruntime", "attention": "segment-anything",
                             "batch": b, "onnx_path": onnx[model]})
        for b in dict.fromkeys(batches):
            cfgs.append({"model": model, "backend": "torch", "attention": "-" if model == "default" else
                         "segment-anything", "batch": b})
            if model != "default":
                cfgs.append({"model": model, "backend": "torch", "attention": "sdpa", "batch": b})
    for c in cfgs:
        c.update(device="cpu", precision="fp32")
    return [c for c in cfgs if not (c["backend"] == "onnxruntime" and c["batch"] > 1 and not c.get("onnx_path"))]


def gpu_configs(batch: int) -> list[dict[str, Any]]:
    """ViT-H-sized on CUDA: fp32 vs bf16 autocast, both attentions, batch 1 and ``batch``."""
    return [{"model": "vit_h", "device": "cuda", "backend": "torch", "attention": attn, "precision": prec, "batch": b}
            for prec in ("fp32", "bf16") for attn in ("segment-anything", "sdpa") for b in (1, batch)]


def measure(cfg: dict[str, Any], runs: int, images: list[str], timeout: float) -> dict[str, Any]:
    """Run one configuration in its own child; its table row (notes say why when it failed)."""
    row = {"model": cfg["model"], "device": cfg["device"], "backend": cfg["backend"], "attention": cfg["attention"],
           "precision": cfg["precision"], "batch": cfg["batch"], "runs": runs}
    notes = []
    if cfg["backend"] == "onnxruntime":
        notes.append("engine.embed (worker path)" if not cfg.get("onnx_path") else "dynamic-batch export")
    try:
        res = _child(["--run-one", json.dumps({**cfg, "runs": runs, "images": images})], timeout=timeout)
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        row["notes"] = "; ".join(notes + [f"failed: {exc}"])
        return row
    sec = median(res["times"])
    row.update({"s per batch": sec, "s per image": throughput(cfg["batch"], sec)[1],
                "images/s": throughput(cfg["batch"], sec)[0], "threads": res["threads"],
                "peak MB": res.get("peak_cuda_mb", res["peak_rss_mb"]), "MB after load": res["rss_after_load_mb"]})
    if "peak_cuda_mb" in res:
        notes.append(f"peak = CUDA allocated; host peak RSS {res['peak_rss_mb']:.0f} MB")
    if "rel_err_vs_fp32" in res:
        err = res["rel_err_vs_fp32"]
        ok = cfg["precision"] != "fp32" or err <= SDPA_TOLERANCE
        notes.append(f"vs fp32 segment-anything: {err:.1e} relative" + ("" if ok else " FAILED (> 1e-4)"))
    row["notes"] = "; ".join(notes)
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=5, help="timed runs per configuration (after one warm-up)")
    p.add_argument("--batch", type=int, default=4, help="batched size for the default model")
    p.add_argument("--vit-batch", type=int, default=2, help="batched size for ViT-B on CPU")
    p.add_argument("--gpu-batch", type=int, default=8, help="batched size for ViT-H on CUDA")
    p.add_argument("--models", default="default,vit_b", help="comma-separated: default, vit_b")
    p.add_argument("--images", type=int, default=8, help="distinct COCO_MVal photos cycled through")
    p.add_argument("--image-dir", default=str(DEFAULT_IMAGES))
    p.add_argument("--no-vit-onnx", action="store_true", help="skip the ViT-B onnxruntime rows")
    p.add_argument("--export-timeout", type=float, default=600, help="seconds allowed for the ViT-B ONNX export")
    p.add_argument("--timeout", type=float, default=1800, help="seconds allowed per configuration")
    p.add_argument("--no-append", action="store_true", help="print only; do not append to BENCHMARKS.md")
    p.add_argument("--run-one", help=argparse.SUPPRESS)
    p.add_argument("--prepare", nargs=2, metavar=("MODEL", "PATH"), help=argparse.SUPPRESS)
    a = p.parse_args()

    if a.run_one:
        print(json.dumps(run_one(json.loads(a.run_one))))
        return
    if a.prepare:
        print(json.dumps(prepare(a.prepare[0], Path(a.prepare[1]))))
        return

    import onnxruntime
    import torch

    load_start = os.getloadavg()
    started = dt.datetime.now(dt.timezone.utc)
    models = [m.strip() for m in a.models.split(",") if m.strip()]
    unknown = set(models) - {"default", "vit_b"}
    if unknown:
        raise SystemExit(f"unknown models {sorted(unknown)}; known: default, vit_b")
    images = [str(pth) for pth in distinct_photos(Path(a.image_dir), a.images)]
    if not images:
        raise SystemExit(f"no photos in {a.image_dir}")
    notes: list[str] = []
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-encoder-") as tmp:
        onnx: dict[str, str | None] = {}
        for model in models:
            if model == "vit_b" and a.no_vit_onnx:
                notes.append("ViT-B onnxruntime rows skipped (--no-vit-onnx).")
                continue
            path = Path(tmp) / f"{model}.dynamic.onnx"
            try:
                info = _child(["--prepare", model, str(path)],
                              timeout=a.export_timeout if model == "vit_b" else a.timeout)
                onnx[model] = str(path)
                notes.append(f"{model}: dynamic-batch ONNX export {info['export_s']:.0f} s, onnxruntime vs torch at "
                             f"batch 2: {info['check_rel_err']:.1e} relative.")
            except subprocess.TimeoutExpired:
                notes.append(f"{model}: ONNX export took over {a.export_timeout:.0f} s; its onnxruntime rows skipped.")
            except RuntimeError as exc:
                notes.append(f"{model}: ONNX export failed ({exc}); its onnxruntime rows skipped.")
            print(notes[-1], flush=True)
        cfgs = cpu_configs(models, a.batch, a.vit_batch, onnx)
        if torch.cuda.is_available():
            cfgs += gpu_configs(a.gpu_batch)
            notes.append(f"GPU: {torch.cuda.get_device_name(0)}.")
        else:
            notes.append("GPU rows (ViT-H fp32 vs bf16) skipped: torch.cuda.is_available() is False.")
            print(notes[-1], flush=True)
        for cfg in cfgs:
            rows.append(measure(cfg, a.runs, images, a.timeout))
            r = rows[-1]
            print(f"  {r['model']} {r['device']} {r['backend']} {r['attention']} {r['precision']} batch {r['batch']}: "
                  + (f"{r['images/s']:.3f} images/s, peak {r['peak MB']:.0f} MB" if "images/s" in r else r["notes"]),
                  flush=True)
    load_end = os.getloadavg()

    text = "\n".join([
        f"## Encoder throughput — {started:%Y-%m-%d %H:%M} UTC",
        "",
        f"Machine: {machine()}; load average (1/5/15 min) {' / '.join(f'{v:.2f}' for v in load_start)} at the start, "
        f"{' / '.join(f'{v:.2f}' for v in load_end)} at the end. Python {platform.python_version()}, torch "
        f"{torch.__version__}, onnxruntime {onnxruntime.__version__}. `python bench/encoder_throughput.py --runs {a.runs} "
        f"--batch {a.batch} --vit-batch {a.vit_batch} --models {','.join(models)}`: each configuration in a fresh "
        f"process; timed per batch = SAM preprocessing (resize longest side 1024, normalise, pad) + encoder forward "
        f"on {len(images)} distinct decoded COCO_MVal photos cycled; median of {a.runs} runs after one warm-up; "
        "peak MB = the process's `VmHWM` (model, onnxruntime session and inputs included), MB after load = its RSS "
        "before the first forward. `default` = the shipped model (EfficientNet-Lite0 encoder); `vit_b` = "
        "`build_sam_vit_b` with random weights (latency does not depend on them). `sdpa` = "
        "`F.scaled_dot_product_attention` patched into segment-anything's ViT attention at bench time (the "
        "relative-position bias as its float `attn_mask`), checked against the original on the first image; "
        "`torch.backends.mha` (the fast path of `nn.MultiheadAttention`) does not apply: segment-anything's "
        "attention blocks are its own modules.",
        "",
        *[f"- {n}" for n in notes],
        "",
        markdown_table(rows),
    ]) + "\n"
    print("\n" + text)
    if not a.no_append:
        path = ROOT / "BENCHMARKS.md"
        header = "" if path.exists() else "# Benchmarks\n\nMeasured numbers, newest last. Each section says how it was measured.\n"
        with path.open("a") as fh:
            fh.write(header + "\n" + text)
        print(f"appended to {path}")


if __name__ == "__main__":
    main()
