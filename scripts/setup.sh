#!/usr/bin/env bash
# Install everything the tool needs into ./.venv and build the frontend into ./static.
# Idempotent: re-running only installs what changed.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.requirements.sha
want=$(sha256sum requirements.txt | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -r requirements.txt
  echo "$want" > "$stamp"
fi

if [ -f frontend/package.json ]; then
  (
    cd frontend
    lock=$(sha256sum package-lock.json | cut -d' ' -f1)
    if [ ! -d node_modules ] || [ "$(cat node_modules/.lock.sha 2>/dev/null)" != "$lock" ]; then
      npm ci --no-audit --no-fund --loglevel=error
      echo "$lock" > node_modules/.lock.sha
    fi
    npm run --silent build
  )
fi
