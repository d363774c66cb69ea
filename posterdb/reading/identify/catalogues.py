"""Film catalogues to look read titles up in: a local file (offline) or TMDb's search.

A catalogue answers :meth:`candidates` — the films whose titles resemble the queries read off
one poster. A local file is matched in memory with rapidfuzz on squashed titles (every query,
no network). TMDb is asked ``GET /search/movie`` for the few tallest queries only (each is a
request); when it is down or keeps answering 429 the call raises
:class:`CatalogueUnavailable` and the poster stays *pending* for a later run — it never fails.
"""
from __future__ import annotations

import csv
import gzip
import io
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rapidfuzz import fuzz

from posterdb.core.errors import RefusedError, UsageError
from posterdb.core.genres import parse_genres
from posterdb.reading.identify.text import Query, title_keys

_TITLE_YEAR = re.compile(r"^(.*\S)\s*\((\d{4})\)\s*$")


class CatalogueError(UsageError):
    """A catalogue file that cannot be read (names the file and the reason)."""


class CatalogueUnavailable(RefusedError):
    """The catalogue cannot answer now (down, rate-limited): try the poster again later."""


@dataclass(frozen=True)
class Film:
    """A film as a catalogue knows it; `genres` are TMDb genre names."""

    source: str
    film_id: str
    title: str
    year: int | None
    genres: tuple[str, ...] = ()
    original_title: str | None = None
    keys: frozenset[str] = field(default=frozenset(), compare=False, repr=False)

    def with_keys(self) -> "Film":
        ks = title_keys(self.title)
        if self.original_title and self.original_title != self.title:
            ks |= title_keys(self.original_title)
        return Film(self.source, self.film_id, self.title, self.year, self.genres,
                    self.original_title, frozenset(ks))


def _int_or_none(v) -> int | None:
    try:
        return int(str(v).strip()[:4])
    except (TypeError, ValueError):
        return None


def split_title_year(title: str) -> tuple[str, int | None]:
    """"Nosferatu (1922)" -> ("Nosferatu", 1922); a title without a year is returned as is."""
    m = _TITLE_YEAR.match(title.strip())
    return (m.group(1), int(m.group(2))) if m else (title.strip(), None)


class LocalCatalogue:
    """Films from a CSV (title, year, genres[, id]) or IMDb ``title.basics.tsv[.gz]``."""

    source = "file"

    def __init__(self, films: Iterable[Film], name: str = "file"):
        self.name = name
        self.films: list[Film] = [f if f.keys else f.with_keys() for f in films]
        self._by_key: dict[str, list[int]] = {}
        for i, f in enumerate(self.films):
            for k in f.keys:
                self._by_key.setdefault(k, []).append(i)
        self._keys = list(self._by_key)
        self._index = None  # character n-gram TF-IDF of the keys, built on first use
        self.requests = 0

    def __len__(self) -> int:
        return len(self.films)

    @classmethod
    def from_file(cls, path: str | Path) -> "LocalCatalogue":
        p = Path(path)
        try:
            raw = p.read_bytes()
        except OSError as e:
            raise CatalogueError(f"{p}: {e.strerror or e}") from e
        if raw[:2] == b"\x1f\x8b":
            try:
                raw = gzip.decompress(raw)
            except OSError as e:
                raise CatalogueError(f"{p}: not a valid gzip file") from e
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as e:
            raise CatalogueError(f"{p}: not UTF-8 text") from e
        head = text.split("\n", 1)[0]
        if "\t" in head and "primaryTitle" in head:
            films = _imdb_basics(text, p)
        else:
            films = _csv_films(text, p)
        if not films:
            raise CatalogueError(f"{p}: no films in it")
        return cls(films, name=str(p))

    def _shortlist(self, keys: list[str], per_query: int) -> list[set[int]]:
        """Key indices sharing the most character n-grams with each query key (a fast
        sparse product; rapidfuzz then scores only these)."""
        if self._index is None:
            from sklearn.feature_extraction.text import TfidfVectorizer
            vec = TfidfVectorizer(analyzer="char", ngram_range=(2, 3), lowercase=False,
                                  sublinear_tf=True, dtype=np.float32)
            self._index = (vec, vec.fit_transform(self._keys).T.tocsr())
        vec, MT = self._index
        S = (vec.transform(keys) @ MT).tocsr()
        out = []
        for i in range(S.shape[0]):
            row = S.getrow(i)
            if row.nnz > per_query:
                top = np.argpartition(-row.data, per_query)[:per_query]
                out.append(set(row.indices[top].tolist()))
            else:
                out.append(set(row.indices.tolist()))
        return out

    def candidates(self, queries: Sequence[Query], year: int | None = None,
                   limit: int = 8, cutoff: float = 70.0, per_query: int = 50) -> list[Film]:
        """Films whose title keys are within `cutoff` (rapidfuzz ratio) of any query key: the
        `limit` best per query, among the `per_query` keys sharing most n-grams with it."""
        if not queries:
            return []
        seen: dict[int, None] = {}
        qkeys = [q.key for q in queries]
        for qk, short in zip(qkeys, self._shortlist(qkeys, per_query)):
            scored = sorted(((fuzz.ratio(qk, self._keys[k]), k) for k in short), reverse=True)
            for score, k in scored[:limit]:
                if score < cutoff:
                    break
                for i in self._by_key[self._keys[k]]:
                    seen.setdefault(i)
        return [self.films[i] for i in seen]


