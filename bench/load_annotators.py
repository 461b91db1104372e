"""Load: ANNOTATORS simulated annotators on loopback for SECONDS against the real stack
(PostgreSQL, Redis, a Celery worker, the Django server), then a check that every save the
server acknowledged is in the database (issue 8).

Each annotator logs in through the login form, then loops as the annotate page does:
``POST queue/next`` (lease the next image), ``GET embedding`` (the 2 MiB fp16 body, read
whole: a browser with a cold cache), ``GET annotations``, 1-3 ``POST annotations`` (a mask
as RLE with its click), sometimes a ``PATCH`` (edit with its version), ``POST done``.
THINK_MS is the pause before each save (0: as fast as the server answers).

Setup, in a PostgreSQL database of its own (``annotator_load``, dropped and made anew): 50
users, one project (pre-fill off: the stage-2 proposals worker is not what is measured), a
few real photos uploaded and embedded by a real Celery worker over Redis, then cloned (rows
pointing at the same files) to IMAGES images so that the queue never runs dry.

The server is ``manage.py runserver --noreload`` (threaded; no gunicorn/uvicorn is in
requirements.txt) with DJANGO_DEBUG=0, one PostgreSQL connection per request
(CONN_MAX_AGE=0). Clients: PROCESSES processes of threads with keep-alive connections.

    .venv/bin/python bench/load_annotators.py                           # 50 annotators, 60 s
    .venv/bin/python bench/load_annotators.py --seconds 10 --annotators 5 --no-append
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import multiprocessing as mp
import os
import platform
import random
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from http.cookies import SimpleCookie
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DEFAULT_DB = "postgres://postgres@127.0.0.1:5432/annotator_load"
DEFAULT_BROKER = "redis://127.0.0.1:6379/14"
PASSWORD = "load-test-pw"
PHOTOS = ["124080.jpg", "153077.jpg", "189080.jpg", "21077.jpg", "24077.jpg", "llama.bmp"]
EMBEDDING_BYTES = 2 * 256 * 64 * 64
KINDS = ["login", "next", "embedding", "annotations", "save", "edit", "done"]


# ---------------------------------------------------------------- setup (parent process)

def _recreate_database(url: str) -> None:
    import psycopg

    name = url.rsplit("/", 1)[1]
    with psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


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


def seed(*, annotators: int, images: int, worker_env: dict, logs: Path) -> dict:
    """Users, project, photos embedded by a real worker, clones. Returns what clients need."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.hashers import make_password
    from django.core.management import call_command

    from annotator.core import services
    from annotator.core.models import Embedding, Image, Membership, Project
    from tests.factories import GRABCUT

    call_command("migrate", verbosity=0)
    User = get_user_model()
    hashed = make_password(PASSWORD)  # one hash for all: seeding stays quick
    owner = User.objects.create(username="load-owner", password=hashed, is_staff=True)
    users = User.objects.bulk_create([User(username=f"annotator{i:02d}", password=hashed) for i in range(annotators)])
    project = services.project_create(name="load: 50 annotators", user=owner, categories=["object", "person", "animal"])
    Project.objects.filter(pk=project.pk).update(prefill_enabled=False)
    Membership.objects.bulk_create([Membership(project=project, user=u, role=Membership.Role.ANNOTATOR) for u in users])

    worker_log = logs / "worker.log"
    with open(worker_log, "w") as out:
        worker = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "annotator", "worker", "--pool", "solo", "-Q",
             worker_env["CELERY_QUEUE"], "--loglevel", "INFO", "--without-gossip", "--without-mingle"],
            cwd=ROOT, env=worker_env, stdout=out, stderr=subprocess.STDOUT)
    try:
        files = [(name, (GRABCUT / "data_GT" / name).read_bytes()) for name in PHOTOS]
        originals = services.images_upload(project=project, files=files, user=owner)  # queued on commit, to Redis
        deadline = time.time() + 600
        while Image.objects.filter(project=project, embedding_status="pending").exists():
            if time.time() > deadline or worker.poll() is not None:
                raise RuntimeError(f"photos not embedded: {worker_log.read_text()[-3000:]}")
            time.sleep(1)
        failed = list(Image.objects.filter(project=project, embedding_status="failed").values_list("embedding_error"))
        if failed:
            raise RuntimeError(f"embedding failed: {failed}")
    finally:
        worker.terminate()
        worker.wait(timeout=60)

    originals = list(Image.objects.filter(project=project).prefetch_related("embeddings").order_by("id"))
    clones = []
    for i in range(images - len(originals)):
        src = originals[i % len(originals)]
        clones.append(Image(project=project, file=src.file.name, display_file=src.display_file.name,
                            file_name=f"{i:05d}-{src.file_name}", width=src.width, height=src.height,
                            checksum=src.checksum, embedding_status="ready"))
    clones = Image.objects.bulk_create(clones, batch_size=1000)
    Embedding.objects.bulk_create([
        Embedding(image=c, model_id=e.model_id, file=e.file.name, dtype=e.dtype, shape=e.shape, sha256=e.sha256,
                  compute_seconds=e.compute_seconds)
        for c, src in zip(clones, [originals[i % len(originals)] for i in range(len(clones))])
        for e in src.embeddings.all()], batch_size=1000)
    sizes = sorted({(img.height, img.width) for img in originals})
    return {"project": project.pk, "users": [u.username for u in users], "sizes": sizes,
            "categories": list(project.categories.values_list("pk", flat=True)),
            "images": Image.objects.filter(project=project).count(),
            "embed_seconds": [e.compute_seconds for img in originals for e in img.embeddings.all()]}


