"""The shop feed: one row per poster with its *published* genres, as CSV or JSON.

Each row says where its genres come from (`genres_from`): ``review`` (a person), ``dealer``
(the dealer's labels file), ``catalogue`` (the film the poster was identified as: facts, with
`film_source` — tmdb or file — and `film_id`), or ``classifier`` (the image classifier's
predictions that cleared the publish thresholds); empty when nothing is published yet. An
identified poster also carries the film's own `film_title` and `film_year`.

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
COLUMNS = ("id", "title", "year", "image", "genres", "genres_from", "film_source", "film_id",
           "film_title", "film_year")
GENRES_FROM = {"review": "review", "file": "dealer", "catalogue": "catalogue",
               "published": "classifier"}     # label origin -> what the feed calls it
GENRE_SEPARATOR = "|"


@dataclass(frozen=True)
class FeedRow:
    """One poster as the shop sees it. `image` is the path of the stored copy."""

    id: int
    title: str | None
    year: int | None
    image: str
    genres: tuple[str, ...]
    genres_from: str = ""           # review / dealer / catalogue / classifier (see above)
    film_source: str | None = None  # the catalogue the poster was identified in
    film_id: str | None = None
    film_title: str | None = None
    film_year: int | None = None

    @classmethod
    def from_mapping(cls, m: Mapping) -> "FeedRow":
        return cls(int(m["id"]), m.get("title"), m.get("year"), str(m.get("image") or ""),
                   tuple(m.get("genres") or ()), str(m.get("genres_from") or ""),
                   m.get("film_source"), m.get("film_id"), m.get("film_title"),
                   m.get("film_year"))

    def to_json(self) -> dict:
        return {c: list(self.genres) if c == "genres" else getattr(self, c) for c in COLUMNS}

    def cells(self) -> list:
        """The CSV row, in COLUMNS order (genres joined by '|', None as empty)."""
        return [GENRE_SEPARATOR.join(self.genres) if c == "genres" else
                "" if getattr(self, c) is None else getattr(self, c) for c in COLUMNS]


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
        return (json.dumps([r.to_json() for r in rows],
                           ensure_ascii=False, indent=1) + "\n").encode("utf-8")
    if fmt != "csv":
        raise ValueError(f"feed format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    return csv_text(COLUMNS, (r.cells() for r in rows), lineterminator="\n").encode("utf-8")


def write_feed(rows: Iterable[FeedRow], path: Path, fmt: str | None = None) -> int:
    """Write the feed atomically; returns the number of rows."""
    rows = list(rows)
    write_atomic(Path(path), render(rows, format_of(path, fmt)))
    return len(rows)
