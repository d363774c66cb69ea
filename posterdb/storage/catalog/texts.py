"""What was read on each poster (lines, boxes, confidences) and which film it was identified as.

Tables (migration 3 in schema.py): `poster_reads` (one row per poster read: engine, the text as one string
for search), `poster_text_lines` (each line with its confidence and box, in reading order) and
`poster_identifications` (status identified / unidentified / pending, the best film with its
source, id, title, year, genres and score). A poster without a `poster_reads` row is unread; a
`pending` identification is retried by the next `posterdb identify`.
"""
from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa

from posterdb.storage.catalog.schema import id_array


def _ids_table(con, name: str, ids: Sequence[int]) -> None:
    con.register(name, pa.table({"id": id_array(ids)}))


class TextQueries:
    """Mixed into `Catalog`; every method takes the open connection first."""

    @staticmethod
    def save_reads(con, poster_ids: Sequence[int], reads: Sequence[Sequence[dict]],
                   engine: str, texts: Sequence[str], keys: Sequence[str]) -> None:
        """Replace what was read on these posters. `reads[i]`: lines as dicts with text,
        confidence and box (4 [x, y] points); `texts`/`keys`: the joined and squashed text."""
        if not poster_ids:
            return
        lp, ln, lt, lc, lb = [], [], [], [], []
        for pid, lines in zip(poster_ids, reads):
            for i, line in enumerate(lines):
                lp.append(int(pid))
                ln.append(i)
                lt.append(str(line["text"]))
                lc.append(float(line["confidence"]))
                lb.append([float(v) for pt in line["box"] for v in pt][:8])
        _ids_table(con, "_read_ids", poster_ids)
        con.register("_reads", pa.table({
            "poster_id": pa.array([int(p) for p in poster_ids], pa.int32()),
            "engine": pa.array([engine] * len(poster_ids), pa.string()),
            "n_lines": pa.array([len(r) for r in reads], pa.int32()),
            "text": pa.array(list(texts), pa.string()),
            "text_key": pa.array(list(keys), pa.string())}))
        con.register("_lines", pa.table({
            "poster_id": pa.array(lp, pa.int32()), "line_no": pa.array(ln, pa.int32()),
            "text": pa.array(lt, pa.string()), "confidence": pa.array(lc, pa.float64()),
            "box": pa.array(lb, pa.list_(pa.float64()))}))
        try:
            for table in ("poster_reads", "poster_text_lines"):
                con.execute(f"DELETE FROM {table} WHERE poster_id IN (SELECT id FROM _read_ids)")
            con.execute("INSERT INTO poster_reads (poster_id, engine, n_lines, text, text_key) "
                        "SELECT * FROM _reads")
            con.execute("INSERT INTO poster_text_lines SELECT poster_id, line_no, text, "
                        "confidence, box::DOUBLE[8] FROM _lines")
        finally:
            for name in ("_read_ids", "_reads", "_lines"):
                con.unregister(name)

    @staticmethod
    def unread_ids(con, ids: Sequence[int] | None = None) -> list[int]:
        """Stored posters not read yet (of `ids`, or of all), by id."""
        sql = "SELECT id FROM posters WHERE id NOT IN (SELECT poster_id FROM poster_reads)"
        if ids is None:
            return [r[0] for r in con.execute(sql + " ORDER BY id").fetchall()]
        _ids_table(con, "_want", ids)
        try:
            return [r[0] for r in con.execute(
                sql + " AND id IN (SELECT id FROM _want) ORDER BY id").fetchall()]
        finally:
            con.unregister("_want")

    @staticmethod
    def read_lines(con, ids: Sequence[int]) -> dict[int, list[dict]]:
        """poster id -> its lines (text, confidence, box as 4 points); read posters only."""
        if not ids:
            return {}
        _ids_table(con, "_want", ids)
        try:
            got = {int(r[0]): [] for r in con.execute(
                "SELECT poster_id FROM poster_reads WHERE poster_id IN (SELECT id FROM _want)"
            ).fetchall()}
            rows = con.execute(
                "SELECT poster_id, text, confidence, box FROM poster_text_lines WHERE poster_id "
                "IN (SELECT id FROM _want) ORDER BY poster_id, line_no").fetchall()
        finally:
            con.unregister("_want")
        for pid, text, conf, box in rows:
            got[int(pid)].append({"text": text, "confidence": float(conf),
                                  "box": [[box[i], box[i + 1]] for i in range(0, 8, 2)]})
        return got

    @staticmethod
    def search_text(con, query: str, key: str, limit: int = 50) -> list[tuple[int, str]]:
        """(poster id, read text) of posters whose read text contains `query` (any case), or
        whose squashed text contains `key` (so "greta garbo" finds "GRETAGARBO")."""
        return [(int(r[0]), r[1]) for r in con.execute(
            "SELECT poster_id, text FROM poster_reads WHERE text ILIKE ? OR "
            "(length(?) >= 3 AND text_key LIKE ?) ORDER BY poster_id LIMIT ?",
            [f"%{query}%", key, f"%{key}%", int(limit)]).fetchall()]

    @staticmethod
    def read_count(con) -> int:
        return int(con.execute("SELECT count(*) FROM poster_reads").fetchall()[0][0])

    # -- identifications ----------------------------------------------------------------------

    @staticmethod
    def save_identifications(con, rows: Sequence[dict]) -> None:
        """Replace the identification of each poster in `rows` (dicts as
        `Identification.to_dict()` plus `poster_id`)."""
        if not rows:
            return
        con.register("_idents", pa.table({
            "poster_id": pa.array([int(r["poster_id"]) for r in rows], pa.int32()),
            "status": pa.array([r["status"] for r in rows], pa.string()),
            "source": pa.array([r["source"] for r in rows], pa.string()),
            "film_id": pa.array([r.get("film_id") for r in rows], pa.string()),
            "title": pa.array([r.get("title") for r in rows], pa.string()),
            "year": pa.array([r.get("year") for r in rows], pa.int32()),
            "genres": pa.array([list(r.get("genres") or []) for r in rows],
                               pa.list_(pa.string())),
            "score": pa.array([r.get("score") for r in rows], pa.float64()),
            "candidates": pa.array([r.get("candidates") for r in rows], pa.int32()),
            "error": pa.array([r.get("error") for r in rows], pa.string())}))
        try:
            con.execute("DELETE FROM poster_identifications WHERE poster_id IN "
                        "(SELECT poster_id FROM _idents)")
            con.execute("INSERT INTO poster_identifications (poster_id, status, source, film_id, "
                        "title, year, genres, score, candidates, error) SELECT * FROM _idents")
        finally:
            con.unregister("_idents")

    @staticmethod
    def to_identify(con, ids: Sequence[int] | None = None, redo: bool = False) -> list[int]:
        """Read posters with no identification yet or a pending one (all read ones if `redo`),
        restricted to `ids` when given."""
        sql = "SELECT poster_id FROM poster_reads WHERE TRUE"
        if not redo:
            sql += (" AND poster_id NOT IN (SELECT poster_id FROM poster_identifications "
                    "WHERE status <> 'pending')")
        if ids is None:
            return [r[0] for r in con.execute(sql + " ORDER BY poster_id").fetchall()]
        _ids_table(con, "_want", ids)
        try:
            return [r[0] for r in con.execute(
                sql + " AND poster_id IN (SELECT id FROM _want) ORDER BY poster_id").fetchall()]
        finally:
            con.unregister("_want")

    @staticmethod
    def identifications(con, ids: Sequence[int] | None = None) -> dict[int, dict]:
        """poster id -> its identification (status, source, film_id, title, year, genres,
        score, candidates, error)."""
        cols = ("status", "source", "film_id", "title", "year", "genres", "score", "candidates",
                "error")
        sql = f"SELECT poster_id, {', '.join(cols)} FROM poster_identifications"
        if ids is not None:
            _ids_table(con, "_want", ids)
            sql += " WHERE poster_id IN (SELECT id FROM _want)"
        try:
            rows = con.execute(sql).fetchall()
        finally:
            if ids is not None:
                con.unregister("_want")
        return {int(r[0]): dict(zip(cols, r[1:])) | {"genres": list(r[6] or [])}
                for r in rows}

    @staticmethod
    def identification_counts(con) -> dict[str, int]:
        return {s: int(n) for s, n in con.execute(
            "SELECT status, count(*) FROM poster_identifications GROUP BY status").fetchall()}

    # -- the daily flow -----------------------------------------------------------------------

    @staticmethod
    def catalogue_poster_path(con, source: str, film_id: str) -> str | None:
        """The store-relative image path of a film's first cached catalogue poster (cached by
        artwork verification in `catalogue_posters`), or None: none cached, or a store
        without that cache."""
        if not con.execute("SELECT count(*) FROM information_schema.tables WHERE "
                           "table_name = 'catalogue_posters'").fetchone()[0]:
            return None
        row = con.execute("SELECT image_path FROM catalogue_posters WHERE source = ? AND "
                          "film_id = ? ORDER BY rank LIMIT 1", [source, str(film_id)]).fetchone()
        return row[0] if row else None
