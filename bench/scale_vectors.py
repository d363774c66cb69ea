"""Realistic training vectors at any size for the training-scale benchmark, cached once.

Copy 0 is the 5,097 shared posters; copies 1..A are augmented versions of every poster (random
crop of 60-100 % of the area, horizontal flip, brightness/contrast/saturation 0.7-1.3, rotation
within ±10°), each decoded, augmented and embedded by the real int8 MobileNetV2; labels and year
are inherited from the original. Sizes above (1 + A) x 5,097 are filled with small-noise copies
of those real embeddings (Gaussian noise of norm 0.15 relative to the unit vector, then
renormalised: cos ≈ 0.99 to their source, so they are near-duplicates of it and land in its
group - the honest way to grow past what we can embed in minutes on 2 cores).

`python -m bench.scale_vectors [--copies 4]` builds the cache ($POSTERDB_SCALE_CACHE, default
<bench cache>/train-scale): vectors.npy (float32), meta.npz (source row, copy, Y, year).
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

from .common import CACHE, POSTERS, label_rows

SCALE_CACHE = Path(os.environ.get("POSTERDB_SCALE_CACHE", CACHE / "train-scale"))
NOISE = 0.15


def augment(img, rng: np.random.Generator):
    """One random crop / flip / colour / rotation of a PIL RGB image."""
    from PIL import Image, ImageEnhance

    w, h = img.size
    area = rng.uniform(0.6, 1.0)
    aspect = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
    cw = int(min(w, round(np.sqrt(area * w * h * aspect))))
    ch = int(min(h, round(np.sqrt(area * w * h / aspect))))
    x0 = int(rng.integers(0, w - cw + 1))
    y0 = int(rng.integers(0, h - ch + 1))
    img = img.crop((x0, y0, x0 + cw, y0 + ch))
    if rng.random() < 0.5:
        img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    for enh in (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color):
        img = enh(img).enhance(float(rng.uniform(0.7, 1.3)))
    return img.rotate(float(rng.uniform(-10, 10)), resample=Image.Resampling.BILINEAR, expand=False)


def _labels():
    from posterdb.core.genres import parse_genres, to_multi_hot

    rows = label_rows()
    Y = to_multi_hot([parse_genres(r["genres"])[0] for r in rows])
    years = np.array([int(r["year"]) if str(r.get("year", "")).strip().isdigit() else -1 for r in rows])
    return rows, Y, years


def build(copies: int = 4, batch: int = 64, seed: int = 0, verbose: bool = True) -> Path:
    """Embed the originals and `copies` augmented copies of every shared poster (resumable per copy)."""
    from posterdb.embedders import get_embedder
    from posterdb.media.images import decode, read_bytes

    from .common import MODELS

    rows, _, _ = _labels()
    SCALE_CACHE.mkdir(parents=True, exist_ok=True)
    emb = get_embedder("mobilenet-v2", model_dir=MODELS, batch_size=batch, allow_download=False)
    for c in range(copies + 1):
        out = SCALE_CACHE / f"copy-{c}.npy"
        if out.exists():
            continue
        rng = np.random.default_rng(seed * 1000 + c)
        t0 = time.perf_counter()
        vecs, buf = [], []
        for r in rows:
            img = decode(read_bytes(POSTERS / r["file"]), r["file"]).image
            if c:
                img = augment(img, rng)
            buf.append(emb.preprocess(img))
            if len(buf) == batch:
                vecs.append(emb.embed_batch(np.stack(buf)))
                buf = []
        if buf:
            vecs.append(emb.embed_batch(np.stack(buf)))
        v = np.concatenate(vecs).astype(np.float32)
        np.save(out.with_suffix(".tmp.npy"), v)
        os.replace(out.with_suffix(".tmp.npy"), out)
        if verbose:
            print(f"copy {c}: {len(v)} posters in {time.perf_counter() - t0:.0f} s", flush=True)
    return SCALE_CACHE


def available_copies() -> int:
    c = 0
    while (SCALE_CACHE / f"copy-{c}.npy").exists():
        c += 1
    return c


def vectors(n: int, seed: int = 0):
    """(X (n, d) float32, Y (n, 19) uint8, years (n,), source (n,) original poster row).

    Real embeddings first (originals, then augmented copies in order), then noise copies."""
    rows, Y0, years0 = _labels()
    m = len(rows)
    c = available_copies()
    if c == 0:
        raise FileNotFoundError(f"no cached vectors in {SCALE_CACHE}: run python -m bench.scale_vectors")
    real = np.concatenate([np.load(SCALE_CACHE / f"copy-{i}.npy", mmap_mode="r")[:m]
                           for i in range(min(c, -(-n // m)))])
    if n <= len(real):
        X = np.ascontiguousarray(real[:n])
    else:
        rng = np.random.default_rng(seed)
        X = np.empty((n, real.shape[1]), np.float32)
        X[: len(real)] = real
        src = rng.integers(0, len(real), n - len(real))
        noise = rng.normal(size=(n - len(real), real.shape[1])).astype(np.float32)
        noise *= NOISE / np.linalg.norm(noise, axis=1, keepdims=True)
        base = real[src] / np.linalg.norm(real[src], axis=1, keepdims=True)
        X[len(real):] = base + noise
        X[len(real):] /= np.linalg.norm(X[len(real):], axis=1, keepdims=True)
        del noise, base
    source = np.arange(len(real)) % m
    if n > len(real):
        source = np.concatenate([source, source[src]])
    source = source[:n]
    return X, Y0[source].astype(np.uint8), years0[source], source


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--copies", type=int, default=4)
    build(ap.parse_args().copies)
