"""A Celery app for the worker-death tests: the real app, with ``embed_image`` made slow
so a test can SIGKILL the process in the middle of it.

Each run of the embedding first writes ``<ANNOTATOR_TEST_MARKERS>/run-<pid>-<n>`` (the pid
of the process to kill), then sleeps ``ANNOTATOR_TEST_EMBED_DELAY`` seconds, then computes
the embedding as usual. Start it with ``celery -A tests.annotator.slow_worker worker``.
"""

import os
import time
from pathlib import Path

from celery.signals import worker_process_init

from annotator.celery import app  # noqa: F401  (the app celery -A looks for)


@worker_process_init.connect
def _make_embedding_slow(**_):
    from annotator.core import tasks

    real = tasks.embedding_compute
    markers = Path(os.environ["ANNOTATOR_TEST_MARKERS"])
    delay = float(os.environ.get("ANNOTATOR_TEST_EMBED_DELAY", "3"))

    def slow_embedding_compute(*, image):
        n = len(list(markers.glob("run-*")))
        (markers / f"run-{os.getpid()}-{n}").write_text(str(image.pk))
        time.sleep(delay)
        return real(image=image)

    tasks.embedding_compute = slow_embedding_compute
