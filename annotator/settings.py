"""Settings, all from environment variables, with defaults that make the demo work
(SQLite, kombu's filesystem broker, files under ./var)."""

import os
from datetime import timedelta
from pathlib import Path

import dj_database_url

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("ANNOTATOR_VAR_DIR", BASE_DIR / "var"))


def _bool(name: str, default: bool) -> bool:
    return os.environ.get(name, "1" if default else "0").lower() in ("1", "true", "yes", "on")


DEBUG = _bool("DJANGO_DEBUG", True)
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "dev-only-insecure-key-change-me" if DEBUG else "")
if not SECRET_KEY:
    raise RuntimeError("DJANGO_SECRET_KEY must be set when DJANGO_DEBUG=0")
ALLOWED_HOSTS = os.environ.get("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1],testserver").split(",")
CSRF_TRUSTED_ORIGINS = [o for o in os.environ.get("DJANGO_CSRF_TRUSTED_ORIGINS", "").split(",") if o]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "axes",
    "annotator.core",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "annotator.core.middleware.CrossOriginIsolationMiddleware",
    "annotator.core.middleware.RequestSizeLimitMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "axes.middleware.AxesMiddleware",  # last: turns a locked-out login into its 429 page
]

ROOT_URLCONF = "annotator.urls"
WSGI_APPLICATION = "annotator.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

# PostgreSQL via psycopg 3 when DATABASE_URL is set (production, tests, CI); SQLite for the demo.
DATABASES = {
    "default": dj_database_url.config(
        default=f"sqlite:///{VAR_DIR / 'db.sqlite3'}", conn_max_age=int(os.environ.get("DB_CONN_MAX_AGE", "0"))
    )
}
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # Web server and worker write concurrently in the demo. IMMEDIATE: a transaction takes
    # the write lock when it begins, so one that reads then writes waits (timeout) for the
    # worker's commit instead of failing at once with "database is locked" (deadlock case).
    DATABASES["default"].setdefault("OPTIONS", {}).update({"timeout": 20, "transaction_mode": "IMMEDIATE"})
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]
# Login rate limiting (django-axes, failures kept in the database): after
# AXES_FAILURE_LIMIT wrong passwords for one username from one address, that pair is
# locked out for AXES_COOLOFF_TIME (429). Per pair, so nobody can lock a colleague out from
# elsewhere; behind a reverse proxy set AXES_IPWARE_PROXY_COUNT so the client's address is used.
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]
AXES_FAILURE_LIMIT = int(os.environ.get("ANNOTATOR_LOGIN_FAILURE_LIMIT", "5"))
AXES_COOLOFF_TIME = timedelta(minutes=int(os.environ.get("ANNOTATOR_LOGIN_COOLOFF_MINUTES", "15")))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_VERBOSE = False
AXES_IPWARE_PROXY_COUNT = int(os.environ["AXES_IPWARE_PROXY_COUNT"]) if os.environ.get("AXES_IPWARE_PROXY_COUNT") else None
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/accounts/login/"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
# frontend/ builds into ./static (Vite); collectstatic gathers it with the admin's files.
STATICFILES_DIRS = [BASE_DIR / "static"] if (BASE_DIR / "static").is_dir() else []
STATIC_ROOT = VAR_DIR / "staticfiles"
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG


def _static_headers(headers, path, url):
    # The app pages are cross-origin isolated (multi-threaded wasm); their scripts, the
    # decoder worker and the .wasm files must be loadable under COEP.
    headers["Cross-Origin-Opener-Policy"] = "same-origin"
    headers["Cross-Origin-Embedder-Policy"] = "require-corp"
    headers["Cross-Origin-Resource-Policy"] = "same-origin"


WHITENOISE_ADD_HEADERS_FUNCTION = _static_headers

MEDIA_ROOT = Path(os.environ.get("MEDIA_ROOT", VAR_DIR / "media"))
MEDIA_URL = "/media/"  # never served directly: files go through permission-checked views

# Uploads: a photo up to 50 MB each, requests up to 200 MB (413 above), a zip's images up
# to 200 MB together; pixels per image capped (policy: refused above it with a message,
# not downscaled: a mask of the original size must fit the browser's memory).
FILE_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024
DATA_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024
ANNOTATOR_MAX_REQUEST_BYTES = int(os.environ.get("ANNOTATOR_MAX_REQUEST_BYTES", 200 * 1024 * 1024))
ANNOTATOR_MAX_UPLOAD_BYTES = int(os.environ.get("ANNOTATOR_MAX_UPLOAD_BYTES", 50 * 1024 * 1024))
ANNOTATOR_MAX_ZIP_EXTRACTED_BYTES = int(os.environ.get("ANNOTATOR_MAX_ZIP_EXTRACTED_BYTES", 200 * 1024 * 1024))
ANNOTATOR_MAX_IMAGE_PIXELS = int(os.environ.get("ANNOTATOR_MAX_IMAGE_PIXELS", 100_000_000))
ANNOTATOR_MAX_FILES_PER_UPLOAD = 200
DATA_UPLOAD_MAX_NUMBER_FILES = ANNOTATOR_MAX_FILES_PER_UPLOAD

