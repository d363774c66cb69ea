"""Realistic synthetic poster vectors at any size, built from the real MobileNet vectors.

Why not real vectors + small noise (what `search_latency` uses): that makes n/5,097 tight copies
of each poster, which an IVF index finds trivially. Here each vector is a *blend* of 3 random real
posters (Dirichlet(1) weights) around the real mean, plus noise drawn from the real covariance:

    x = relu(μ + s·Σ wᵢ(rᵢ − μ) + c·(g·R)/√N),  g ~ N(0, I_N),  then L2-normalised

where rᵢ are real vectors, R = real − μ (N × 1280), s rescales the blended residual to the norm
of its dominant parent's (averaging would otherwise shrink it towards the mean), c = 0.7 (noise
inside the real data's subspace, not white noise in 1280 dims), and relu keeps the features
non-negative like pooled ReLU activations. `check()` compares a 5,097-vector sample with the
5,097 real vectors: nearest-neighbour and 10th-neighbour cosine, random-pair cosine, zero
fraction, PCA spectrum. Vectors are float32 .npy files written chunk by chunk (memory-mapped,
never whole in memory); the same (n, seed) gives the same file.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

PARENTS = 3
ALPHA = 1.0
NOISE = 0.7
CHUNK = 20_000
BASE_SEED, QUERY_SEED = 1, 999


def blends(real: np.ndarray, m: int, rng: np.random.Generator) -> np.ndarray:
    """m new vectors (float32, unit norm) from the real ones; see the module docstring."""
    real = np.asarray(real, dtype=np.float32)
    mu = real.mean(0)
    resid = real - mu
    idx = rng.integers(0, len(real), (m, PARENTS))
    w = rng.dirichlet([ALPHA] * PARENTS, m).astype(np.float32)
    r = np.einsum("mk,mkd->md", w, resid[idx])
    dom = idx[np.arange(m), w.argmax(1)]
    r *= (np.linalg.norm(resid[dom], axis=1) / np.maximum(np.linalg.norm(r, axis=1), 1e-9))[:, None]
    g = rng.standard_normal((m, len(real)), dtype=np.float32) / np.float32(np.sqrt(len(real)))
    x = np.maximum(mu + r + np.float32(NOISE) * (g @ resid), 0)
    x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-9)
    return x


def generate(real: np.ndarray, n: int, path: Path, seed: int = BASE_SEED) -> Path:
    """Write n blended vectors to `path` (float32 .npy); reuse the file when already complete."""
    path = Path(path)
    if path.exists():
        v = np.load(path, mmap_mode="r")
        if v.shape == (n, real.shape[1]):
            return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".part.npy")
    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(n, real.shape[1]))
    for start in range(0, n, CHUNK):
        m = min(CHUNK, n - start)
        out[start:start + m] = blends(real, m, np.random.default_rng([seed, start]))
    out.flush()
    del out
    os.replace(tmp, path)
    return path


def read_rows(path: Path, start: int, stop: int) -> np.ndarray:
    """Rows [start, stop) of a float32 .npy as a fresh array (plain reads, no mapping kept, so the
    page cache does not count in this process's memory)."""
    with open(path, "rb") as f:
        np.lib.format.read_magic(f)
        shape, _, _ = np.lib.format.read_array_header_1_0(f)
        d = shape[1]
        f.seek(f.tell() + start * d * 4)
        return np.fromfile(f, dtype=np.float32, count=(stop - start) * d).reshape(-1, d)


def neighbour_stats(x: np.ndarray) -> dict:
    """Percentiles (5/50/95) of nearest- and 10th-neighbour cosine and random-pair cosine."""
    s = x @ x.T
    np.fill_diagonal(s, -1)
    top = -np.sort(-s, axis=1)[:, :10]
    pairs = s[np.triu_indices(len(x), 1)][::97]
    var = np.linalg.svd(x - x.mean(0), compute_uv=False) ** 2
    cum = np.cumsum(var) / var.sum()
    pct = lambda a: [round(float(q), 3) for q in np.percentile(a, [5, 50, 95])]  # noqa: E731
    return {"nn1": pct(top[:, 0]), "nn10": pct(top[:, 9]), "pair": pct(pairs),
            "zeros": round(float((x < 1e-6).mean()), 3),
            "pca_var_64_256": [round(float(cum[63]), 3), round(float(cum[255]), 3)]}


def check(real: np.ndarray) -> dict:
    """The real set's statistics next to an equally large sample of blends."""
    fake = blends(real, len(real), np.random.default_rng(7))
    return {"real": neighbour_stats(real), "blends": neighbour_stats(fake)}


def main() -> None:
    from .common import real_vectors

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true")
    ap.parse_args()
    real = real_vectors()
    for k, v in check(real).items():
        print(f"{k:7s}", v)


if __name__ == "__main__":
    main()