def _csv_films(text: str, p: Path) -> list[Film]:
    rows = csv.DictReader(io.StringIO(text))
    cols = {c.lower().strip(): c for c in rows.fieldnames or ()}
    if "title" not in cols:
        raise CatalogueError(f"{p}: no 'title' column (need title, year, genres; or IMDb "
                             "title.basics.tsv)")
    id_col = next((cols[c] for c in ("id", "film_id", "tmdb_id", "imdb_id", "tconst")
                   if c in cols), None)
    films = []
    for n, row in enumerate(rows, 1):
        title, year_in_title = split_title_year(row.get(cols["title"]) or "")
        if not title:
            continue
        year = _int_or_none(row.get(cols["year"])) if "year" in cols else None
        genres, _ = parse_genres(row.get(cols["genres"]) if "genres" in cols else None)
        fid = (row.get(id_col) or "").strip() if id_col else ""
        films.append(Film("file", fid or str(n), title, year or year_in_title, tuple(genres)))
    return films


def _imdb_basics(text: str, p: Path) -> list[Film]:
    lines = text.splitlines()
    cols = lines[0].split("\t")
    try:
        ix = {c: cols.index(c) for c in ("tconst", "titleType", "primaryTitle",
                                         "originalTitle", "startYear", "genres")}
    except ValueError as e:
        raise CatalogueError(f"{p}: IMDb title.basics header lacks a column ({e})") from e
    films = []
    for line in lines[1:]:
        f = line.split("\t")
        if len(f) < len(cols) or f[ix["titleType"]] not in ("movie", "tvMovie", "short", "video"):
            continue
        genres, _ = parse_genres(f[ix["genres"]].replace("\\N", "").split(","))
        orig = f[ix["originalTitle"]]
        films.append(Film("file", f[ix["tconst"]], f[ix["primaryTitle"]],
                          _int_or_none(f[ix["startYear"]]), tuple(genres),
                          orig if orig and orig != "\\N" else None))
    return films


class TMDbCatalogue:
    """TMDb's ``/search/movie`` through :class:`posterdb.tmdb.TMDbClient` (retries inside it).

    Only the `max_queries` tallest distinct queries are sent: each is one request.
    """

    source = "tmdb"

    def __init__(self, client=None, max_queries: int = 3):
        if client is None:
            from posterdb.tmdb.client import TMDbClient
            client = TMDbClient()
        self.client = client
        self.max_queries = max_queries
        self.name = "tmdb"

    @property
    def requests(self) -> int:
        return int(getattr(self.client, "requests", 0))

    def candidates(self, queries: Sequence[Query], year: int | None = None,
                   **_: object) -> list[Film]:
        from posterdb.tmdb.client import TMDbAuthError, TMDbError
        sent: list[str] = []
        for q in queries:  # tallest first; words split apart first, then as read
            if len(q.key) < 3:
                continue
            for text in (q.search_text, q.text):
                if text not in sent and len(sent) < self.max_queries:
                    sent.append(text)
        try:
            names = self.client.movie_genres() if sent else {}
            found: dict[int, Film] = {}
            for text in sent:
                for m in self.client.search_movie(text, year=year):
                    if m.id not in found:
                        genres, _ = parse_genres(m.genre_names(names))
                        found[m.id] = Film("tmdb", str(m.id), m.title, m.year, tuple(genres),
                                           m.original_title).with_keys()
        except TMDbAuthError:
            raise
        except TMDbError as e:
            raise CatalogueUnavailable(f"TMDb search: {e}") from e
        return list(found.values())


def open_catalogue(spec: str | None):
    """``tmdb`` (or None) -> TMDbCatalogue; anything else is a catalogue file path."""
    if spec is None or spec.lower() == "tmdb":
        return TMDbCatalogue()
    return LocalCatalogue.from_file(spec)
