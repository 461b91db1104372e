#!/usr/bin/env bash
# Set up and run every test: engine, API on the real PostgreSQL, a real Celery worker on
# the real Redis, frontend unit tests, and the browser test in Chromium.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

# Services the tests talk to (started if down; see the env notes in README.md).
if ! pg_isready -q -h 127.0.0.1 -p 5432; then
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql)" main start
  for _ in $(seq 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
fi
if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
  for _ in $(seq 30); do redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && break; sleep 1; done
fi
if [ ! -x /usr/bin/chromium ]; then
  (apt-get update -qq && apt-get install -y -qq chromium) >/dev/null
fi

if [ -f frontend/package.json ]; then
  (cd frontend && npm test --silent)
fi
.venv/bin/python -m pytest "$@"
