"""The DuckDB catalogue: schema, numbered migrations, and every query the store makes.

DuckDB allows one read-write process or many read-only ones, never both. So no connection is
held between operations: each `read()` / `write()` opens the file, does its work and closes it,
retrying with back-off while another process holds the lock. A long ingest therefore locks the
file only for the few milliseconds of each batch commit, and the page keeps answering.
"""
from __future__ import annotations

import os
import random
import re
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

from .embedders.base import ModelSpec
from .errors import ModelMismatchError, StoreBusyError, StoreError
from .faults import crash_point
from .genres import GENRES

ORIGINS = ("file", "review", "prediction")

MIGRATIONS: list[str] = [
    # 1: the initial schema
    """
    CREATE TABLE meta (key VARCHAR PRIMARY KEY, value VARCHAR);
    CREATE TABLE posters (
        id INTEGER PRIMARY KEY,
        sha256 VARCHAR NOT NULL UNIQUE,
        path VARCHAR NOT NULL,
        image_path VARCHAR NOT NULL,
        title VARCHAR,
        year INTEGER,
        decade INTEGER,
        width INTEGER NOT NULL,
        height INTEGER NOT NULL,
        format VARCHAR,
        source VARCHAR,
        added_at TIMESTAMP NOT NULL DEFAULT current_timestamp
    );
    CREATE TABLE poster_paths (poster_id INTEGER NOT NULL, path VARCHAR NOT NULL,
                               PRIMARY KEY (poster_id, path));
    CREATE TABLE genre_labels (
        poster_id INTEGER NOT NULL,
        genre VARCHAR NOT NULL,
        origin VARCHAR NOT NULL CHECK (origin IN ('file', 'review', 'prediction')),
        score DOUBLE,
        added_at TIMESTAMP NOT NULL DEFAULT current_timestamp,
        PRIMARY KEY (poster_id, genre, origin)
    );
    CREATE TABLE models (
        name VARCHAR PRIMARY KEY,
        version VARCHAR NOT NULL,
        weights_sha256 VARCHAR NOT NULL,
        dim INTEGER NOT NULL,
        table_name VARCHAR NOT NULL,
        added_at TIMESTAMP NOT NULL DEFAULT current_timestamp
    );
    CREATE TABLE ingest_errors (
        run_id VARCHAR NOT NULL,
        path VARCHAR NOT NULL,
        reason VARCHAR NOT NULL,
        failed_at TIMESTAMP NOT NULL DEFAULT current_timestamp
    );
    CREATE TABLE classifiers (
        id INTEGER PRIMARY KEY,
        model_name VARCHAR NOT NULL,
        file VARCHAR NOT NULL,
        sha256 VARCHAR NOT NULL,
        n_train INTEGER NOT NULL,
        trained_at TIMESTAMP NOT NULL DEFAULT current_timestamp,
        scores JSON
    );
    INSERT INTO meta VALUES ('next_poster_id', '1'), ('generation', '0');
    """,
]
SCHEMA_VERSION = len(MIGRATIONS)

_LOCK_MARKERS = ("Could not set lock", "Conflicting lock", "database is locked")
_process_lock = threading.RLock()  # one DuckDB handle at a time per process (read-only vs read-write)


def embedding_table(model_name: str) -> str:
    """`mobilenet-v2` -> `embeddings_mobilenet_v2`."""
    return "embeddings_" + re.sub(r"[^a-z0-9]+", "_", model_name.lower()).strip("_")


@dataclass(frozen=True)
class PosterRecord:
    """One poster row as the ingest writer hands it over."""

    sha256: str
    path: str
    image_path: str
    title: str | None
    year: int | None
    width: int
    height: int
    format: str | None
    source: str | None


