"""`Ingestion`: `posterdb ingest` on one store, with its collaborators wired once.

It resolves the model (the store's default when none is named), hands new unlabelled posters to
the store's trained classifier when there is one (auto-classification, committed with the
posters), and runs the stages in `posterdb.ingest` (plan → engine → commit).
"""
from __future__ import annotations

from posterdb.classify.service import GenreService
from posterdb.core.errors import ClassifierFormatError
from posterdb.core.records import IngestReport
from posterdb.ingest import run_ingest
from posterdb.storage.catalog import Catalog
from posterdb.storage.image_store import ImageStore
from posterdb.vectors.cache import IndexCache
from posterdb.vectors.models import StoreModels


class Ingestion:
    """Ingest into one store (see the module docstring)."""

    def __init__(self, catalog: Catalog, images: ImageStore, indexes: IndexCache,
                 models: StoreModels, genres: GenreService):
        self.catalog, self.images, self.indexes = catalog, images, indexes
        self.models, self.genres = models, genres

    def run(self, path, labels=None, *, model: str | None = None, auto_classify: bool = True,
            **options) -> IngestReport:
        """Ingest a folder or file (+ optional labels file); options: see `run_ingest`."""
        model = self.models.resolve(model)
        embedder = self.models.embedder(model)
        classifier, warnings = None, []
        if auto_classify:
            try:
                classifier = self.genres.auto_classifier(model)
            except ClassifierFormatError as e:   # ingest anyway; auto-classification waits
                warnings.append(f"not auto-classifying: {e}")
        report = run_ingest(self.catalog, self.images, self.indexes, embedder, path, labels,
                            classifier=classifier, **options)
        report.warnings += warnings
        return report

    def errors(self, limit: int = 100) -> list[dict]:
        """The latest files ingest could not store, with their reasons."""
        with self.catalog.read() as con:
            return self.catalog.ingest_errors(con, limit)
