"""Click -> mask in a real browser (issue 7, items 1 and 2): the annotate page in headless
Chromium, driven with real mouse clicks, against its own server stack.

    .venv/bin/python bench/browser_decoder.py                         # everything, >= 100 clicks each
    .venv/bin/python bench/browser_decoder.py --clicks 10 --no-append # a quick check
    .venv/bin/python bench/browser_decoder.py --configs 'default-*'   # a subset (fnmatch patterns)

Stack, as ``scripts/demo.sh`` runs the tool: SQLite and kombu's filesystem broker in a
throwaway folder (``--database-url`` for a PostgreSQL database of its own instead: it is
dropped and made anew), a real ``celery worker`` computing the embeddings, ``manage.py
runserver --noreload`` with DJANGO_DEBUG=0 (production settings, plain-HTTP cookies) on a
free port. Two projects: the shipped default model with 8 GrabCut photos, and a **full-size
SAM ViT-B with random weights** (a ``build_sam_vit_b`` state dict saved in the official key
layout and installed with ``manage.py model_install vit_b PATH``, the admin's command) with 2
photos embedded by the same worker. Decoder latency does not depend on the weights.

Item 1, per configuration (model x fp32/quantized x 1/2 wasm threads, plus the page's
``?decoder=server`` knob when app.ts has it): a fresh browser context opens the annotate
page with the knobs (``?threads=N``, ``?quantized=1``), records ``crossOriginIsolated`` and
whether WebGPU is offered, then clicks like a person (positive clicks inside the GrabCut
object, now and then a negative one off it, refinement clicks on the current mask, Escape
every 1-4 clicks), each after the previous mask is painted. The page's own measure
(``window.__samPerf``: pointerup -> mask pixels on the canvas) and the worker's
``session.run`` time give the numbers; the first ``--warmup`` clicks are left out. The same
decoder ONNX (the bytes the page fetched) then runs in onnxruntime in Python (default
threads) on the same feeds, built from the prompts the page reports and chained as the page
chains them (the chosen candidate's low-res logits back in): the native reference.

Item 2: on the 8-photo project, the time from pressing N to the first click's mask pixels,
the click dispatched by the page itself the moment it says it is ready (``body[data-sam-
ready]``, i.e. decoder and embedding phases 'ready') on the new image (a prefetched one opens
ready: only ``#mask-canvas[data-image-id]`` changes), with prefetch (the default) and with
``?prefetch=0``; each mode in a fresh context (cold HTTP cache), >= 5 transitions; and the
embedding's size on the wire.

Prints Markdown tables; unless ``--no-append``, appends them to BENCHMARKS.md with the
machine, versions and date.
"""

from __future__ import annotations

import argparse
import datetime as dt
import fnmatch
import json
import os
import platform
import re
import secrets
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.machine import cpu_model, load_avg  # noqa: E402
GRABCUT = ROOT.parent / "shared" / "data" / "grabcut"
CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
USERNAME, PASSWORD = "bench", "bench-browser-pw"
# The clicked photo comes first in each project; the rest make the N transitions.
PHOTOS_DEFAULT = ["124080.jpg", "153077.jpg", "189080.jpg", "21077.jpg", "24077.jpg", "65019.jpg", "86016.jpg",
                  "37073.jpg"]
PHOTOS_VIT_B = ["124080.jpg", "153077.jpg"]
MODELS = ("default", "vit_b")
NEXT_MODES = ("prefetch", "noprefetch")


# ---------------------------------------------------------------- pure helpers (tested)