class Catalog:
    """A handle on `catalog.duckdb`; opens short-lived connections on demand."""

    def __init__(self, path: str | Path, *, busy_timeout: float = 60.0):
        self.path = Path(path)
        self.busy_timeout = busy_timeout
        self._local = threading.local()  # this thread's open session: (connection, read_only)

    # -- connections --------------------------------------------------------------------------

    @contextmanager
    def _connect(self, read_only: bool) -> Iterator[duckdb.DuckDBPyConnection]:
        """Open the file (retrying while another process holds the lock), or reuse the session
        this thread already has open: nested `read()`/`write()` calls share one connection."""
        session = getattr(self._local, "session", None)
        if session is not None:
            con, session_read_only = session
            if session_read_only and not read_only:
                raise StoreError("a write was asked for inside a read-only session")
            yield con
            return
        deadline = time.monotonic() + self.busy_timeout
        delay = 0.01
        with _process_lock:
            while True:
                try:
                    con = duckdb.connect(str(self.path), read_only=read_only)
                    break
                except duckdb.IOException as e:
                    if not any(m in str(e) for m in _LOCK_MARKERS):
                        raise StoreError(f"{self.path}: {e}") from e
                    if time.monotonic() > deadline:
                        raise StoreBusyError(
                            f"{self.path} stayed locked by another process for "
                            f"{self.busy_timeout:.0f} s") from e
                    time.sleep(delay * (0.5 + random.random()))
                    delay = min(delay * 2, 0.5)
            self._local.session = (con, read_only)
            try:
                yield con
            finally:
                self._local.session = None
                con.close()

    @contextmanager
    def read(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A read-only connection (many processes may hold one at once); nested calls share it."""
        if getattr(self._local, "session", None) is None and not self.path.exists():
            raise StoreError(f"no catalogue at {self.path}: ingest something first")
        with self._connect(read_only=True) as con:
            yield con

    @contextmanager
    def write(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A read-write connection inside one transaction, committed on success.

        Nested inside another `write()` on this thread it joins that transaction."""
        if getattr(self._local, "session", None) is not None:
            with self._connect(read_only=False) as con:
                yield con
            return
        with self._connect(read_only=False) as con:
            con.execute("BEGIN TRANSACTION")
            try:
                yield con
            except BaseException:
                con.execute("ROLLBACK")
                raise
            new = max(self.generation(con), self.generation_hint() or 0) + 1
            con.execute("UPDATE meta SET value = ? WHERE key = 'generation'", [str(new)])
            self._write_generation_file(new)  # before COMMIT: the file may run ahead, never behind
            crash_point("before_commit")
            con.execute("COMMIT")
            crash_point("after_commit")

    def migrate(self) -> int:
        """Create the file if needed and apply pending numbered migrations; returns the version."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect(read_only=False) as con:
            con.execute("CREATE TABLE IF NOT EXISTS schema_migrations "
                        "(version INTEGER PRIMARY KEY, applied_at TIMESTAMP DEFAULT current_timestamp)")
            done = {r[0] for r in con.execute("SELECT version FROM schema_migrations").fetchall()}
            for version, sql in enumerate(MIGRATIONS, start=1):
                if version in done:
                    continue
                con.execute("BEGIN TRANSACTION")
                con.execute(sql)
                con.execute("INSERT INTO schema_migrations (version) VALUES (?)", [version])
                con.execute("COMMIT")
            if self.generation_hint() is None:  # stores made before the file existed
                self._write_generation_file(self.generation(con))
        return SCHEMA_VERSION

    def schema_version(self, con: duckdb.DuckDBPyConnection) -> int:
        return con.execute("SELECT coalesce(max(version), 0) FROM schema_migrations").fetchall()[0][0]

    # -- meta ---------------------------------------------------------------------------------

    @property
    def generation_file(self) -> Path:
        return self.path.with_name("generation")

    def generation_hint(self) -> int | None:
        """The generation from the small file beside the catalogue (no DuckDB open), if any."""
        try:
            return int(self.generation_file.read_text())
        except (OSError, ValueError):
            return None

    def _write_generation_file(self, generation: int) -> None:
        tmp = self.generation_file.with_name(f".generation.{os.getpid()}.tmp")
        tmp.write_text(str(generation))
        os.replace(tmp, self.generation_file)

    @staticmethod
    def generation(con) -> int:
        """A counter bumped by every committed write: readers use it to invalidate caches."""
        return int(con.execute("SELECT value FROM meta WHERE key = 'generation'").fetchall()[0][0])

    @staticmethod
    def allocate_ids(con, n: int) -> np.ndarray:
        """Reserve n new poster ids (never reused, even after removal) inside the transaction."""
        start = int(con.execute("SELECT value FROM meta WHERE key = 'next_poster_id'").fetchall()[0][0])
        con.execute("UPDATE meta SET value = ? WHERE key = 'next_poster_id'", [str(start + n)])
        return np.arange(start, start + n, dtype=np.int64)

    # -- models -------------------------------------------------------------------------------

    @staticmethod
    def model_spec(con, name: str) -> ModelSpec | None:
        rows = con.execute("SELECT name, version, weights_sha256, dim FROM models WHERE name = ?",
                           [name]).fetchall()
        return ModelSpec(*rows[0]) if rows else None

    @staticmethod
    def model_specs(con) -> list[ModelSpec]:
        rows = con.execute("SELECT name, version, weights_sha256, dim FROM models ORDER BY name")
        return [ModelSpec(*r) for r in rows.fetchall()]

    @classmethod
    def register_model(cls, con, spec: ModelSpec) -> str:
        """Record `spec` (creating its embeddings table) or refuse a different model under its name."""
        known = cls.model_spec(con, spec.name)
        table = embedding_table(spec.name)
        if known is None:
            con.execute(f"CREATE TABLE IF NOT EXISTS {table} "
                        f"(poster_id INTEGER PRIMARY KEY, vector FLOAT[{int(spec.dim)}] NOT NULL)")
            con.execute("INSERT INTO models (name, version, weights_sha256, dim, table_name) "
                        "VALUES (?, ?, ?, ?, ?)",
                        [spec.name, spec.version, spec.weights_sha256, spec.dim, table])
        elif known != spec:
            raise ModelMismatchError(
                f"this store's {spec.name!r} vectors were made by version {known.version}, "
                f"weights {known.weights_sha256[:12]}, dim {known.dim}; the model given is version "
                f"{spec.version}, weights {spec.weights_sha256[:12]}, dim {spec.dim}. Vectors of "
                f"two models cannot share an index: use the same weights, or another store.")
        return table

    # -- writes -------------------------------------------------------------------------------

    @staticmethod
    def insert_posters(con, ids: np.ndarray, records: Sequence[PosterRecord]) -> None:
        years = [r.year for r in records]
        tbl = pa.table({
            "id": pa.array(ids, pa.int32()),
            "sha256": [r.sha256 for r in records],
            "path": [r.path for r in records],
            "image_path": [r.image_path for r in records],
            "title": pa.array([r.title for r in records], pa.string()),
            "year": pa.array(years, pa.int32()),
            "decade": pa.array([None if y is None else y // 10 * 10 for y in years], pa.int32()),
            "width": pa.array([r.width for r in records], pa.int32()),
            "height": pa.array([r.height for r in records], pa.int32()),
            "format": pa.array([r.format for r in records], pa.string()),
            "source": pa.array([r.source for r in records], pa.string()),
        })
        con.register("_new_posters", tbl)
        try:
            con.execute("INSERT INTO posters (id, sha256, path, image_path, title, year, decade, "
                        "width, height, format, source) SELECT * FROM _new_posters")
            con.execute("INSERT OR IGNORE INTO poster_paths SELECT id, path FROM _new_posters")
        finally:
            con.unregister("_new_posters")

    @staticmethod
    def add_paths(con, pairs: Sequence[tuple[int, str]]) -> None:
        """Remember other file names seen for already stored bytes."""
        if pairs:
            con.register("_paths", pa.table({
                "poster_id": pa.array([int(p) for p, _ in pairs], pa.int32()),
                "path": pa.array([str(f) for _, f in pairs], pa.string())}))
            try:
                con.execute("INSERT OR IGNORE INTO poster_paths SELECT * FROM _paths")
            finally:
                con.unregister("_paths")

    @staticmethod
    def insert_vectors(con, table: str, ids: np.ndarray, vectors: np.ndarray) -> None:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        col = pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), vectors.shape[1])
        con.register("_new_vectors", pa.table({"poster_id": pa.array(ids, pa.int32()), "vector": col}))
        try:
            con.execute(f"INSERT INTO {table} SELECT * FROM _new_vectors")
        finally:
            con.unregister("_new_vectors")

    @staticmethod
    def set_labels(con, poster_ids: Sequence[int], genre_lists: Sequence[Sequence[str]],
                   origin: str, scores: Sequence[Sequence[float]] | None = None) -> None:
        """Replace the `origin` labels of each poster with the given genres."""
        if origin not in ORIGINS:
            raise ValueError(f"origin must be one of {ORIGINS}")
        if not poster_ids:
            return
        pids, genres, vals = [], [], []
        for i, (pid, gs) in enumerate(zip(poster_ids, genre_lists)):
            for j, g in enumerate(gs):
                if g not in GENRES:
                    raise ValueError(f"not a TMDb genre: {g!r}")
                pids.append(int(pid))
                genres.append(g)
                vals.append(None if scores is None else float(scores[i][j]))
        con.register("_targets", pa.table({"poster_id": pa.array([int(p) for p in poster_ids],
                                                                  pa.int32())}))
        con.register("_labels", pa.table({"poster_id": pa.array(pids, pa.int32()),
                                          "genre": pa.array(genres, pa.string()),
                                          "score": pa.array(vals, pa.float64())}))
        try:
            con.execute("DELETE FROM genre_labels WHERE origin = ? AND poster_id IN "
                        "(SELECT poster_id FROM _targets)", [origin])
            con.execute("INSERT INTO genre_labels (poster_id, genre, origin, score) "
                        "SELECT poster_id, genre, ?, score FROM _labels", [origin])
        finally:
            con.unregister("_targets")
            con.unregister("_labels")

    @staticmethod
    def record_errors(con, run_id: str, errors: Sequence[tuple[str, str]]) -> None:
        if errors:
            con.executemany("INSERT INTO ingest_errors (run_id, path, reason) VALUES (?, ?, ?)",
                            [(run_id, p, r) for p, r in errors])

    @staticmethod
    def delete_posters(con, ids: Sequence[int]) -> list[str]:
        """Delete posters everywhere; returns the image paths no remaining poster uses."""
        ids = [int(i) for i in ids]
        con.register("_gone", pa.table({"id": pa.array(ids, pa.int32())}))
        try:
            images = [r[0] for r in con.execute(
                "SELECT image_path FROM posters WHERE id IN (SELECT id FROM _gone)").fetchall()]
            for (table,) in con.execute("SELECT table_name FROM models").fetchall():
                con.execute(f"DELETE FROM {table} WHERE poster_id IN (SELECT id FROM _gone)")
            con.execute("DELETE FROM genre_labels WHERE poster_id IN (SELECT id FROM _gone)")
            con.execute("DELETE FROM poster_paths WHERE poster_id IN (SELECT id FROM _gone)")
            con.execute("DELETE FROM posters WHERE id IN (SELECT id FROM _gone)")
        finally:
            con.unregister("_gone")
        return images

    # -- reads --------------------------------------------------------------------------------

    @staticmethod
    def vector_ids(con, table: str) -> np.ndarray:
        res = con.sql(f"SELECT poster_id FROM {table} ORDER BY poster_id").fetchnumpy()
        return np.asarray(res["poster_id"], dtype=np.int64)

    @staticmethod
    def vectors(con, table: str, ids: Sequence[int] | np.ndarray | None = None,
                ) -> tuple[np.ndarray, np.ndarray]:
        """(ids, vectors) for all posters, or for the given ids; ordered by id."""
        if ids is None:
            tbl = con.sql(f"SELECT poster_id, vector FROM {table} ORDER BY poster_id").to_arrow_table()
        else:
            con.register("_want", pa.table({"id": pa.array(np.asarray(ids, np.int64), pa.int32())}))
            try:
                tbl = con.sql(f"SELECT poster_id, vector FROM {table} WHERE poster_id IN "
                              f"(SELECT id FROM _want) ORDER BY poster_id").to_arrow_table()
            finally:
                con.unregister("_want")
        out_ids = tbl.column("poster_id").to_numpy().astype(np.int64)
        col = tbl.column("vector").combine_chunks()
        dim = col.type.list_size
        vecs = col.flatten().to_numpy(zero_copy_only=False).reshape(-1, dim).astype(np.float32)
        return out_ids, vecs

    @staticmethod
    def effective_labels_sql() -> str:
        """SQL for each poster's labels: review labels win over file labels."""
        return """
            SELECT poster_id, genre FROM genre_labels WHERE origin = 'review'
            UNION ALL
            SELECT poster_id, genre FROM genre_labels g WHERE origin = 'file' AND NOT EXISTS (
                SELECT 1 FROM genre_labels r WHERE r.origin = 'review' AND r.poster_id = g.poster_id)
        """

    @classmethod
    def labels(cls, con, origin: str | None = None) -> dict[int, list[str]]:
        """poster id -> genres: effective (review > file) labels, or those of one origin."""
        sql = (cls.effective_labels_sql() if origin is None
               else "SELECT poster_id, genre FROM genre_labels WHERE origin = ?")
        rows = con.execute(sql, [] if origin is None else [origin]).fetchall()
        out: dict[int, list[str]] = {}
        for pid, g in rows:
            out.setdefault(int(pid), []).append(g)
        order = {g: i for i, g in enumerate(GENRES)}
        return {pid: sorted(gs, key=order.__getitem__) for pid, gs in out.items()}

    @classmethod
    def labels_of(cls, con, ids: Sequence[int] | None) -> dict:
        """{"effective": {id: genres}, "prediction": {id: genres}, "review": set(ids)} for the ids
        (or for every poster when ids is None), reading only those posters' labels."""
        order = {g: i for i, g in enumerate(GENRES)}
        if ids is not None:
            con.register("_ids", pa.table({"id": pa.array([int(i) for i in ids], pa.int32())}))
        try:
            where = "WHERE poster_id IN (SELECT id FROM _ids)" if ids is not None else ""
            rows = con.execute(f"SELECT poster_id, genre, origin FROM genre_labels {where}").fetchall()
        finally:
            if ids is not None:
                con.unregister("_ids")
        by_origin: dict[str, dict[int, list[str]]] = {o: {} for o in ORIGINS}
        for pid, g, origin in rows:
            by_origin[origin].setdefault(int(pid), []).append(g)
        for d in by_origin.values():
            for gs in d.values():
                gs.sort(key=order.__getitem__)
        effective = dict(by_origin["file"]) | by_origin["review"]
        return {"effective": effective, "prediction": by_origin["prediction"],
                "review": set(by_origin["review"])}

    @classmethod
    def filter_ids(cls, con, *, decades: Sequence[int] | None = None, genres: Sequence[str] | None = None,
                   labelled: bool | None = None) -> np.ndarray:
        """Ids of posters matching every given filter (genre = any effective or predicted label)."""
        where, params = [], []
        if decades:
            where.append(f"decade IN ({','.join('?' * len(decades))})")
            params += [int(d) for d in decades]
        if genres:  # a poster's labels (review > file), or its predictions when it has none
            marks = ",".join("?" * len(genres))
            where.append(
                f"(id IN (SELECT poster_id FROM ({cls.effective_labels_sql()}) WHERE genre IN "
                f"({marks})) OR (id IN (SELECT poster_id FROM genre_labels WHERE origin = "
                f"'prediction' AND genre IN ({marks})) AND id NOT IN (SELECT poster_id FROM "
                "genre_labels WHERE origin IN ('file', 'review'))))")
            params += list(genres) * 2
        if labelled is not None:
            op = "IN" if labelled else "NOT IN"
            where.append(f"id {op} (SELECT poster_id FROM genre_labels "
                         "WHERE origin IN ('file', 'review'))")
        sql = "SELECT id FROM posters" + (" WHERE " + " AND ".join(where) if where else "")
        return np.asarray([r[0] for r in con.execute(sql + " ORDER BY id", params).fetchall()],
                          dtype=np.int64)
