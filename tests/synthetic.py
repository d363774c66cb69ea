"""Synthetic posters for tests that need many images fast (with the `fake-pixels` embedder).

Each poster is a small PNG: a two-colour gradient plus a few blocks, seeded per poster, so
vectors differ; a `reprint` is the same picture re-encoded as JPEG (a near-duplicate).
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image

from posterdb.core.genres import GENRES

DECADES = (1930, 1950, 1970, 1990, 2010)


def picture(seed: int, size: tuple[int, int] = (48, 72)) -> Image.Image:
    rng = np.random.default_rng(seed)
    w, h = size
    a, b = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    t = np.linspace(0, 1, h)[:, None, None]
    img = (a * (1 - t) + b * t).repeat(w, axis=1)
    for _ in range(3):
        x, y = rng.integers(0, w - 8), rng.integers(0, h - 8)
        img[y:y + 12, x:x + 12] = rng.integers(0, 256, 3)
    return Image.fromarray(img.astype(np.uint8))


def make_posters(dst: Path, n: int, *, seed: int = 0, labelled: int | None = None) -> Path:
    """dst/images/p0000.png ... and dst/labels.csv (title, year over five decades, 1-2 genres;
    only the first `labelled` rows carry genres)."""
    (dst / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    labelled = n if labelled is None else labelled
    rows = []
    for i in range(n):
        name = f"images/p{seed:02d}{i:04d}.png"
        picture(seed * 100_000 + i).save(dst / name)
        year = DECADES[i % len(DECADES)] + int(rng.integers(0, 10))
        genres = [GENRES[j] for j in sorted(rng.choice(len(GENRES), size=1 + i % 2, replace=False))]
        rows.append({"file": name, "title": f"Poster {i}", "year": year,
                     "genres": "|".join(genres) if i < labelled else ""})
    with open(dst / "labels.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=["file", "title", "year", "genres"])
        w.writeheader()
        w.writerows(rows)
    return dst
