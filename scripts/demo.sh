#!/usr/bin/env bash
# The main job: set up, ingest the labelled posters in ../shared/posters, train the classifier,
# and serve the page on http://127.0.0.1:${PORT:-8501}.
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
echo "serving the page on http://127.0.0.1:${PORT:-8501} (Ctrl-C to stop)" >&2
exec .venv/bin/streamlit run app.py --server.address 127.0.0.1 --server.port "${PORT:-8501}" \
  --server.headless true -- --store "$POSTERDB_STORE" --model-dir "$POSTERDB_MODEL_DIR"
