"""`Backbones`: the fine-tuned backbones a store keeps (`models/<sha256>.pt`), as embedders.

Torch is imported only when one is loaded; a file is used only after its sha256 matches the one
recorded in DuckDB with the model.
"""
from __future__ import annotations

from pathlib import Path

from posterdb.core.errors import RefusedError
from posterdb.embedders.base import Embedder
from posterdb.storage.catalog import Catalog

MODELS_DIR = "models"


class Backbones:
    """Fine-tuned backbones inside one store (`StoreModels` asks for them by name)."""

    def __init__(self, catalog: Catalog, root: Path):
        self.catalog, self.root = catalog, Path(root)

    @property
    def folder(self) -> Path:
        return self.root / MODELS_DIR

    def embedder(self, name: str, device: str | None = None) -> Embedder:
        """The stored fine-tuned model `name`, loaded only after its file's sha256 matches the one
        recorded in DuckDB."""
        from posterdb.finetune.embedder import FineTunedEmbedder

        with self.catalog.read() as con:
            spec = self.catalog.model_spec(con, name)
        if spec is None:
            raise RefusedError(f"this store has no fine-tuned model {name!r}; run `posterdb finetune`")
        return FineTunedEmbedder(self.folder / f"{spec.weights_sha256}.pt", spec.weights_sha256,
                                 device=device)
