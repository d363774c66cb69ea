"""Genre labels by origin, and the filters over them. The precedence comes from `posterdb.rules`:
the SQL below is generated from its tuples, so adding an origin there is enough."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from posterdb.core.errors import UsageError
from posterdb.core.genres import GENRES
from posterdb.core.rules import (
    LABEL_ORIGINS, ORIGINS, PREDICTION_ORIGINS, check_origin, sort_genres, strongest)
from posterdb.storage.catalog.schema import id_array


def _quoted(origins: Sequence[str]) -> str:
    return ", ".join(f"'{o}'" for o in origins)  # constants from rules.py, never user input


def strongest_sql(origins: Sequence[str]) -> str:
    """SQL (poster_id, genre): each poster's genres from the strongest of `origins` it has."""
    parts = []
    for i, origin in enumerate(origins):
        stronger = origins[:i]
        cond = (f" AND NOT EXISTS (SELECT 1 FROM genre_labels s WHERE s.poster_id = g.poster_id "
                f"AND s.origin IN ({_quoted(stronger)}))" if stronger else "")
        parts.append(f"SELECT poster_id, genre FROM genre_labels g WHERE origin = '{origin}'{cond}")
    return "\nUNION ALL\n".join(parts)


LABELS_SQL = strongest_sql(LABEL_ORIGINS)   # labels: trained on
SHOWN_SQL = strongest_sql(ORIGINS)          # labels, else predictions: shown and filtered on


class LabelQueries:
    """Mixed into `Catalog`; every method takes the open connection first."""

    @staticmethod
    def set_labels(con, poster_ids: Sequence[int], genre_lists: Sequence[Sequence[str]],
                   origin: str, scores: Sequence[Sequence[float]] | None = None) -> None:
        """Replace the `origin` labels of each poster with the given genres."""
        check_origin(origin)
        if not poster_ids:
            return
        pids, genres, vals = [], [], []
        for i, (pid, gs) in enumerate(zip(poster_ids, genre_lists)):
            for j, g in enumerate(gs):
                if g not in GENRES:
                    raise UsageError(f"not a TMDb genre: {g!r}")
                pids.append(int(pid))
                genres.append(g)
                vals.append(None if scores is None else float(scores[i][j]))
        con.register("_targets", pa.table({"poster_id": id_array(poster_ids)}))
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
    def labels(con, origin: str | None = None) -> dict[int, list[str]]:
        """poster id -> genres: labels (strongest labelling origin), or those of one origin."""
        if origin is None:
            rows = con.execute(LABELS_SQL).fetchall()
        else:
            rows = con.execute("SELECT poster_id, genre FROM genre_labels WHERE origin = ?",
                               [check_origin(origin)]).fetchall()
        out: dict[int, list[str]] = {}
        for pid, g in rows:
            out.setdefault(int(pid), []).append(g)
        return {pid: sort_genres(gs) for pid, gs in out.items()}

    @staticmethod
    def labels_of(con, ids: Sequence[int] | None) -> dict:
        """{"effective": {id: genres}, "prediction": {id: genres}, "review": set(ids),
        "by_origin": {origin: {id: genres}}} for the ids (or every poster when None)."""
        if ids is not None:
            con.register("_ids", pa.table({"id": id_array(ids)}))
        try:
            where = "WHERE poster_id IN (SELECT id FROM _ids)" if ids is not None else ""
            rows = con.execute(f"SELECT poster_id, genre, origin FROM genre_labels {where}").fetchall()
        finally:
            if ids is not None:
                con.unregister("_ids")
        by_origin: dict[str, dict[int, list[str]]] = {o: {} for o in ORIGINS}
        for pid, g, origin in rows:
            by_origin.setdefault(origin, {}).setdefault(int(pid), []).append(g)
        for d in by_origin.values():
            for pid in d:
                d[pid] = sort_genres(d[pid])
        every = set().union(*(d.keys() for d in by_origin.values()))
        effective, prediction = {}, {}
        for pid in every:
            _, gs = strongest(by_origin, LABEL_ORIGINS, pid)
            if gs:
                effective[pid] = gs
            _, ps = strongest(by_origin, PREDICTION_ORIGINS, pid)
            if ps:
                prediction[pid] = ps
        return {"effective": effective, "prediction": prediction,
                "review": set(by_origin.get("review", {})), "by_origin": by_origin}

    @staticmethod
    def filter_ids(con, *, decades: Sequence[int] | None = None,
                   genres: Sequence[str] | None = None, labelled: bool | None = None) -> np.ndarray:
        """Ids of posters matching every filter (genre: its labels, else its predictions)."""
        where, params = [], []
        if decades:
            where.append(f"decade IN ({','.join('?' * len(decades))})")
            params += [int(d) for d in decades]
        if genres:
            where.append(f"id IN (SELECT poster_id FROM ({SHOWN_SQL}) WHERE genre IN "
                         f"({','.join('?' * len(genres))}))")
            params += list(genres)
        if labelled is not None:
            op = "IN" if labelled else "NOT IN"
            where.append(f"id {op} (SELECT poster_id FROM genre_labels "
                         f"WHERE origin IN ({_quoted(LABEL_ORIGINS)}))")
        sql = "SELECT id FROM posters" + (" WHERE " + " AND ".join(where) if where else "")
        return np.asarray([r[0] for r in con.execute(sql + " ORDER BY id", params).fetchall()],
                          dtype=np.int64)
