"""Shared fixtures: paths to ../shared (real posters, real model files) and small real slices of it."""
from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest

from posterdb.testing.slices import write_slice

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("POSTERDB_SHARED", ROOT.parent / "shared"))
POSTERS = SHARED / "posters"
MODELS = SHARED / "models"
MOBILENET_FILE = MODELS / "mobilenet_v2_1.0_224_quant.tflite"


def _require(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} is missing: these tests need ../shared beside the project root")
    return path


@pytest.fixture(scope="session")
def posters_dir() -> Path:
    """../shared/posters (labels.csv + images/)."""
    return _require(POSTERS / "labels.csv").parent


@pytest.fixture(scope="session")
def model_dir() -> Path:
    """../shared/models, holding the real int8 MobileNet TFLite files."""
    return _require(MOBILENET_FILE).parent


@pytest.fixture(scope="session")
def label_rows(posters_dir) -> list[dict]:
    with open(posters_dir / "labels.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def copy_slice(label_rows: list[dict], src: Path, dst: Path, n: int, start: int = 0,
               every: int = 1) -> Path:
    """Copy n real posters (rows start, start+every, ...) and a matching labels.csv into dst."""
    return write_slice(label_rows[start::every][:n], dst, src)


@pytest.fixture
def poster_slice(tmp_path, label_rows, posters_dir):
    """Factory: poster_slice(n, start=0, every=7) -> folder with n real posters + labels.csv."""

    def make(n: int, start: int = 0, every: int = 7, name: str = "slice") -> Path:
        return copy_slice(label_rows, posters_dir, tmp_path / name, n, start, every)

    return make


@pytest.fixture(scope="session")
def real(label_rows, posters_dir, model_dir):
    """Every 10th shared poster (510) embedded once per session by the real int8 MobileNetV2:
    (X, Y multi-hot, years, ids: the imdb numbers, real-looking ids rather than 0..n-1)."""
    import numpy as np
    from PIL import Image

    from posterdb.core.genres import parse_genres, to_multi_hot
    from posterdb.embedders import get_embedder

    rows = label_rows[::10]
    emb = get_embedder("mobilenet-v2", model_dir=model_dir, allow_download=False)
    X = emb.embed_images([Image.open(posters_dir / r["file"]).convert("RGB") for r in rows])
    Y = to_multi_hot([parse_genres(r["genres"])[0] for r in rows])
    years = np.array([int(r["year"]) for r in rows])
    ids = np.array([int(r["imdb_id"][2:]) for r in rows])
    return X, Y, years, ids


# -- a small trained store (synthetic posters, the `fake-pixels` embedder) ---------------------

N_TRAIN = 60


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A store of N_TRAIN labelled synthetic posters with a trained classifier (one per test
    module; copy it before changing it)."""
    from synthetic import make_posters

    from posterdb.store import PosterDB

    src = make_posters(tmp_path_factory.mktemp("train-src"), N_TRAIN, seed=1)
    store = tmp_path_factory.mktemp("trained") / "store"
    db = PosterDB.open(store)
    assert db.ingest(src, src / "labels.csv", model="fake-pixels").added == N_TRAIN
    db.train()
    return store
