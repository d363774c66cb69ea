"""Security: weights files never run code, the page is local-only, stored classifiers are
hash-checked before they are unpickled."""
from __future__ import annotations

import ast
import os
import pickle
import re
from pathlib import Path

import pytest
import tomllib

from posterdb.core.errors import StoreError

ROOT = Path(__file__).resolve().parents[1]


class _Payload:
    """Unpickling this runs os.mkdir(sentinel): a stand-in for arbitrary code."""

    def __init__(self, sentinel: Path):
        self.sentinel = str(sentinel)

    def __reduce__(self):
        return (os.mkdir, (self.sentinel,))


def _weights_load_error():
    try:
        from posterdb.core.errors import WeightsLoadError
    except ImportError:  # older layout
        from posterdb.embedders.weights import WeightsLoadError
    return WeightsLoadError


# ----------------------------------------------------------------------------- torch weights

def test_no_unsafe_loader_in_the_code():
    """Every torch.load passes weights_only=True; nothing calls pickle/joblib/torch loaders on
    files except the hash-checked classifier loader (posterdb/classify/persist.py)."""
    bad = []
    for f in sorted((ROOT / "posterdb").rglob("*.py")):
        tree = ast.parse(f.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            name = ast.unparse(node.func)
            if name.endswith("torch.load"):
                kw = {k.arg: ast.unparse(k.value) for k in node.keywords}
                if kw.get("weights_only") != "True":
                    bad.append(f"{f.relative_to(ROOT)}:{node.lineno} {name} without weights_only=True")
            elif re.fullmatch(r"(pickle|cPickle|dill|joblib|cloudpickle)\.loads?", name) \
                    and f.name != "persist.py":
                bad.append(f"{f.relative_to(ROOT)}:{node.lineno} {name}")
    assert not bad, bad


@pytest.fixture
def evil_weights(tmp_path):
    """Malicious weight files in both torch formats, plus a live control proving the payload runs."""
    torch = pytest.importorskip("torch")
    sentinel = tmp_path / "PWNED"
    files = {}
    files["zip"] = tmp_path / "resnet50-zip.pth"
    torch.save({"state_dict": _Payload(sentinel)}, files["zip"])
    files["legacy"] = tmp_path / "resnet50-legacy.pt"
    files["legacy"].write_bytes(pickle.dumps({"conv1.weight": _Payload(sentinel)}, protocol=2))
    files["bin"] = tmp_path / "open_clip_pytorch_model.bin"
    torch.save(_Payload(sentinel), files["bin"])
    control = tmp_path / "control"
    torch.save(_Payload(control), tmp_path / "control.pth")
    torch.load(tmp_path / "control.pth", weights_only=False)   # the unsafe way: code runs
    assert control.exists(), "the payload is not live: the test would prove nothing"
    return files, sentinel


def test_malicious_weights_file_is_refused_without_running_code(evil_weights):
    from posterdb.embedders.weights import load_torch_state_dict

    files, sentinel = evil_weights
    for kind, f in files.items():
        with pytest.raises(_weights_load_error()) as e:
            load_torch_state_dict(f, "torchvision ResNet50")
        assert str(f) in str(e.value), kind
        assert not sentinel.exists(), f"unpickling the {kind} file ran code"


@pytest.mark.torch
@pytest.mark.parametrize("name", ["resnet50", "clip"])
def test_embedders_refuse_malicious_weights(name, evil_weights):
    pytest.importorskip("torchvision")
    if name == "clip":
        pytest.importorskip("open_clip")
    from posterdb.embedders import get_embedder

    files, sentinel = evil_weights
    for kind, f in files.items():
        with pytest.raises(_weights_load_error()) as e:
            get_embedder(name, weights=f, device="cpu", allow_download=False)
        assert str(f) in str(e.value)
        assert not sentinel.exists(), f"{name} ran code from the {kind} weights file"


# ----------------------------------------------------------------------------- the page

def test_page_binds_localhost_by_default():
    cfg = ROOT / ".streamlit" / "config.toml"
    if not cfg.exists():
        pytest.skip(f"{cfg} not written yet (the page's config belongs to another change)")
    server = tomllib.loads(cfg.read_text(encoding="utf-8")).get("server", {})
    assert server.get("address") == "127.0.0.1", server
    for script in (ROOT / "scripts").glob("*.sh"):
        text = script.read_text(encoding="utf-8")
        assert "0.0.0.0" not in text, f"{script.name} binds every interface"
        for m in re.finditer(r"--server\.address[ =](\S+)", text):
            assert m.group(1).strip("'\"") in ("127.0.0.1", "localhost"), (script.name, m.group(0))


# ----------------------------------------------------------------------------- classifiers

@pytest.fixture(scope="module")
def trained_store(tmp_path_factory, label_rows, posters_dir, model_dir):
    from posterdb.store import PosterDB

    if not hasattr(PosterDB, "train"):
        pytest.skip("PosterDB.train() does not exist yet")
    pytest.importorskip("posterdb.classify.persist",
                        reason="the classifier persistence module does not exist yet")
    from tests.conftest import copy_slice

    src = copy_slice(label_rows, posters_dir, tmp_path_factory.mktemp("src"), 300, every=17)
    root = tmp_path_factory.mktemp("store") / "s"
    db = PosterDB.open(root, model_dir=model_dir)
    db.ingest(src, src / "labels.csv")
    db.train()
    assert PosterDB.open(root, model_dir=model_dir).genres.classifier() is not None
    files = sorted(p for p in (root / "classifiers").iterdir() if p.is_file())
    assert len(files) == 1, files
    return root, files[0]


def _restore(path: Path, data: bytes) -> None:
    path.write_bytes(data)


def test_tampered_classifier_is_refused(trained_store, model_dir):
    from posterdb.store import PosterDB

    root, f = trained_store
    original = f.read_bytes()
    try:
        data = bytearray(original)
        data[len(data) // 2] ^= 0x01
        f.write_bytes(bytes(data))
        db = PosterDB.open(root, model_dir=model_dir)
        with pytest.raises(StoreError, match=r"(?i)hash|sha-?256"):
            db.genres.classifier()
    finally:
        _restore(f, original)
    assert PosterDB.open(root, model_dir=model_dir).genres.classifier() is not None


def test_swapped_classifier_file_is_refused_before_unpickling(trained_store, model_dir, tmp_path):
    """A malicious pickle put in place of the classifier never runs: the hash is checked first."""
    from posterdb.store import PosterDB

    root, f = trained_store
    original = f.read_bytes()
    sentinel = tmp_path / "PWNED"
    try:
        f.write_bytes(pickle.dumps(_Payload(sentinel)))
        with pytest.raises(StoreError, match=r"(?i)hash|sha-?256"):
            PosterDB.open(root, model_dir=model_dir).genres.classifier()
        assert not sentinel.exists(), "the swapped classifier file was unpickled"
    finally:
        _restore(f, original)


def test_classifier_path_outside_the_store_is_refused(trained_store, model_dir, tmp_path):
    from posterdb.store import PosterDB

    root, f = trained_store
    db = PosterDB.open(root, model_dir=model_dir)
    with db.catalog.write() as con:
        (rel,) = con.execute("SELECT file FROM classifiers ORDER BY id DESC LIMIT 1").fetchone()
        con.execute("UPDATE classifiers SET file = ? WHERE file = ?", ["../../outside.joblib", rel])
    try:
        with pytest.raises(StoreError, match="outside"):
            PosterDB.open(root, model_dir=model_dir).genres.classifier()
    finally:
        with db.catalog.write() as con:
            con.execute("UPDATE classifiers SET file = ? WHERE file = ?", [rel, "../../outside.joblib"])
