"""resnet50: torchvision ImageNet ResNet50 with the classifier removed (2048-d pooled features).

Also holds `TorchRunner`, the device/precision plumbing shared with the CLIP embedder.
"""
from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from posterdb.embedders.base import Embedder, l2_normalize
from posterdb.embedders.weights import (
    Download, WeightsLoadError, describe_mismatch, load_torch_state_dict, resolve_weights,
    sha256_file)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# torchvision's own file names (IMAGENET1K_V2 first, then V1); the hex is their sha256 prefix.
FILENAMES = ("resnet50-11ad3fa6.pth", "resnet50-0676ba61.pth")
URL = "https://download.pytorch.org/models/{}"
SIZE = 224


def resolve_device(device: str | None) -> str:
    """None/'auto' -> 'cuda' when available else 'cpu'; asking for CUDA without one is an error."""
    if device in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} requested but torch sees no CUDA device")
    return str(device)


def torch_hub_checkpoints() -> Path:
    """torch hub's checkpoint cache ($TORCH_HOME/hub/checkpoints)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


class TorchRunner:
    """Runs an image/text function on a device: uint8 NHWC batches are moved (pinned,
    non_blocking on CUDA) and normalised there; CUDA runs under bf16 autocast, channels_last."""

    def __init__(self, device: str, mean, std):
        self.device = torch.device(device)
        self.cuda = self.device.type == "cuda"
        self.mean = torch.tensor(mean, device=self.device).view(1, 3, 1, 1) * 255.0
        self.std = torch.tensor(std, device=self.device).view(1, 3, 1, 1) * 255.0
        self._pinned: torch.Tensor | None = None

    def prepare(self, module: torch.nn.Module) -> torch.nn.Module:
        module = module.eval().to(self.device)
        if self.cuda:
            module = module.to(memory_format=torch.channels_last)
        return module

    def autocast(self):
        if self.cuda:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _to_device(self, arr: np.ndarray) -> torch.Tensor:
        arr = np.ascontiguousarray(arr)
        t = torch.from_numpy(arr if arr.flags.writeable else arr.copy())
        if not self.cuda:
            return t
        if self._pinned is None or self._pinned.shape[1:] != t.shape[1:] or len(self._pinned) < len(t) \
                or self._pinned.dtype != t.dtype:
            self._pinned = torch.empty(t.shape, dtype=t.dtype).pin_memory()
        # safe to reuse: every call ends with a device->host copy, so the last upload finished
        buf = self._pinned[: len(t)]
        buf.copy_(t)
        return buf.to(self.device, non_blocking=True)

    def images(self, batch: np.ndarray) -> torch.Tensor:
        """uint8 (n,H,W,3) -> normalised float (n,3,H,W) channels_last; float (n,3,H,W) is
        taken as already normalised."""
        x = self._to_device(batch)
        if x.dtype == torch.uint8:
            if x.ndim != 4 or x.shape[-1] != 3:
                raise ValueError(f"expected uint8 (n, H, W, 3), got {tuple(x.shape)}")
            x = x.permute(0, 3, 1, 2).float()  # a channels_last view, no copy
            return ((x - self.mean) / self.std).contiguous(memory_format=torch.channels_last)
        return x.float()

    def run(self, fn, x) -> np.ndarray:
        """fn(prepared x) under inference_mode (+ bf16 autocast on CUDA) -> L2-normalised rows.
        x is a uint8/float image batch (numpy) or a ready tensor (e.g. tokens)."""
        with torch.inference_mode():
            if isinstance(x, np.ndarray):
                x = self.images(x)
            with self.autocast():
                y = fn(x)
            return l2_normalize(y.float().cpu().numpy())


class ResNet50Embedder(Embedder):
    """ImageNet ResNet50 pooled features; preprocess = squash to 224x224 uint8 HWC."""

    name = "resnet50"
    version = "torchvision-squash224-1"
    dim = 2048

    def __init__(self, *, model_dir: str | Path | None = None, weights: str | Path | None = None,
                 device: str | None = None, batch_size: int | None = None,
                 allow_download: bool | None = None):
        import torchvision

        hub = torch_hub_checkpoints()
        self.path = resolve_weights(
            "resnet50", FILENAMES, explicit=weights, model_dir=model_dir,
            cache_paths=[hub / f for f in FILENAMES],
            download=Download(URL.format(FILENAMES[0]), "download.pytorch.org",
                              lambda: _download_torchvision(hub / FILENAMES[0])),
            allow_download=allow_download)
        self.weights_sha256 = sha256_file(self.path)
        self.device = resolve_device(device)
        self.batch_size = batch_size or (256 if self.device.startswith("cuda") else 32)
        model = torchvision.models.resnet50(weights=None)
        state = load_torch_state_dict(self.path, "torchvision ResNet50")
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as e:
            detail = describe_mismatch(model.state_dict(), state)
            raise WeightsLoadError(f"{self.path}: not a torchvision ResNet50 state dict: {detail}") from e
        model.fc = torch.nn.Identity()
        self._runner = TorchRunner(self.device, IMAGENET_MEAN, IMAGENET_STD)
        self.model = self._runner.prepare(model)

    def preprocess(self, image: Image.Image) -> np.ndarray:
        if image.mode != "RGB":
            image = image.convert("RGB")
        return np.asarray(image.resize((SIZE, SIZE), Image.BILINEAR), dtype=np.uint8)

    def embed_batch(self, batch: np.ndarray) -> np.ndarray:
        if len(batch) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self._runner.run(self.model, batch)


def _download_torchvision(dest: Path) -> Path:
    torch.hub.download_url_to_file(URL.format(dest.name), str(dest),
                                   hash_prefix=dest.stem.rsplit("-", 1)[-1], progress=False)
    return dest
