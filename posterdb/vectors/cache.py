"""`IndexCache`: each model's FAISS index kept in line with DuckDB (load, sync or rebuild).

DuckDB is the source of truth; `index/<model>.faiss` is a cache. On first use (and whenever the
store's generation moved) the file is loaded and compared with DuckDB's ids: a small difference
is synced (+/- the ids that differ), a large one, another model's file or an unreadable file is
rebuilt from DuckDB in chunks. A file is trusted only after two checks: its bytes match the CRC
its sidecar recorded (any damaged byte: rebuilt), and a sample of its vectors (`SAMPLE`, spread
over the ids) equals DuckDB's (a well-formed file holding other vectors: rebuilt); the deep check
compares every vector. `exact_max` is the size up to which the index is exact (Flat); tests
lower it to run the graph path on a few hundred vectors.

Saves are ordered: each records the catalogue generation it reflects, and under a per-model
file lock a save never replaces a file that reflects a newer generation (a reader's sync
cannot overwrite an ingest's newer file). A store that cannot be written keeps its indexes in
memory (`IndexState.reason` says so) instead of failing the read.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from posterdb.core.errors import (
    StoreBusyError,
    StoreError,
    StoreFullError,
    StoreWriteError,
)
from posterdb.core.records import IndexState
from posterdb.embedders.base import ModelSpec
from posterdb.storage.catalog import Catalog, embedding_table
from posterdb.storage.locks import StoreLock
from posterdb.vectors.index import (
    EXACT_MAX,
    IndexFileError,
    VectorIndex,
    choose_factory,
    train_size,
)
from posterdb.vectors.index_file import recorded_generation
from posterdb.vectors.models import StoreModels

REBUILD_CHUNK = 50_000
SAMPLE = 256          # vectors of a freshly loaded file compared with DuckDB's


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
        self._unsaved: dict[str, str] = {}   # model -> why its last save failed

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

    def _entry(self, model: str | None, rebuild: bool = False) -> _Entry:
        """The cached entry, or one loaded/synced/rebuilt now; `rebuild`: ignore the file and
        build from DuckDB (it is replaced only once the new index is there)."""
        model = self.models.resolve(model)
        gen = self.catalog.current_generation()
        cached = None if rebuild else self._entries.get(model)
        if cached is not None and cached.generation == gen:
            return cached
        with self.catalog.read() as con:
            spec = self.catalog.model_spec(con, model)
            if spec is None:
                raise self.catalog.not_held(con, model)
            table = embedding_table(model)
            db_gen = self.catalog.generation(con)
            db_ids = self.catalog.vector_ids(con, table)
            index, state = self._load_or_rebuild(con, spec, table, db_ids,
                                                 cached.index if cached else None, rebuild)
        if state.status != "loaded":
            unsaved = self._unsaved[model] = self._save(model, index, db_gen)
            if unsaved:
                state.reason = f"{state.reason}; kept in memory: {unsaved}".lstrip("; ")
        entry = _Entry(index, gen, state)
        self._entries[model] = entry
        return entry

    def _load_or_rebuild(self, con, spec: ModelSpec, table: str, db_ids: np.ndarray,
                         current: VectorIndex | None, rebuild: bool = False,
                         ) -> tuple[VectorIndex, IndexState]:
        """The index in line with DuckDB and its state; the caller saves it unless "loaded"."""
        path = self.path(spec.name)
        index, reason = current, ""
        fresh = index is None
        if rebuild:
            reason = "asked to rebuild"
        elif index is None:
            if not path.exists():
                reason = "no index file"
            else:
                try:
                    index = VectorIndex.load(path)
                except IndexFileError as e:  # damaged, truncated or changed: it is only a cache
                    reason = str(e)
        want = self.factory_for(len(db_ids))
        if index is not None and index.spec != spec:
            index, reason = None, "index made by another model"
        if index is not None and index.factory != want:
            index, reason = None, f"{len(db_ids)} vectors want a {want} index"
        if index is not None and fresh and (bad := self._sample_differs(con, table, index,
                                                                        db_ids)):
            index, reason = None, bad
        if index is not None:
            synced = self._sync(con, table, index, db_ids)
            if synced is None:
                return index, IndexState(spec.name, "loaded", ntotal=len(index),
                                         factory=index.factory)
            if synced is not False:
                missing, extra = synced
                return index, IndexState(spec.name, "synced", "differed from DuckDB",
                                         missing, extra, len(index), index.factory)
            index, reason = None, "differed from DuckDB"
        index = self._rebuild(con, spec, table, db_ids)
        return index, IndexState(spec.name, "rebuilt", reason, len(db_ids), 0, len(index),
                                 index.factory)

    def _sync(self, con, table: str, index: VectorIndex, db_ids: np.ndarray):
        """Bring `index` to DuckDB's ids: None when it already is, (added, removed) after a
        sync, False when too much differs (rebuild instead)."""
        have = index.ids()
        missing = np.setdiff1d(db_ids, have, assume_unique=True)
        extra = np.setdiff1d(have, db_ids, assume_unique=True)
        if len(missing) + len(extra) == 0:
            return None
        if len(missing) > max(1000, len(db_ids) // 2):
            return False
        index.remove(extra)
        if len(missing):
            index.add(*self.catalog.vectors(con, table, missing))
        return len(missing), len(extra)

    def _sample_differs(self, con, table: str, index: VectorIndex, db_ids: np.ndarray) -> str:
        """'' when a spread sample of the file's vectors equals DuckDB's, else the reason."""
        have = np.intersect1d(index.ids(), db_ids, assume_unique=True)
        if not len(have):
            return ""
        pick = have[np.unique(np.linspace(0, len(have) - 1, min(SAMPLE, len(have))).astype(int))]
        ids, vectors = self.catalog.few_vectors(con, table, pick)
        bad = index.mismatches(ids, vectors)
        if not bad:
            return ""
        return f"index vectors differ from DuckDB ({bad} of {len(ids)} sampled)"

    def _save(self, model: str, index: VectorIndex, generation: int | None) -> str:
        """Save `index` as reflecting `generation`, unless the file already reflects a newer one;
        '' when saved (or skipped as older), else why it could not be written."""
        path = self.path(model)
        try:
            with StoreLock(path.with_suffix(".lock"), label=str(path)).hold("index save",
                                                                           wait=60):
                on_disk = recorded_generation(path) if path.exists() else None
                if (on_disk is not None and generation is not None
                        and generation < on_disk <= self.catalog.current_generation()):
                    return ""
                try:
                    index.save(path, generation)
                except StoreFullError:   # the old file's space makes room for the new one
                    self._unlink(model)
                    index.save(path, generation)
            return ""
        except (StoreWriteError, StoreBusyError) as e:
            return str(e)
        except OSError as e:    # e.g. a folder where the file should be: it stays a cache miss
            return f"cannot write {path}: {e.strerror or e}"

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
        """Save an index the caller kept in step with its own writes (ingest) and cache it. It is
        first brought in line with DuckDB (another writer may have added or removed posters
        meanwhile); one that grew past its kind (Flat above `exact_max`) is rebuilt from DuckDB
        as the kind it wants."""
        if index.factory != self.factory_for(len(index)):
            self._entry(model, rebuild=True)
            return
        gen = self.catalog.current_generation()
        with self.catalog.read() as con:
            db_gen = self.catalog.generation(con)
            synced = self._sync(con, embedding_table(model), index,
                                self.catalog.vector_ids(con, embedding_table(model)))
        if synced is False:
            self._entry(model, rebuild=True)
            return
        unsaved = self._save(model, index, db_gen)
        state = IndexState(model, "loaded", unsaved and f"kept in memory: {unsaved}",
                           ntotal=len(index), factory=index.factory)
        self._entries[model] = _Entry(index, gen, state)

    def save_synced(self, model: str, index: VectorIndex) -> None:
        """A save during a long write (ingest's periodic save): in line with DuckDB first."""
        with self.catalog.read() as con:
            db_gen = self.catalog.generation(con)
            synced = self._sync(con, embedding_table(model), index,
                                self.catalog.vector_ids(con, embedding_table(model)))
        if synced is not False:
            self._save(model, index, db_gen)

    def _unlink(self, model: str) -> None:
        for p in (self.path(model), self.path(model).with_suffix(".json")):
            try:
                if p.is_dir():
                    p.rmdir()   # only an empty one: anything else is not posterdb's to delete
                else:
                    p.unlink(missing_ok=True)
            except OSError:   # a read-only store: the file stays, and is rebuilt in memory
                pass

    def reindex(self, model: str | None = None) -> IndexState:
        """Rebuild the index from DuckDB and replace the file (holding the writer lock; a file
        that cannot be written is an error here, not a cache kept in memory)."""
        model = self.models.resolve(model)
        with self.catalog.exclusive("reindex"):
            state = self._entry(model, rebuild=True).state
        if self._unsaved.get(model):
            raise StoreError(f"{model}: the rebuilt index could not be written "
                             f"({self._unsaved[model]})")
        return state

    def remove_ids(self, models: Sequence[str], ids: Sequence[int]) -> dict[str, str]:
        """Keep the index files in step with a removal (they would be synced anyway). Returns
        {model: why its file could not be updated} (empty when all were); a file left behind
        is brought in line with DuckDB on its next load."""
        failed = {}
        for model in models:
            cached = self._entries.pop(model, None)
            index = cached.index if cached else None
            if index is None and self.path(model).exists():
                try:
                    index = VectorIndex.load(self.path(model))
                except IndexFileError:
                    index = None
            if index is not None:
                index.remove(ids)
                with self.catalog.read() as con:
                    gen = self.catalog.generation(con)
                if unsaved := self._save(model, index, gen):
                    failed[model] = unsaved
        return failed
