"""Models and their vector tables: one fixed-size `FLOAT[dim]` table per embedding model."""
from __future__ import annotations

from collections.abc import Sequence
from contextlib import contextmanager

import duckdb
import numpy as np
import pyarrow as pa

from posterdb.core.errors import ModelMismatchError, ModelNotHeldError
from posterdb.embedders.base import ModelSpec
from posterdb.storage.catalog.schema import embedding_table, id_array


def not_held(con, model_or_table: str) -> ModelNotHeldError:
    """The error for a model (or its vector table) this store holds no vectors from, naming the
    models it does hold."""
    try:
        held = [r[0] for r in con.execute("SELECT name FROM models ORDER BY name").fetchall()]
    except duckdb.Error:     # the connection cannot tell: the error still says what is missing
        held = []
    name = model_or_table
    if name.startswith("embeddings_"):
        from posterdb.embedders import EMBEDDER_NAMES

        name = next((n for n in [*EMBEDDER_NAMES, *held] if embedding_table(n) == name),
                    name.removeprefix("embeddings_"))
    return ModelNotHeldError.naming(name, held)


@contextmanager
def _model_table(con, table: str):
    """A query on a model's vector table: a table that does not exist is a ModelNotHeldError
    (exit 3, one line), not DuckDB's CatalogException."""
    try:
        yield
    except duckdb.CatalogException:
        try:
            registered = con.execute("SELECT count(*) FROM models WHERE table_name = ?",
                                     [table]).fetchall()[0][0]
        except duckdb.Error:
            registered = 0
        if registered:
            raise
        raise not_held(con, table) from None


class VectorQueries:
    """Mixed into `Catalog`; every method takes the open connection first."""

    not_held = staticmethod(not_held)

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
    def vector_ids(con, table: str) -> np.ndarray:
        with _model_table(con, table):
            res = con.sql(f"SELECT poster_id FROM {table} ORDER BY poster_id").fetchnumpy()
        return np.asarray(res["poster_id"], dtype=np.int64)

    @staticmethod
    def vector_count(con, table: str) -> int:
        with _model_table(con, table):
            return int(con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0])

    @staticmethod
    def vectors(con, table: str, ids: Sequence[int] | np.ndarray | None = None,
                ) -> tuple[np.ndarray, np.ndarray]:
        """(ids, vectors) for all posters, or for the given ids; ordered by id."""
        with _model_table(con, table):
            if ids is None:
                tbl = con.sql(f"SELECT poster_id, vector FROM {table} "
                              f"ORDER BY poster_id").to_arrow_table()
            else:
                con.register("_want", pa.table({"id": id_array(np.asarray(ids, np.int64))}))
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
