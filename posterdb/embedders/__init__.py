"""Image embedders: a registry of models, imported lazily (mobilenet-v2 needs no torch, and
checking a model's name imports no model code at all)."""
from __future__ import annotations

import importlib
import re
from pathlib import Path
from typing import TYPE_CHECKING

from posterdb.core.errors import UsageError

if TYPE_CHECKING:
    from posterdb.embedders.base import Embedder

_LAZY = {"Embedder": "base", "ModelSpec": "base", "l2_normalize": "base",
         "WeightsLoadError": "weights", "default_model_dir": "weights", "sha256_file": "weights"}


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'posterdb.embedders' has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)

EMBEDDER_NAMES = ("mobilenet-v2", "resnet50", "clip")
_CLASSES = {
    "mobilenet-v2": ("mobilenet", "MobileNetV2Embedder"),
    "resnet50": ("resnet", "ResNet50Embedder"),
    "clip": ("clip", "ClipEmbedder"),
    # no weights: a deterministic stand-in for tests (not listed in EMBEDDER_NAMES)
    "fake-pixels": ("fake", "FakePixelEmbedder"),
}

FINETUNED_PREFIX = "mobilenet-v2-ft-"
_FINETUNED_RE = re.compile(r"^mobilenet-v2-ft-[0-9a-f]{12}$")


def finetuned_name(sha256: str) -> str:
    """A fine-tuned backbone's model name: base + the first 12 hex of its weights' sha256."""
    return FINETUNED_PREFIX + sha256[:12]


def is_finetuned_name(name) -> bool:
    """True for names `posterdb finetune` gives (their weights live inside the store)."""
    return bool(_FINETUNED_RE.match(str(name)))


def check_model_name(name: str | None) -> str | None:
    """A known embedder name (or None: the store's), without loading it."""
    if name is not None and name not in _CLASSES and not is_finetuned_name(name):
        raise UsageError(f"unknown model {name!r}; valid names: {', '.join(EMBEDDER_NAMES)} "
                         "or a fine-tuned mobilenet-v2-ft-<hash> stored in the store")
    return name


__all__ = ["check_model_name", "EMBEDDER_NAMES", "Embedder", "ModelSpec", "WeightsLoadError", "default_model_dir",
           "get_embedder", "l2_normalize", "sha256_file"]


def get_embedder(name: str, *, model_dir: str | Path | None = None, weights: str | Path | None = None,
                 device: str | None = None, **options) -> Embedder:
    """Build the embedder `name` (one of EMBEDDER_NAMES).

    model_dir / weights: where to look for the weights first (see weights.resolve_weights);
    device: None = auto (CUDA if available); options go to the model class, e.g.
    allow_download=False, batch_size=..., num_threads=... (mobilenet-v2), arch=/pretrained= (clip).
    """
    if name not in _CLASSES:
        raise UsageError(f"unknown embedder {name!r}; valid names: {', '.join(EMBEDDER_NAMES)}")
    module, cls = _CLASSES[name]
    klass = getattr(importlib.import_module(f"{__name__}.{module}"), cls)
    return klass(model_dir=model_dir, weights=weights, device=device, **options)
