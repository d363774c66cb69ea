"""`fake-pixels`: a deterministic stand-in for pretrained weights (tests and demos without them).

Like simonw/llm's test embedding model: no weights, no download, no randomness. The vector is the
image shrunk to 8×8 RGB, centred and scaled (192 values) followed by a small sha256-derived
tail of the same pixels (64 values), L2-normalised. Identical pixels give identical vectors;
a re-encoded or slightly changed poster gives a nearby one, so similarity, near-duplicates,
the neighbour vote and the index behave as they do with a real model, only much faster.
Its quality as a genre feature is poor by design: tests that judge features use mobilenet-v2.
"""
from __future__ import annotations

import hashlib

import numpy as np
from PIL import Image

from posterdb.embedders.base import Embedder, l2_normalize

SIDE = 8
TAIL = 64


class FakePixelEmbedder(Embedder):
    """256-d vectors from the image's low-resolution pixels; fast and deterministic."""

    name = "fake-pixels"
    version = "1"
    dim = SIDE * SIDE * 3 + TAIL
    weights_sha256 = hashlib.sha256(b"posterdb fake-pixels v1").hexdigest()

    def __init__(self, model_dir=None, weights=None, device=None, batch_size: int = 64, **_):
        self.batch_size = batch_size

    def preprocess(self, image: Image.Image) -> np.ndarray:
        return np.asarray(image.convert("RGB").resize((SIDE, SIDE), Image.BILINEAR), np.uint8)

    def embed_batch(self, batch: np.ndarray) -> np.ndarray:
        batch = np.asarray(batch, dtype=np.float32).reshape(len(batch), -1) / 255.0
        centred = batch - batch.mean(axis=1, keepdims=True)
        tails = []
        for row in np.asarray(np.rint(batch * 15), np.uint8):  # coarse: near images share it
            digest = np.frombuffer(hashlib.sha256(row.tobytes()).digest() * 2, np.uint8)
            tails.append(digest[:TAIL].astype(np.float32) / 255.0 - 0.5)
        return l2_normalize(np.hstack([centred, 0.05 * np.asarray(tails, np.float32)]))
