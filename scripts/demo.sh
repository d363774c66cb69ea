#!/usr/bin/env bash
# The main job: set up, ingest the labelled posters in ../shared/posters, train the classifier,
# give the page a password (printed once; changes on the page need it), and serve the page on
# http://127.0.0.1:${PORT:-8501} — loopback only (docs/page.md: serving it wider).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export POSTERDB_STORE=${POSTERDB_STORE:-data/demo-store}
export POSTERDB_MODEL_DIR=${POSTERDB_MODEL_DIR:-../shared/models}
SHARED_POSTERS=${SHARED_POSTERS:-../shared/posters}
PDB=.venv/bin/posterdb
if [ -f "$SHARED_POSTERS/labels.csv" ]; then
  # exit 1 only means some files failed (they are listed); the rest is stored
  $PDB ingest "$SHARED_POSTERS" --labels "$SHARED_POSTERS/labels.csv" --model mobilenet-v2 || true
  $PDB train
else
  echo "no $SHARED_POSTERS/labels.csv beside the project: starting with an empty store" >&2
fi
$PDB info || true
# a page password, read by `posterdb page password` from stdin (never the command line)
if $PDB page status --json 2>/dev/null | grep -q '"page_password": "not set"'; then
  PAGE_PASSWORD=$(.venv/bin/python -c 'import secrets; print(secrets.token_urlsafe(12))')
  printf '%s\n' "$PAGE_PASSWORD" | $PDB page password >/dev/null
  echo "page password (to add posters or set labels on the page): $PAGE_PASSWORD" >&2
  echo "  (change it: $PDB page password --store $POSTERDB_STORE)" >&2
fi
echo "serving the page on http://127.0.0.1:${PORT:-8501} (Ctrl-C to stop)" >&2
exec $PDB page serve --address 127.0.0.1 --port "${PORT:-8501}" --store "$POSTERDB_STORE" \
  --model-dir "$POSTERDB_MODEL_DIR"