# The model every new embedding is computed with: a registry name of engine.build_model
# and, for official checkpoints, the file path.
ANNOTATOR_MODEL_NAME = os.environ.get("ANNOTATOR_MODEL_NAME", "default")
ANNOTATOR_MODEL_CHECKPOINT = os.environ.get("ANNOTATOR_MODEL_CHECKPOINT") or None
ANNOTATOR_ALLOW_UNTRAINED = _bool("ANNOTATOR_ALLOW_UNTRAINED", True)
# How many model versions one process keeps loaded (projects may use different versions).
ANNOTATOR_MODEL_CACHE_SIZE = int(os.environ.get("ANNOTATOR_MODEL_CACHE_SIZE", 2))
# Whether new projects pre-fill their images with automatic-mask proposals (a project
# setting afterwards). On a CPU, SAM's 32x32 grid costs a minute or more per photo. Unset:
# on with an official checkpoint as the default model, off with the shipped default model,
# whose one-point masks almost never pass SAM's filters (0.8% reach IoU 0.88; measured by
# bench/iou_calibration.py, BENCHMARKS.md), so pre-filling would spend minutes of worker CPU
# per photo to propose nothing.
ANNOTATOR_PREFILL_DEFAULT = _bool("ANNOTATOR_PREFILL_DEFAULT", ANNOTATOR_MODEL_NAME != "default")
# How long "next image" keeps an image for one annotator without a heartbeat (work queue leases).
ANNOTATOR_LEASE_SECONDS = int(os.environ.get("ANNOTATOR_LEASE_SECONDS", 600))
# Retraining on accepted masks (annotator/core/retrain.py): fine-tune steps when the manager
# does not say (a CPU step is a few seconds), the most a request may ask for, and the fewest
# accepted masks on training images / on the fixed held-out slice for a job to start.
ANNOTATOR_RETRAIN_STEPS = int(os.environ.get("ANNOTATOR_RETRAIN_STEPS", "200"))
# Measured on the shipped default-a6c831dfad32 (bench/retrain_probe.py, 100 steps, batch 4):
# 36 unseen COCO_MVal photos -> 4 held out by content hash, NoC@85 12.25 -> 12.0 at 5e-5 and
# 12.25 -> 12.5 at 1.5e-4; with the last 8 by name held out instead, 18.25 -> 17.4 at 5e-5.
# 5e-4 made a 24-photo project's held-out NoC@85 2.0 -> 7.0.
ANNOTATOR_RETRAIN_LR = float(os.environ.get("ANNOTATOR_RETRAIN_LR", "5e-5"))
ANNOTATOR_RETRAIN_MAX_STEPS = int(os.environ.get("ANNOTATOR_RETRAIN_MAX_STEPS", "5000"))
ANNOTATOR_RETRAIN_MIN_TRAIN_MASKS = int(os.environ.get("ANNOTATOR_RETRAIN_MIN_TRAIN_MASKS", "10"))
ANNOTATOR_RETRAIN_MIN_HELDOUT_MASKS = int(os.environ.get("ANNOTATOR_RETRAIN_MIN_HELDOUT_MASKS", "3"))
# Real images for the demo and tests (never copied into the repository).
SHARED_DATA_DIR = Path(os.environ.get("ANNOTATOR_SHARED_DATA", BASE_DIR.parent / "shared" / "data"))

# Celery: Redis when CELERY_BROKER_URL is set, else kombu's filesystem transport (demo).
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "filesystem://")
if CELERY_BROKER_URL.startswith("filesystem://"):
    _broker_dir = VAR_DIR / "broker"
    for _sub in ("queue", "processed", "control"):
        (_broker_dir / _sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
    }
