"""Peak memory and time of exporting a 100k-mask project (issue 6: under 500 MB RSS).

Generates, in a PostgreSQL database of its own (default ``annotator_bench``, created and
migrated when missing), a project of IMAGES images with MASKS_PER_IMAGE small masks each
(rectangles, some with a hole, inserted with ``bulk_create``), then runs each export in a
fresh child process and reads that process's peak RSS (``VmHWM``), its RSS before the
export started, the wall time and the output size. Prints a table and appends it to
BENCHMARKS.md.

    .venv/bin/python bench/export_memory.py                     # 100k masks, coco x3, others x1
    .venv/bin/python bench/export_memory.py --masks 10000 --runs 1 --no-append
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.machine import machine as _machine  # noqa: E402
DEFAULT_DB = "postgres://postgres@127.0.0.1:5432/annotator_bench"
PROJECT_NAME = "bench: export memory"


def _django(database_url: str) -> None:
    os.environ["DATABASE_URL"] = database_url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "annotator.settings")
    os.environ.setdefault("MEDIA_ROOT", tempfile.mkdtemp(prefix="bench-media-"))
    os.environ.setdefault("ANNOTATOR_VAR_DIR", tempfile.mkdtemp(prefix="bench-var-"))
    import django

    django.setup()


def _ensure_database(database_url: str) -> None:
    import psycopg

    name = database_url.rsplit("/", 1)[1]
    admin_url = database_url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def _rect_rle(x0: int, y0: int, w: int, h: int, height: int, width: int, hole: bool) -> dict:
    """Compressed RLE of a w x h rectangle at (x0, y0) (with a centred hole), built from runs
    in column-major order, so no full-size mask is ever allocated."""
    from pycocotools import mask as mask_utils

    counts, pos = [], 0
    hx0, hx1, hy0, hy1 = x0 + w // 3, x0 + 2 * w // 3, y0 + h // 3, y0 + 2 * h // 3
    for x in range(x0, x0 + w):
        segments = [(y0, y0 + h)] if not (hole and hx0 <= x < hx1) else [(y0, hy0), (hy1, y0 + h)]
        for s, e in segments:
            start = x * height + s
            counts += [start - pos, e - s]
            pos = start + (e - s)
    counts.append(height * width - pos)
    rle = mask_utils.frPyObjects({"size": [height, width], "counts": counts}, height, width)
    return {"size": [height, width], "counts": rle["counts"].decode("ascii")}


def generate(*, masks: int, per_image: int, width: int, height: int) -> int:
    """Create (or reuse, when it already has ``masks`` masks) the bench project; its id."""
    import random

    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import transaction

    from annotator.core.models import Annotation, Category, Image, Project
    from annotator.core.services import project_create

    call_command("migrate", verbosity=0)
    user, _ = get_user_model().objects.get_or_create(username="bench", defaults={"is_superuser": True})
    existing = Project.objects.filter(name=PROJECT_NAME).first()
    if existing and Annotation.objects.filter(image__project=existing).count() == masks:
        return existing.pk
    if existing:  # annotations first: their categories are PROTECTed
        Annotation.objects.filter(image__project=existing).delete()
        existing.delete()
    started = time.perf_counter()
    rng = random.Random(0)
    project = project_create(name=PROJECT_NAME, user=user, categories=["a", "b", "c"])
    cats = list(Category.objects.filter(project=project).values_list("id", flat=True))
    n_images = (masks + per_image - 1) // per_image
    with transaction.atomic():
        images = Image.objects.bulk_create(
            [Image(project=project, file=f"bench/{i}.jpg", file_name=f"img_{i:06d}.jpg", width=width,
                   height=height, checksum="0" * 64, embedding_status="ready") for i in range(n_images)],
            batch_size=2000)
        batch, made = [], 0
        for image in images:
            for _ in range(min(per_image, masks - made)):
                w, h = rng.randint(8, 64), rng.randint(8, 64)
                x0, y0 = rng.randint(0, width - w), rng.randint(0, height - h)
                hole = rng.random() < 0.3
                rle = _rect_rle(x0, y0, w, h, height, width, hole)
                area = w * h - ((2 * w // 3 - w // 3) * (2 * h // 3 - h // 3) if hole else 0)
                batch.append(Annotation(
                    image=image, category_id=rng.choice(cats), rle=rle, bbox=[float(x0), float(y0), float(w), float(h)],
                    area=area, predicted_iou=round(rng.uniform(0.8, 1.0), 3), author=user,
                    prompts={"point_coords": [[x0 + w / 2, y0 + h / 2]], "point_labels": [1], "box": None},
                    review_status="approved" if rng.random() < 0.5 else "pending"))
                made += 1
                if len(batch) >= 5000:
                    Annotation.objects.bulk_create(batch)
                    batch = []
        if batch:
            Annotation.objects.bulk_create(batch)
    print(f"generated {made} masks on {n_images} images ({width}x{height}) in {time.perf_counter() - started:.1f} s",
          flush=True)
    return project.pk


def _light_engine() -> None:
    """Register ``engine`` as a bare package so that ``engine.rle`` loads without
    ``engine/__init__.py``, which imports torch/onnx (~780 MB RSS) for the model code. This is
    what an export-only worker would get if that ``__init__`` exported its names lazily."""
    import types

    pkg = types.ModuleType("engine")
    pkg.__path__ = [str(ROOT / "engine")]
    sys.modules["engine"] = pkg


def run_import(*, project_id: int, stream: bool = True) -> None:
    """Child process: import the project's COCO export into a new project with the same image
    rows: streamed (``fh=``, ijson, what the API and ``import_coco`` do) or, for comparison,
    ``json.load`` of the whole file + the import service; prints a JSON line."""
    from annotator.core import services
    from annotator.core.exports import export_write
    from annotator.core.models import Annotation, Image, Project

    source = Project.objects.get(pk=project_id)
    with tempfile.NamedTemporaryFile(suffix=".json") as fh:
        export_write(project=source, format="coco", out=fh)
        fh.flush()
        size = fh.tell()
        old = Project.objects.filter(name=PROJECT_NAME + " (import)").first()
        if old:
            Annotation.objects.filter(image__project=old).delete()
            old.delete()
        target = services.project_create(name=PROJECT_NAME + " (import)", user=source.created_by)
        Image.objects.bulk_create([Image(project=target, file=i.file.name, file_name=i.file_name, width=i.width,
                                         height=i.height, checksum=i.checksum)
                                   for i in Image.objects.filter(project=source)], batch_size=2000)
        rss_before = _status_kb("VmRSS")
        started = time.perf_counter()
        with open(fh.name, "rb") as f:
            if stream:
                report = services.annotations_import_coco(project=target, user=source.created_by, fh=f)
            else:
                report = services.annotations_import_coco(project=target, user=source.created_by, data=json.load(f))
        seconds = time.perf_counter() - started
    peak = _status_kb("VmHWM")
    Annotation.objects.filter(image__project=target).delete()
    target.delete()
    print(json.dumps({"format": "import_coco" if stream else "import_coco_json", "seconds": seconds, "peak_rss_mb": peak / 1024,
                      "rss_before_mb": rss_before / 1024, "output_mb": size / 2**20,
                      "stats": {"imported": report["imported"], "skipped": len(report["skipped"])}}))


def run_one(*, project_id: int, format: str) -> None:
    """Child process: one export to a temp file; prints a JSON line with its measurements."""
    from annotator.core.exports import export_write
    from annotator.core.models import Project

    if format in ("import_coco", "import_coco_json"):
        return run_import(project_id=project_id, stream=format == "import_coco")
    project = Project.objects.get(pk=project_id)
    rss_before = _status_kb("VmRSS")
    started = time.perf_counter()
    with tempfile.TemporaryFile() as fh:
        stats, ext = export_write(project=project, format=format, out=fh)
        size = fh.tell()
    seconds = time.perf_counter() - started
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over execve, so a child forked from a
    # big parent would report the parent's size.
    peak = _status_kb("VmHWM")
    print(json.dumps({"format": format, "seconds": seconds, "peak_rss_mb": peak / 1024,
                      "rss_before_mb": rss_before / 1024, "output_mb": size / 2**20, "stats": stats.as_dict()}))


def _status_kb(field: str) -> int:
    """A memory field of /proc/self/status (VmRSS, VmHWM = peak RSS of this process image), KiB."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def _versions() -> str:
    import django
    import numpy
    import pycocotools

    try:
        import cv2

        cv = cv2.__version__
    except ImportError:
        cv = "-"
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("SHOW server_version")
        pg = cur.fetchone()[0]
    return (f"Python {platform.python_version()}, Django {django.get_version()}, PostgreSQL {pg}, "
            f"numpy {numpy.__version__}, pycocotools {getattr(pycocotools, '__version__', '2.0.x')}, OpenCV {cv}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_DB))
    parser.add_argument("--masks", type=int, default=100_000)
    parser.add_argument("--per-image", type=int, default=100)
    parser.add_argument("--size", default="1024x768", help="image WxH")
    parser.add_argument("--formats", default="coco,coco_polygons,sa1b,png,import_coco,import_coco_json",
                        help="export formats; import_coco = streamed import of the project's COCO export, "
                             "import_coco_json = the same with json.load of the whole file")
    parser.add_argument("--runs", type=int, default=3, help="runs of the RLE COCO export (others run once)")
    parser.add_argument("--no-append", action="store_true", help="do not append to BENCHMARKS.md")
    parser.add_argument("--modes", default="full,light",
                        help="full: the process imports engine as the worker does today (torch included); "
                             "light: engine/__init__ skipped (see _light_engine)")
    parser.add_argument("--run-one", help=argparse.SUPPRESS)
    parser.add_argument("--light", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--project", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.run_one:
        if args.light:
            _light_engine()
        _django(args.database_url)
        run_one(project_id=args.project, format=args.run_one)
        return

    _ensure_database(args.database_url)
    _django(args.database_url)
    width, height = (int(v) for v in args.size.split("x"))
    project_id = generate(masks=args.masks, per_image=args.per_image, width=width, height=height)
    rows = []
    for mode in args.modes.split(","):
        for fmt in args.formats.split(","):
            runs = []
            for _ in range(args.runs if fmt == "coco" else 1):
                out = subprocess.run([sys.executable, __file__, "--database-url", args.database_url, "--run-one", fmt,
                                      "--project", str(project_id)] + (["--light"] if mode == "light" else []),
                                     capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
                if out.returncode != 0:
                    raise SystemExit(f"{fmt} export failed:\n{out.stderr[-4000:]}")
                runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
                print(f"  {mode} {fmt}: {runs[-1]['seconds']:.1f} s, peak RSS {runs[-1]['peak_rss_mb']:.0f} MB",
                      flush=True)
            rows.append({
                "format": fmt, "mode": mode, "runs": len(runs),
                "seconds": statistics.median(r["seconds"] for r in runs),
                "peak_rss_mb": statistics.median(r["peak_rss_mb"] for r in runs),
                "rss_before_mb": statistics.median(r["rss_before_mb"] for r in runs),
                "output_mb": runs[-1]["output_mb"], "stats": runs[-1]["stats"],
            })
    lines = [
        f"## Export / import memory, {args.masks:,} masks ({args.per_image} per image, {args.size}) — "
        f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC",
        "",
        f"Machine: {_machine()}. {_versions()}. `bench/export_memory.py`; each export in a fresh process, "
        "peak RSS = its `VmHWM`; medians over the runs shown. Target: peak RSS < 500 MB.",
        "",
        "Process `full`: imports `engine` as the Celery worker does today (its `__init__` loads torch/onnx, "
        "~780 MB before any work); `light`: only `engine/rle.py` is loaded (what a lazy `engine/__init__` "
        "would give an export-only worker). The export's own cost is peak minus before.",
        "",
        "| process | format | runs | wall s | peak RSS MB | RSS before export MB | output MB | notes |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        notes = ""
        if r["stats"].get("polygon_min_iou") is not None:
            notes = (f"polygon reconstruction: min IoU {r['stats']['polygon_min_iou']}, "
                     f"pixel error {r['stats']['polygon_pixel_error']}")
        if r["format"] == "png":
            notes = f"overlap pixels {r['stats']['png_overlap_pixels']}"
        if r["format"].startswith("import_coco"):
            how = "streamed (ijson)" if r["format"] == "import_coco" else "json.load"
            notes = (f"{how} import of the {r['output_mb']:.1f} MB COCO export: "
                     f"{r['stats']['imported']} imported, {r['stats']['skipped']} skipped")
        lines.append(f"| {r['mode']} | {r['format']} | {r['runs']} | {r['seconds']:.1f} | {r['peak_rss_mb']:.0f} | "
                     f"{r['rss_before_mb']:.0f} | {r['output_mb']:.1f} | {notes} |")
    text = "\n".join(lines) + "\n"
    print("\n" + text)
    if not args.no_append:
        path = ROOT / "BENCHMARKS.md"
        header = "" if path.exists() else "# Benchmarks\n\nMeasured numbers, newest last. Each section says how it was measured.\n"
        with path.open("a") as fh:
            fh.write(header + "\n" + text)
        print(f"appended to {path}")


if __name__ == "__main__":
    main()
