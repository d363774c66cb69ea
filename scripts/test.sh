#!/usr/bin/env bash
# Set up (idempotent), then run the whole test suite. Extra arguments go to pytest (they come
# last, so `-n 0` runs it in one process).
# Two workers, a test file per worker (--dist loadfile: module fixtures are built once): much of
# the suite waits on subprocesses, a browser, fsync and Ray, so two processes fill the 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest -n "${POSTERDB_TEST_WORKERS:-2}" --dist loadfile "$@"
