"""The embedder interface: name, dimension, preprocess one image, embed a batch."""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class ModelSpec:
    """What made a store's vectors. Two specs with the same name but other fields are incompatible."""

    name: str
    version: str
    weights_sha256: str
    dim: int


class Embedder(ABC):
    """Turns RGB PIL images into L2-normalised float32 vectors.

    `preprocess` runs in worker threads (must be thread-safe and not touch the model);
    `embed_batch` runs in the caller's thread on a stacked batch of preprocess outputs.
    """

    name: str
    version: str
    dim: int
    weights_sha256: str
    device: str = "cpu"
    batch_size: int = 64
    supports_text: bool = False

    @property
    def spec(self) -> ModelSpec:
        return ModelSpec(self.name, self.version, self.weights_sha256, self.dim)

    @abstractmethod
    def preprocess(self, image: Image.Image) -> np.ndarray:
        """One RGB image -> one model input array (fixed shape for this embedder)."""

    @abstractmethod
    def embed_batch(self, batch: np.ndarray) -> np.ndarray:
        """Stacked preprocess outputs (n, ...) -> (n, dim) float32, rows L2-normalised."""

    def embed_images(self, images: list[Image.Image]) -> np.ndarray:
        """Convenience: preprocess + embed in batches, in this thread."""
        if not images:
            return np.zeros((0, self.dim), dtype=np.float32)
        out = []
        for i in range(0, len(images), self.batch_size):
            chunk = images[i : i + self.batch_size]
            out.append(self.embed_batch(np.stack([self.preprocess(im) for im in chunk])))
        return np.concatenate(out)

    def embed_text(self, texts: list[str]) -> np.ndarray:
        """(n, dim) float32 L2-normalised text vectors in the image space (CLIP only)."""
        raise NotImplementedError(f"model {self.name!r} has no text encoder; use a CLIP store")


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Row-wise L2 normalisation to float32; zero rows stay zero."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)