def _masks_for(sizes: list[tuple[int, int]], per_size: int = 12) -> dict:
    """A few random ellipse masks per image size, as compressed RLE with a click inside."""
    import numpy as np

    from engine.rle import mask_to_rle

    rng = np.random.default_rng(8)
    out = {}
    for h, w in sizes:
        yy, xx = np.mgrid[0:h, 0:w]
        masks = []
        for _ in range(per_size):
            cx, cy = rng.uniform(0.2, 0.8) * w, rng.uniform(0.2, 0.8) * h
            rx, ry = rng.uniform(0.05, 0.3) * w, rng.uniform(0.05, 0.3) * h
            mask = (((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1).astype(np.uint8)
            masks.append({"rle": mask_to_rle(mask), "click": [round(cx, 1), round(cy, 1)]})
        out[f"{h}x{w}"] = masks
    return out


# ---------------------------------------------------------------- clients (child processes)

class Annotator:
    """One simulated annotator: a keep-alive connection, session cookies, measurements."""

    def __init__(self, base: str, username: str, spec: dict, out: dict, lock: threading.Lock):
        u = urllib.parse.urlsplit(base)
        self.host, self.port = u.hostname, u.port
        self.username, self.spec, self.out, self.lock = username, spec, out, lock
        self.cookies: dict[str, str] = {}
        self.conn: http.client.HTTPConnection | None = None
        self.rng = random.Random(username)

    def request(self, kind: str, method: str, path: str, body=None, *, form=False, ok=(200,)):
        headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items())}
        if body is not None:
            if form:
                data = urllib.parse.urlencode(body).encode()
                headers["Content-Type"] = "application/x-www-form-urlencoded"
            else:
                data = json.dumps(body).encode()
                headers["Content-Type"] = "application/json"
        else:
            data = b"" if method != "GET" else None
        if method != "GET" and "csrftoken" in self.cookies:
            headers["X-CSRFToken"] = self.cookies["csrftoken"]
        started = time.perf_counter()
        try:
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
            self.conn.request(method, path, body=data, headers=headers)
            resp = self.conn.getresponse()
            payload = resp.read()
        except (OSError, http.client.HTTPException) as exc:
            if self.conn is not None:
                self.conn.close()
            self.conn = None
            self._record(kind, time.perf_counter() - started, f"{type(exc).__name__}: {exc}")
            return None, None
        elapsed = time.perf_counter() - started
        for header in resp.msg.get_all("Set-Cookie") or []:
            for name, morsel in SimpleCookie(header).items():
                self.cookies[name] = morsel.value
        if resp.getheader("Connection", "").lower() == "close":
            self.conn.close()
            self.conn = None
        error = None if resp.status in ok else f"HTTP {resp.status}: {payload[:200]!r}"
        self._record(kind, elapsed, error)
        return resp.status, payload

    def _record(self, kind: str, seconds: float, error: str | None) -> None:
        with self.lock:
            if self.out["measuring"]:
                self.out["latency"][kind].append(seconds)
                if error:
                    self.out["errors"].append([kind, error])
            elif error:
                self.out["errors_outside_window"].append([kind, error])

    def login(self) -> bool:
        self.request("login", "GET", "/accounts/login/")
        status, _ = self.request("login", "POST", "/accounts/login/",
                                 {"username": self.username, "password": PASSWORD,
                                  "csrfmiddlewaretoken": self.cookies.get("csrftoken", "")}, form=True, ok=(302,))
        return status == 302 and "sessionid" in self.cookies

    def run(self, end: float) -> None:
        pid, spec = self.spec["project"], self.spec
        while time.time() < end:
            status, payload = self.request("next", "POST", f"/api/projects/{pid}/queue/next", ok=(200, 204))
            if status == 204:
                with self.lock:
                    self.out["queue_empty"] += 1
                return
            if status != 200:
                time.sleep(0.2)
                continue
            image = json.loads(payload)
            status, body = self.request("embedding", "GET", image["embedding_url"])
            if status == 200 and len(body) != EMBEDDING_BYTES:
                self._record("embedding", 0.0, f"embedding of {len(body)} bytes")
            self.request("annotations", "GET", f"/api/images/{image['id']}/annotations/")
            saved = []
            for _ in range(self.rng.randint(1, 3)):
                if time.time() >= end:
                    break
                if spec["think_ms"]:
                    time.sleep(self.rng.uniform(0.5, 1.5) * spec["think_ms"] / 1000)
                mask = self.rng.choice(spec["masks"][f"{image['height']}x{image['width']}"])
                body = {"category": self.rng.choice(spec["categories"]), "segmentation": mask["rle"],
                        "prompts": {"point_coords": [mask["click"]], "point_labels": [1], "box": None},
                        "predicted_iou": round(self.rng.uniform(0.6, 1.0), 3), "candidate_index": 1,
                        "model_id": "", "active_ms": self.rng.randint(2000, 30000)}
                status, payload = self.request("save", "POST", f"/api/images/{image['id']}/annotations/", body,
                                               ok=(201,))
                if status == 201:
                    ack = json.loads(payload)
                    saved.append(ack)
                    with self.lock:
                        self.out["acks"].append([ack["id"], image["id"], self.username, mask["rle"]["counts"],
                                                 body["category"]])
            if saved and self.rng.random() < 0.3 and time.time() < end:
                ack = saved[0]
                new_category = self.rng.choice(spec["categories"])
                status, payload = self.request("edit", "PATCH", f"/api/annotations/{ack['id']}/",
                                               {"version": ack["version"], "category": new_category})
                if status == 200:
                    with self.lock:
                        self.out["edits"].append([ack["id"], json.loads(payload)["version"], new_category])
            if time.time() < end:
                status, _ = self.request("done", "POST", f"/api/images/{image['id']}/done")
                if status == 200:
                    with self.lock:
                        self.out["images_done"] += 1