def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) by linear interpolation between closest ranks (numpy's
    default; p50 is the median). NaN for no values."""
    if not values:
        return float("nan")
    s = sorted(values)
    pos = (len(s) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def fmt_ms(v: float | None, digits: int = 1) -> str:
    return "n/a" if v is None or v != v else f"{v:.{digits}f}"


def fmt_ratio(num: float | None, den: float | None) -> str:
    """``num / den`` as ``2.31x``; ``n/a`` when either is missing or den is 0."""
    if num is None or den is None or num != num or den != den or den == 0:
        return "n/a"
    return f"{num / den:.2f}x"


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[Any]], right: Sequence[bool] | None = None) -> str:
    """A GitHub Markdown table; ``right[i]`` right-aligns column i (numbers)."""
    right = list(right) if right is not None else [False] * len(headers)
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---:" if r else "---" for r in right) + "|"]
    for row in rows:
        if len(row) != len(headers):
            raise ValueError(f"row has {len(row)} cells, the header {len(headers)}: {row!r}")
        out.append("| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |")
    return "\n".join(out)


def all_config_names(server_knob: bool) -> list[str]:
    """Every configuration this script knows, in run order: ``<model>-<fp32|quant>-t<1|2>``,
    ``<model>-server`` (only when the page has the knob), ``next-prefetch``, ``next-noprefetch``."""
    names = [f"{m}-{d}-t{t}" for m in MODELS for d in ("fp32", "quant") for t in (1, 2)]
    if server_knob:
        names += [f"{m}-server" for m in MODELS]
    return names + [f"next-{m}" for m in NEXT_MODES]


def select_configs(patterns: str | None, names: Sequence[str]) -> list[str]:
    """The names matching any comma-separated fnmatch pattern (all when None), in ``names``'
    order. Raises ValueError for a pattern that matches nothing."""
    if not patterns:
        return list(names)
    pats = [p.strip() for p in patterns.split(",") if p.strip()]
    for p in pats:
        if not any(fnmatch.fnmatchcase(n, p) for n in names):
            raise ValueError(f"--configs {p!r} matches none of {', '.join(names)}")
    return [n for n in names if any(fnmatch.fnmatchcase(n, p) for p in pats)]


def parse_config(name: str) -> dict[str, Any]:
    """``vit_b-quant-t2`` -> {model, decoder ('fp32'|'quant'|'server'), threads (int|None)}."""
    m = re.fullmatch(r"(default|vit_b)-(fp32|quant)-t(\d+)", name)
    if m:
        return {"model": m[1], "decoder": m[2], "threads": int(m[3])}
    m = re.fullmatch(r"(default|vit_b)-server", name)
    if m:
        return {"model": m[1], "decoder": "server", "threads": None}
    raise ValueError(f"not a click configuration: {name}")


def page_query(cfg: dict[str, Any], extra: str = "") -> str:
    """The page knobs of a configuration, as ``&k=v`` pairs (app.ts reads them), then
    ``extra`` (``--extra-query``, e.g. ``graph=contract``)."""
    if cfg["decoder"] == "server":
        q = "&decoder=server"
    else:
        q = (f"&threads={cfg['threads']}" if cfg["threads"] else "") + ("&quantized=1" if cfg["decoder"] == "quant" else "")
    extra = extra.strip("&?")
    return q + (f"&{extra}" if extra else "")


def webgpu_text(facts: dict) -> str:
    """What the page found of WebGPU: no ``navigator.gpu``, or it with or without an adapter."""
    if not facts.get("gpu"):
        return "no navigator.gpu"
    adapter = facts.get("adapter")
    return "adapter" if adapter == "yes" else f"navigator.gpu, {adapter or 'no adapter'}"


def server_knob_present(source: str) -> bool:
    """Whether the annotate page's code (app.ts, or the built bundle) reads a
    ``?decoder=server`` knob."""
    return bool(re.search(r"""get\(\s*['"`]decoder['"`]\s*\)""", source)) and "server" in source


def threads_in_status(text: str) -> int | None:
    """The thread count the page's decoder status reports ("..., wasm, 2 threads, 812 ms")."""
    m = re.search(r"(\d+) threads?\b", text)
    return int(m[1]) if m else None


def click_plan(inside: np.ndarray, n_clicks: int, seed: int = 7, max_run: int = 4,
               negative_share: float = 0.25) -> list[tuple]:
    """What a person does on one image, ``n_clicks`` clicks in all.

    Runs of 1..``max_run`` clicks on one object, each run ended by ``("clear",)`` (Escape):
    the first click of a run is positive, inside the object; the later ones refine (the page
    feeds the current mask back) and are negative, off the object, with probability
    ``negative_share``. Click actions are ``("click", x, y, negative)`` in image pixels.

    Args:
        inside: HxW bool, the object (GrabCut ground truth); points are taken at least 3 px
            from its edge (and the image's) when the object allows it.
    """
    if not inside.any() or inside.all():
        raise ValueError("the object mask must have pixels inside and outside")
    rng = np.random.default_rng(seed)
    h, w = inside.shape
    core, outer = _erode(inside, 3), _erode(~inside, 3)
    pos = np.argwhere(core if core.any() else inside)
    neg = np.argwhere(outer if outer.any() else ~inside)
    plan: list[tuple] = []
    done = 0
    while done < n_clicks:
        run = int(rng.integers(1, max_run + 1))
        for k in range(min(run, n_clicks - done)):
            negative = k > 0 and rng.random() < negative_share
            y, x = (neg if negative else pos)[rng.integers(len(neg if negative else pos))]
            plan.append(("click", int(x), int(y), bool(negative)))
            done += 1
        plan.append(("clear",))
    return plan


def _erode(mask: np.ndarray, r: int) -> np.ndarray:
    """4-connected erosion by r pixels; the image border counts as outside."""
    cur = mask.copy()
    for _ in range(r):
        e = cur.copy()
        e[1:, :] &= cur[:-1, :]
        e[:-1, :] &= cur[1:, :]
        e[:, 1:] &= cur[:, :-1]
        e[:, :-1] &= cur[:, 1:]
        e[0, :] = e[-1, :] = e[:, 0] = e[:, -1] = False
        cur = e
    return cur


def default_candidate(num_points: int, has_box: bool, iou_predictions: Sequence[float]) -> int:
    """The candidate the page shows (frontend/src/lib/prompts.ts defaultCandidate): for one
    point or a box alone, the best of the 3 multimask outputs by predicted IoU; else the
    single-mask output 0."""
    ambiguous = (num_points == 1 and not has_box) or (num_points == 0 and has_box)
    if not ambiguous:
        return 0
    return 1 + int(np.argmax(np.asarray(iou_predictions, np.float64).reshape(-1)[1:4]))


