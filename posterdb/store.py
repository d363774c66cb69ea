"""`PosterDB`: wires one store directory's components; the CLI and the page call only this.

Layout of a store:
    catalog.duckdb           metadata, labels, vectors (the source of truth)     → Catalog
    images/ab/<sha256>.jpg   content-addressed copies of every stored poster     → ImageStore
    index/<model>.faiss      FAISS cache of one model's vectors (+ .json sidecar) → IndexCache
    classifiers/             fitted classifiers, loaded only after a hash check  → GenreService

Reads of poster metadata (StoredPosters) and similarity searches (Similarity) are components
too. Dependencies point one way: this module imports the components, none of them imports it.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from posterdb.classify.service import GenreService
from posterdb.core.errors import ClassifierFormatError, ModelMismatchError, RefusedError, StoreError
from posterdb.core.records import (
    Classification,
    ExportedPoster,
    Hit,
    IndexState,
    IngestReport,
    StoredPoster,
)
from posterdb.core.rules import validate_genres
from posterdb.core.settings import Settings
from posterdb.curation.daily import DailySetup
from posterdb.curation.intake import Intake
from posterdb.embedders import is_finetuned_name
from posterdb.embedders.base import Embedder, ModelSpec
from posterdb.finetune.service import FinetuneService
from posterdb.media.images import PosterImage, open_poster
from posterdb.storage.catalog import Catalog
from posterdb.storage.image_store import ImageStore
from posterdb.storage.posters import StoredPosters
from posterdb.vectors.cache import IndexCache
from posterdb.vectors.index import VectorIndex
from posterdb.vectors.similarity import Similarity

DEFAULT_STORE = "posterdb-store"
DEFAULT_MODEL = "mobilenet-v2"
CATALOG_FILE = "catalog.duckdb"

__all__ = ["PosterDB", "StoredPoster", "ExportedPoster", "Hit", "Classification", "IndexState",
           "IngestReport", "DEFAULT_STORE", "DEFAULT_MODEL", "default_store_dir"]


def default_store_dir() -> Path:
    return Path(os.environ.get("POSTERDB_STORE", DEFAULT_STORE))


class PosterDB:
    """A poster store. Create with `PosterDB.open(dir)`; every method opens DuckDB briefly."""

    def __init__(self, root: Path, *, model_dir: str | Path | None = None,
                 busy_timeout: float = 60.0, exact_max: int | None = None):
        self.root = Path(root)
        self.model_dir = model_dir
        self.catalog = Catalog(self.root / CATALOG_FILE, busy_timeout=busy_timeout)
        self.images = ImageStore(self.root)
        self.indexes = IndexCache(self.catalog, self.root, exact_max=exact_max)
        self.stored = StoredPosters(self.catalog, self.images)
        self.similarity = Similarity(self.catalog, self.indexes, self.stored.posters, self.embed)
        self.genres = GenreService(self.catalog, self.root, self.images, self.embedder,
                                   self.stored.posters)
        self.intake = Intake(self.catalog, self.genres, ingest=self.ingest,
                             posters=self.stored.posters,
                             similar=self.similar, default_model=self.default_model)
        self.finetuning = FinetuneService(self.catalog, self.root, self.images, self.indexes, model_dir)
        self.daily = DailySetup(self.catalog, lambda: self.reading, model_dir)  # config, read+identify
        self._embedders: dict[str, Embedder] = {}
        self._derived: dict[str, tuple[int, object]] = {}  # key -> (generation, value)
        self._reading = None

    @classmethod
    def open(cls, root: str | Path | None = None, *, create: bool = True,
             model_dir: str | Path | None = None, busy_timeout: float = 60.0,
             exact_max: int | None = None) -> PosterDB:
        """Open a store. create=True (a writer): initialise or migrate it. create=False (a reader):
        it must exist at this code's schema version (SchemaVersionError says what to do)."""
        root = Path(root) if root is not None else default_store_dir()
        db = cls(root, model_dir=model_dir, busy_timeout=busy_timeout, exact_max=exact_max)
        if not db.catalog.path.exists():
            if not create:
                raise StoreError(f"no posterdb store at {root} (run `posterdb ingest` first)")
            root.mkdir(parents=True, exist_ok=True)
        if create:
            db.catalog.migrate()
        else:
            db.catalog.check_schema()
        if model_dir is None and (saved := db.settings().model_dir) is not None:
            db = cls(root, model_dir=saved, busy_timeout=busy_timeout, exact_max=exact_max)
        return db

    # -- paths (kept for callers of the old facade) --------------------------------------------

    @property
    def images_dir(self) -> Path:
        return self.images.folder

    def index_path(self, model: str) -> Path:
        return self.indexes.path(model)

    def image_relpath(self, sha256: str, suffix: str) -> str:
        return self.images.relpath(sha256, suffix)

    def image_file(self, image_path: str) -> Path:
        return self.images.file(image_path)

    # -- models -------------------------------------------------------------------------------

    def _cached(self, key: str, load):
        """A value derived from DuckDB, recomputed only when the store's generation moved."""
        gen = self.generation()
        hit = self._derived.get(key)
        if hit is not None and hit[0] == gen:
            return hit[1]
        with self.catalog.read() as con:
            value = load(con)
        self._derived[key] = (gen, value)
        return value

    def models(self) -> list[ModelSpec]:
        return self._cached("models", self.catalog.model_specs)

    def default_model(self) -> str:
        """The store's model when it has exactly one; else mobilenet-v2 if present."""
        names = [m.name for m in self.models()]
        if len(names) == 1:
            return names[0]
        return DEFAULT_MODEL if DEFAULT_MODEL in names or not names else names[0]

    def embedder(self, name: str | None = None, **options) -> Embedder:
        """The embedder for `name` (cached), checked against the vectors already stored."""
        from posterdb.embedders import get_embedder

        name = name or self.default_model()
        if name not in self._embedders and is_finetuned_name(name):  # weights inside the store
            self._embedders[name] = self.finetuning.embedder(name, options.get("device"))
        if name not in self._embedders:
            emb = get_embedder(name, model_dir=self.model_dir, **options)
            with self.catalog.read() as con:
                known = self.catalog.model_spec(con, emb.name)
            if known is not None and known != emb.spec:
                raise ModelMismatchError(
                    f"this store's {name!r} vectors came from version {known.version} "
                    f"(weights {known.weights_sha256[:12]}), but the model found is version "
                    f"{emb.version} (weights {emb.weights_sha256[:12]})")
            self._embedders[name] = emb
        return self._embedders[name]

    def set_embedder(self, embedder: Embedder) -> None:
        """Use an already constructed embedder (tests, custom weights)."""
        self._embedders[embedder.name] = embedder

    # -- the index ----------------------------------------------------------------------------

    def generation(self) -> int:
        """Bumped by every committed write: compare to know whether cached views are stale."""
        return self.catalog.current_generation()

    def index(self, model: str | None = None) -> VectorIndex:
        """The model's FAISS index, in line with DuckDB (loaded, synced or rebuilt as needed)."""
        return self.indexes.index(model or self.default_model())

    def index_state(self, model: str | None = None) -> IndexState:
        return self.indexes.state(model or self.default_model())

    def adopt_index(self, model: str, index: VectorIndex) -> None:
        self.indexes.adopt(model, index)

    def reindex(self, model: str | None = None) -> IndexState:
        """Throw the index file away and rebuild it from DuckDB."""
        return self.indexes.reindex(model or self.default_model())

    # -- reads --------------------------------------------------------------------------------

    def count(self) -> int:
        return self._cached("count", self.catalog.count)

    def posters(self, ids: Sequence[int] | None = None) -> list[StoredPoster]:
        """Metadata + labels (+ predictions) of the given posters, in the given order (all
        when None); rows asked for by id stay in memory until the generation moves."""
        return self.stored.posters(ids)

    def browse(self, *, genres: Sequence[str] | None = None, decades: Sequence[int] | None = None,
               offset: int = 0, limit: int = 24) -> tuple[int, list[StoredPoster]]:
        """The shop's view: (total, one page of posters) with any of the genres, in the decades."""
        return self.stored.browse(genres=genres, decades=decades, offset=offset, limit=limit)

    def poster(self, poster_id: int) -> StoredPoster:
        return self.stored.poster(poster_id)

    def find(self, text: str, limit: int = 20) -> list[StoredPoster]:
        """Posters whose title contains `text` (case-insensitive), or the poster with that id."""
        return self.stored.find(text, limit)

    def vectors(self, ids: Sequence[int], model: str | None = None) -> np.ndarray:
        """Stored vectors of these posters, in the given order."""
        return self.similarity.vectors(ids, model or self.default_model())

    # -- similarity ---------------------------------------------------------------------------

    def embed(self, images, model: str | None = None) -> np.ndarray:
        """Vectors for PosterImage objects or image paths (validated like ingest)."""
        loaded = [im if isinstance(im, PosterImage) else open_poster(im) for im in images]
        return self.embedder(model).embed_images([p.image for p in loaded])

    def similar(self, query, k: int = 10, *, decades: Sequence[int] | None = None,
                genres: Sequence[str] | None = None, model: str | None = None,
                exclude: Sequence[int] = ()) -> list[Hit]:
        """Nearest stored posters to a poster id, an image (path or PosterImage) or a vector.
        The query is embedded before DuckDB is opened (no session is held while embedding)."""
        return self.similarity.similar(query, k, decades=decades, genres=genres, exclude=exclude,
                                       model=model or self.default_model())

    def similar_to_vectors(self, vectors: np.ndarray, k: int = 10, *,
                           decades: Sequence[int] | None = None,
                           genres: Sequence[str] | None = None, model: str | None = None,
                           exclude: set[int] | Sequence[int] = ()) -> list[list[Hit]]:
        return self.similarity.similar_to_vectors(vectors, k, decades=decades, genres=genres,
                                                  exclude=exclude,
                                                  model=model or self.default_model())

    def near_duplicates(self, threshold: float = 0.97, model: str | None = None,
                        k: int = 5) -> list[tuple[int, int, float]]:
        """Pairs (a, b, cosine) of stored posters at or above the threshold, a < b, most similar first."""
        return self.similarity.near_duplicates(threshold, model=model or self.default_model(), k=k)

    # -- writes -------------------------------------------------------------------------------

    def ingest(self, path, labels=None, *, model: str | None = None, auto_classify: bool = True,
               **options) -> IngestReport:
        """Ingest a folder or file (+ optional labels file); see `posterdb.ingest.run_ingest`."""
        from posterdb.ingest import run_ingest

        model = model or DEFAULT_MODEL
        embedder = self.embedder(model)
        predict = publish = None
        warnings = []
        try:
            if auto_classify and self.genres.load_latest(model) is not None:
                predict = lambda vectors, years: self.genres.predict_vectors(  # noqa: E731
                    vectors, years, model)
                publish = self.genres.published_of(model)
        except ClassifierFormatError as e:  # ingest anyway; auto-classification waits
            warnings.append(f"not auto-classifying: {e}")
        report = run_ingest(self.catalog, self.images, self.indexes, embedder, path, labels,
                            predict=predict, publish=publish, **options)
        report.warnings += warnings
        return report

    def remove(self, ids: Sequence[int]) -> list[int]:
        """Remove posters from DuckDB, every FAISS index and the image folder; returns removed ids."""
        with self.catalog.write() as con:
            present, images = self.catalog.delete_posters(con, sorted({int(i) for i in ids}))
            models = [m.name for m in self.catalog.model_specs(con)]
        self.indexes.remove_ids(models, present)
        self.images.remove(images)
        return present

    def set_review(self, poster_id: int, genres: Sequence[str]) -> None:
        """Store a person's accepted/corrected genres; they win over file labels in training."""
        genres = validate_genres(genres)
        with self.catalog.write() as con:
            self.catalog.set_labels(con, [poster_id], [genres], "review")

    # -- the genre service (see posterdb.genre_service) ---------------------------------------

    def train(self, model: str | None = None, **params) -> dict:
        """Fit the genre classifier on every labelled poster (review labels win) and store it."""
        return self.genres.train(model or self.default_model(), **params)

    def classifier(self, model: str | None = None):
        """The latest trained classifier for the model (hash-checked), or None."""
        return self.genres.load_latest(model or self.default_model())

    def classify(self, images, years=None, *, model: str | None = None,
                 n_evidence: int = 10) -> list[Classification]:
        """Genres, probabilities and evidence posters for images (paths or PosterImage)."""
        return self.genres.classify(images, years, model=model or self.default_model(),
                                    n_evidence=n_evidence)

    def predict_vectors(self, vectors: np.ndarray, years, model: str | None = None):
        return self.genres.predict_vectors(vectors, years, model or self.default_model())

    def evaluate(self, model: str | None = None, **options):
        """The study-vs-posterdb report on this store's labelled posters (saved under eval/)."""
        return self.genres.evaluate(model or self.default_model(), **options)

    def latest_eval(self):
        """The last evaluation report (an `EvalReport`), or None."""
        return self.genres.latest_eval()

    def review_queue(self, limit: int = 50, model: str | None = None) -> list[dict]:
        return self.genres.review_queue(model or self.default_model(), limit)

    def add_poster(self, poster, genres, *, title: str | None = None, year: int | None = None,
                   model: str | None = None, origin: str = "review", scores=None) -> int:
        """Store one validated image (PosterImage) with genres (review labels by default)."""
        return self.genres.add_poster(poster, list(genres), title=title, year=year,
                                      model=model or self.default_model(), origin=origin,
                                      scores=scores)

    # -- reports ------------------------------------------------------------------------------

    def info(self) -> dict:
        """Counts by decade and genre, models, index state, classifiers."""
        with self.catalog.read() as con:
            c = self.catalog.info_counts(con)
            reading = {"read": self.catalog.read_count(con)} | self.catalog.identification_counts(con)
        models = [{"name": s.name, "version": s.version, "dim": s.dim,
                   "weights_sha256": s.weights_sha256, "vectors": c["vectors"][s.name],
                   "index": {k: v for k, v in self.index_state(s.name).to_dict().items()
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
    def exists(root: str | Path) -> bool:
        """Whether `root` holds a store (its catalogue), without opening or creating anything."""
        return (Path(root) / CATALOG_FILE).is_file()

    @staticmethod
    def absent_info(root: str | Path) -> dict:
        """`info()`'s shape for a folder with no store yet: a reader reports it, creates nothing."""
        return {"store": str(root), "exists": False, "posters": 0, "labelled": 0, "reviewed": 0,
                "by_decade": {}, "by_genre": {}, "predicted_by_genre": {}, "ingest_errors": 0,
                "models": [], "classifiers": [], "reading": {"read": 0}}

    def errors(self, limit: int = 100) -> list[dict]:
        with self.catalog.read() as con:
            return self.catalog.ingest_errors(con, limit)

    def export(self) -> list[ExportedPoster]:
        """Every poster with metadata, labels, predicted genres and, when its film was
        identified, `identified` (source, film id, title, year, score; else None)."""
        return self.stored.export()

    # -- reading and identification (posterdb.reading; the `read` extra) ----------------------

    @property
    def reading(self):
        """The ReadingService: read / identify / search / of (posterdb.reading); imported on
        first use, since OCR and fuzzy matching are an extra."""
        if self._reading is None:
            try:
                from posterdb.reading.service import ReadingService
            except ImportError as e:
                raise RefusedError(f"reading posters needs the `read` extra: pip install "
                                   f"'posterdb[read]' ({e})") from e
            self._reading = ReadingService(self.catalog, self.images, self.stored.posters,
                                           self.genre_probabilities)
        return self._reading

    def settings(self) -> Settings:
        """Flags and environment over what the store remembers (`db.daily`: posterdb config)."""
        return self.daily.settings()

    def genre_probabilities(self, ids: Sequence[int], model: str | None = None):
        """{poster id: the image classifier's 19 probabilities}, or None without a classifier."""
        return self.genres.image_probabilities(model or self.default_model(), ids)

    def temp_files(self, older_than: float = 0.0) -> list[Path]:
        return self.images.temp_files(older_than)

    def sweep_temp_files(self, older_than: float = 600.0) -> int:
        return self.images.sweep_temp_files(older_than)

    def check(self, deep: bool = False) -> dict:
        """Consistency report; `ok` is False when DuckDB, FAISS files and images disagree."""
        from posterdb.storage.consistency import check_store

        return check_store(self.catalog, self.images, self.indexes, deep=deep)
