"""`posterdb finetune` on a real store: weights kept in the store with their hash, every poster
re-embedded as a second model (own index), `similar` and `eval --models` on it, and a tampered
weights file refused (exit 3). Real posters, the real int8 model, a real (tiny) CPU fine-tune."""
from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

pytest.importorskip("torch")

from posterdb.core.errors import WeightsLoadError  # noqa: E402
from posterdb.embedders import is_finetuned_name  # noqa: E402
from posterdb.store import PosterDB  # noqa: E402
from posterdb.ui.cli.main import app  # noqa: E402

runner = CliRunner()


@pytest.fixture(scope="module")
def tuned_store(tmp_path_factory, label_rows, posters_dir, model_dir):
    import torch
    from conftest import copy_slice
    torch.set_num_threads(1)
    src = copy_slice(label_rows, posters_dir, tmp_path_factory.mktemp("src"), 48, every=97)
    store = tmp_path_factory.mktemp("ft") / "store"
    db = PosterDB.open(store, model_dir=model_dir)
    assert db.ingest(src, src / "labels.csv", model="mobilenet-v2").added == 48
    res = runner.invoke(app, ["finetune", "--store", str(store), "--model-dir", str(model_dir),
                              "--epochs", "1", "--limit", "16", "--batch-size", "8",
                              "--unfreeze-from", "16", "--device", "cpu", "--json"])
    assert res.exit_code == 0, res.stdout
    return store, json.loads(res.stdout)


def test_finetune_adds_a_second_model_with_hash_checked_weights(tuned_store, model_dir):
    store, result = tuned_store
    name = result["model"]
    assert is_finetuned_name(name) and result["reembedded"] == 48 and result["n_train"] == 16
    assert (store / "models" / f"{result['sha256']}.pt").is_file()
    db = PosterDB.open(store, model_dir=model_dir)
    specs = {m.name: m for m in db.models.specs()}
    assert set(specs) == {"mobilenet-v2", name} and specs[name].weights_sha256 == result["sha256"]
    assert len(db.indexes.index(name)) == 48 and len(db.indexes.index("mobilenet-v2")) == 48
    ids = [p.id for p in db.posters.get()][:3]
    # the stored vectors are what the (reloaded) embedder gives for the stored image copies
    again = db.models.embed([db.images.file(p.image_path) for p in db.posters.get(ids)], model=name)
    assert np.allclose(again, db.search.vectors(ids, model=name), atol=1e-4)
    hits = db.similar(ids[0], k=5, model=name)
    assert len(hits) == 5 and ids[0] not in [h.id for h in hits]


def test_eval_models_compares_on_the_same_split(tuned_store, model_dir):
    store, result = tuned_store
    res = runner.invoke(app, ["eval", "--models", f"mobilenet-v2,{result['model']}", "--store",
                              str(store), "--model-dir", str(model_dir), "--json"])
    assert res.exit_code == 0, res.stdout
    data = json.loads(res.stdout)
    assert set(data["models"]) == {"mobilenet-v2", result["model"]}
    for scores in data["models"].values():
        assert {"heads", "vote", "blend"} <= set(scores)
        assert 0.0 <= scores["blend"]["weighted"] <= 1.0
    bad = runner.invoke(app, ["eval", "--models", "mobilenet-v2,nope", "--store", str(store), "--json"])
    assert bad.exit_code == 2 and "unknown model" in json.loads(bad.stdout)["error"]


def test_tampered_store_weights_are_refused(tuned_store, model_dir, tmp_path):
    import shutil

    store, result = tuned_store
    copy = tmp_path / "copy"
    shutil.copytree(store, copy)
    w = copy / "models" / f"{result['sha256']}.pt"
    data = bytearray(w.read_bytes())
    data[-100] ^= 0xFF
    w.write_bytes(bytes(data))
    with pytest.raises(WeightsLoadError, match="does not match"):
        PosterDB.open(copy, model_dir=model_dir).models.embedder(result["model"])
    # stored vectors still answer `similar <id>`; embedding a new image needs the weights: refused
    image = next((copy / "images").rglob("*.jpg"))
    res = runner.invoke(app, ["similar", str(image), "--model", result["model"], "--store", str(copy),
                              "--model-dir", str(model_dir), "--json"])
    assert res.exit_code == 3 and "does not match" in json.loads(res.stdout)["error"]