def replay_native(run: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]], input_names: Sequence[str],
                  embedding: np.ndarray, height: int, width: int, steps: Sequence[dict]) -> list[float]:
    """Decodes the page's steps again with ``run`` (onnxruntime's ``session.run``), chained as
    the page chains them, and returns each run's wall time in ms.

    Args:
        run: feeds dict -> outputs by name (``iou_predictions`` 1x4, ``low_res_masks``
            1x4x256x256 at least).
        input_names: the graph's inputs; feeds it does not take (``orig_im_size`` for a graph
            that returns only low-res logits) are left out.
        embedding: 1x256x64x64 float32.
        steps: per click, the page's prompts ``{"points": [{x, y, label}], "box": XYXY|None}``
            in image pixels. A step with more than one point (or a box and points) refines:
            its mask_input is the previous step's chosen candidate's low-res logits.
    """
    from engine.onnx_browser import browser_feeds
    from engine.predictor import decoder_feeds

    times, prev = [], None  # prev: (low_res_masks 1x4x256x256, chosen)
    for step in steps:
        pts, box = step["points"], step.get("box")
        refine = prev is not None and (len(pts) + (1 if box else 0)) > 1
        mask_input = prev[0][0, prev[1]] if refine else None
        feeds = decoder_feeds(embedding, (height, width),
                              np.array([[p["x"], p["y"]] for p in pts], np.float64).reshape(-1, 2),
                              np.array([p["label"] for p in pts], np.float64), box, mask_input)
        if "image_tokens" in input_names:  # the browser graph takes the embedding channel-last
            feeds = browser_feeds(feeds)
        feeds = {k: v for k, v in feeds.items() if k in input_names}
        t0 = time.perf_counter()
        out = run(feeds)
        times.append((time.perf_counter() - t0) * 1000)
        prev = (out["low_res_masks"], default_candidate(len(pts), box is not None, out["iou_predictions"][0]))
    return times


# ---------------------------------------------------------------- machine and versions

def machine_info() -> dict[str, str]:
    try:
        chromium = subprocess.run([CHROMIUM, "--version"], capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError) as exc:
        chromium = f"unknown ({exc})"
    import onnxruntime

    pkg = json.loads((ROOT / "frontend" / "package.json").read_text())
    return {"cpu": cpu_model(), "cores": str(os.cpu_count()), "chromium": chromium,
            "ort_web": pkg.get("dependencies", {}).get("onnxruntime-web", "?"), "ort": onnxruntime.__version__,
            "python": platform.python_version()}


