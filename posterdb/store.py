"""`PosterDB`: the composition root. It builds one store's services once, each with typed
collaborators, and exposes a few verbs plus the services by name.

    db = PosterDB.open("posterdb-store")
    db.ingest("scans/", "scans/labels.csv")          # verbs: ingest, similar, classify, train,
    db.similar(12, k=10)                              #        remove, info, check
    db.posters.get([1, 2]) · db.search.near_duplicates() · db.genres.evaluate()
    db.curation.queue() · db.reading.identify(...) · db.finetune.run()

Layout of a store:
    catalog.duckdb           metadata, labels, vectors, settings (the truth)     → Catalog
    images/ab/<sha256>.jpg   content-addressed copies of every stored poster     → ImageStore
    index/<model>.faiss      FAISS cache of one model's vectors (+ .json sidecar) → IndexCache
    classifiers/             fitted classifiers, loaded only after a hash check  → GenreService
    models/                  fine-tuned backbones                                 → FinetuneService

Dependencies point one way: this module imports the services, none of them imports it.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from posterdb.classify.service import GenreService
from posterdb.core.errors import StoreError
from posterdb.core.records import Classification, Hit, IngestReport
from posterdb.core.settings import CATALOG_FILE, Settings
from posterdb.reading.daily import DailySetup
from posterdb.curation.intake import Curation
from posterdb.finetune.backbones import Backbones
from posterdb.finetune.service import FinetuneService
from posterdb.ingest.service import Ingestion
from posterdb.maintenance.service import Maintenance
from posterdb.storage.catalog import Catalog
from posterdb.storage.image_store import ImageStore
from posterdb.storage.posters import StoredPosters
from posterdb.vectors.cache import IndexCache
from posterdb.vectors.models import StoreModels
from posterdb.vectors.similarity import Similarity

__all__ = ["PosterDB"]


class PosterDB:
    """A poster store. Create with `PosterDB.open(dir)`; every call opens DuckDB briefly."""

    def __init__(self, root: Path, settings: Settings, *, busy_timeout: float = 60.0,
                 exact_max: int | None = None):
        self.root = Path(root)
        self.catalog = Catalog(self.root / CATALOG_FILE, busy_timeout=busy_timeout)
        self.settings = settings
        self.images = ImageStore(self.root)
        backbones = Backbones(self.catalog, self.root)
        self.models = StoreModels(self.catalog, settings, backbones)
        self.indexes = IndexCache(self.catalog, self.root, self.models, exact_max=exact_max)
        self.finetune = FinetuneService(self.catalog, self.root, self.images, self.indexes,
                                        backbones, settings)
        self.posters = StoredPosters(self.catalog, self.images)
        self.search = Similarity(self.catalog, self.indexes, self.posters, self.models)
        self.genres = GenreService(self.catalog, self.root, self.images, self.models,
                                   self.posters)
        self.ingestion = Ingestion(self.catalog, self.images, self.indexes, self.models,
                                   self.genres)
        self.maintenance = Maintenance(self.catalog, self.images, self.indexes)
        self.curation = Curation(self.catalog, self.genres, self.ingestion, self.search,
                                 self.posters, self.models, self.maintenance)
        self.daily = DailySetup(self.catalog, self.images, self.posters, self.genres, self.models,
                                self.search, settings)

    @classmethod
    def open(cls, root: str | Path | None = None, *, create: bool = True,
             model_dir: str | Path | None = None, settings: Settings | None = None,
             busy_timeout: float = 60.0, exact_max: int | None = None) -> PosterDB:
        """Open a store. create=True (a writer): initialise or migrate it. create=False (a reader):
        it must exist at this code's schema version (SchemaVersionError says what to do).
        `root` and `model_dir` (None: from the settings, i.e. the environment or the store's own
        saved settings) win over `settings`."""
        settings = settings or Settings.from_env()
        settings = replace(settings, **{k: Path(v) for k, v in
                                        (("store", root), ("model_dir", model_dir)) if v})
        root = settings.store
        catalog_file = root / CATALOG_FILE
        if not catalog_file.exists():
            if not create:
                raise StoreError(f"no posterdb store at {root} (run `posterdb ingest` first)")
            root.mkdir(parents=True, exist_ok=True)
        probe = Catalog(catalog_file, busy_timeout=busy_timeout)
        if create:
            probe.migrate()
        else:
            probe.check_schema()
        with probe.read() as con:
            saved = probe.store_settings(con)
        return cls(root, settings.with_store(saved), busy_timeout=busy_timeout,
                   exact_max=exact_max)

    @staticmethod
    def exists(root: str | Path) -> bool:
        """Whether `root` holds a store (its catalogue), without opening or creating anything."""
        return (Path(root) / CATALOG_FILE).is_file()

    # -- services built on first use ------------------------------------------------------------

    @property
    def reading(self):
        """The ReadingService (read / identify / search), one per store, built on first use by
        `daily` (OCR and fuzzy matching are the `read` extra)."""
        return self.daily.reading()

    # -- verbs ----------------------------------------------------------------------------------

    def generation(self) -> int:
        """Bumped by every committed write: compare to know whether cached views are stale."""
        return self.catalog.current_generation()

    def ingest(self, path, labels=None, *, model: str | None = None, auto_classify: bool = True,
               **options) -> IngestReport:
        """Ingest a folder or file (+ optional labels file); see `posterdb.ingest.run_ingest`."""
        return self.ingestion.run(path, labels, model=model, auto_classify=auto_classify,
                                  **options)

    def similar(self, query, k: int = 10, *, decades: Sequence[int] | None = None,
                genres: Sequence[str] | None = None, model: str | None = None,
                exclude: Sequence[int] = ()) -> list[Hit]:
        """Nearest stored posters to a poster id, an image (path or PosterImage) or a vector."""
        return self.search.similar(query, k, decades=decades, genres=genres, exclude=exclude,
                                   model=model)

    def classify(self, images, years=None, *, model: str | None = None,
                 n_evidence: int = 10) -> list[Classification]:
        """Genres, probabilities and evidence posters for images (paths or PosterImage)."""
        return self.genres.classify(images, years, model=model, n_evidence=n_evidence)

    def train(self, model: str | None = None, **params) -> dict:
        """Fit the genre classifier on every labelled poster (review labels win) and store it."""
        self.catalog.require_writable()   # a read-only store: refused now, not after the fit
        return self.genres.train(model, **params)

    def remove(self, ids: Sequence[int]) -> list[int]:
        """Remove posters from DuckDB, every FAISS index and the image folder; returns removed
        ids (`maintenance.remove` gives the whole report)."""
        return self.maintenance.remove(ids)["removed"]

    def info(self) -> dict:
        """Counts by decade and genre, models, index state, classifiers."""
        with self.catalog.read() as con:
            c = self.catalog.info_counts(con)
            reading = {"read": self.catalog.read_count(con)} | self.catalog.identification_counts(con)
        models = [{"name": s.name, "version": s.version, "dim": s.dim,
                   "weights_sha256": s.weights_sha256, "vectors": c["vectors"][s.name],
                   "index": {k: v for k, v in self.indexes.state(s.name).to_dict().items()
                             if k != "model"}}
                  for s in c["specs"]]
        return {"store": str(self.root), "exists": True, "posters": c["posters"], "labelled": c["labelled"],
                "reviewed": c["reviewed"], "by_decade": c["by_decade"], "by_genre": c["by_genre"],
                "predicted_by_genre": c["predicted_by_genre"],
                "ingest_errors": c["ingest_errors"], "models": models,
                "classifiers": [{"model": r.model, "n_train": r.n_train,
                                 "trained_at": r.trained_at} for r in c["classifiers"]],
                "reading": reading}

    @staticmethod
    def absent_info(root: str | Path) -> dict:
        """`info()`'s shape for a folder with no store yet: a reader reports it, creates nothing."""
        return {"store": str(root), "exists": False, "posters": 0, "labelled": 0, "reviewed": 0,
                "by_decade": {}, "by_genre": {}, "predicted_by_genre": {}, "ingest_errors": 0,
                "models": [], "classifiers": [], "reading": {"read": 0}}

    def check(self, deep: bool = False) -> dict:
        """Consistency report; `ok` is False when DuckDB, FAISS files and images disagree."""
        return self.maintenance.check(deep)
