"""The dequantised float MobileNetV2 and a short fine-tune on real posters (CPU, a few seconds).

Real parts only: the int8 TFLite model from ../shared/models, real posters and labels from
../shared/posters, a real torch training step, real files on disk for save/load and tampering.
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from PIL import Image  # noqa: E402

from posterdb.core.errors import WeightsLoadError  # noqa: E402
from posterdb.core.genres import GENRES, parse_genres  # noqa: E402
from posterdb.embedders import get_embedder  # noqa: E402
from posterdb.embedders.mobilenet_torch import from_tflite  # noqa: E402
from posterdb.finetune.embedder import (  # noqa: E402
    FineTunedEmbedder,
    finetuned_name,
    is_finetuned_name,
    load_backbone,
    save_backbone,
)
from posterdb.finetune.train import (  # noqa: E402
    FinetuneConfig,
    augment,
    embed,
    finetune,
    poster_inputs,
)

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
MODEL = SHARED / "models" / "mobilenet_v2_1.0_224_quant.tflite"
POSTERS = SHARED / "posters"

pytestmark = pytest.mark.skipif(not MODEL.is_file(), reason="needs ../shared/models")


@pytest.fixture(scope="module")
def float_net():
    torch.set_num_threads(1)  # 2 threads on a shared, oversubscribed 2-core box spin-wait (5x slower)
    return from_tflite(MODEL)


@pytest.fixture(scope="module")
def slice64():
    """64 labelled posters spread over the decades: (images, Y, decades)."""
    rows = list(csv.DictReader(open(POSTERS / "labels.csv", encoding="utf-8")))[::80][:64]
    images = [Image.open(POSTERS / r["file"]).convert("RGB") for r in rows]
    Y = np.zeros((len(rows), len(GENRES)), np.uint8)
    for i, r in enumerate(rows):
        for g in parse_genres(r["genres"])[0]:
            Y[i, GENRES.index(g)] = 1
    return images, Y, np.array([int(r["year"]) // 10 * 10 for r in rows])


def test_dequantised_float_model_matches_int8_features(float_net, slice64):
    images = slice64[0][:12]
    int8 = get_embedder("mobilenet-v2", model_dir=MODEL.parent)
    x = np.stack([int8.preprocess(im) for im in images])
    q = int8.embed_batch(x)
    f = embed(float_net, torch.from_numpy(x).permute(0, 3, 1, 2), "cpu")
    cos = (q * f).sum(1)
    assert cos.mean() >= 0.99 and cos.min() >= 0.98
    assert len(float_net.features) == 19  # stem, 17 inverted residuals, 1x1 to 1280
    assert sum(p.numel() for p in float_net.parameters()) == 2_206_816


def test_augment_keeps_shape_and_range():
    src = torch.randint(0, 256, (4, 3, 336, 224), dtype=torch.uint8)
    x = augment(src, torch.Generator().manual_seed(0))
    assert x.shape == (4, 3, 224, 224) and x.min() >= -1 and x.max() <= 1
    assert not torch.equal(x, augment(src, torch.Generator().manual_seed(1)))


def test_short_finetune_changes_weights_and_round_trips(float_net, slice64, tmp_path):
    images, Y, dec = slice64
    src, inf = (torch.from_numpy(np.stack(a)) for a in zip(*[poster_inputs(im) for im in images]))
    net = from_tflite(MODEL)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    base_vecs = embed(net, inf[:8], "cpu")
    hist = finetune(net, src, Y, dec, FinetuneConfig(epochs=1, batch_size=8, max_steps=2, lr=1e-3,
                                                     unfreeze_from=15), device="cpu")
    assert hist["steps"] == 2 and np.isfinite(hist["epochs"][0]["loss"])
    after = net.state_dict()
    changed = [k for k in after if not torch.equal(before[k], after[k])]
    assert changed and all(int(k.split(".")[1]) >= 15 for k in changed)  # frozen blocks stayed
    tuned = embed(net, inf[:8], "cpu")
    assert not np.allclose(tuned, base_vecs, atol=1e-4)

    path, digest = save_backbone(net, tmp_path, base="mobilenet-v2", run="test")
    assert path.name == f"{digest}.pt"
    loaded, meta = load_backbone(path, digest)
    assert meta["run"] == "test"
    emb = FineTunedEmbedder(path, digest, device="cpu")
    assert emb.name == finetuned_name(digest) and is_finetuned_name(emb.name)
    assert emb.spec.weights_sha256 == digest and "ft:test" in emb.version
    # re-embedding through the embedder interface = the in-memory network, and is repeatable
    again = emb.embed_images(images[:4])
    assert np.allclose(again, emb.embed_images(images[:4]))
    x = np.stack([emb.preprocess(im) for im in images[:4]])
    assert np.allclose(again, embed(net, torch.from_numpy(x).permute(0, 3, 1, 2), "cpu"), atol=1e-5)
    assert np.allclose(np.linalg.norm(again, axis=1), 1, atol=1e-5)


def test_tampered_or_foreign_weights_are_refused(float_net, tmp_path):
    path, digest = save_backbone(float_net, tmp_path, base="mobilenet-v2", run="x")
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(WeightsLoadError, match="does not match"):
        load_backbone(path, digest)
    # a pickle that would run code: right hash recorded, still refused by weights_only
    evil = tmp_path / "evil.pt"

    class Boom:
        def __reduce__(self):
            return (Path.touch, (tmp_path / "pwned",))

    torch.save({"format": "x", "obj": Boom()}, evil)
    from posterdb.embedders.weights import sha256_file

    with pytest.raises(WeightsLoadError, match="not a"):
        load_backbone(evil, sha256_file(evil))
    assert not (tmp_path / "pwned").exists()
    with pytest.raises(WeightsLoadError, match="missing"):
        load_backbone(tmp_path / "nope.pt", digest)