# ---------------------------------------------------------------- stack

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_port(port: int, proc: subprocess.Popen, log: Path, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited: {log.read_text()[-3000:]}")
            time.sleep(0.3)
    raise RuntimeError(f"server did not start: {log.read_text()[-3000:]}")


def _recreate_database(url: str) -> None:
    import psycopg

    name = url.rsplit("/", 1)[1]
    with psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def random_vit_b_checkpoint(path: Path, seed: int = 0) -> Path:
    """A ``build_sam_vit_b`` state dict with random weights, saved as the official file is
    (a plain ``torch.save`` of the state dict: ~375 MB)."""
    import torch
    from segment_anything.build_sam import build_sam_vit_b

    torch.manual_seed(seed)
    sam = build_sam_vit_b(checkpoint=None)
    torch.save(sam.state_dict(), path)
    return path


def seed(*, env: dict, work: Path, want_vit_b: bool) -> dict:
    """User, projects, photos embedded by a real worker (and the random ViT-B installed)."""
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    from annotator.core import services
    from annotator.core.model_versions import project_model_switch
    from annotator.core.models import Image, ModelVersion, Project

    call_command("migrate", verbosity=0)
    user = get_user_model().objects.create_user(USERNAME, password=PASSWORD, is_staff=True)
    worker_log = work / "worker.log"
    with open(worker_log, "w") as out:
        worker = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "annotator", "worker", "--pool", "solo", "-Q",
             env["CELERY_QUEUE"], "--loglevel", "INFO", "--without-gossip", "--without-mingle",
             "--without-heartbeat"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        projects = {}
        p = services.project_create(name="bench: default model", user=user, categories=["object"])
        services.images_upload(project=p, files=[(n, (GRABCUT / "data_GT" / n).read_bytes()) for n in PHOTOS_DEFAULT],
                               user=user)
        projects["default"] = p.pk
        install_seconds = None
        if want_vit_b:
            t0 = time.time()
            ckpt = random_vit_b_checkpoint(work / "sam_vit_b_random.pth")
            print("installing the random ViT-B with manage.py model_install ...", flush=True)
            done = subprocess.run([sys.executable, "manage.py", "model_install", "vit_b", str(ckpt), "--name",
                                   "SAM ViT-B (random weights, benchmark)"], cwd=ROOT, env=env, capture_output=True,
                                  text=True)
            if done.returncode:
                raise RuntimeError(f"model_install failed: {done.stdout[-2000:]}{done.stderr[-3000:]}")
            install_seconds = time.time() - t0
            version = ModelVersion.objects.get(architecture="vit_b")
            p = services.project_create(name="bench: ViT-B random", user=user, categories=["object"])
            project_model_switch(project=p, user=user, version=version)
            services.images_upload(project=p, files=[(n, (GRABCUT / "data_GT" / n).read_bytes())
                                                     for n in PHOTOS_VIT_B], user=user)
            projects["vit_b"] = p.pk
        deadline = time.time() + 1800
        while Image.objects.filter(project_id__in=projects.values(), embedding_status="pending").exists():
            if time.time() > deadline or worker.poll() is not None:
                raise RuntimeError(f"photos not embedded: {worker_log.read_text()[-3000:]}")
            time.sleep(1)
        failed = list(Image.objects.filter(project_id__in=projects.values(), embedding_status="failed")
                      .values_list("file_name", "embedding_error"))
        if failed:
            raise RuntimeError(f"embedding failed: {failed}")
    finally:
        _stop(worker)
    out = {"install_seconds": install_seconds, "projects": {}}
    for model, pk in projects.items():
        images = list(Image.objects.filter(project_id=pk).prefetch_related("embeddings").order_by("id"))
        out["projects"][model] = {
            "id": pk, "model_id": Project.objects.get(pk=pk).model_version.model_id if model == "vit_b" else None,
            "images": [{"id": im.pk, "name": im.file_name, "width": im.width, "height": im.height} for im in images],
            "embed_seconds": [e.compute_seconds for im in images for e in im.embeddings.all()]}
    return out


# ---------------------------------------------------------------- browser

# Instrumentation for item 2, in every page before its scripts: the N key's event time, and
# a click dispatched the moment the page turns ready on another image.
INIT_SCRIPT = """
window.__bench = { nav: null };
document.addEventListener('keydown', (ev) => {
  const nav = window.__bench.nav;
  if (nav && nav.tKey === null && (ev.key === 'n' || ev.key === 'N')) nav.tKey = ev.timeStamp;
}, { capture: true });
window.__benchArm = (x, y) => {
  const nav = { fromImage: window.__samDebug.imageId(), tKey: null, tReady: null, toImage: null, clicked: false,
                error: null };
  window.__bench.nav = nav;
  const fire = () => {
    if (nav.clicked || nav.tKey === null || document.body.dataset.samReady !== 'true') return;
    const id = window.__samDebug.imageId();
    if (id === nav.fromImage) return;
    nav.tReady = performance.now();
    nav.toImage = id;
    nav.clicked = true;
    obs.disconnect();
    try {
      const layer = document.querySelector('.prompt-layer');
      const r = layer.getBoundingClientRect();
      const c = document.getElementById('mask-canvas');
      const w = Number(c.dataset.width), h = Number(c.dataset.height);
      const cx = r.left + (Math.min(x, w - 1) + 0.5) * r.width / w, cy = r.top + (Math.min(y, h - 1) + 0.5) * r.height / h;
      const opts = { bubbles: true, cancelable: true, composed: true, pointerId: 1, pointerType: 'mouse',
                     isPrimary: true, clientX: cx, clientY: cy, button: 0 };
      layer.dispatchEvent(new PointerEvent('pointerdown', { ...opts, buttons: 1 }));
      layer.dispatchEvent(new PointerEvent('pointerup', { ...opts, buttons: 0 }));
    } catch (e) { nav.error = String(e); }
  };
  // A prefetched image opens already ready: the page then stays ready and only the image
  // (the mask canvas's data-image-id) changes.
  const obs = new MutationObserver(fire);
  obs.observe(document.body, { attributes: true, subtree: true, attributeFilter: ['data-sam-ready', 'data-image-id'] });
};
"""

LAST_MEASURE = """() => { const m = performance.getEntriesByName('click-to-mask');
  const e = m[m.length - 1]; return e ? { start: e.startTime, end: e.startTime + e.duration } : null; }"""


class Browser:
    """One headless Chromium, logged in once; a fresh context (cold cache) per configuration."""

    def __init__(self, base: str):
        from playwright.sync_api import sync_playwright

        self.base = base
        self._pw = sync_playwright().start()
        self.browser = self._pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        ctx = self.browser.new_context()
        page = ctx.new_page()
        page.goto(f"{base}/accounts/login/")
        page.fill("#id_username", USERNAME)
        page.fill("#id_password", PASSWORD)
        page.click("#login-submit")
        page.wait_for_url(f"{base}/")
        self.state = ctx.storage_state()
        ctx.close()

    def page(self, url: str, log: list[str], requests: list[str] | None = None):
        ctx = self.browser.new_context(storage_state=self.state, viewport={"width": 1400, "height": 900})
        ctx.add_init_script(INIT_SCRIPT)
        if requests is not None:  # the decoder worker's fetches included
            ctx.on("request", lambda r: requests.append(r.url))
        page = ctx.new_page()
        page.on("console", lambda m: log.append(f"{m.type}: {m.text}") if m.type in ("error", "warning") else None)
        page.on("pageerror", lambda e: log.append(f"pageerror: {e}"))
        page.goto(url)
        try:
            page.wait_for_function("window.__samReady === true", timeout=600_000)
        except Exception:
            status = page.locator("#status-line").inner_text() if page.locator("#status-line").count() else "?"
            raise RuntimeError(f"page never became ready ({url}): {status!r}; console: {log[-5:]}")
        return ctx, page

    def close(self) -> None:
        self.browser.close()
        self._pw.stop()


def page_facts(page) -> dict:
    """crossOriginIsolated, WebGPU (navigator.gpu and an adapter), the decoder status line."""
    facts = page.evaluate("""async () => {
        let adapter = null;
        if (navigator.gpu) {
          try { adapter = await Promise.race([navigator.gpu.requestAdapter(),
                                             new Promise((r) => setTimeout(() => r('timeout'), 3000))]); }
          catch (e) { adapter = 'error: ' + e; }
        }
        return { isolated: self.crossOriginIsolated === true, gpu: !!navigator.gpu,
                 adapter: adapter === null ? null : (typeof adapter === 'string' ? adapter : 'yes') };
    }""")
    facts["decoder_status"] = page.locator("#decoder-status").inner_text()
    return facts


def _click(page, x: int, y: int, w: int, h: int, negative: bool) -> None:
    box = page.locator(".prompt-layer").bounding_box()
    page.mouse.click(box["x"] + (x + 0.5) * box["width"] / w, box["y"] + (y + 0.5) * box["height"] / h,
                     button="right" if negative else "left")


def run_clicks(browser: Browser, project: dict, cfg: dict, plan: list[tuple], warmup: int, extra: str = "") -> dict:
    """One configuration: open the page, play the plan, read the page's measures."""
    image = project["images"][0]
    w, h = image["width"], image["height"]
    log: list[str] = []
    requests: list[str] = []
    url = f"{browser.base}/projects/{project['id']}/annotate/?image={image['id']}{page_query(cfg, extra)}"
    ctx, page = browser.page(url, log, requests)
    try:
        facts = page_facts(page)
        page.evaluate("document.activeElement && document.activeElement.blur && document.activeElement.blur()")
        prompts, n = [], 0
        for action in plan:
            if action[0] == "clear":
                page.keyboard.press("Escape")
                continue
            _, x, y, negative = action
            _click(page, x, y, w, h, negative)
            try:
                page.wait_for_function(f"window.__samPerf.length > {n}", timeout=120_000)
            except Exception:
                raise RuntimeError(f"no mask after click {n + 1} ({cfg}): "
                                   f"{page.locator('#status-line').inner_text()!r}; console: {log[-5:]}")
            n += 1
            prompts.append(page.evaluate("window.__samDebug.prompts()"))
        detail = page.evaluate("window.__samPerfDetail")
        if cfg["decoder"] == "server" and not any(re.search(r"/api/images/\d+/decode", u) for u in requests):
            raise RuntimeError(f"?decoder=server: the page sent no POST /api/images/<id>/decode ({facts})")
        decoder = None
        if cfg["decoder"] != "server":  # (the server mode's worker loads a decoder too, unused)
            # The very file the page's worker fetched (whatever knobs chose it).
            fetched = [u for u in requests if "/decoder.onnx" in u]
            if not fetched:
                raise RuntimeError(f"the page fetched no decoder.onnx ({cfg})")
            emb = page.request.get(f"{browser.base}/api/images/{image['id']}/embedding")
            decoder = {"url": fetched[-1], "bytes": page.request.get(fetched[-1]).body(),
                       "embedding": np.frombuffer(emb.body(), "<f2").astype(np.float32).reshape(1, 256, 64, 64)}
            query = fetched[-1].split("?", 1)[1] if "?" in fetched[-1] else ""
            facts["decoder_file"] = f"{query or 'decoder.onnx'}, {len(decoder['bytes']) / 2**20:.1f} MB"
    finally:
        ctx.close()
    if len(detail) != n:
        raise RuntimeError(f"{len(detail)} measures for {n} clicks ({cfg})")
    timed = detail[warmup:]
    return {"facts": facts, "clicks": len(timed), "warmup": warmup, "height": h, "width": w,
            "click_ms": [d["clickToMaskMs"] for d in timed],
            "run_ms": [d["runMs"] for d in timed if d.get("runMs") is not None],
            "worker_ms": [d["workerMs"] for d in timed if d.get("workerMs") is not None],
            "prompts": prompts, "decoder": decoder, "errors": [m for m in log if "error" in m.lower()]}


def run_native(result: dict) -> dict:
    """The same decoder bytes and prompts in onnxruntime (default threads), same warm-up."""
    import onnxruntime as ort

    dec = result["decoder"]
    session = ort.InferenceSession(dec["bytes"], providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    times = replay_native(lambda feeds: dict(zip(names, session.run(None, feeds))),
                          [i.name for i in session.get_inputs()], dec["embedding"], result["height"], result["width"],
                          result["prompts"])
    return {"ms": times[result["warmup"]:]}


def run_next_image(browser: Browser, project: dict, mode: str, transitions: int, x: int, y: int,
                   idle_s: float = 1.5, extra: str = "") -> dict:
    """Item 2: press N, the page clicks (x, y) as soon as it is ready; times from the page."""
    images = project["images"]
    if len(images) < transitions + 1:
        raise ValueError(f"{transitions} transitions need {transitions + 1} images, the project has {len(images)}")
    log: list[str] = []
    knob = ("&prefetch=0" if mode == "noprefetch" else "") + (f"&{extra.strip('&?')}" if extra.strip("&?") else "")
    ctx, page = browser.page(f"{browser.base}/projects/{project['id']}/annotate/?image={images[0]['id']}{knob}", log)
    finished: list = []
    page.on("requestfinished", lambda r: finished.append(r) if "/embedding" in r.url else None)
    rows = []
    try:
        for i in range(transitions):
            nxt = images[i + 1]["id"]
            if mode == "prefetch":  # as a person would: seconds on this image, so the prefetch lands
                deadline = time.time() + 120
                while not any(f"/api/images/{nxt}/embedding" in r.url for r in finished):
                    if time.time() > deadline:
                        raise RuntimeError(f"the prefetch of image {nxt} never finished; console: {log[-5:]}")
                    page.wait_for_timeout(100)
            page.wait_for_timeout(idle_s * 1000)
            page.keyboard.press("Escape")
            n = page.evaluate("window.__samPerf.length")
            page.evaluate(f"window.__benchArm({x}, {y})")
            page.keyboard.press("n")
            try:
                page.wait_for_function(f"window.__samPerf.length > {n}", timeout=120_000)
            except Exception:
                nav = page.evaluate("window.__bench.nav")
                raise RuntimeError(f"no mask after N ({mode}, image {nxt}): {nav}; console: {log[-5:]}")
            nav = page.evaluate("window.__bench.nav")
            mask = page.evaluate(LAST_MEASURE)
            detail = page.evaluate("window.__samPerfDetail[window.__samPerfDetail.length - 1]")
            if nav["toImage"] != nxt or nav["error"]:
                raise RuntimeError(f"N went to image {nav['toImage']}, expected {nxt}: {nav}")
            rows.append({"image": nxt, "n_to_ready": nav["tReady"] - nav["tKey"],
                         "ready_to_click": mask["start"] - nav["tReady"], "click_to_mask": mask["end"] - mask["start"],
                         "n_to_mask": mask["end"] - nav["tKey"], "run_ms": detail.get("runMs")})
        wire = []
        for r in finished:
            resp = r.response()
            if resp is None or resp.status != 200:
                continue
            sizes = r.sizes()
            headers = resp.all_headers()
            wire.append({"url": r.url, "content_length": int(headers.get("content-length", -1)),
                         "encoding": headers.get("content-encoding", "identity"),
                         "body": sizes["responseBodySize"], "headers": sizes["responseHeadersSize"]})
    finally:
        ctx.close()
    return {"mode": mode, "rows": rows, "wire": wire, "errors": [m for m in log if "error" in m.lower()]}


# ---------------------------------------------------------------- report

def click_table(results: dict[str, dict], natives: dict[tuple, dict]) -> str:
    server = {m: percentile(r["click_ms"], 50) for name, r in results.items()
              for m in MODELS if name == f"{m}-server"}
    rows = []
    for name, r in results.items():
        cfg = parse_config(name)
        p50 = percentile(r["click_ms"], 50)
        native = natives.get((cfg["model"], cfg["decoder"]))
        nat50 = percentile(native["ms"], 50) if native else None
        f = r["facts"]
        asked = "server" if cfg["decoder"] == "server" else f"{cfg['threads']}/{threads_in_status(f['decoder_status']) or '?'}"
        rows.append([
            name, cfg["model"], f.get("decoder_file", cfg["decoder"]), asked, "yes" if f["isolated"] else "NO",
            webgpu_text(f), r["clicks"],
            fmt_ms(p50), fmt_ms(percentile(r["click_ms"], 95)), fmt_ms(percentile(r["run_ms"], 50)),
            fmt_ms(percentile(r["worker_ms"], 50)),
            fmt_ms(nat50), fmt_ratio(p50, nat50) if native else "n/a",
            fmt_ratio(server.get(cfg["model"]), p50) if cfg["decoder"] != "server" and cfg["model"] in server else "n/a",
        ])
    return markdown_table(
        ["config", "model", "decoder file", "threads asked/used", "isolated", "WebGPU", "clicks", "click→mask p50 ms",
         "p95 ms", "session.run p50 ms", "worker p50 ms", "native ort p50 ms", "browser / native",
         "server / browser"],
        rows, [False] * 6 + [True] * 8)


def next_table(results: dict[str, dict]) -> str:
    rows = []
    for mode, r in results.items():
        t = r["rows"]
        col = lambda k: [x[k] for x in t]  # noqa: E731
        runs = [v for v in col("run_ms") if v is not None]
        rows.append([mode, len(t), fmt_ms(statistics.median(col("n_to_ready"))),
                     fmt_ms(statistics.median(col("click_to_mask"))),
                     fmt_ms(statistics.median(runs) if runs else None), fmt_ms(statistics.median(col("n_to_mask"))),
                     fmt_ms(max(col("n_to_mask"))), fmt_ms(statistics.median(col("ready_to_click")))])
    return markdown_table(["mode", "transitions", "N→ready median ms", "first click→mask median ms",
                           "its session.run median ms", "N→first mask median ms", "N→first mask max ms",
                           "ready→click (harness) median ms"], rows, [False] + [True] * 7)


def wire_line(results: dict[str, dict]) -> str:
    wire = [w for r in results.values() for w in r["wire"]]
    if not wire:
        return "Embedding on the wire: no embedding response seen."
    encs = sorted({w["encoding"] for w in wire})
    return (f"Embedding on the wire ({len(wire)} responses): Content-Length "
            f"{sorted({w['content_length'] for w in wire})} bytes, Content-Encoding {', '.join(encs)}, body transferred "
            f"median {statistics.median(w['body'] for w in wire):.0f} bytes + headers "
            f"{statistics.median(w['headers'] for w in wire):.0f} bytes (fp16 1x256x64x64 = {2 * 256 * 64 * 64} bytes).")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clicks", type=int, default=100, help="timed clicks per configuration (after the warm-up)")
    parser.add_argument("--warmup", type=int, default=5, help="clicks left out at the start of each configuration")
    parser.add_argument("--transitions", type=int, default=6, help="N presses per prefetch mode (item 2)")
    parser.add_argument("--configs", help="comma-separated fnmatch patterns over the configuration names "
                                          "(e.g. 'default-*,next-*'); all by default")
    parser.add_argument("--extra-query", default="", help="more page knobs for every page, e.g. 'graph=contract'")
    parser.add_argument("--database-url", help="a PostgreSQL database for the stack (dropped and made anew); "
                                               "default: SQLite in the temp folder, as scripts/demo.sh")
    parser.add_argument("--keep", action="store_true", help="keep the temp folder (logs, database)")
    parser.add_argument("--no-append", action="store_true", help="do not append to BENCHMARKS.md")
    args = parser.parse_args()

    bundle = ROOT / "static" / "app" / "annotate.js"
    if not bundle.exists():
        sys.exit("frontend not built: run `cd frontend && npm ci && npm run build` first")
    in_source = server_knob_present((ROOT / "frontend" / "src" / "app.ts").read_text())
    knob = in_source and server_knob_present(bundle.read_text())
    selected = select_configs(args.configs, all_config_names(knob))
    notes = [] if knob else [
        "`?decoder=server` skipped: " + ("frontend/src/app.ts has the knob but static/app/ was built before it "
                                         "(`cd frontend && npm run build`)." if in_source else
                                         "frontend/src/app.ts reads no `decoder` knob (no server decode path in the "
                                         "page).")]
    click_names = [n for n in selected if not n.startswith("next-")]
    next_modes = [n[len("next-"):] for n in selected if n.startswith("next-")]
    want_vit_b = any(n.startswith("vit_b") for n in click_names)

    started = dt.datetime.now(dt.timezone.utc)
    load_start = load_avg()
    info = machine_info()
    work = Path(tempfile.mkdtemp(prefix="bench-browser-"))
    env = {k: v for k, v in os.environ.items()
           if k not in ("DATABASE_URL", "CELERY_BROKER_URL", "ANNOTATOR_MODEL_CHECKPOINT", "DJANGO_SETTINGS_MODULE")}
    env.update({"DJANGO_SETTINGS_MODULE": "annotator.settings", "ANNOTATOR_VAR_DIR": str(work / "var"),
                "MEDIA_ROOT": str(work / "media"), "CELERY_QUEUE": f"bench-browser-{secrets.token_hex(4)}",
                "ANNOTATOR_PREFILL_DEFAULT": "0", "ANNOTATOR_MODEL_NAME": "default", "PYTHONUNBUFFERED": "1"})
    if args.database_url:
        env["DATABASE_URL"] = args.database_url
        _recreate_database(args.database_url)
    for key in set(os.environ) - set(env):
        del os.environ[key]
    os.environ.update(env)
    import django

    django.setup()
    print(f"setting up (work dir {work}) ...", flush=True)
    t0 = time.time()
    setup = seed(env=env, work=work, want_vit_b=want_vit_b)
    setup_s = time.time() - t0
    from django.db import connections

    connections.close_all()
    print(f"set up in {setup_s:.0f} s", flush=True)

    port = _free_port()
    server_env = {**env, "DJANGO_DEBUG": "0", "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
                  "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost", "DJANGO_SECURE_COOKIES": "0", "LOG_LEVEL": "WARNING"}
    server_log = work / "server.log"
    with open(server_log, "w") as out:
        server = subprocess.Popen([sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"],
                                  cwd=ROOT, env=server_env, stdout=out, stderr=subprocess.STDOUT)
    results: dict[str, dict] = {}
    next_results: dict[str, dict] = {}
    try:
        _wait_port(port, server, server_log)
        browser = Browser(f"http://127.0.0.1:{port}")
        try:
            from PIL import Image as PILImage

            gt = np.array(PILImage.open(GRABCUT / "boundary_GT" / (Path(PHOTOS_DEFAULT[0]).stem + ".bmp"))
                          .convert("L")) == 255  # GrabCut: 255 object, 0 background, 128 unknown band
            plan = click_plan(gt, args.clicks + args.warmup)
            for name in click_names:
                cfg = parse_config(name)
                print(f"{name}: {args.warmup} + {args.clicks} clicks ...", flush=True)
                try:
                    r = run_clicks(browser, setup["projects"][cfg["model"]], cfg, plan, args.warmup, args.extra_query)
                except Exception as exc:  # one broken configuration does not lose the others' numbers
                    notes.append(f"{name} failed: {str(exc)[:500]}")
                    print(f"  FAILED: {exc}", flush=True)
                    continue
                results[name] = r
                print(f"  click->mask p50 {percentile(r['click_ms'], 50):.1f} ms, p95 "
                      f"{percentile(r['click_ms'], 95):.1f} ms; {r['facts']}", flush=True)
            cy, cx = (int(v) for v in np.argwhere(gt).mean(axis=0))  # roughly the middle of the object
            for mode in next_modes:
                print(f"next image, {mode}: {args.transitions} transitions ...", flush=True)
                try:
                    next_results[mode] = run_next_image(browser, setup["projects"]["default"], mode,
                                                        args.transitions, cx, cy, extra=args.extra_query)
                except Exception as exc:
                    notes.append(f"next-{mode} failed: {str(exc)[:500]}")
                    print(f"  FAILED: {exc}", flush=True)
        finally:
            browser.close()
    finally:
        _stop(server)

    natives: dict[tuple, dict] = {}
    for name, r in results.items():
        cfg = parse_config(name)
        key = (cfg["model"], cfg["decoder"])
        if r["decoder"] is not None and key not in natives:
            print(f"native onnxruntime: {key} ...", flush=True)
            natives[key] = run_native(r)
        r["decoder"] = None  # the bytes are not needed any more

    load_end = load_avg()
    text = report(args, info, setup, setup_s, results, natives, next_results, notes, started, load_start, load_end)
    print(text)
    if not args.no_append:
        with (ROOT / "BENCHMARKS.md").open("a") as fh:
            fh.write("\n" + text)
        print("appended to BENCHMARKS.md")
    if args.keep:
        print(f"kept {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)


def report(args, info, setup, setup_s, results, natives, next_results, notes, started, load_start, load_end) -> str:
    cmd = shlex.join(["python", "bench/browser_decoder.py", *sys.argv[1:]])
    models = []
    for model, p in setup["projects"].items():
        es = p["embed_seconds"]
        models.append(f"{model} ({p['model_id'] or 'shipped default'}; {len(p['images'])} photos, worker embed "
                      f"median {statistics.median(es):.1f} s)" if es else model)
    first = setup["projects"]["default"]["images"][0]
    lines = [
        f"## Browser decoder: click → mask, first mask after N — {started:%Y-%m-%d %H:%M} UTC",
        "",
        f"`{cmd}` on {info['cpu']}, {info['cores']} cores, load average {load_start} at the start, {load_end} "
        f"at the end (1/5/15 min). {info['chromium']} headless (`{' '.join(CHROMIUM_ARGS)}`), onnxruntime-web "
        f"{info['ort_web']} (wasm, in the page's Web Worker), native onnxruntime {info['ort']} (Python "
        f"{info['python']}, default threads). Stack: Django `runserver --noreload` (DJANGO_DEBUG=0), "
        f"{'PostgreSQL' if args.database_url else 'SQLite'}, a Celery worker on kombu's filesystem broker; set up in "
        f"{setup_s:.0f} s. Models: {'; '.join(models)}."
        + (" ViT-B = a full-size SAM ViT-B with random weights, installed through `manage.py model_install vit_b`."
           if "vit_b" in setup["projects"] else "")
        + f" Clicks on {PHOTOS_DEFAULT[0]} "
        f"({first['width']}x{first['height']}): "
        f"{args.warmup} warm-up clicks, then the timed ones; positive inside the GrabCut object, 25% of refinement "
        f"clicks negative (right button) outside it, Escape after runs of 1-4 clicks; each click waits for its mask. "
        f"click→mask = the page's `click-to-mask` measure (pointerup → mask pixels on the canvas); session.run and "
        f"worker = inside the decoder worker; native = the same decoder file and prompts (chained the same way) in "
        f"onnxruntime in Python after the browser closed; server / browser = the `?decoder=server` p50 over this row's. "
        f"In the server rows, session.run is the server's and worker the whole round trip seen from the page.",
        "",
    ]
    if results:
        lines += [click_table(results, natives), ""]
    if next_results:
        lines += [
            f"First mask after N (next image), project of {len(setup['projects']['default']['images'])} photos, "
            f"shipped default model, page defaults (fp32, threads chosen by the page): the page dispatches the click "
            f"itself the moment it turns ready on the new image (`body[data-sam-ready]`), so the harness adds "
            f"nothing; N→first mask = N keydown event → that click's mask on the canvas. Each mode in a fresh browser "
            f"context (cold HTTP cache), {args.transitions} transitions, ~1.5 s on each image before N.",
            "",
            next_table(next_results),
            "",
            wire_line(next_results),
            "",
        ]
    errors = [f"{k}: {e}" for k, r in {**results, **next_results}.items() for e in r["errors"][:3]]
    for note in notes + ([f"Page errors: {'; '.join(errors)}"] if errors else []):
        lines += [note, ""]
    return "\n".join(lines).rstrip() + "\n"


if __name__ == "__main__":
    main()
