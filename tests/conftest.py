"""Fixtures: real worker and server processes against the test database."""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from tests.factories import UserFactory

ROOT = Path(__file__).resolve().parents[1]


def pytest_sessionfinish(session, exitstatus):
    """Remove the temp media/var dirs that annotator.settings_test made for this session."""
    import shutil

    for key in ("MEDIA_ROOT", "ANNOTATOR_VAR_DIR"):
        path = os.environ.get(key, "")
        if Path(path).name.startswith(("annotator-test-media-", "annotator-test-var-")):
            shutil.rmtree(path, ignore_errors=True)


def _test_database_url() -> str:
    s = connection.settings_dict
    if "sqlite" in s["ENGINE"]:
        return f"sqlite:///{s['NAME']}"
    auth = s["USER"] + (f":{s['PASSWORD']}" if s["PASSWORD"] else "")
    return f"postgres://{auth}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update({"DATABASE_URL": _test_database_url(), "DJANGO_SETTINGS_MODULE": "annotator.settings_test",
                "MEDIA_ROOT": str(settings.MEDIA_ROOT), "PYTHONUNBUFFERED": "1",
                # Retrains started through the test server (tests/e2e/test_retrain.py plays
                # the worker's part itself) go to a queue the session's worker does not
                # consume, so a real fine-tune never races the test's own updates. The
                # worker path is tested in tests/annotator/test_retrain.py, whose jobs are
                # sent from the test process with the normal route.
                "CELERY_RETRAIN_QUEUE": f"{settings.CELERY_TASK_DEFAULT_QUEUE}.retrain-not-consumed"})
    return env


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture
def user(db):
    return UserFactory()


@pytest.fixture
def api_client(user):
    from rest_framework.test import APIClient

    client = APIClient(enforce_csrf_checks=True)
    client.force_login(user)
    # A CSRF cookie + header, as the browser sends them.
    client.get("/accounts/login/")
    client.credentials(HTTP_X_CSRFTOKEN=client.cookies["csrftoken"].value)
    return client


@pytest.fixture(scope="session")
def celery_worker_process(django_db_setup, django_db_blocker, tmp_path_factory):
    """A real ``celery worker`` process on the real broker, consuming this session's queue."""
    with django_db_blocker.unblock():
        env = _child_env()
    log = tmp_path_factory.mktemp("worker") / "worker.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "annotator", "worker", "--pool", "solo",
             "-Q", f"{settings.CELERY_TASK_DEFAULT_QUEUE},{settings.CELERY_PREFILL_QUEUE}",
             "--loglevel", "INFO", "--without-gossip",
             "--without-mingle", "--without-heartbeat"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
        )
    yield proc, log
    _stop(proc)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def app_server(django_db_setup, django_db_blocker, tmp_path_factory):
    """``manage.py runserver`` in its own process (static files and COOP/COEP headers as in
    the demo) against the test database. Yields its base URL."""
    with django_db_blocker.unblock():
        env = _child_env()
    port = _free_port()
    log = tmp_path_factory.mktemp("server") / "server.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
        )
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                break
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(f"runserver exited: {log.read_text()}")
            time.sleep(0.3)
    else:
        raise RuntimeError(f"runserver did not start: {log.read_text()}")
    yield f"http://127.0.0.1:{port}"
    _stop(proc)


def wait_for(predicate, timeout: float = 120.0, interval: float = 0.5, what: str = "condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
