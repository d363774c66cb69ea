"""The 19 TMDb genres, their aliases, and conversions to multi-hot vectors."""
from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

GENRES: tuple[str, ...] = (
    "Action", "Adventure", "Animation", "Comedy", "Crime", "Documentary", "Drama", "Family",
    "Fantasy", "History", "Horror", "Music", "Mystery", "Romance", "Science Fiction",
    "TV Movie", "Thriller", "War", "Western",
)
GENRE_INDEX = {g: i for i, g in enumerate(GENRES)}

# IMDb (and common spelling) names mapped to TMDb; keys are compared case-insensitively.
ALIASES: dict[str, str] = {
    "sci-fi": "Science Fiction", "scifi": "Science Fiction", "sf": "Science Fiction",
    "science-fiction": "Science Fiction",
    "musical": "Music", "film-noir": "Crime", "film noir": "Crime", "noir": "Crime",
    "tv-movie": "TV Movie", "tv film": "TV Movie", "tvmovie": "TV Movie",
    "doc": "Documentary", "historical": "History", "romantic": "Romance",
}
_LOOKUP = {g.lower(): g for g in GENRES} | ALIASES


def normalize_genre(name: str) -> str | None:
    """Return the TMDb name for `name` (any case, alias allowed), or None when unknown."""
    return _LOOKUP.get(" ".join(str(name).strip().split()).lower())


def parse_genres(value: str | Iterable[str] | None) -> tuple[list[str], list[str]]:
    """Parse `A|B`, `A, B` or a list into (known TMDb genres in canonical order, unknown names)."""
    if value is None:
        return [], []
    if isinstance(value, str):
        sep = "|" if "|" in value else ","
        items = value.split(sep)
    else:
        items = list(value)
    known, unknown = set(), []
    for raw in items:
        raw = str(raw).strip()
        if not raw:
            continue
        g = normalize_genre(raw)
        if g is None:
            unknown.append(raw)
        else:
            known.add(g)
    return sorted(known, key=GENRE_INDEX.__getitem__), unknown


def to_multi_hot(genre_lists: Iterable[Iterable[str]]) -> np.ndarray:
    """Stack genre lists into an (n, 19) uint8 matrix in GENRES order."""
    rows = [list(gs) for gs in genre_lists]
    import numpy as np

    out = np.zeros((len(rows), len(GENRES)), dtype=np.uint8)
    for i, gs in enumerate(rows):
        for g in gs:
            out[i, GENRE_INDEX[g]] = 1
    return out


def from_multi_hot(row: np.ndarray) -> list[str]:
    """Genre names of the set entries of one multi-hot row."""
    import numpy as np

    return [GENRES[j] for j in np.flatnonzero(np.asarray(row))]


def decade_of(year: int | None) -> int | None:
    """1974 -> 1970; None stays None."""
    return None if year is None else int(year) // 10 * 10
