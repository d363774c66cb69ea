"""Poster rows, their file names, ingest errors and stored classifiers: inserts, lookups, deletes.

File names are stored as `posterdb.core.text.stored_name` text (a name that is not UTF-8 is
kept, quoted and escaped, never refused); titles and reasons through `clean_text`, so no value
handed in can fail a commit.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from posterdb.core.records import POSTER_COLUMNS, ClassifierRow, PosterRecord
from posterdb.core.rules import decade_of
from posterdb.core.text import clean_text, stored_name
from posterdb.storage.catalog.schema import id_array


def _text(value: str | None) -> str | None:
    return None if value is None else clean_text(str(value))


class PosterQueries:
    """Mixed into `Catalog`; every method takes the open connection first."""

    # -- writes -------------------------------------------------------------------------------

    @staticmethod
    def insert_posters(con, ids: np.ndarray, records: Sequence[PosterRecord]) -> None:
        years = [r.year for r in records]
        tbl = pa.table({
            "id": pa.array(ids, pa.int32()),
            "sha256": [r.sha256 for r in records],
            "path": pa.array([stored_name(r.path) for r in records], pa.string()),
            "image_path": [r.image_path for r in records],
            "title": pa.array([_text(r.title) for r in records], pa.string()),
            "year": pa.array(years, pa.int32()),
            "decade": pa.array([decade_of(y) for y in years], pa.int32()),
            "width": pa.array([r.width for r in records], pa.int32()),
            "height": pa.array([r.height for r in records], pa.int32()),
            "format": pa.array([r.format for r in records], pa.string()),
            "source": pa.array([None if r.source is None else stored_name(r.source)
                                for r in records], pa.string()),
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
                "path": pa.array([stored_name(f) for _, f in pairs], pa.string())}))
            try:
                con.execute("INSERT OR IGNORE INTO poster_paths SELECT * FROM _paths")
            finally:
                con.unregister("_paths")

    @staticmethod
    def update_metadata(con, poster_id: int, title: str | None, year: int | None) -> None:
        con.execute("UPDATE posters SET title = ?, year = ?, decade = ? WHERE id = ?",
                    [_text(title), year, decade_of(year), int(poster_id)])

    @staticmethod
    def delete_posters(con, ids: Sequence[int]) -> tuple[list[int], list[str]]:
        """Delete the posters that exist everywhere; returns (deleted ids, their image paths)."""
        ids = [int(i) for i in ids]
        if not ids:
            return [], []
        con.register("_gone", pa.table({"id": id_array(ids)}))
        try:
            rows = con.execute("SELECT id, image_path FROM posters WHERE id IN "
                               "(SELECT id FROM _gone) ORDER BY id").fetchall()
            for (table,) in con.execute("SELECT table_name FROM models").fetchall():
                con.execute(f"DELETE FROM {table} WHERE poster_id IN (SELECT id FROM _gone)")
            con.execute("DELETE FROM genre_labels WHERE poster_id IN (SELECT id FROM _gone)")
            for table in ("poster_reads", "poster_text_lines", "poster_identifications"):
                con.execute(f"DELETE FROM {table} WHERE poster_id IN (SELECT id FROM _gone)")
            con.execute("DELETE FROM poster_paths WHERE poster_id IN (SELECT id FROM _gone)")
            con.execute("DELETE FROM posters WHERE id IN (SELECT id FROM _gone)")
        finally:
            con.unregister("_gone")
        return [int(r[0]) for r in rows], [r[1] for r in rows]

    @staticmethod
    def record_errors(con, run_id: str, errors: Sequence[tuple[str, str]]) -> None:
        if errors:
            con.executemany("INSERT INTO ingest_errors (run_id, path, reason) VALUES (?, ?, ?)",
                            [(run_id, stored_name(p), _text(r)) for p, r in errors])

    # -- reads --------------------------------------------------------------------------------

    @staticmethod
    def poster_rows(con, ids: Sequence[int] | None) -> list[dict]:
        """Rows of the given posters (all when None), ordered by id."""
        sql = f"SELECT {', '.join(POSTER_COLUMNS)} FROM posters"
        params: list = []
        if ids is not None:
            ids = [int(i) for i in ids]
            if not ids:
                return []
            sql += f" WHERE id IN ({','.join('?' * len(ids))})"
            params = ids
        rows = con.execute(sql + " ORDER BY id", params).fetchall()
        return [dict(zip(POSTER_COLUMNS, r)) | {"added_at": str(r[-1])} for r in rows]

    @staticmethod
    def count(con) -> int:
        return int(con.execute("SELECT count(*) FROM posters").fetchall()[0][0])

    @staticmethod
    def find_ids(con, text: str, limit: int = 20) -> list[int]:
        """The poster with that id, or posters whose title contains `text` (case-insensitive)."""
        if text.strip().isdigit():
            return [r[0] for r in con.execute("SELECT id FROM posters WHERE id = ?",
                                              [int(text)]).fetchall()]
        return [r[0] for r in con.execute(
            "SELECT id FROM posters WHERE title ILIKE ? ORDER BY year, id LIMIT ?",
            [f"%{text.strip()}%", limit]).fetchall()]

    @staticmethod
    def sha_to_id(con) -> dict[str, int]:
        return dict(con.execute("SELECT sha256, id FROM posters").fetchall())

    @staticmethod
    def id_of_sha(con, sha256: str) -> int | None:
        rows = con.execute("SELECT id FROM posters WHERE sha256 = ?", [sha256]).fetchall()
        return int(rows[0][0]) if rows else None

    @staticmethod
    def decades(con) -> dict[int, int | None]:
        """poster id -> decade (None: year unknown)."""
        return dict(con.execute("SELECT id, decade FROM posters").fetchall())

    @staticmethod
    def stored_metadata(con) -> dict[str, tuple[int, str | None, int | None]]:
        """sha256 -> (id, title, year) of every stored poster (ingest's plan)."""
        return {sha: (pid, title, year) for pid, sha, title, year in con.execute(
            "SELECT id, sha256, title, year FROM posters").fetchall()}

    @staticmethod
    def known_paths(con) -> set[str]:
        """Every stored file name, as `stored_name` text."""
        return {r[0] for r in con.execute("SELECT path FROM poster_paths").fetchall()}

    @staticmethod
    def ingest_errors(con, limit: int = 100) -> list[dict]:
        rows = con.execute("SELECT run_id, path, reason, CAST(failed_at AS VARCHAR) "
                           "FROM ingest_errors ORDER BY failed_at DESC LIMIT ?", [limit]).fetchall()
        return [dict(zip(("run_id", "path", "reason", "at"), r)) for r in rows]

    # -- classifiers --------------------------------------------------------------------------

    @staticmethod
    def insert_classifier(con, model: str, file: str, sha256: str, n_train: int, scores: str,
                          format_version: int, posterdb_version: str) -> int:
        next_id = con.execute("SELECT coalesce(max(id), 0) + 1 FROM classifiers").fetchall()[0][0]
        con.execute("INSERT INTO classifiers (id, model_name, file, sha256, n_train, scores, "
                    "format_version, posterdb_version) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    [next_id, model, file, sha256, n_train, scores, format_version,
                     posterdb_version])
        return int(next_id)

    @staticmethod
    def latest_classifier(con, model: str) -> ClassifierRow | None:
        rows = con.execute("SELECT id, model_name, file, sha256, n_train, "
                           "CAST(trained_at AS VARCHAR) FROM classifiers WHERE model_name = ? "
                           "ORDER BY id DESC LIMIT 1", [model]).fetchall()
        return ClassifierRow(*rows[0]) if rows else None

    @staticmethod
    def classifier_scores(con, classifier_id: int) -> str | None:
        rows = con.execute("SELECT CAST(scores AS VARCHAR) FROM classifiers WHERE id = ?",
                           [int(classifier_id)]).fetchall()
        return rows[0][0] if rows else None

    @staticmethod
    def classifier_rows(con) -> list[ClassifierRow]:
        rows = con.execute("SELECT id, model_name, file, sha256, n_train, "
                           "CAST(trained_at AS VARCHAR) FROM classifiers ORDER BY id").fetchall()
        return [ClassifierRow(*r) for r in rows]