def client_process(spec: dict, usernames: list[str], barrier, out_path: str) -> None:
    out = {"latency": {k: [] for k in KINDS}, "errors": [], "errors_outside_window": [], "acks": [], "edits": [],
           "images_done": 0, "queue_empty": 0, "measuring": False, "login_failed": 0}
    lock = threading.Lock()
    people = [Annotator(spec["base"], u, spec, out, lock) for u in usernames]

    def login(a: Annotator) -> None:
        if not a.login():
            with lock:
                out["login_failed"] += 1

    logins = [threading.Thread(target=login, args=(a,)) for a in people]
    for t in logins:
        t.start()
    for t in logins:
        t.join()
    barrier.wait()  # every process logged in: the clock starts together
    start = time.time()
    out["measuring"] = True
    threads = [threading.Thread(target=a.run, args=(start + spec["seconds"],)) for a in people]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out["measuring"] = False
    out["wall"] = time.time() - start
    Path(out_path).write_text(json.dumps(out))


# ---------------------------------------------------------------- checks and report

def verify(acks: list, edits: list, project_id: int) -> dict:
    """Every acknowledged save and edit as the client saw it, read back from the database."""
    from annotator.core.models import Annotation

    rows = {a.pk: a for a in Annotation.objects.filter(image__project_id=project_id).select_related("author")}
    lost, wrong = [], []
    for ann_id, image_id, username, counts, category in acks:
        row = rows.get(ann_id)
        if row is None:
            lost.append(ann_id)
        elif (row.image_id, row.author.username, row.rle["counts"]) != (image_id, username, counts):
            wrong.append(ann_id)
    edited = {}
    for ann_id, version, category in edits:
        edited[ann_id] = max(edited.get(ann_id, (0, None)), (version, category))
    lost_edits = [i for i, (version, category) in edited.items()
                  if i not in rows or rows[i].version < version or rows[i].category_id != category]
    acked = {a[0] for a in acks}
    return {"acknowledged": len(acks), "lost": lost, "wrong": wrong, "edits": len(edits), "lost_edits": lost_edits,
            "stored_not_acknowledged": len(set(rows) - acked)}


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q / 100 * (len(values) - 1))))]


