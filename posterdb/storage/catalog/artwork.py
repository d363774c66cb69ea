"""Catalogue films' own posters, cached to verify a scan's artwork (migration 4 in schema.py).

`catalogue_films` holds each film a catalogue named as a candidate (or listed in a reference
fetch) with its title, year and genres; `checked_at` is set once its poster list was asked
for (`n_posters` 0: the film has none, do not ask again). `catalogue_posters` maps a film to
its cached posters (content-addressed by sha256 under the store's `catalogue/` folder) and
`catalogue_poster_vectors` holds each poster's vector per embedding model.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa


def _keys_table(con, name: str, source: str, film_ids: Sequence[str]) -> None:
    con.register(name, pa.table({"source": pa.array([source] * len(film_ids), pa.string()),
                                 "film_id": pa.array([str(f) for f in film_ids], pa.string())}))


class ArtworkQueries:
    """Mixed into `Catalog`; every method takes the open connection first."""

    @staticmethod
    def save_catalogue_films(con, source: str, films: Sequence[dict]) -> None:
        """Insert or refresh films (dicts: film_id, title, year, genres, original_title) of one
        catalogue; whether their posters were checked is kept."""
        if not films:
            return
        con.register("_films", pa.table({
            "source": pa.array([source] * len(films), pa.string()),
            "film_id": pa.array([str(f["film_id"]) for f in films], pa.string()),
            "title": pa.array([str(f["title"]) for f in films], pa.string()),
            "year": pa.array([f.get("year") for f in films], pa.int32()),
            "genres": pa.array([list(f.get("genres") or ()) for f in films],
                               pa.list_(pa.string())),
            "original_title": pa.array([f.get("original_title") for f in films], pa.string())}))
        try:
            con.execute("INSERT INTO catalogue_films (source, film_id, title, year, genres, "
                        "original_title) SELECT DISTINCT ON (source, film_id) * FROM _films "
                        "ON CONFLICT (source, film_id) DO UPDATE SET title = excluded.title, "
                        "year = excluded.year, genres = excluded.genres, "
                        "original_title = excluded.original_title")
        finally:
            con.unregister("_films")

    @staticmethod
    def catalogue_films(con, source: str, film_ids: Sequence[str] | None = None) -> dict[str, dict]:
        """film id -> {title, year, genres, original_title, checked, n_posters} (known films)."""
        cols = ("film_id", "title", "year", "genres", "original_title", "checked_at", "n_posters")
        sql = f"SELECT {', '.join(cols)} FROM catalogue_films WHERE source = ?"
        if film_ids is not None:
            _keys_table(con, "_want", source, film_ids)
            sql += " AND film_id IN (SELECT film_id FROM _want)"
        try:
            rows = con.execute(sql, [source]).fetchall()
        finally:
            if film_ids is not None:
                con.unregister("_want")
        return {r[0]: {"title": r[1], "year": r[2], "genres": tuple(r[3] or ()),
                       "original_title": r[4], "checked": r[5] is not None,
                       "n_posters": r[6]} for r in rows}

    @staticmethod
    def save_catalogue_posters(con, source: str, film_id: str, posters: Sequence[dict]) -> None:
        """Replace one film's cached posters (dicts: file_path, sha256, image_path, language,
        width, height; in rank order) and mark the film checked."""
        con.execute("DELETE FROM catalogue_posters WHERE source = ? AND film_id = ?",
                    [source, str(film_id)])
        for rank, p in enumerate(posters):
            con.execute("INSERT INTO catalogue_posters VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
                        "ON CONFLICT DO NOTHING",
                        [source, str(film_id), p["file_path"], rank, p["sha256"],
                         p["image_path"], p.get("language"), p.get("width"), p.get("height")])
        con.execute("UPDATE catalogue_films SET checked_at = current_timestamp, n_posters = ? "
                    "WHERE source = ? AND film_id = ?", [len(posters), source, str(film_id)])

    @staticmethod
    def save_catalogue_vectors(con, model: str, shas: Sequence[str], vectors: np.ndarray) -> None:
        if not len(shas):
            return
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        con.register("_cv", pa.table({
            "sha256": pa.array(list(shas), pa.string()),
            "model": pa.array([model] * len(shas), pa.string()),
            "vector": pa.array(list(vectors), pa.list_(pa.float32()))}))
        try:
            con.execute("INSERT INTO catalogue_poster_vectors SELECT DISTINCT ON (sha256) * "
                        "FROM _cv ON CONFLICT DO NOTHING")
        finally:
            con.unregister("_cv")

    @staticmethod
    def catalogue_vector_shas(con, model: str, shas: Sequence[str]) -> set[str]:
        """Which of these posters already have a vector for `model`."""
        if not shas:
            return set()
        con.register("_shas", pa.table({"sha256": pa.array(list(shas), pa.string())}))
        try:
            return {r[0] for r in con.execute(
                "SELECT sha256 FROM catalogue_poster_vectors WHERE model = ? AND sha256 IN "
                "(SELECT sha256 FROM _shas)", [model]).fetchall()}
        finally:
            con.unregister("_shas")

    @staticmethod
    def catalogue_artwork(con, source: str, model: str, film_ids: Sequence[str] | None = None,
                          ) -> tuple[list[str], np.ndarray]:
        """(film id per row, vectors) of the cached posters of these films (all of the
        catalogue's when None) that have a `model` vector."""
        sql = ("SELECT p.film_id, v.vector FROM catalogue_posters p JOIN catalogue_poster_vectors "
               "v ON v.sha256 = p.sha256 AND v.model = ? WHERE p.source = ?")
        if film_ids is not None:
            _keys_table(con, "_want", source, film_ids)
            sql += " AND p.film_id IN (SELECT film_id FROM _want)"
        try:
            tbl = con.sql(sql + " ORDER BY p.film_id, p.rank", params=[model, source]
                          ).to_arrow_table()
        finally:
            if film_ids is not None:
                con.unregister("_want")
        films = [str(x) for x in tbl.column("film_id").to_pylist()]
        if not films:
            return [], np.zeros((0, 0), np.float32)
        col = tbl.column("vector").combine_chunks()
        vecs = col.flatten().to_numpy(zero_copy_only=False).astype(np.float32)
        return films, vecs.reshape(len(films), -1)

    @staticmethod
    def catalogue_artwork_counts(con) -> dict[str, int]:
        r = con.execute("SELECT (SELECT count(*) FROM catalogue_films), "
                        "(SELECT count(*) FROM catalogue_films WHERE checked_at IS NOT NULL), "
                        "(SELECT count(*) FROM catalogue_posters), "
                        "(SELECT count(*) FROM catalogue_poster_vectors)").fetchall()[0]
        return {"films": int(r[0]), "films_checked": int(r[1]), "posters": int(r[2]),
                "vectors": int(r[3])}
