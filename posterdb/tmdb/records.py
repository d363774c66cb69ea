"""What TMDb's API answers, as records: the image configuration, a movie of a list or a search,
a poster of `/movie/{id}/images`, a page of results. Built from the JSON with defaults for
missing fields (an API answer is untrusted input)."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

@dataclass(frozen=True)
class ImageConfig:
    """The ``images`` part of ``GET /configuration``."""

    base_url: str
    poster_sizes: tuple[str, ...]

    def poster_url(self, size: str, poster_path: str) -> str:
        return f"{self.base_url.rstrip('/')}/{size}/{poster_path.lstrip('/')}"


@dataclass(frozen=True)
class Movie:
    """One film as ``/discover/movie`` and ``/search/movie`` list it (genre ids in TMDb's order)."""

    id: int
    title: str
    original_title: str
    release_date: str
    genre_ids: tuple[int, ...]
    poster_path: str | None = None
    popularity: float = 0.0
    vote_count: int = 0
    original_language: str | None = None

    @property
    def year(self) -> int | None:
        head = (self.release_date or "")[:4]
        return int(head) if len(head) == 4 and head.isdigit() else None

    def genre_names(self, names: Mapping[int, str], limit: int | None = None) -> list[str]:
        """Genre names in TMDb's order (ids missing from `names` are dropped), cut at `limit`."""
        out = [names[g] for g in self.genre_ids if g in names]
        return out if limit is None else out[:limit]

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Movie:
        title = str(d.get("title") or d.get("original_title") or "")
        return cls(id=int(d["id"]), title=title,
                   original_title=str(d.get("original_title") or title),
                   release_date=str(d.get("release_date") or ""),
                   genre_ids=tuple(int(g) for g in d.get("genre_ids") or ()),
                   poster_path=d.get("poster_path") or None,
                   popularity=float(d.get("popularity") or 0.0),
                   vote_count=int(d.get("vote_count") or 0),
                   original_language=d.get("original_language"))


@dataclass(frozen=True)
class PosterInfo:
    """One poster of a film as ``GET /movie/{id}/images`` lists it (``posters[]``)."""

    file_path: str
    iso_639_1: str | None = None
    width: int = 0
    height: int = 0
    vote_average: float = 0.0
    vote_count: int = 0

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> PosterInfo:
        return cls(file_path=str(d["file_path"]), iso_639_1=d.get("iso_639_1") or None,
                   width=int(d.get("width") or 0), height=int(d.get("height") or 0),
                   vote_average=float(d.get("vote_average") or 0.0),
                   vote_count=int(d.get("vote_count") or 0))


@dataclass(frozen=True)
class MoviePage:
    """One page of a movie list: ``page`` of ``total_pages`` (``total_results`` films in all)."""

    page: int
    total_pages: int
    total_results: int
    results: tuple[Movie, ...]