def report(args, setup: dict, merged: dict, checks: dict, wall: float) -> str:
    import django

    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    errors_by_kind: dict[str, int] = {}
    for kind, _ in merged["errors"]:
        errors_by_kind[kind] = errors_by_kind.get(kind, 0) + 1
    lines = [
        f"## Load: {args.annotators} annotators for {args.seconds} s, think {args.think_ms} ms — {stamp}",
        "",
        f"`python bench/load_annotators.py --annotators {args.annotators} --seconds {args.seconds} "
        f"--think-ms {args.think_ms}` on {platform.machine()}, {os.cpu_count()} CPUs shared by server, PostgreSQL, "
        f"Redis and the clients (and other sessions' work: load average {os.getloadavg()[0]:.1f} at the end). "
        f"Django {django.get_version()} `runserver --noreload` (threaded; no gunicorn/uvicorn in requirements.txt), "
        f"DJANGO_DEBUG=0, one PostgreSQL connection per request; {args.processes} client processes of threads with "
        f"keep-alive connections. Loop per annotator: queue/next, embedding (2 MiB, read whole, cold cache), "
        f"annotations, 1-3 saves (RLE + click), an edit 30% of the time, done. {setup['images']} images "
        f"({len(PHOTOS)} grabcut photos embedded by a real Celery worker over Redis, "
        f"{statistics.median(setup['embed_seconds']):.2f} s median each, then cloned).",
        "",
        "| request | count | p50 ms | p99 ms | max ms | errors |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    total = 0
    for kind in KINDS:
        values = merged["latency"][kind]
        total += len(values)
        if kind == "login" and not values:
            continue
        lines.append(f"| {kind} | {len(values)} | {_pct(values, 50) * 1000:.0f} | {_pct(values, 99) * 1000:.0f} | "
                     f"{(max(values) if values else float('nan')) * 1000:.0f} | {errors_by_kind.get(kind, 0)} |")
    lines += [
        "",
        f"Requests: {total} in {wall:.1f} s ({total / wall:.0f}/s), embeddings served "
        f"{len(merged['latency']['embedding']) * EMBEDDING_BYTES / wall / 2**20:.0f} MiB/s; images done "
        f"{merged['images_done']}, queue ran dry for {merged['queue_empty']} annotators; logins failed "
        f"{merged['login_failed']}; errors {len(merged['errors'])} "
        f"(outside the window: {len(merged['errors_outside_window'])}).",
        f"Saves acknowledged (201): {checks['acknowledged']}, all read back from PostgreSQL with the same image, "
        f"author and RLE: lost {len(checks['lost'])}, different {len(checks['wrong'])}; edits acknowledged "
        f"{checks['edits']}, lost {len(checks['lost_edits'])}; stored but not acknowledged "
        f"{checks['stored_not_acknowledged']}.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--annotators", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--think-ms", type=int, default=0, help="mean pause before each save")
    parser.add_argument("--images", type=int, default=4000, help="images in the project (clones of a few photos)")
    parser.add_argument("--processes", type=int, default=5, help="client processes (threads share them)")
    parser.add_argument("--database-url", default=DEFAULT_DB)
    parser.add_argument("--broker-url", default=DEFAULT_BROKER)
    parser.add_argument("--no-append", action="store_true", help="do not append to BENCHMARKS.md")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="load-annotators-"))
    env = {**os.environ, "DATABASE_URL": args.database_url, "CELERY_BROKER_URL": args.broker_url,
           "CELERY_QUEUE": f"annotator-load-{secrets.token_hex(4)}", "MEDIA_ROOT": str(work / "media"),
           "ANNOTATOR_VAR_DIR": str(work / "var"), "DJANGO_SETTINGS_MODULE": "annotator.settings",
           "PYTHONUNBUFFERED": "1"}
    os.environ.update(env)
    _recreate_database(args.database_url)
    import django

    django.setup()
    print(f"seeding {args.images} images, {args.annotators} users (work dir {work}) ...", flush=True)
    setup = seed(annotators=args.annotators, images=args.images, worker_env=env, logs=work)
    from django.db import connections

    connections.close_all()

    port = _free_port()
    server_env = {**env, "DJANGO_DEBUG": "0", "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
                  "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost", "DJANGO_SECURE_COOKIES": "0", "LOG_LEVEL": "WARNING"}
    server_log = work / "server.log"
    with open(server_log, "w") as out:
        server = subprocess.Popen([sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"],
                                  cwd=ROOT, env=server_env, stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_port(port, server, server_log)
        spec = {"base": f"http://127.0.0.1:{port}", "project": setup["project"], "categories": setup["categories"],
                "masks": _masks_for(setup["sizes"]), "seconds": args.seconds, "think_ms": args.think_ms}
        ctx = mp.get_context("spawn")
        barrier = ctx.Barrier(args.processes + 1)
        groups = [setup["users"][i::args.processes] for i in range(args.processes)]
        outs = [str(work / f"client-{i}.json") for i in range(args.processes)]
        procs = [ctx.Process(target=client_process, args=(spec, g, barrier, o)) for g, o in zip(groups, outs)]
        for p in procs:
            p.start()
        print(f"{args.annotators} annotators logging in ...", flush=True)
        barrier.wait(timeout=600)
        started = time.time()
        print(f"running for {args.seconds:g} s ...", flush=True)
        for p in procs:
            p.join(timeout=args.seconds + 300)
        wall = time.time() - started
    finally:
        server.terminate()
        server.wait(timeout=30)

    merged = {"latency": {k: [] for k in KINDS}, "errors": [], "errors_outside_window": [], "acks": [], "edits": [],
              "images_done": 0, "queue_empty": 0, "login_failed": 0}
    walls = []
    for path in outs:
        part = json.loads(Path(path).read_text())
        for k in KINDS:
            merged["latency"][k] += part["latency"][k]
        for key in ("errors", "errors_outside_window", "acks", "edits"):
            merged[key] += part[key]
        for key in ("images_done", "queue_empty", "login_failed"):
            merged[key] += part[key]
        walls.append(part["wall"])
    wall = max(walls)  # from the common start to the last answer (requests begun before the end finish)
    checks = verify(merged["acks"], merged["edits"], setup["project"])
    text = report(args, setup, merged, checks, wall)
    print(text)
    if merged["errors"]:
        print("first errors:", merged["errors"][:10])
    if not args.no_append:
        with (ROOT / "BENCHMARKS.md").open("a") as fh:
            fh.write("\n" + text)
        print("appended to BENCHMARKS.md")
    bad = merged["errors"] or checks["lost"] or checks["wrong"] or checks["lost_edits"] or merged["login_failed"]
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
