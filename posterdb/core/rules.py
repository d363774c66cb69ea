"""The store's rules, each written once: which labels count, decades, valid genres, arguments.

Label origins, strongest first. A poster's *labels* are those of its strongest labelling origin
(a person's review beats the labels file); what the store *shows* for a poster is its labels,
else its predictions. To add an origin (e.g. 'catalogue' from an identified title), insert it
in ORIGINS at its rank and, if it is ground truth for training, in LABEL_ORIGINS; the SQL in
`catalog.labels` and the Python in `shown_genres` are generated from these tuples.
"""
from __future__ import annotations

import numbers
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from posterdb.core.errors import UsageError
from posterdb.core.genres import GENRE_INDEX, GENRES, decade_of, normalize_genre

# 'catalogue': the genres of the film a poster was identified as (posterdb.reading): facts
# from a film catalogue, beaten by a person's review and the dealer's own labels file.
ORIGINS: tuple[str, ...] = ("review", "file", "catalogue", "prediction", "published")  # strongest first
LABEL_ORIGINS: tuple[str, ...] = ("review", "file", "catalogue")  # ground truth: trained on, shown
PREDICTION_ORIGINS: tuple[str, ...] = ("prediction",)         # shown only when no labels
# 'published': the subset of a poster's predictions confident enough for the shop feed
# (classify/publish.py); the rest of its predictions are *suggested*, for a person to review.

MIN_YEAR, MAX_YEAR = 1850, 2100
MAX_POSTER_ID = 2**31 - 1      # poster ids are the catalogue's INTEGER (int32) keys
MAX_TITLE_CHARS = 1000         # a title handed in (labels cell, file name) is cut to this

__all__ = ["ORIGINS", "LABEL_ORIGINS", "PREDICTION_ORIGINS", "decade_of", "check_origin",
           "validate_genres", "sort_genres", "strongest", "shown_genres", "check_year",
           "check_k", "check_decades", "check_path", "MAX_POSTER_ID",
           "check_poster_id", "check_poster_ids", "check_output_path"]


def check_origin(origin: str) -> str:
    if origin not in ORIGINS:
        raise UsageError(f"origin must be one of {ORIGINS}, not {origin!r}")
    return origin


def sort_genres(genres: Iterable[str]) -> list[str]:
    return sorted(set(genres), key=GENRE_INDEX.__getitem__)


def validate_genres(genres: Iterable[str], *, at_least_one: bool = True) -> list[str]:
    """Canonical TMDb names (aliases and any case accepted), or UsageError naming the bad ones."""
    genres = list(genres)
    known = [normalize_genre(g) for g in genres]
    bad = [g for g, k in zip(genres, known) if k is None]
    if bad:
        raise UsageError(f"not TMDb genres: {bad}; valid: {', '.join(GENRES)}")
    if at_least_one and not genres:
        raise UsageError("give at least one of the 19 TMDb genres")
    return sort_genres(known)


def validate_genres_in_order(genres: Iterable[str]) -> list[str]:
    """Canonical names in the order given (UsageError naming unknown ones)."""
    genres = list(genres)
    validate_genres(genres, at_least_one=False)
    return [normalize_genre(g) for g in genres]


def strongest(by_origin: Mapping[str, Mapping[int, list[str]]], origins: Sequence[str],
              poster_id: int) -> tuple[str | None, list[str]]:
    """(origin, genres) of the strongest of `origins` that labels this poster, else (None, [])."""
    for origin in origins:
        genres = by_origin.get(origin, {}).get(poster_id)
        if genres:
            return origin, genres
    return None, []


def shown_genres(labels: Sequence[str], predicted: Sequence[str]) -> tuple[list[str], bool]:
    """What a poster is shown with: (its labels, True), else (its predictions, False)."""
    return (list(labels), True) if labels else (list(predicted), False)


# -- arguments (checked before any store is opened or created) ------------------------------------

def check_year(year: int | None) -> int | None:
    if year is not None and not MIN_YEAR <= int(year) <= MAX_YEAR:
        raise UsageError(f"year {year} is outside {MIN_YEAR}-{MAX_YEAR}")
    return None if year is None else int(year)


def check_k(k: int, name: str = "k") -> int:
    if int(k) < 1 or int(k) > 10_000:
        raise UsageError(f"{name} must be between 1 and 10000, not {k}")
    return int(k)


def check_decades(decades: Iterable[int] | None) -> list[int]:
    """Years or decades (1975 or 1970) → decades; UsageError outside the plausible range."""
    return [decade_of(check_year(int(d))) for d in decades or []]


def check_poster_id(value, what: str = "poster id") -> int:
    """A poster id as handed in (an argument, a JSON entry): an integer in 1..MAX_POSTER_ID."""
    if isinstance(value, bool) or not isinstance(value, (numbers.Integral, str)):
        raise UsageError(f"{what} must be an integer, not {value!r}"[:200])
    if isinstance(value, str):
        digits = value.strip()
        if not (digits.isascii() and digits.isdigit()):
            raise UsageError(f"{what} must be a positive integer, not {value[:40]!r}")
        if len(digits) > 20:
            raise UsageError(f"{what} {digits[:20]}... is out of range: poster ids are "
                             f"1..{MAX_POSTER_ID}")
        value = int(digits)
    if not 1 <= value <= MAX_POSTER_ID:
        text = str(value) if value.bit_length() < 64 else "of over 19 digits"
        raise UsageError(f"{what} {text} is out of range: poster ids are 1..{MAX_POSTER_ID}")
    return int(value)


def check_poster_ids(ids: Iterable, what: str = "poster id") -> list[int]:
    """Every id checked as `check_poster_id` (UsageError naming the first bad one)."""
    return [check_poster_id(i, what) for i in ids]


def check_output_path(path: str | Path, store: str | Path, what: str = "--output") -> Path:
    """An output file posterdb is asked to write: never inside the store folder (symlinks of
    the path, its folders and the store resolved), so no export overwrites the catalogue."""
    path = Path(path)
    real, home = Path(os.path.realpath(path)), Path(os.path.realpath(store))
    if real == home or real.is_relative_to(home):
        raise UsageError(f"{what} {path} lies inside the store {store}: write it elsewhere")
    if path.is_dir():
        raise UsageError(f"{what} {path} is a folder, not a file")
    return path


def check_path(path: str | Path, what: str = "path") -> Path:
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        raise UsageError(f"{what} {path} does not exist")
    return path
