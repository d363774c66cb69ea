"""`StoreModels`: the embedding models of one store — which made its vectors, which one a
command uses when none is named (one policy, here), and the embedders themselves.

The default: the store's model when it holds exactly one; else the settings' default model
(mobilenet-v2) when the store holds it or holds none; else the first it holds. Every service
asks `resolve(name)`, so `--model` may always be left out. An embedder is built once per
store and checked against the version and weights that made the vectors already stored.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

import posterdb.embedders as registry
from posterdb.core.errors import ModelMismatchError, ModelNotHeldError
from posterdb.core.settings import Settings
from posterdb.embedders.base import Embedder, ModelSpec
from posterdb.storage.catalog import Catalog


class FinetunedModels(Protocol):
    """Where fine-tuned backbones come from (their weights live inside the store)."""

    def embedder(self, name: str, device: str | None = None) -> Embedder: ...


class StoreModels:
    """The models of one store (see the module docstring)."""

    def __init__(self, catalog: Catalog, settings: Settings,
                 finetuned: FinetunedModels | None = None):
        self.catalog, self.settings, self.finetuned = catalog, settings, finetuned
        self._embedders: dict[str, Embedder] = {}
        self._specs: tuple[int, list[ModelSpec]] = (-1, [])

    def specs(self) -> list[ModelSpec]:
        """The models whose vectors the store holds (cached until the store's generation moves)."""
        gen = self.catalog.current_generation()
        if self._specs[0] != gen:
            with self.catalog.read() as con:
                self._specs = (gen, self.catalog.model_specs(con))
        return self._specs[1]

    def names(self) -> list[str]:
        return [m.name for m in self.specs()]

    def default(self) -> str:
        names = self.names()
        if len(names) == 1:
            return names[0]
        wanted = self.settings.default_model
        return wanted if wanted in names or not names else names[0]

    def resolve(self, name: str | None) -> str:
        """`name`, or the store's default when None."""
        return name or self.default()

    def require(self, name: str | None) -> str:
        """`resolve(name)`, refused (one line, exit 3) when the store holds no vectors from it."""
        name = self.resolve(name)
        names = self.names()
        if name not in names:
            raise ModelNotHeldError.naming(name, names)
        return name

    def embedder(self, name: str | None = None, **options) -> Embedder:
        """The embedder for `name` (cached), checked against the vectors already stored."""
        name = self.resolve(name)
        if name in self._embedders:
            return self._embedders[name]
        if registry.is_finetuned_name(name) and self.finetuned is not None:
            emb = self.finetuned.embedder(name, options.get("device"))
        else:
            emb = registry.get_embedder(name, model_dir=self.settings.model_dir, **options)
            with self.catalog.read() as con:
                known = self.catalog.model_spec(con, emb.name)
            if known is not None and known != emb.spec:
                raise ModelMismatchError(
                    f"this store's {name!r} vectors came from version {known.version} "
                    f"(weights {known.weights_sha256[:12]}), but the model found is version "
                    f"{emb.version} (weights {emb.weights_sha256[:12]})")
        self._embedders[name] = emb
        return emb

    def use(self, embedder: Embedder) -> None:
        """Use an already constructed embedder (tests, custom weights)."""
        self._embedders[embedder.name] = embedder

    def embed(self, images: Sequence, model: str | None = None) -> np.ndarray:
        """Vectors for PosterImage objects or image paths (validated like ingest)."""
        from posterdb.media.images import PosterImage, open_poster

        loaded = [im if isinstance(im, PosterImage) else open_poster(im) for im in images]
        return self.embedder(model).embed_images([p.image for p in loaded])
