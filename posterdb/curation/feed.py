"""The shop feed: one row per poster with its *published* genres, as CSV or JSON.

Written atomically (temporary file in the same folder, fsync, rename), so a shop importer
reading the feed while `posterdb watch` rewrites it sees the old file or the new one, never half.
CSV cells go through `posterdb.core.text.csv_cell` (a title a spreadsheet would run as a formula
gets a leading `'`); JSON is exact.
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from posterdb.core.atomic import write_atomic
from posterdb.core.text import csv_text

FORMATS = ("csv", "json")
COLUMNS = ("id", "title", "year", "image", "genres")
GENRE_SEPARATOR = "|"


@dataclass(frozen=True)
class FeedRow:
    """One poster as the shop sees it. `image` is the path of the stored copy."""

    id: int
    title: str | None
    year: int | None
    image: str
    genres: tuple[str, ...]

    @classmethod
    def from_mapping(cls, m: Mapping) -> "FeedRow":
        return cls(int(m["id"]), m.get("title"), m.get("year"), str(m.get("image") or ""),
                   tuple(m.get("genres") or ()))


def format_of(path: Path, fmt: str | None = None) -> str:
    """The feed format: explicit, else from the suffix (.json -> json, anything else -> csv)."""
    if fmt is not None:
        if fmt not in FORMATS:
            raise ValueError(f"feed format must be one of {', '.join(FORMATS)}, got {fmt!r}")
        return fmt
    return "json" if Path(path).suffix.lower() == ".json" else "csv"


def render(rows: Iterable[FeedRow], fmt: str) -> bytes:
    """The feed's bytes: CSV with genres joined by '|', or a JSON array of objects."""
    rows = list(rows)
    if fmt == "json":
        return (json.dumps([{"id": r.id, "title": r.title, "year": r.year, "image": r.image,
                             "genres": list(r.genres)} for r in rows],
                           ensure_ascii=False, indent=1) + "\n").encode("utf-8")
    if fmt != "csv":
        raise ValueError(f"feed format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    return csv_text(COLUMNS, ([r.id, r.title or "", "" if r.year is None else r.year, r.image,
                               GENRE_SEPARATOR.join(r.genres)] for r in rows),
                    lineterminator="\n").encode("utf-8")


def write_feed(rows: Iterable[FeedRow], path: Path, fmt: str | None = None) -> int:
    """Write the feed atomically; returns the number of rows."""
    rows = list(rows)
    write_atomic(Path(path), render(rows, format_of(path, fmt)))
    return len(rows)