else:
    # A task whose worker died without acknowledging it goes back to the queue after this
    # long (Redis has no connection-bound acks); checked every few seconds by live workers.
    _visibility = int(os.environ.get("ANNOTATOR_BROKER_VISIBILITY_TIMEOUT", "3600"))
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": _visibility,
                                       "unacked_restore_interval": max(1, min(10, _visibility // 2)),
                                       "unacked_restore_throttle": 1}
CELERY_TASK_DEFAULT_QUEUE = os.environ.get("CELERY_QUEUE", "annotator")
# Pre-fill (automatic masks) has a queue of its own: embeddings, which an annotator waits
# for, never queue behind a backlog of pre-fill work. Workers consume both
# (`-Q annotator,annotator.prefill`), or dedicated workers take one each.
CELERY_PREFILL_QUEUE = os.environ.get("CELERY_PREFILL_QUEUE", f"{CELERY_TASK_DEFAULT_QUEUE}.prefill")
# Retraining (minutes of CPU, or a GPU) goes to the pre-fill queue unless a dedicated one is
# named (e.g. a GPU worker with `-Q annotator.retrain`): never behind it, embeddings wait.
CELERY_RETRAIN_QUEUE = os.environ.get("CELERY_RETRAIN_QUEUE", CELERY_PREFILL_QUEUE)
CELERY_TASK_ROUTES = {"annotator.core.tasks.generate_proposals": {"queue": CELERY_PREFILL_QUEUE},
                      "annotator.core.tasks.retrain_model": {"queue": CELERY_RETRAIN_QUEUE}}
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_ALWAYS_EAGER = _bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# No embedding stays "pending" forever: beat (`celery -A annotator beat`, or a worker with
# -B) queues again those pending for longer than ANNOTATOR_EMBED_STALE_MINUTES; an image
# whose runs killed their worker this many times is marked failed instead.
ANNOTATOR_EMBED_STALE_MINUTES = int(os.environ.get("ANNOTATOR_EMBED_STALE_MINUTES", "30"))
ANNOTATOR_EMBED_MAX_UNFINISHED_RUNS = int(os.environ.get("ANNOTATOR_EMBED_MAX_UNFINISHED_RUNS", "3"))
# Export files are deleted this long after they were written (the job stays, marked
# expired; its download answers 410): beat runs the cleanup every ANNOTATOR_EXPORT_CLEANUP_EVERY_SECONDS.
ANNOTATOR_EXPORT_RETENTION_HOURS = float(os.environ.get("ANNOTATOR_EXPORT_RETENTION_HOURS", str(7 * 24)))
CELERY_BEAT_SCHEDULE = {
    "reconcile-embeddings": {"task": "annotator.core.tasks.reconcile_embeddings",
                             "schedule": float(os.environ.get("ANNOTATOR_RECONCILE_EVERY_SECONDS", "300"))},
    "expire-exports": {"task": "annotator.core.tasks.expire_exports",
                       "schedule": float(os.environ.get("ANNOTATOR_EXPORT_CLEANUP_EVERY_SECONDS", "3600"))},
}
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["rest_framework.authentication.SessionAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "annotator.core.exceptions.exception_handler",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer", "rest_framework.renderers.BrowsableAPIRenderer"],
}
SPECTACULAR_SETTINGS = {
    "TITLE": "SAM annotator API",
    "DESCRIPTION": "Projects, images, embeddings, decoders, annotations and exports.",
    "VERSION": "0.1.0",
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],  # the schema is for members
}

SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_HTTPONLY = False  # the frontend reads it for the X-CSRFToken header
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# Production (DJANGO_DEBUG=0) is served over HTTPS: cookies only over TLS, HSTS.
# DJANGO_SECURE_COOKIES=0 is for a production-like run on plain-HTTP loopback (benchmarks).
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = _bool("DJANGO_SECURE_COOKIES", not DEBUG)
SECURE_HSTS_SECONDS = 0 if DEBUG else int(os.environ.get("DJANGO_HSTS_SECONDS", str(365 * 24 * 3600)))
SECURE_HSTS_INCLUDE_SUBDOMAINS = _bool("DJANGO_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = _bool("DJANGO_HSTS_PRELOAD", False)
# Redirect http -> https in Django only when no proxy in front does it already.
SECURE_SSL_REDIRECT = _bool("DJANGO_SECURE_SSL_REDIRECT", False)
if _bool("DJANGO_BEHIND_TLS_PROXY", False):  # the proxy sets X-Forwarded-Proto
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"refusals_without_traceback": {"()": "annotator.core.logfilters.RefusalsWithoutTraceback"}},
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {
        "axes": {"level": "WARNING"},  # lockouts and repeated failures, not every login
        # A 403 is logged on one line, without the stack (the record is shared by every handler).
        "django.request": {"filters": ["refusals_without_traceback"]},
    },
}
