"""Workers that die (issue 8): a real Celery worker on the real Redis is SIGKILLed in the
middle of an embedding and the task runs again on a new worker process; no image stays
"pending" forever (the reconciler); a task run twice stores one embedding.
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import uuid
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
from django.conf import settings
from django.core.management import call_command
from django.db import IntegrityError, transaction
from django.utils import timezone

from annotator.core import services, tasks
from annotator.core.models import Embedding, Image
from tests.conftest import ROOT, _child_env, wait_for
from tests.factories import grabcut_photo

STATUS_TIMEOUT = 240


def _media_files() -> set[str]:
    root = Path(settings.MEDIA_ROOT)
    return {str(p) for p in root.rglob("*") if p.is_file()}


def _pending_image(user, monkeypatch, photo="124080.jpg") -> Image:
    """An uploaded image whose embedding task was not sent anywhere (the test sends it)."""
    project = services.project_create(name="P", user=user)
    with monkeypatch.context() as m:
        m.setattr(services, "_enqueue_embeddings", lambda ids: None)
        return services.images_upload(project=project, files=[grabcut_photo(photo)], user=user)[0]


class SlowWorker:
    """``celery worker`` (prefork, one child) of tests.annotator.slow_worker on its own queue,
    in its own process group so that the test can kill it whole."""

    def __init__(self, queue: str, markers: Path, log: Path, **env):
        self.queue, self.markers, self.log = queue, markers, log
        self.env = {**_child_env(), "ANNOTATOR_TEST_MARKERS": str(markers), "ANNOTATOR_TEST_EMBED_DELAY": "4",
                    **env}
        self.procs: list[subprocess.Popen] = []

    def start(self) -> subprocess.Popen:
        with open(self.log, "a") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "tests.annotator.slow_worker", "worker", "--pool", "prefork",
                 "--concurrency", "1", "-Q", self.queue, "-n", f"recovery-{uuid.uuid4().hex[:6]}@%h",
                 "--loglevel", "INFO", "--without-gossip", "--without-mingle", "--without-heartbeat"],
                cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )
        self.procs.append(proc)
        return proc

    def runs(self) -> list[tuple[int, int]]:
        """(pid, image id) of each embedding run begun, in order."""
        found = sorted(self.markers.glob("run-*"), key=lambda p: int(p.name.split("-")[2]))
        return [(int(p.name.split("-")[1]), int(p.read_text() or 0)) for p in found]

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()


@pytest.fixture
def slow_worker(tmp_path):
    made = []

    def make(**env) -> SlowWorker:
        markers = tmp_path / f"markers-{len(made)}"
        markers.mkdir()
        worker = SlowWorker(f"{settings.CELERY_TASK_DEFAULT_QUEUE}-recovery-{uuid.uuid4().hex[:6]}", markers,
                            tmp_path / f"worker-{len(made)}.log", **env)
        made.append(worker)
        return worker

    yield make
    for worker in made:
        worker.stop()


def _wait_ready(image_id: int, worker: SlowWorker):
    def ready():
        image = Image.objects.get(pk=image_id)
        assert image.embedding_status != "failed", image.embedding_error
        return image.embedding_status == "ready"

    try:
        wait_for(ready, timeout=STATUS_TIMEOUT, what=f"embedding of image {image_id}")
    except AssertionError:
        raise AssertionError(f"worker log:\n{worker.log.read_text()[-4000:]}")


@pytest.mark.django_db(transaction=True)
def test_pool_process_killed_mid_embedding_the_task_runs_again_in_a_new_one(user, monkeypatch, slow_worker):
    image = _pending_image(user, monkeypatch)
    worker = slow_worker()
    main = worker.start()
    tasks.embed_image.apply_async(args=[image.pk], queue=worker.queue)
    wait_for(worker.runs, timeout=120, what="the first run to begin")
    (victim, image_id), = worker.runs()
    assert image_id == image.pk and victim != main.pid  # the pool process running the task
    os.kill(victim, signal.SIGKILL)  # mid-embedding: it sleeps 4 s before computing

    _wait_ready(image.pk, worker)
    pids = [pid for pid, _ in worker.runs()]
    assert len(pids) >= 2 and pids[0] == victim and pids[-1] != victim  # ran again, in a new process
    assert Embedding.objects.filter(image=image).count() == 1
    assert Image.objects.get(pk=image.pk).embedding_unfinished_runs == 0
    log = worker.log.read_text()
    assert "WorkerLostError" in log or "signal 9" in log


@pytest.mark.django_db(transaction=True)
def test_whole_worker_killed_mid_embedding_a_new_worker_runs_the_task(user, monkeypatch, slow_worker):
    image = _pending_image(user, monkeypatch)
    # Redis keeps the unacknowledged task; a live worker puts it back after the visibility
    # timeout (an hour by default, 8 s here).
    worker = slow_worker(ANNOTATOR_BROKER_VISIBILITY_TIMEOUT="8")
    first = worker.start()
    tasks.embed_image.apply_async(args=[image.pk], queue=worker.queue)
    wait_for(worker.runs, timeout=120, what="the first run to begin")
    os.killpg(first.pid, signal.SIGKILL)  # the machine dies: main process and pool together
    first.wait(timeout=30)
    assert Image.objects.get(pk=image.pk).embedding_status == "pending"
    assert not Embedding.objects.filter(image=image).exists()

    worker.start()  # a new worker on the same queue
    _wait_ready(image.pk, worker)
    (dead, _), *later = worker.runs()
    assert later and all(pid != dead for pid, _ in later)
    assert Embedding.objects.filter(image=image).count() == 1


@pytest.mark.django_db(transaction=True)
def test_upload_while_the_broker_is_down_is_stored_and_the_reconciler_queues_it(api_client, user, monkeypatch):
    from kombu.exceptions import OperationalError as BrokerDown

    def broker_down(*args, **kwargs):
        raise BrokerDown("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    project = services.project_create(name="P", user=user)
    monkeypatch.setattr(tasks.embed_image, "delay", broker_down)
    name, data = grabcut_photo("124080.jpg")
    buf = io.BytesIO(data)
    buf.name = name
    res = api_client.post(f"/api/projects/{project.pk}/images/", {"files": [buf]}, format="multipart")
    assert res.status_code == 201, res.content  # stored; not a 500 because the queue was down
    image_id = res.json()[0]["id"]
    assert Image.objects.get(pk=image_id).embedding_status == "pending"

    queued = []
    monkeypatch.setattr(tasks.embed_image, "delay", queued.append)
    assert services.embeddings_reconcile(older_than=timedelta(minutes=30)) == []  # not stale yet
    Image.objects.filter(pk=image_id).update(embedding_queued_at=timezone.now() - timedelta(minutes=31))
    assert services.embeddings_reconcile(older_than=timedelta(minutes=30)) == [image_id]
    assert queued == [image_id]


@pytest.mark.django_db
def test_reconciler_queues_only_stale_pending_images_once_per_period(user, monkeypatch,
                                                                    django_capture_on_commit_callbacks):
    project = services.project_create(name="P", user=user)
    with monkeypatch.context() as m:
        m.setattr(services, "_enqueue_embeddings", lambda ids: None)
        images = services.images_upload(project=project, user=user, files=[
            grabcut_photo("124080.jpg"), grabcut_photo("llama.bmp"), grabcut_photo("153077.jpg"),
            grabcut_photo("65019.jpg")])  # four different photos: the same bytes twice would be one image
    stale, fresh, ready, legacy = (img.pk for img in images)
    long_ago = timezone.now() - timedelta(hours=2)
    Image.objects.filter(pk__in=[stale, ready]).update(embedding_queued_at=long_ago)
    Image.objects.filter(pk=ready).update(embedding_status="ready")
    Image.objects.filter(pk=legacy).update(embedding_queued_at=None)  # rows from before the field existed
    queued = []
    monkeypatch.setattr(services, "_enqueue_embeddings", queued.extend)

    with django_capture_on_commit_callbacks(execute=True):
        call_command("reconcile_embeddings", "--older-than-minutes", "30", stdout=open(os.devnull, "w"))
    assert sorted(queued) == sorted([stale, legacy])
    queued.clear()
    with django_capture_on_commit_callbacks(execute=True):
        assert services.embeddings_reconcile(older_than=timedelta(minutes=30)) == []  # just queued
    with django_capture_on_commit_callbacks(execute=True):
        assert tasks.reconcile_embeddings.apply().get() == 0  # the beat task, same rule
    assert queued == []


def test_the_reconciler_is_on_the_beat_schedule():
    from annotator.celery import app

    entry = settings.CELERY_BEAT_SCHEDULE["reconcile-embeddings"]
    app.loader.import_default_modules()
    assert entry["task"] in app.tasks
    assert entry["schedule"] <= settings.ANNOTATOR_EMBED_STALE_MINUTES * 60
    assert settings.CELERY_TASK_ACKS_LATE and settings.CELERY_TASK_REJECT_ON_WORKER_LOST
    assert tasks.embed_image.acks_late and tasks.embed_image.reject_on_worker_lost


@pytest.mark.django_db
def test_an_image_that_keeps_killing_its_worker_is_marked_failed_not_redelivered_forever(user, monkeypatch):
    image = _pending_image(user, monkeypatch)
    limit = settings.ANNOTATOR_EMBED_MAX_UNFINISHED_RUNS
    # `limit` earlier runs began and never finished: their worker died each time.
    Image.objects.filter(pk=image.pk).update(embedding_unfinished_runs=limit)
    computed = []
    monkeypatch.setattr(tasks, "embedding_compute", lambda **kw: computed.append(kw))
    tasks.embed_image.apply(args=[image.pk])
    image.refresh_from_db()
    assert computed == [] and image.embedding_status == "failed"
    assert f"the worker died {limit} times" in image.embedding_error


@pytest.mark.django_db
def test_a_run_that_finishes_clears_the_unfinished_count(user, monkeypatch):
    image = _pending_image(user, monkeypatch)
    Image.objects.filter(pk=image.pk).update(embedding_unfinished_runs=1)  # one worker died before
    tasks.embed_image.apply(args=[image.pk])
    image.refresh_from_db()
    assert image.embedding_status == "ready" and image.embedding_unfinished_runs == 0


@pytest.mark.django_db
def test_a_task_run_twice_stores_one_embedding_even_when_the_runs_race(user, monkeypatch):
    image = _pending_image(user, monkeypatch)
    first = services.embedding_compute(image=image)
    files_before = _media_files()
    # A second run that started before the first stored its row (it saw no embedding):
    real = services.Embedding

    class RacingEmbedding:
        objects = SimpleNamespace(filter=lambda **kw: SimpleNamespace(first=lambda: None), get=real.objects.get)

        def __new__(cls, **kwargs):
            return real(**kwargs)

    monkeypatch.setattr(services, "Embedding", RacingEmbedding)
    second = services.embedding_compute(image=image)
    assert second.pk == first.pk
    assert real.objects.filter(image=image).count() == 1
    assert _media_files() == files_before  # the loser's file was removed again
    # And the database itself refuses a second row for the same (image, model).
    with pytest.raises(IntegrityError), transaction.atomic():
        real.objects.create(image=image, model_id=first.model_id, sha256="x", file=first.file.name)
