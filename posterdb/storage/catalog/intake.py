"""Queries of the daily intake: other names of a poster's bytes, and the day's arrivals."""
from __future__ import annotations

from collections.abc import Sequence


class IntakeQueries:
    """Mixed into `Catalog`; every method takes the open connection first."""

    @staticmethod
    def paths_of(con, ids: Sequence[int]) -> dict[int, list[str]]:
        """poster id -> every file name its bytes were seen under (first ingest name first)."""
        ids = [int(i) for i in ids]
        if not ids:
            return {}
        marks = ",".join("?" * len(ids))
        out: dict[int, list[str]] = {i: [] for i in ids}
        for pid, path in con.execute(f"SELECT id, path FROM posters WHERE id IN ({marks})",
                                     ids).fetchall():
            out[int(pid)].append(path)
        for pid, path in con.execute(f"SELECT poster_id, path FROM poster_paths WHERE poster_id "
                                     f"IN ({marks}) ORDER BY path", ids).fetchall():
            if path not in out[int(pid)]:
                out[int(pid)].append(path)
        return out

    @staticmethod
    def arrivals(con, since: str) -> list[int]:
        """Ids of posters stored at or after `since` (an ISO timestamp), newest first."""
        return [int(r[0]) for r in con.execute(
            "SELECT id FROM posters WHERE added_at >= CAST(? AS TIMESTAMP) "
            "ORDER BY added_at DESC, id DESC", [since]).fetchall()]
