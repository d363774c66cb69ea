"""Fine-tuned MobileNetV2 backbones as embedders: weights saved with their sha256, loaded only
after the hash matches (torch.load(weights_only=True), so a pickle cannot run code).

Identity: name `mobilenet-v2-ft-<sha256[:12]>` (a new fine-tune is a new model in the store, with
its own vector table and index, never a silent replacement), version `<base>+ft:<run>` naming the
base model and the training run, weights_sha256 the file's full hash.
"""
from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from posterdb.core.atomic import write_atomic
from posterdb.core.errors import WeightsLoadError
from posterdb.embedders import finetuned_name, is_finetuned_name  # noqa: F401  (torch-free, re-exported)
from posterdb.embedders.base import Embedder
from posterdb.embedders.mobilenet_torch import DIM, FORMAT, FloatMobileNetV2
from posterdb.embedders.weights import sha256_file

SIZE = 224


def save_backbone(backbone: FloatMobileNetV2, folder: str | Path, **meta) -> tuple[Path, str]:
    """Write the backbone atomically as <folder>/<sha256>.pt; returns (path, sha256)."""
    buf = io.BytesIO()  # a few MB: named by its hash, so it is hashed before it is written
    torch.save(backbone.to_checkpoint(**meta), buf)
    data = buf.getvalue()
    digest = hashlib.sha256(data).hexdigest()
    path = Path(folder) / f"{digest}.pt"
    write_atomic(path, data)
    return path, digest


def load_backbone(path: str | Path, expected_sha256: str) -> tuple[FloatMobileNetV2, dict]:
    """Load a saved backbone after checking its sha256; WeightsLoadError names the file and why."""
    path = Path(path)
    if not path.is_file():
        raise WeightsLoadError(f"{path}: fine-tuned weights file is missing")
    got = sha256_file(path)
    if got != expected_sha256:
        raise WeightsLoadError(f"{path}: sha256 {got[:12]}… does not match the recorded "
                               f"{expected_sha256[:12]}… (file changed or tampered with); refusing to load it")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        model = FloatMobileNetV2.from_checkpoint(ckpt)
    except Exception as e:
        raise WeightsLoadError(f"{path}: not a {FORMAT} checkpoint ({type(e).__name__}: {e})") from e
    return model.float().eval(), dict(ckpt.get("meta", {}))


class FineTunedEmbedder(Embedder):
    """A fine-tuned float MobileNetV2; preprocess = whole poster squashed to 224x224 uint8 (the same
    as mobilenet-v2); CUDA (bf16, channels_last) when present, else CPU float32."""

    dim = DIM

    def __init__(self, path: str | Path, sha256: str, *, device: str | None = None,
                 batch_size: int | None = None, num_threads: int | None = None):
        from posterdb.finetune.train import resolve_device

        self.path = Path(path)
        self.model, self.meta = load_backbone(self.path, sha256)
        self.weights_sha256 = sha256
        self.name = finetuned_name(sha256)
        self.version = f"{self.meta.get('base', 'mobilenet-v2')}+ft:{self.meta.get('run', 'unknown')}"
        self.device = str(resolve_device(device))
        self.batch_size = batch_size or (256 if self.device.startswith("cuda") else 32)
        if num_threads and not self.device.startswith("cuda"):
            torch.set_num_threads(int(num_threads))
        self.model = self.model.to(self.device)

    def preprocess(self, image: Image.Image) -> np.ndarray:
        if image.mode != "RGB":
            image = image.convert("RGB")
        return np.asarray(image.resize((SIZE, SIZE), Image.BILINEAR), dtype=np.uint8)

    def embed_batch(self, batch: np.ndarray) -> np.ndarray:
        from posterdb.finetune.train import embed

        batch = np.ascontiguousarray(batch, dtype=np.uint8)
        if len(batch) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        if batch.ndim != 4 or batch.shape[1:] != (SIZE, SIZE, 3):
            raise ValueError(f"{self.name} expects (n, {SIZE}, {SIZE}, 3) uint8, got {batch.shape}")
        x = torch.from_numpy(batch).permute(0, 3, 1, 2)
        return embed(self.model, x, self.device, batch_size=self.batch_size)
