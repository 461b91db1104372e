#!/usr/bin/env bash
# One command to try the tool: SQLite, kombu's filesystem broker, a real Celery worker,
# the shipped default model, a demo user and a project of real photos.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

unset DATABASE_URL CELERY_BROKER_URL
export DJANGO_SETTINGS_MODULE=annotator.settings
PORT=${PORT:-8000}
.venv/bin/python manage.py migrate --noinput -v0
.venv/bin/python manage.py seed_demo

# Two workers: one for embeddings (an annotator waits for them), one, niced, for pre-fill
# (SAM's automatic masks take a minute or more per photo on a CPU).
.venv/bin/python -m celery -A annotator worker -B --pool solo -Q annotator -n embed@%h --loglevel INFO \
  --without-gossip --without-mingle > var/worker.log 2>&1 &
worker=$!
nice -n 10 .venv/bin/python -m celery -A annotator worker --pool solo -Q annotator.prefill -n prefill@%h \
  --loglevel INFO --without-gossip --without-mingle > var/worker-prefill.log 2>&1 &
prefill_worker=$!
trap 'kill $worker $prefill_worker 2>/dev/null || true' EXIT INT TERM

echo
echo "  SAM annotator running at http://127.0.0.1:${PORT}/   login: demo / demo"
echo "  (worker logs: var/worker.log, var/worker-prefill.log; Ctrl+C stops all)"
echo
.venv/bin/python manage.py runserver "127.0.0.1:${PORT}" --noreload
