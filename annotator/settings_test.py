"""Test settings: the real PostgreSQL and Redis of the machine, files in a temp dir, a
queue of its own per test session. Values set here go into os.environ so that worker and
server processes started by the tests inherit them."""

import os
import tempfile
import uuid

os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/annotator")
os.environ.setdefault("CELERY_BROKER_URL", "redis://127.0.0.1:6379/15")
os.environ.setdefault("CELERY_QUEUE", f"annotator-test-{uuid.uuid4().hex[:8]}")
# Pre-fill is a minute of CPU per photo: tests that upload turn it on when they test it.
os.environ.setdefault("ANNOTATOR_PREFILL_DEFAULT", "0")
os.environ.setdefault("MEDIA_ROOT", tempfile.mkdtemp(prefix="annotator-test-media-"))
os.environ.setdefault("ANNOTATOR_VAR_DIR", tempfile.mkdtemp(prefix="annotator-test-var-"))

from .settings import *  # noqa: E402,F401,F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast logins in tests
