#!/usr/bin/env bash
# Idempotent set-up: a virtualenv in .venv with posterdb and every extra the tests exercise,
# plus Debian's chromium for the end-to-end browser tests. Re-runs are quick (stamp file).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
stamp=.venv/.posterdb-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/python -m pip install -q --upgrade pip wheel
  # torch==2.15.0 (PyPI CUDA build, runs on CPU) + torchvision 0.29.1 import together;
  # faiss-cpu via the `cpu` extra (use `gpu` instead on a CUDA machine, never both).
  .venv/bin/python -m pip install -q -e ".[cpu,torch,dev,read,ray]"
  touch "$stamp"
fi
if [ "${POSTERDB_SKIP_BROWSER:-0}" != 1 ] && ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing Debian chromium for the browser tests..." >&2
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null 2>&1 \
      || echo "warning: could not install chromium; browser tests will be skipped" >&2
  else
    echo "warning: chromium not found (apt-get install chromium); browser tests will be skipped" >&2
  fi
fi
