"""`IndexCache`: each model's FAISS index kept in line with DuckDB (load, sync or rebuild).

DuckDB is the source of truth; `index/<model>.faiss` is a cache. On first use (and whenever the
store's generation moved) the file is loaded and compared with DuckDB's ids: a small difference
is synced (+/- the ids that differ), a large one, another model's file or an unreadable file is
rebuilt from DuckDB in chunks. `exact_max` is the size up to which the index is exact (Flat);
tests lower it to run the IVF path on a few hundred vectors.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from posterdb.core.records import IndexState
from posterdb.embedders.base import ModelSpec
from posterdb.storage.catalog import Catalog, embedding_table
from posterdb.vectors.index import EXACT_MAX, VectorIndex, choose_factory, train_size
from posterdb.vectors.models import StoreModels

REBUILD_CHUNK = 50_000


@dataclass
class _Entry:
    index: VectorIndex
    generation: int
    state: IndexState


class IndexCache:
    """The FAISS indexes of one store, cached per model until the store's generation moves."""

    def __init__(self, catalog: Catalog, root: Path, models: StoreModels, *,
                 exact_max: int | None = None):
        self.catalog, self.models = catalog, models
        self.root = Path(root)
        self.exact_max = EXACT_MAX if exact_max is None else int(exact_max)
        self._entries: dict[str, _Entry] = {}

    def factory_for(self, n: int) -> str:
        return choose_factory(n, exact_max=self.exact_max)

    def path(self, model: str | None = None) -> Path:
        model = self.models.resolve(model)
        return self.root / "index" / f"{embedding_table(model).removeprefix('embeddings_')}.faiss"

    def index(self, model: str | None = None) -> VectorIndex:
        """The model's FAISS index (the store's default model when None), in line with DuckDB."""
        return self._entry(model).index

    def state(self, model: str | None = None) -> IndexState:
        return self._entry(model).state

    def _entry(self, model: str | None) -> _Entry:
        model = self.models.resolve(model)
        gen = self.catalog.current_generation()
        cached = self._entries.get(model)
        if cached is not None and cached.generation == gen:
            return cached
        with self.catalog.read() as con:
            spec = self.catalog.model_spec(con, model)
            if spec is None:
                raise self.catalog.not_held(con, model)
            table = embedding_table(model)
            db_ids = self.catalog.vector_ids(con, table)
            index, state = self._load_or_rebuild(con, spec, table, db_ids,
                                                 cached.index if cached else None)
        entry = _Entry(index, gen, state)
        self._entries[model] = entry
        return entry

    def _load_or_rebuild(self, con, spec: ModelSpec, table: str, db_ids: np.ndarray,
                         current: VectorIndex | None) -> tuple[VectorIndex, IndexState]:
        path = self.path(spec.name)
        index, reason = current, ""
        if index is None:
            if not path.exists():
                reason = "no index file"
            else:
                try:
                    index = VectorIndex.load(path)
                except Exception as e:  # unreadable / truncated file: it is only a cache
                    reason = f"unreadable index file ({e})"
        want = self.factory_for(len(db_ids))
        if index is not None and index.spec != spec:
            index, reason = None, "index made by another model"
        if index is not None and index.factory != want:
            index, reason = None, f"{len(db_ids)} vectors want a {want} index"
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
        factory = self.factory_for(n)
        sample = None
        if factory != "Flat":
            rng = np.random.default_rng(0)
            pick = np.sort(rng.choice(db_ids, size=min(n, train_size(factory)), replace=False))
            sample = self.catalog.vectors(con, table, pick)[1]
        chunks = (self.catalog.vectors(con, table, db_ids[i:i + REBUILD_CHUNK])
                  for i in range(0, n, REBUILD_CHUNK))
        return VectorIndex.build(spec, chunks, n, sample, factory=factory)

    def adopt(self, model: str, index: VectorIndex) -> None:
        """Save an index the caller kept in line with DuckDB (ingest) and cache it; one that grew
        past its kind (Flat above `exact_max`) is rebuilt from DuckDB as the kind it wants."""
        if index.factory != self.factory_for(len(index)):
            self._entries.pop(model, None)
            self.path(model).unlink(missing_ok=True)
            self._entry(model)
            return
        index.save(self.path(model))
        state = IndexState(model, "loaded", ntotal=len(index), factory=index.factory)
        self._entries[model] = _Entry(index, self.catalog.current_generation(), state)

    def reindex(self, model: str | None = None) -> IndexState:
        """Throw the index file away and rebuild it from DuckDB."""
        model = self.models.resolve(model)
        self._entries.pop(model, None)
        self.path(model).unlink(missing_ok=True)
        return self._entry(model).state

    def remove_ids(self, models: Sequence[str], ids: Sequence[int]) -> None:
        """Keep the index files in step with a removal (they would be synced anyway)."""
        for model in models:
            cached = self._entries.pop(model, None)
            index = cached.index if cached else None
            if index is None and self.path(model).exists():
                try:
                    index = VectorIndex.load(self.path(model))
                except Exception:
                    index = None
            if index is not None:
                index.remove(ids)
                index.save(self.path(model))
