"""A store with two models: each gets its own vectors table and FAISS index; other weights under
an existing model's name are refused. ResNet50 weights here are random-initialised files this test
makes (pretrained weights cannot be downloaded on these machines)."""
from __future__ import annotations

import pytest

from posterdb.core.errors import ModelMismatchError
from posterdb.embedders import get_embedder
from posterdb.store import PosterDB

pytestmark = pytest.mark.torch


def _resnet_weights(path, seed: int):
    torch = pytest.importorskip("torch")
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(seed)
    torch.save(torchvision.models.resnet50(weights=None).state_dict(), path)
    return path


def test_second_model_gets_its_own_index_and_other_weights_are_refused(
        tmp_path, poster_slice, model_dir, monkeypatch):
    monkeypatch.setenv("POSTERDB_OFFLINE", "1")
    src = poster_slice(12, start=21)
    db = PosterDB.open(tmp_path / "store", model_dir=model_dir)
    db.ingest(src, src / "labels.csv", model="mobilenet-v2")

    (tmp_path / "a").mkdir()
    w1 = _resnet_weights(tmp_path / "a" / "resnet50-11ad3fa6.pth", seed=1)
    db.models.use(get_embedder("resnet50", weights=w1, device="cpu"))
    r = db.ingest(src, src / "labels.csv", model="resnet50")
    assert (r.added, r.embedded_existing) == (0, 12)  # same posters, new vectors only
    info = db.info()
    dims = {m["name"]: (m["dim"], m["vectors"]) for m in info["models"]}
    assert dims == {"mobilenet-v2": (1280, 12), "resnet50": (2048, 12)}
    assert db.indexes.path("resnet50").exists() and db.indexes.path("mobilenet-v2").exists()
    assert db.indexes.path("resnet50") != db.indexes.path("mobilenet-v2")
    assert len(db.similar(1, k=3, model="resnet50")) == 3
    assert db.check()["ok"]

    (tmp_path / "b").mkdir()
    w2 = _resnet_weights(tmp_path / "b" / "resnet50-11ad3fa6.pth", seed=2)
    other = PosterDB.open(tmp_path / "store", model_dir=model_dir)
    other.models.use(get_embedder("resnet50", weights=w2, device="cpu"))
    before = other.posters.export()
    with pytest.raises(ModelMismatchError, match="resnet50"):
        other.ingest(src, model="resnet50")
    assert other.posters.export() == before and other.check()["ok"]
