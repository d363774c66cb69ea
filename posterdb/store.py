"""`PosterDB`: wires one store directory's components; the CLI and the page call only this.

Layout of a store:
    catalog.duckdb           metadata, labels, vectors (the source of truth)     → Catalog
    images/ab/<sha256>.jpg   content-addressed copies of every stored poster     → ImageStore
    index/<model>.faiss      FAISS cache of one model's vectors (+ .json sidecar) → IndexCache
    classifiers/             fitted classifiers, loaded only after a hash check  → GenreService

Dependencies point one way: this module imports the components, none of them imports it.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .catalog import Catalog, embedding_table
from .embedders import is_finetuned_name
from .embedders.base import Embedder, ModelSpec
from .errors import ClassifierFormatError, ModelMismatchError, RefusedError, StoreError
from .finetune_service import FinetuneService
from .genre_service import GenreService
from .image_store import ImageStore
from .images import PosterImage, open_poster
from .index import VectorIndex
from .index_cache import IndexCache
from .intake import Intake
from .records import Classification, Hit, IndexState, IngestReport
from .rules import validate_genres

DEFAULT_STORE = "posterdb-store"
DEFAULT_MODEL = "mobilenet-v2"
PRELOAD_MAX = 200_000  # stores up to this size keep every poster's metadata in memory

__all__ = ["PosterDB", "Hit", "Classification", "IndexState", "IngestReport", "DEFAULT_STORE",
           "DEFAULT_MODEL", "default_store_dir"]


def default_store_dir() -> Path:
    return Path(os.environ.get("POSTERDB_STORE", DEFAULT_STORE))


class PosterDB:
    """A poster store. Create with `PosterDB.open(dir)`; every method opens DuckDB briefly."""

    def __init__(self, root: Path, *, model_dir: str | Path | None = None,
                 busy_timeout: float = 60.0, exact_max: int | None = None):
        self.root = Path(root)
        self.model_dir = model_dir
        self.catalog = Catalog(self.root / "catalog.duckdb", busy_timeout=busy_timeout)
        self.images = ImageStore(self.root)
        self.indexes = IndexCache(self.catalog, self.root, exact_max=exact_max)
        self.genres = GenreService(self.catalog, self.root, self.images, self.embedder,
                                   self.posters)
        self.intake = Intake(self.catalog, self.genres, ingest=self.ingest, posters=self.posters,
                             similar=self.similar, default_model=self.default_model)
        self.finetuning = FinetuneService(self.catalog, self.root, self.images, self.indexes, model_dir)
        self._embedders: dict[str, Embedder] = {}
        self._derived: dict[str, tuple[int, object]] = {}  # key -> (generation, value)
        self._poster_cache: tuple[int, dict[int, dict]] = (-1, {})
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
        from .embedders import get_embedder

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

    def posters(self, ids: Sequence[int] | None = None) -> list[dict]:
        """Metadata + labels (+ predictions) of the given posters, in the given order.

        Rows asked for by id are kept in memory until the store's generation moves."""
        if ids is None:
            return self._load_posters(None)
        gen = self.generation()
        if self._poster_cache[0] != gen:
            self._poster_cache = (gen, {})
        cache = self._poster_cache[1]
        missing = [int(i) for i in ids if int(i) not in cache]
        if missing:  # small stores: all rows at once, so later lookups stay in memory
            whole = not cache and self.count() <= PRELOAD_MAX
            cache.update((p["id"], p) for p in self._load_posters(None if whole else missing))
        return [dict(cache[int(i)]) for i in ids if int(i) in cache]

    def _load_posters(self, ids: Sequence[int] | None) -> list[dict]:
        with self.catalog.read() as con:
            rows = self.catalog.poster_rows(con, ids)
            labels = self.catalog.labels_of(con, None if ids is None else [r["id"] for r in rows])
        for r in rows:
            pid = r["id"]
            r["genres"] = labels["effective"].get(pid, [])
            r["predicted"] = labels["prediction"].get(pid, [])
            r["published"] = labels["by_origin"].get("published", {}).get(pid, [])
            r["reviewed"] = pid in labels["review"]
            r["image"] = str(self.images.file(r["image_path"]))
        if ids is not None:
            by_id = {r["id"]: r for r in rows}
            rows = [by_id[int(i)] for i in ids if int(i) in by_id]
        return rows

    def browse(self, *, genres: Sequence[str] | None = None, decades: Sequence[int] | None = None,
               offset: int = 0, limit: int = 24) -> tuple[int, list[dict]]:
        """The shop's view: (total, one page of posters) with any of the genres, in the decades."""
        with self.catalog.read() as con:
            ids = self.catalog.filter_ids(con, decades=decades, genres=genres)
        return len(ids), self.posters(ids[offset:offset + limit].tolist())

    def poster(self, poster_id: int) -> dict:
        found = self.posters([poster_id])
        if not found:
            raise StoreError(f"no poster with id {poster_id}")
        return found[0]

    def find(self, text: str, limit: int = 20) -> list[dict]:
        """Posters whose title contains `text` (case-insensitive), or the poster with that id."""
        with self.catalog.read() as con:
            ids = self.catalog.find_ids(con, text, limit)
        return self.posters(ids)

    def vectors(self, ids: Sequence[int], model: str | None = None) -> np.ndarray:
        """Stored vectors of these posters, in the given order."""
        model = model or self.default_model()
        with self.catalog.read() as con:
            got_ids, vecs = self.catalog.vectors(con, embedding_table(model), ids)
        pos = {int(i): j for j, i in enumerate(got_ids)}
        missing = [int(i) for i in ids if int(i) not in pos]
        if missing:
            raise StoreError(f"no {model} vector for poster(s) {missing[:10]}")
        return vecs[[pos[int(i)] for i in ids]]

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
        model = model or self.default_model()
        exclude = {int(e) for e in exclude}
        if isinstance(query, (int, np.integer)):
            vec = self.vectors([int(query)], model)
            exclude.add(int(query))
        elif isinstance(query, np.ndarray):
            vec = np.atleast_2d(query).astype(np.float32)
        else:
            vec = self.embed([query], model)
        return self.similar_to_vectors(vec, k, decades=decades, genres=genres, model=model,
                                       exclude=exclude)[0]

    def similar_to_vectors(self, vectors: np.ndarray, k: int = 10, *,
                           decades: Sequence[int] | None = None,
                           genres: Sequence[str] | None = None, model: str | None = None,
                           exclude: set[int] | Sequence[int] = ()) -> list[list[Hit]]:
        model = model or self.default_model()
        index = self.index(model)
        allowed = None
        if decades or genres:
            with self.catalog.read() as con:
                allowed = self.catalog.filter_ids(con, decades=decades, genres=genres)
            if not len(allowed):
                return [[] for _ in range(len(vectors))]
        exclude = set(exclude)
        res = index.search(vectors, k + len(exclude), allowed)
        wanted = sorted({int(i) for i in res.ids.ravel() if i >= 0} - exclude)
        meta = {p["id"]: p for p in self.posters(wanted)}
        return [[Hit.from_poster(meta[int(pid)], sim)
                 for pid, sim in zip(ids, sims) if int(pid) in meta][:k]
                for ids, sims in zip(res.ids, res.similarities)]

    def near_duplicates(self, threshold: float = 0.97, model: str | None = None,
                        k: int = 5) -> list[tuple[int, int, float]]:
        """Pairs (a, b, cosine) of stored posters at or above the threshold, a < b, most similar first."""
        model = model or self.default_model()
        index = self.index(model)
        ids = index.ids()
        pairs: dict[tuple[int, int], float] = {}
        for i in range(0, len(ids), 4096):
            chunk = ids[i:i + 4096]
            res = index.search(self.vectors(chunk, model), k + 1)
            for a, nbrs, sims in zip(chunk, res.ids, res.similarities):
                for b, s in zip(nbrs, sims):
                    if b >= 0 and b != a and s >= threshold:
                        pairs[(int(min(a, b)), int(max(a, b)))] = float(s)
        return sorted(((a, b, s) for (a, b), s in pairs.items()), key=lambda t: -t[2])

    # -- writes -------------------------------------------------------------------------------

    def ingest(self, path, labels=None, *, model: str | None = None, auto_classify: bool = True,
               **options) -> IngestReport:
        """Ingest a folder or file (+ optional labels file); see `posterdb.ingest.run_ingest`."""
        from .ingest import run_ingest

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

    def latest_eval(self) -> dict | None:
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
        return {"store": str(self.root), "posters": c["posters"], "labelled": c["labelled"],
                "reviewed": c["reviewed"], "by_decade": c["by_decade"], "by_genre": c["by_genre"],
                "predicted_by_genre": c["predicted_by_genre"],
                "ingest_errors": c["ingest_errors"], "models": models,
                "classifiers": [{"model": r.model, "n_train": r.n_train,
                                 "trained_at": r.trained_at} for r in c["classifiers"]],
                "reading": reading}

    def errors(self, limit: int = 100) -> list[dict]:
        with self.catalog.read() as con:
            return self.catalog.ingest_errors(con, limit)

    def export(self) -> list[dict]:
        """Every poster with metadata, labels, predicted genres and, when its film was
        identified, `identified` (source, film id, title, year, score; else None)."""
        rows = self.posters()
        with self.catalog.read() as con:
            idents = self.catalog.identifications(con)
        keys = ("source", "film_id", "title", "year", "score")
        for r in rows:
            i = idents.get(r["id"])
            r["identified"] = ({k: i[k] for k in keys} if i and i["status"] == "identified"
                               else None)
        return rows

    # -- reading and identification (posterdb.reading; the `read` extra) ----------------------

    @property
    def reading(self):
        """The ReadingService: read / identify / search / of (posterdb.reading); imported on
        first use, since OCR and fuzzy matching are an extra."""
        if self._reading is None:
            try:
                from .reading import ReadingService
            except ImportError as e:
                raise RefusedError(f"reading posters needs the `read` extra: pip install "
                                   f"'posterdb[read]' ({e})") from e
            self._reading = ReadingService(self.catalog, self.images, self.posters,
                                           self.genre_probabilities)
        return self._reading

    def genre_probabilities(self, ids: Sequence[int], model: str | None = None):
        """{poster id: the image classifier's 19 probabilities}, or None without a classifier."""
        model = model or self.default_model()
        try:
            clf = self.genres.load_latest(model)
        except (ClassifierFormatError, StoreError):
            return None
        if clf is None or not len(ids):
            return None
        with self.catalog.read() as con:
            got, vecs = self.catalog.vectors(con, embedding_table(model), list(ids))
        years = {p["id"]: p["year"] for p in self.posters(got.tolist())}
        P = clf.predict_proba(vecs, [None if years[int(i)] is None else years[int(i)] // 10 * 10
                                     for i in got])
        return {int(i): P[j] for j, i in enumerate(got)}

    def temp_files(self, older_than: float = 0.0) -> list[Path]:
        return self.images.temp_files(older_than)

    def sweep_temp_files(self, older_than: float = 600.0) -> int:
        return self.images.sweep_temp_files(older_than)

    def check(self, deep: bool = False) -> dict:
        """Consistency report; `ok` is False when DuckDB, FAISS files and images disagree."""
        from .consistency import check_store

        return check_store(self.catalog, self.images, self.indexes, deep=deep)
