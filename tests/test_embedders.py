"""Embedders: the registry, weights resolution, MobileNetV2 on real posters and the real file,
and the ResNet50 / OpenCLIP load paths (torch tests).

Real pretrained ResNet50 / CLIP weights cannot be had offline, so the torch tests save randomly
initialised state dicts of the real architectures with torch.save and load those through the
real code paths. Downloads are always disabled (allow_download=False / POSTERDB_OFFLINE=1).
"""
from __future__ import annotations

import io
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from posterdb.core.errors import PosterDBError, WeightsNotFoundError
from posterdb.embedders import EMBEDDER_NAMES, default_model_dir, get_embedder
from posterdb.embedders import weights as W

MOBILENET = "mobilenet_v2_1.0_224_quant.tflite"
CLIP_ARCH = "ViT-S-32-alt"  # the smallest built-in open_clip config (~43M params): fast on 2 cores
CLIP_TAG = "random-test"


@pytest.fixture(autouse=True)
def _isolated_caches(tmp_path, monkeypatch):
    """Never find or fetch anything in the user's caches, never touch the network."""
    monkeypatch.setenv("POSTERDB_OFFLINE", "1")
    monkeypatch.setenv("POSTERDB_MODEL_DIR", str(tmp_path / "default-model-dir"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    monkeypatch.setattr(W, "reachable", lambda *a, **k: False)


def real_posters(label_rows, posters_dir, n=12) -> list[Image.Image]:
    rows = label_rows[:: max(1, len(label_rows) // n)][:n]
    return [Image.open(posters_dir / r["file"]).convert("RGB") for r in rows]


def unit_rows(v: np.ndarray) -> bool:
    return np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)


# --- registry and weights resolution (no model) -------------------------------------------


def test_registry_names_and_unknown_name():
    assert EMBEDDER_NAMES == ("mobilenet-v2", "resnet50", "clip")
    with pytest.raises(ValueError) as e:
        get_embedder("vgg16")
    assert all(n in str(e.value) for n in EMBEDDER_NAMES)


def test_default_model_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("POSTERDB_MODEL_DIR", str(tmp_path / "m"))
    assert default_model_dir() == tmp_path / "m"
    monkeypatch.delenv("POSTERDB_MODEL_DIR")
    assert default_model_dir() == Path.home() / ".cache" / "posterdb" / "models"


def test_resolve_order_explicit_modeldir_default_cache(tmp_path, monkeypatch):
    a, b, c, d = (tmp_path / x for x in "abcd")
    for folder in (a, b, c, d):
        folder.mkdir()
        (folder / "w.bin").write_bytes(folder.name.encode())
    monkeypatch.setenv("POSTERDB_MODEL_DIR", str(c))
    res = lambda **kw: W.resolve_weights("t", ["w.bin"], cache_paths=[d / "*.bin"], **kw)  # noqa: E731
    assert res(explicit=a / "w.bin", model_dir=b) == a / "w.bin"
    assert res(explicit=a, model_dir=b) == a / "w.bin"  # a folder is searched
    assert res(model_dir=b) == b / "w.bin"
    assert res() == c / "w.bin"  # $POSTERDB_MODEL_DIR
    (c / "w.bin").unlink()
    assert res() == d / "w.bin"  # library cache (glob)
    with pytest.raises(WeightsNotFoundError, match="does not exist"):
        res(explicit=tmp_path / "nope.bin", model_dir=b)  # explicit: no silent fallback


def test_download_only_when_allowed_and_reachable(tmp_path, monkeypatch):
    got = tmp_path / "fetched.bin"
    calls = []

    def fetch():
        calls.append(1)
        got.write_bytes(b"x")
        return got

    dl = W.Download("https://example.invalid/w.bin", "example.invalid", fetch)
    with pytest.raises(WeightsNotFoundError, match="disabled"):
        W.resolve_weights("t", ["w.bin"], download=dl)  # POSTERDB_OFFLINE=1
    monkeypatch.delenv("POSTERDB_OFFLINE")
    with pytest.raises(WeightsNotFoundError, match="unreachable"):
        W.resolve_weights("t", ["w.bin"], download=dl)
    with pytest.raises(WeightsNotFoundError, match="disabled"):
        W.resolve_weights("t", ["w.bin"], download=dl, allow_download=False)
    assert calls == []
    monkeypatch.setattr(W, "reachable", lambda *a, **k: True)
    assert W.resolve_weights("t", ["w.bin"], download=dl) == got and calls == [1]


def test_sha256_file_is_memoised_by_size_and_mtime(tmp_path):
    import hashlib

    p = tmp_path / "w.bin"
    p.write_bytes(b"a" * 1000)
    first = W.sha256_file(p)
    assert first == hashlib.sha256(b"a" * 1000).hexdigest()
    st = os.stat(p)
    p.write_bytes(b"b" * 1000)  # same size; restore mtime: the memo must answer
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert W.sha256_file(p) == first
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert W.sha256_file(p) == hashlib.sha256(b"b" * 1000).hexdigest()


# --- mobilenet-v2: the real int8 file on real posters ---------------------------------------


@pytest.fixture(scope="module")
def mobilenet(model_dir):
    return get_embedder("mobilenet-v2", model_dir=model_dir)


def test_mobilenet_spec(mobilenet, model_dir):
    assert mobilenet.path == model_dir / MOBILENET
    assert mobilenet.spec.dim == 1280 and mobilenet.device == "cpu"
    assert mobilenet.version == "tflite-int8-1"
    assert mobilenet.weights_sha256 == W.sha256_file(model_dir / MOBILENET)


def test_mobilenet_real_posters(mobilenet, label_rows, posters_dir):
    imgs = real_posters(label_rows, posters_dir, 13)  # 13: full chunks of 8 plus single leftovers
    x = np.stack([mobilenet.preprocess(im) for im in imgs])
    assert x.shape == (13, 224, 224, 3) and x.dtype == np.uint8
    v = mobilenet.embed_batch(x)
    assert v.shape == (13, 1280) and v.dtype == np.float32 and unit_rows(v)
    assert np.array_equal(v, mobilenet.embed_batch(x))  # deterministic
    singles = np.concatenate([mobilenet.embed_batch(x[i:i + 1]) for i in range(len(x))])
    np.testing.assert_allclose(singles, v, atol=1e-6)  # batching does not change the vectors
    cos = v @ v.T
    off = cos[~np.eye(len(v), dtype=bool)]
    assert off.max() < 0.99 and off.std() > 0.01  # distinct posters give distinct vectors
    assert np.allclose(mobilenet.embed_images(imgs), v, atol=1e-6)
    assert mobilenet.embed_batch(x[:0]).shape == (0, 1280)


def test_mobilenet_same_poster_other_formats(mobilenet, label_rows, posters_dir):
    src = Image.open(posters_dir / label_rows[100]["file"])
    variants = [src.convert("RGB")]
    for fmt, kw in (("PNG", {}), ("JPEG", {"quality": 60}), ("WEBP", {"quality": 80})):
        buf = io.BytesIO()
        src.convert("RGB").save(buf, fmt, **kw)
        variants.append(Image.open(io.BytesIO(buf.getvalue())))
    variants.append(src.convert("RGB").convert("P", palette=Image.ADAPTIVE))  # non-RGB input mode
    v = mobilenet.embed_images(variants)
    assert (v @ v[0] > 0.95).all(), v @ v[0]


def test_mobilenet_features_are_the_real_avgpool(mobilenet, model_dir, label_rows, posters_dir):
    """Our vectors equal the full model's own AvgPool tensor (read with all tensors preserved),
    and that tensor through the file's classifier weights gives the model's own prediction."""
    import warnings

    from ai_edge_litert.interpreter import Interpreter

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "preserve_all_tensors is for debugging"
        full = Interpreter(str(model_dir / MOBILENET), experimental_preserve_all_tensors=True)
    full.allocate_tensors()
    det = {d["name"]: d for d in full.get_tensor_details()}

    def deq(name):
        d = det[name]
        return (full.get_tensor(d["index"]).astype(np.float32) - d["quantization"][1]) * d["quantization"][0]

    wname = next(n for n in det if n.startswith("MobilenetV2/Logits/Conv2d_1c_1x1/Conv2D"))
    bname = next(n for n in det if n.endswith("Conv2d_1c_1x1/biases"))
    weight = deq(wname).reshape(1001, 1280)
    bias = full.get_tensor(det[bname]["index"]) * det[bname]["quantization"][0]
    for im in real_posters(label_rows, posters_dir, 4):
        x = mobilenet.preprocess(im)[None]
        full.set_tensor(full.get_input_details()[0]["index"], x)
        full.invoke()
        pooled = deq("MobilenetV2/Logits/AvgPool").reshape(1, 1280)
        np.testing.assert_allclose(mobilenet.embed_batch(x), pooled / np.linalg.norm(pooled), atol=1e-6)
        probs = full.get_tensor(full.get_output_details()[0]["index"]).reshape(-1)
        logits = weight @ pooled[0] + bias
        assert probs[np.argmax(logits)] == probs.max()  # (quantised probs can tie at the top)


def test_mobilenet_bad_input_and_device(mobilenet, model_dir):
    with pytest.raises(ValueError, match="224"):
        mobilenet.embed_batch(np.zeros((2, 100, 100, 3), np.uint8))
    with pytest.raises(ValueError, match="CPU"):
        get_embedder("mobilenet-v2", model_dir=model_dir, device="cuda")


def test_mobilenet_missing_file(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(WeightsNotFoundError) as e:
        get_embedder("mobilenet-v2", model_dir=empty)
    msg = str(e.value)
    assert MOBILENET in msg and str(empty) in msg and "default-model-dir" in msg and "download" in msg
    with pytest.raises(WeightsNotFoundError, match="does not exist"):
        get_embedder("mobilenet-v2", weights=empty / MOBILENET)


def test_mobilenet_needs_no_torch(model_dir):
    code = (
        "import sys; sys.modules['torch'] = None\n"  # any `import torch` now fails
        "from posterdb.embedders import get_embedder\n"
        f"e = get_embedder('mobilenet-v2', model_dir={str(model_dir)!r})\n"
        "import numpy as np; v = e.embed_batch(np.zeros((1, 224, 224, 3), np.uint8))\n"
        "assert v.shape == (1, 1280)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       cwd=Path(__file__).resolve().parents[1], timeout=60)
    assert r.returncode == 0, r.stderr


# --- torch models: real load paths with test-made weights ------------------------------------


@pytest.fixture(scope="module")
def torch_weights(tmp_path_factory):
    """Random-init state dicts of the real architectures (pretrained ones need the network)."""
    torch = pytest.importorskip("torch")
    torchvision = pytest.importorskip("torchvision")
    open_clip = pytest.importorskip("open_clip")
    d = tmp_path_factory.mktemp("torch-weights")
    torch.manual_seed(0)
    torch.save(torchvision.models.resnet50(weights=None).state_dict(), d / "resnet50-11ad3fa6.pth")
    clip = open_clip.create_model(CLIP_ARCH, pretrained=None, pretrained_text=False)
    torch.save(clip.state_dict(), d / f"{CLIP_ARCH}-{CLIP_TAG}.pt")
    return d


@pytest.fixture
def load_calls(monkeypatch):
    """Record the kwargs of every torch.load call."""
    import torch

    calls, real = [], torch.load

    def spy(*a, **kw):
        calls.append(kw)
        return real(*a, **kw)

    monkeypatch.setattr(torch, "load", spy)
    return calls


@pytest.mark.torch
def test_resnet50_load_paths(torch_weights, load_calls, label_rows, posters_dir):
    f = torch_weights / "resnet50-11ad3fa6.pth"
    a = get_embedder("resnet50", weights=f, device="cpu")
    b = get_embedder("resnet50", model_dir=torch_weights, device="cpu")
    assert a.path == b.path == f and a.spec == b.spec
    assert a.spec.dim == 2048 and a.weights_sha256 == W.sha256_file(f)
    assert load_calls and all(c.get("weights_only") is True and c.get("map_location") == "cpu"
                              for c in load_calls)
    imgs = real_posters(label_rows, posters_dir, 3)
    x = np.stack([a.preprocess(im) for im in imgs])
    assert x.shape == (3, 224, 224, 3) and x.dtype == np.uint8
    v = a.embed_batch(x)
    assert v.shape == (3, 2048) and v.dtype == np.float32 and unit_rows(v)
    np.testing.assert_allclose(b.embed_batch(x), v, atol=1e-5)


@pytest.mark.torch
def test_resnet50_found_in_torch_hub_cache(torch_weights, tmp_path):
    hub = tmp_path / "torch-home" / "hub" / "checkpoints"  # $TORCH_HOME set by the autouse fixture
    hub.mkdir(parents=True)
    (hub / "resnet50-11ad3fa6.pth").symlink_to(torch_weights / "resnet50-11ad3fa6.pth")
    from posterdb.embedders.resnet import FILENAMES, torch_hub_checkpoints

    assert torch_hub_checkpoints() == hub
    p = W.resolve_weights("resnet50", FILENAMES, model_dir=tmp_path / "x",
                          cache_paths=[hub / n for n in FILENAMES])
    assert p == hub / "resnet50-11ad3fa6.pth"


@pytest.mark.torch
def test_resnet50_missing_file_names_places(tmp_path):
    pytest.importorskip("torch")
    with pytest.raises(WeightsNotFoundError) as e:
        get_embedder("resnet50", model_dir=tmp_path / "models", allow_download=False)
    msg = str(e.value)
    for s in ("resnet50-11ad3fa6.pth", "resnet50-0676ba61.pth", str(tmp_path / "models"),
              "default-model-dir", str(tmp_path / "torch-home" / "hub" / "checkpoints"),
              "download.pytorch.org", "disabled"):
        assert s in msg, (s, msg)


@pytest.mark.torch
def test_resnet50_bad_weights(tmp_path, torch_weights):
    import torch

    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(os.urandom(4096))
    with pytest.raises(W.WeightsLoadError, match="corrupt.pth"):
        get_embedder("resnet50", weights=corrupt, device="cpu")
    wrong = tmp_path / "wrong.pth"
    torch.save({"foo.weight": torch.zeros(3)}, wrong)
    with pytest.raises(W.WeightsLoadError, match=r"wrong\.pth.*missing keys.*unexpected keys"):
        get_embedder("resnet50", weights=wrong, device="cpu")
    sd = torch.load(torch_weights / "resnet50-11ad3fa6.pth", weights_only=True)
    sd["fc.weight"] = torch.zeros(10, 2048)
    shapes = tmp_path / "shapes.pth"
    torch.save(sd, shapes)
    with pytest.raises(W.WeightsLoadError, match=r"shape mismatches.*fc\.weight"):
        get_embedder("resnet50", weights=shapes, device="cpu")
    assert issubclass(W.WeightsLoadError, PosterDBError)


class _Evil:
    def __reduce__(self):
        return (os.mkdir, (os.environ["EVIL_MARKER"],))


@pytest.mark.torch
def test_pickled_code_is_not_run(tmp_path, monkeypatch):
    pytest.importorskip("torch")
    marker = tmp_path / "pwned"
    monkeypatch.setenv("EVIL_MARKER", str(marker))
    evil = tmp_path / "evil.pth"
    evil.write_bytes(pickle.dumps({"conv1.weight": _Evil()}, protocol=2))
    with pytest.raises(W.WeightsLoadError, match="evil.pth"):
        get_embedder("resnet50", weights=evil, device="cpu")
    assert not marker.exists()


@pytest.mark.torch
def test_clip_load_paths_and_text(torch_weights, load_calls, label_rows, posters_dir):
    f = torch_weights / f"{CLIP_ARCH}-{CLIP_TAG}.pt"
    a = get_embedder("clip", model_dir=torch_weights, device="cpu", arch=CLIP_ARCH, pretrained=CLIP_TAG)
    assert a.path == f and a.supports_text and a.dim == 256
    assert CLIP_ARCH in a.version and CLIP_TAG in a.version
    assert load_calls and all(c.get("weights_only") is True for c in load_calls)
    imgs = real_posters(label_rows, posters_dir, 3)
    x = np.stack([a.preprocess(im) for im in imgs])
    v = a.embed_batch(x)
    assert v.shape == (3, a.dim) and v.dtype == np.float32 and unit_rows(v)
    # uint8 on-device normalisation == open_clip's own float transform
    ref = a.embed_batch(np.stack([a.transform(im).numpy() for im in imgs]))
    np.testing.assert_allclose(v, ref, atol=1e-4)
    t = a.embed_text(["a horror film poster", "a romantic comedy", "a western"])
    assert t.shape == (3, a.dim) and t.dtype == np.float32 and unit_rows(t)
    assert not np.allclose(t[0], t[1])
    assert a.embed_text([]).shape == (0, a.dim) and a.embed_batch(x[:0]).shape == (0, a.dim)
    b = get_embedder("clip", weights=f, device="cpu", arch=CLIP_ARCH, pretrained=CLIP_TAG)
    assert b.spec == a.spec
    np.testing.assert_allclose(b.embed_batch(x), v, atol=1e-5)


@pytest.mark.torch
def test_clip_found_in_hf_cache(torch_weights, tmp_path, monkeypatch):
    """A tag with an hf_hub entry is found in the Hugging Face cache open_clip downloads into."""
    open_clip = pytest.importorskip("open_clip")
    import huggingface_hub.constants as hfc

    monkeypatch.setattr(hfc, "HF_HUB_CACHE", str(tmp_path / "hf"))
    cfg = dict(open_clip.get_pretrained_cfg("ViT-B-32", "laion2b_s34b_b79k"), hf_hub="test-org/tiny-clip/")
    monkeypatch.setattr(open_clip, "get_pretrained_cfg", lambda arch, tag: cfg)
    snap = tmp_path / "hf" / "models--test-org--tiny-clip" / "snapshots" / "abc123"
    snap.mkdir(parents=True)
    (snap / "open_clip_pytorch_model.bin").symlink_to(torch_weights / f"{CLIP_ARCH}-{CLIP_TAG}.pt")
    e = get_embedder("clip", device="cpu", arch=CLIP_ARCH, pretrained="tiny")
    assert e.path == snap / "open_clip_pytorch_model.bin"
    assert e.embed_text(["x"]).shape == (1, 256)


@pytest.mark.torch
def test_clip_missing_and_bad_weights(tmp_path):
    torch = pytest.importorskip("torch")
    with pytest.raises(WeightsNotFoundError) as e:
        get_embedder("clip", model_dir=tmp_path / "models", allow_download=False)
    msg = str(e.value)
    for s in ("ViT-B-32-laion2b_s34b_b79k.safetensors", str(tmp_path / "models"), "default-model-dir",
              "models--laion--CLIP-ViT-B-32-laion2B-s34B-b79K", "laion/CLIP-ViT-B-32-laion2B-s34B-b79K",
              "disabled"):
        assert s in msg, (s, msg)
    with pytest.raises(ValueError, match="architecture"):
        get_embedder("clip", arch="no-such-arch")
    wrong = tmp_path / "wrong.pt"
    torch.save({"visual.foo": torch.zeros(2)}, wrong)
    with pytest.raises(W.WeightsLoadError, match=r"wrong\.pt.*missing keys"):
        get_embedder("clip", weights=wrong, device="cpu", arch=CLIP_ARCH, pretrained=CLIP_TAG)


@pytest.mark.torch
def test_device_auto_and_cuda(torch_weights, label_rows, posters_dir):
    torch = pytest.importorskip("torch")
    from posterdb.embedders.resnet import resolve_device

    assert resolve_device(None) == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA"):
            resolve_device("cuda")
        pytest.skip("no CUDA device: bf16/channels_last path not exercised here")
    imgs = real_posters(label_rows, posters_dir, 4)
    for name, kw in (("resnet50", {}), ("clip", {"arch": CLIP_ARCH, "pretrained": CLIP_TAG})):
        cpu = get_embedder(name, model_dir=torch_weights, device="cpu", **kw)
        gpu = get_embedder(name, model_dir=torch_weights, device="cuda", **kw)
        assert gpu.batch_size >= 256
        x = np.stack([cpu.preprocess(im) for im in imgs])
        vc, vg = cpu.embed_batch(x), gpu.embed_batch(x)
        assert vg.dtype == np.float32 and unit_rows(vg)
        assert ((vc * vg).sum(1) > 0.99).all()


def test_mobilenet_fallback_without_graph_cut(mobilenet, model_dir, monkeypatch, label_rows, posters_dir):
    """If the graph cannot be cut, the full model with preserved tensors gives the same vectors."""
    import warnings

    from posterdb.embedders import mobilenet as mod

    monkeypatch.setattr(mod, "cut_model_at", lambda *a: (_ for _ in ()).throw(ValueError("no")))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        slow = get_embedder("mobilenet-v2", model_dir=model_dir)
    x = np.stack([mobilenet.preprocess(im) for im in real_posters(label_rows, posters_dir, 3)])
    np.testing.assert_allclose(slow.embed_batch(x), mobilenet.embed_batch(x), atol=1e-6)
