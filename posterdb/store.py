"""`PosterDB`: the facade over one store directory (catalogue, image copies, indexes, classifiers).

Layout of a store:
    catalog.duckdb           metadata, labels, vectors (the source of truth)
    images/ab/<sha256>.jpg   content-addressed copies of every stored poster
    index/<model>.faiss      FAISS cache of one model's vectors (+ .json sidecar)
    classifiers/             fitted classifiers, loaded only after a hash check
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .catalog import Catalog, embedding_table
from .embedders.base import Embedder, ModelSpec
from .errors import ModelMismatchError, StoreError
from .genres import GENRES
from .index import VectorIndex, choose_factory

DEFAULT_STORE = "posterdb-store"
DEFAULT_MODEL = "mobilenet-v2"
REBUILD_CHUNK = 50_000
PRELOAD_MAX = 200_000  # stores up to this size keep every poster's metadata in memory


def default_store_dir() -> Path:
    return Path(os.environ.get("POSTERDB_STORE", DEFAULT_STORE))


@dataclass
class IndexState:
    """How the in-memory index was brought in line with DuckDB the last time it was opened."""

    model: str
    status: str          # "loaded", "synced", "rebuilt", "empty"
    reason: str = ""
    added: int = 0
    removed: int = 0
    ntotal: int = 0
    factory: str = ""


@dataclass
class Hit:
    """One neighbour with the metadata a person needs to judge it."""

    id: int
    similarity: float
    title: str | None
    year: int | None
    decade: int | None
    genres: list[str]
    image: str            # absolute path of the stored copy
    path: str             # original path at ingest
    labelled: bool = True  # False: `genres` are the classifier's predictions, not labels

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class _CachedIndex:
    index: VectorIndex
    generation: int
    state: IndexState


class PosterDB:
    """A poster store. Create with `PosterDB.open(dir)`; every method opens DuckDB briefly."""

    def __init__(self, root: Path, *, model_dir: str | Path | None = None,
                 busy_timeout: float = 60.0):
        self.root = Path(root)
        self.catalog = Catalog(self.root / "catalog.duckdb", busy_timeout=busy_timeout)
        self.model_dir = model_dir
        self._embedders: dict[str, Embedder] = {}
        self._indexes: dict[str, _CachedIndex] = {}
        self._classifiers: dict[str, tuple[str, object]] = {}
        self._proba_cache: dict[tuple[str, int], dict[int, np.ndarray]] = {}
        self._derived: dict[str, tuple[int, object]] = {}  # key -> (generation, value)
        self._poster_cache: tuple[int, dict[int, dict]] = (-1, {})

    @classmethod
    def open(cls, root: str | Path | None = None, *, create: bool = True,
             model_dir: str | Path | None = None, busy_timeout: float = 60.0) -> PosterDB:
        """Open (and with create=True, initialise or migrate) the store at `root`."""
        root = Path(root) if root is not None else default_store_dir()
        db = cls(root, model_dir=model_dir, busy_timeout=busy_timeout)
        if not db.catalog.path.exists():
            if not create:
                raise StoreError(f"no posterdb store at {root} (run `posterdb ingest` first)")
            root.mkdir(parents=True, exist_ok=True)
        if create:
            db.catalog.migrate()
        return db

    # -- paths --------------------------------------------------------------------------------

    @property
    def images_dir(self) -> Path:
        return self.root / "images"

    def index_path(self, model: str) -> Path:
        return self.root / "index" / f"{embedding_table(model).removeprefix('embeddings_')}.faiss"

    def image_relpath(self, sha256: str, suffix: str) -> str:
        return f"images/{sha256[:2]}/{sha256}{suffix}"

    def image_file(self, image_path: str) -> Path:
        return self.root / image_path

    # -- models -------------------------------------------------------------------------------

    def models(self) -> list[ModelSpec]:
        return self._cached("models", lambda con: self.catalog.model_specs(con))

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
        """Bumped by every committed write: compare to know whether cached views are stale.
        Read from the small `generation` file beside the catalogue (no DuckDB open) when present."""
        hint = self.catalog.generation_hint()
        if hint is not None:
            return hint
        with self.catalog.read() as con:
            return self.catalog.generation(con)

    def index(self, model: str | None = None) -> VectorIndex:
        """The model's FAISS index, in line with DuckDB (loaded, synced or rebuilt as needed)."""
        return self._index_entry(model or self.default_model()).index

    def index_state(self, model: str | None = None) -> IndexState:
        return self._index_entry(model or self.default_model()).state

    def _index_entry(self, model: str) -> _CachedIndex:
        gen = self.generation()
        cached = self._indexes.get(model)
        if cached is not None and cached.generation == gen:
            return cached
        with self.catalog.read() as con:
            spec = self.catalog.model_spec(con, model)
            if spec is None:
                raise StoreError(f"this store has no vectors from model {model!r}")
            table = embedding_table(model)
            db_ids = self.catalog.vector_ids(con, table)
            index, state = self._load_or_rebuild(con, spec, table, db_ids,
                                                 cached.index if cached else None)
        entry = _CachedIndex(index, gen, state)
        self._indexes[model] = entry
        return entry

    def _load_or_rebuild(self, con, spec: ModelSpec, table: str, db_ids: np.ndarray,
                         current: VectorIndex | None) -> tuple[VectorIndex, IndexState]:
        path = self.index_path(spec.name)
        index, reason = current, ""
        if index is None:
            if not path.exists():
                reason = "no index file"
            else:
                try:
                    index = VectorIndex.load(path)
                except Exception as e:  # unreadable / truncated file: it is only a cache
                    reason = f"unreadable index file ({e})"
        if index is not None and index.spec != spec:
            index, reason = None, "index made by another model"
        if index is not None and index.factory != choose_factory(len(db_ids)):
            index, reason = None, f"{len(db_ids)} vectors want a {choose_factory(len(db_ids))} index"
        if index is not None:
            have = index.ids()
            missing = np.setdiff1d(db_ids, have, assume_unique=True)
            extra = np.setdiff1d(have, db_ids, assume_unique=True)
            if len(missing) + len(extra) == 0:
                return index, IndexState(spec.name, "loaded", ntotal=len(index),
                                         factory=index.factory)
            if len(missing) <= max(1000, len(db_ids) // 2):
                index.remove(extra)
                if len(missing):
                    index.add(*self.catalog.vectors(con, table, missing))
                index.save(path)
                return index, IndexState(spec.name, "synced", "differed from DuckDB",
                                         len(missing), len(extra), len(index), index.factory)
            index, reason = None, "differed from DuckDB"
        index = self._rebuild(con, spec, table, db_ids)
        index.save(path)
        return index, IndexState(spec.name, "rebuilt", reason, len(db_ids), 0, len(index),
                                 index.factory)

    def _rebuild(self, con, spec: ModelSpec, table: str, db_ids: np.ndarray) -> VectorIndex:
        n = len(db_ids)
        sample = None
        if choose_factory(n) != "Flat":
            rng = np.random.default_rng(0)
            pick = np.sort(rng.choice(db_ids, size=min(n, 100_000), replace=False))
            sample = self.catalog.vectors(con, table, pick)[1]
        chunks = (self.catalog.vectors(con, table, db_ids[i:i + REBUILD_CHUNK])
                  for i in range(0, n, REBUILD_CHUNK))
        return VectorIndex.build(spec, chunks, n, sample)

    def adopt_index(self, model: str, index: VectorIndex) -> None:
        """Save an index the caller kept in line with DuckDB (ingest) and cache it."""
        index.save(self.index_path(model))
        state = IndexState(model, "loaded", ntotal=len(index), factory=index.factory)
        self._indexes[model] = _CachedIndex(index, self.generation(), state)

    def reindex(self, model: str | None = None) -> IndexState:
        """Throw the index file away and rebuild it from DuckDB."""
        model = model or self.default_model()
        self._indexes.pop(model, None)
        path = self.index_path(model)
        path.unlink(missing_ok=True)
        return self._index_entry(model).state

    # -- reads --------------------------------------------------------------------------------

    def count(self) -> int:
        return self._cached("count", lambda con: con.execute(
            "SELECT count(*) FROM posters").fetchall()[0][0])

    def posters(self, ids: Sequence[int] | None = None) -> list[dict]:
        """Metadata + effective genres (+ predicted ones) of the given posters, in the given order.

        Rows asked for by id are kept in memory until the store's generation moves."""
        if ids is not None:
            gen = self.generation()
            if self._poster_cache[0] != gen:
                self._poster_cache = (gen, {})
            cache = self._poster_cache[1]
            missing = [int(i) for i in ids if int(i) not in cache]
            if missing:  # small stores: all rows at once, so later lookups stay in memory
                whole = not cache and self.count() <= PRELOAD_MAX
                cache.update((p["id"], p) for p in self._load_posters(None if whole else missing))
            return [dict(cache[int(i)]) for i in ids if int(i) in cache]
        return self._load_posters(None)

    def _load_posters(self, ids: Sequence[int] | None) -> list[dict]:
        with self.catalog.read() as con:
            rows = self._poster_rows(con, ids)
            labels = self.catalog.labels_of(con, None if ids is None else [r["id"] for r in rows])
        out = []
        for r in rows:
            pid = r["id"]
            r["genres"] = labels["effective"].get(pid, [])
            r["predicted"] = labels["prediction"].get(pid, [])
            r["reviewed"] = pid in labels["review"]
            r["image"] = str(self.image_file(r["image_path"]))
            out.append(r)
        if ids is not None:
            by_id = {r["id"]: r for r in out}
            out = [by_id[int(i)] for i in ids if int(i) in by_id]
        return out

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

    def _poster_rows(self, con, ids) -> list[dict]:
        cols = ["id", "sha256", "path", "image_path", "title", "year", "decade", "width", "height",
                "format", "source", "added_at"]
        sql = f"SELECT {', '.join(cols)} FROM posters"
        params: list = []
        if ids is not None:
            ids = [int(i) for i in ids]
            if not ids:
                return []
            sql += f" WHERE id IN ({','.join('?' * len(ids))})"
            params = ids
        rows = con.execute(sql + " ORDER BY id", params).fetchall()
        return [dict(zip(cols, r)) | {"added_at": str(r[-1])} for r in rows]

    def find(self, text: str, limit: int = 20) -> list[dict]:
        """Posters whose title contains `text` (case-insensitive), or the poster with that id."""
        with self.catalog.read() as con:
            if text.strip().isdigit():
                ids = [r[0] for r in con.execute("SELECT id FROM posters WHERE id = ?",
                                                  [int(text)]).fetchall()]
            else:
                ids = [r[0] for r in con.execute(
                    "SELECT id FROM posters WHERE title ILIKE ? ORDER BY year, id LIMIT ?",
                    [f"%{text.strip()}%", limit]).fetchall()]
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
        from .images import PosterImage, open_poster

        loaded = [im if isinstance(im, PosterImage) else open_poster(im) for im in images]
        return self.embedder(model).embed_images([p.image for p in loaded])

    def similar(self, query, k: int = 10, *, decades: Sequence[int] | None = None,
                genres: Sequence[str] | None = None, model: str | None = None,
                exclude: Sequence[int] = ()) -> list[Hit]:
        """Nearest stored posters to a poster id, an image (path or PosterImage) or a vector."""
        with self.catalog.read():  # one DuckDB connection for the whole lookup
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
        out = []
        for ids, sims in zip(res.ids, res.similarities):
            hits = []
            for pid, sim in zip(ids, sims):
                p = meta.get(int(pid))
                if p is None:
                    continue
                hits.append(Hit(p["id"], float(sim), p["title"], p["year"], p["decade"],
                                p["genres"] or p["predicted"], p["image"], p["path"],
                                bool(p["genres"])))
                if len(hits) == k:
                    break
            out.append(hits)
        return out

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

    def ingest(self, path, labels=None, *, model: str | None = None, **options):
        """Ingest a folder or file (+ optional labels file); see `posterdb.ingest.ingest`."""
        from .ingest import ingest

        return ingest(self, path, labels, model=model or DEFAULT_MODEL, **options)

    def remove(self, ids: Sequence[int]) -> list[int]:
        """Remove posters from DuckDB, every FAISS index and the image folder; returns removed ids."""
        ids = sorted({int(i) for i in ids})
        with self.catalog.write() as con:
            present = [r[0] for r in con.execute(
                f"SELECT id FROM posters WHERE id IN ({','.join('?' * len(ids))})", ids).fetchall()
            ] if ids else []
            images = self.catalog.delete_posters(con, present) if present else []
            models = [m.name for m in self.catalog.model_specs(con)]
        for model in models:  # keep the index files in step (they would be synced anyway)
            cached = self._indexes.pop(model, None)
            index = cached.index if cached else None
            if index is None and self.index_path(model).exists():
                try:
                    index = VectorIndex.load(self.index_path(model))
                except Exception:
                    index = None
            if index is not None:
                index.remove(present)
                index.save(self.index_path(model))
        for rel in images:
            self.image_file(rel).unlink(missing_ok=True)
        return present

    def set_review(self, poster_id: int, genres: Sequence[str]) -> None:
        """Store a person's accepted/corrected genres; they win over file labels in training."""
        bad = [g for g in genres if g not in GENRES]
        if bad or not genres:
            raise ValueError(f"review genres must be ≥1 of the 19 TMDb genres; got {list(genres)}")
        with self.catalog.write() as con:
            self.catalog.set_labels(con, [poster_id], [list(genres)], "review")

    # -- classifier (see posterdb.classifiers / posterdb.curation) -------------------------------

    def train(self, model: str | None = None, **params) -> dict:
        """Fit the genre classifier on every labelled poster (review labels win) and store it."""
        from . import classifiers

        return classifiers.train(self, model or self.default_model(), **params)

    def classifier(self, model: str | None = None):
        """The latest trained classifier for the model (hash-checked), or None."""
        from . import classifiers

        return classifiers.load_latest(self, model or self.default_model())

    def classify(self, images, years=None, *, model: str | None = None, n_evidence: int = 10):
        """Genres, probabilities and evidence posters for images (paths or PosterImage)."""
        from . import classifiers

        return classifiers.classify(self, images, years, model=model or self.default_model(),
                                    n_evidence=n_evidence)

    def predict_vectors(self, vectors: np.ndarray, years, model: str | None = None):
        from . import classifiers

        return classifiers.predict_vectors(self, vectors, years, model or self.default_model())

    def evaluate(self, model: str | None = None, **options):
        """The study-vs-posterdb report on this store's labelled posters (saved under eval/)."""
        from . import classifiers

        return classifiers.evaluate(self, model or self.default_model(), **options)

    def latest_eval(self) -> dict | None:
        from . import classifiers

        return classifiers.latest_eval(self)

    def review_queue(self, limit: int = 50, model: str | None = None) -> list[dict]:
        from . import curation

        return curation.review_queue(self, model or self.default_model(), limit)

    def add_poster(self, poster, genres, *, title: str | None = None, year: int | None = None,
                   model: str | None = None, origin: str = "review", scores=None) -> int:
        """Store one validated image (PosterImage) with genres (review labels by default)."""
        from . import curation

        return curation.add_poster(self, poster, list(genres), title=title, year=year,
                                   model=model or self.default_model(), origin=origin,
                                   scores=scores)

    # -- reports ------------------------------------------------------------------------------

    def info(self) -> dict:
        """Counts by decade and genre, models, index state, last ingest errors."""
        with self.catalog.read() as con:
            n = con.execute("SELECT count(*) FROM posters").fetchall()[0][0]
            by_decade = dict(con.execute(
                "SELECT coalesce(CAST(decade AS VARCHAR), 'unknown'), count(*) FROM posters "
                "GROUP BY 1 ORDER BY 1").fetchall())
            eff = self.catalog.effective_labels_sql()
            by_genre = dict(con.execute(
                f"SELECT genre, count(*) FROM ({eff}) GROUP BY 1 ORDER BY 2 DESC").fetchall())
            predicted = dict(con.execute(
                "SELECT genre, count(*) FROM genre_labels WHERE origin = 'prediction' "
                "GROUP BY 1 ORDER BY 2 DESC").fetchall())
            labelled = con.execute(f"SELECT count(DISTINCT poster_id) FROM ({eff})").fetchall()[0][0]
            reviewed = con.execute("SELECT count(DISTINCT poster_id) FROM genre_labels "
                                   "WHERE origin = 'review'").fetchall()[0][0]
            errors = con.execute("SELECT count(*) FROM ingest_errors").fetchall()[0][0]
            specs = self.catalog.model_specs(con)
            counts = {s.name: con.execute(f"SELECT count(*) FROM {embedding_table(s.name)}")
                      .fetchall()[0][0] for s in specs}
            classifiers = con.execute(
                "SELECT model_name, n_train, CAST(trained_at AS VARCHAR) FROM classifiers "
                "ORDER BY id").fetchall()
        models = []
        for s in specs:
            st = self.index_state(s.name)
            models.append({"name": s.name, "version": s.version, "dim": s.dim,
                           "weights_sha256": s.weights_sha256, "vectors": counts[s.name],
                           "index": {"status": st.status, "reason": st.reason,
                                     "ntotal": st.ntotal, "factory": st.factory,
                                     "added": st.added, "removed": st.removed}})
        return {"store": str(self.root), "posters": n, "labelled": labelled,
                "reviewed": reviewed, "by_decade": by_decade, "by_genre": by_genre,
                "predicted_by_genre": predicted, "ingest_errors": errors, "models": models,
                "classifiers": [{"model": m, "n_train": t, "trained_at": a}
                                for m, t, a in classifiers]}

    def errors(self, limit: int = 100) -> list[dict]:
        with self.catalog.read() as con:
            rows = con.execute("SELECT run_id, path, reason, CAST(failed_at AS VARCHAR) FROM ingest_errors "
                               "ORDER BY failed_at DESC LIMIT ?", [limit]).fetchall()
        return [dict(zip(("run_id", "path", "reason", "at"), r)) for r in rows]

    def export(self) -> list[dict]:
        """Every poster with metadata, effective and predicted genres."""
        return self.posters()

    def temp_files(self, older_than: float = 0.0) -> list[Path]:
        """Temporary files a killed write left in the store (`*.tmp`), older than N seconds."""
        import time

        cutoff = time.time() - older_than
        found = []
        for folder in (self.root, self.images_dir, self.root / "index",
                       self.root / "classifiers", self.root / "eval"):
            pattern = "*/*.tmp" if folder == self.images_dir else "*.tmp"
            for f in folder.glob(pattern) if folder.is_dir() else ():
                try:
                    if f.stat().st_mtime < cutoff:
                        found.append(f)
                except OSError:
                    pass
        return found

    def sweep_temp_files(self, older_than: float = 600.0) -> int:
        """Delete stale temporaries; young ones may belong to a live writer in another process."""
        gone = 0
        for f in self.temp_files(older_than):
            try:
                f.unlink()
                gone += 1
            except OSError:
                pass
        return gone

    def check(self, deep: bool = False) -> dict:
        """Consistency report; `ok` is False when DuckDB, FAISS files and images disagree."""
        from .consistency import check_store

        return check_store(self, deep=deep)
