"""Film catalogues to look read titles up in: a local file (offline) or TMDb's search.

A catalogue answers :meth:`candidates` — the films whose titles resemble the queries read off
one poster — and, for artwork verification, :meth:`film_posters`. TMDb's is in
tmdb_catalogue.py. A local file is matched in memory with rapidfuzz on squashed titles (every query,
no network). TMDb is asked ``GET /search/movie`` for the few tallest queries only (each is a
request); when it is down or keeps answering 429 the call raises
:class:`CatalogueUnavailable` and the poster stays *pending* for a later run — it never fails.
"""
from __future__ import annotations

import csv
import gzip
import io
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
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
    aliases: tuple[str, ...] = field(default=(), compare=False, repr=False)
    posters: tuple[str, ...] = field(default=(), compare=False, repr=False)

    def with_keys(self) -> "Film":
        ks = title_keys(self.title)
        for other in (self.original_title, *self.aliases):
            if other and other != self.title:
                ks |= title_keys(other)
        return replace(self, keys=frozenset(ks))

    def to_record(self) -> dict:
        """What the store keeps of a catalogue film (catalogue_films)."""
        return {"film_id": self.film_id, "title": self.title, "year": self.year,
                "genres": list(self.genres), "original_title": self.original_title}


@dataclass(frozen=True)
class PosterRef:
    """One poster of a catalogue film: its key in the catalogue (TMDb's file_path, or the
    file's path/URL), language and size when known, and how to get its bytes."""

    file_path: str
    fetch: Callable[[], bytes] = field(compare=False, repr=False)
    language: str | None = None
    width: int | None = None
    height: int | None = None


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

    @property
    def has_posters(self) -> bool:
        """Whether the file names any poster (else identification from it is text only)."""
        return any(f.posters for f in self.films)

    def __init__(self, films: Iterable[Film], name: str = "file", folder: Path | None = None,
                 client=None):
        self.name = name
        self.folder = folder
        self.client = client  # TMDbClient for poster URLs (made on first use)
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
    def from_file(cls, path: str | Path, akas: str | Path | None = None) -> "LocalCatalogue":
        """A CSV (title, year, genres[, id][, poster]) or IMDb ``title.basics.tsv[.gz]``;
        `akas`: IMDb ``title.akas.tsv[.gz]`` adding each film's other titles (original and
        foreign release titles), found beside a title.basics file when not given."""
        p = Path(path)
        text = _text_of(p)
        head = text.split("\n", 1)[0]
        if "\t" in head and "primaryTitle" in head:
            films = _imdb_basics(text, p)
            if akas is None:
                akas = next((c for c in (p.with_name("title.akas.tsv.gz"),
                                         p.with_name("title.akas.tsv")) if c.is_file()), None)
            if akas is not None:
                films = _with_akas(films, Path(akas))
        else:
            films = _csv_films(text, p)
        if not films:
            raise CatalogueError(f"{p}: no films in it")
        return cls(films, name=str(p), folder=p.parent)

    def film_posters(self, film: Film, limit: int = 3) -> list[PosterRef]:
        """The film's posters named in the file (`poster` column): a path relative to the
        file's folder (never outside it) or an http(s) URL on the configured TMDb image host
        (fetched through the TMDb client's image download, like every image). None: text only."""
        out = []
        for ref in film.posters[:limit]:
            if ref.startswith(("http://", "https://")):
                out.append(PosterRef(ref, lambda u=ref: self._download(u)))
                continue
            target = (self.folder / ref).resolve() if self.folder else None
            if target is None or self.folder.resolve() not in target.parents:
                continue   # outside the catalogue's folder: not read
            out.append(PosterRef(ref, lambda t=target: _read_poster_file(t)))
        return out

    def _download(self, url: str) -> bytes:
        from posterdb.tmdb.client import TMDbClient, TMDbError
        if self.client is None:
            self.client = TMDbClient()
        try:
            base = self.client.image_config().base_url.rstrip("/") + "/"
            if not url.startswith(base):
                raise CatalogueError(f"{url}: not on the configured image host ({base})")
            return self.client.download(url)
        except TMDbError as e:
            raise CatalogueUnavailable(f"poster download: {e}") from e

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
    poster_col = next((cols[c] for c in ("poster", "posters", "poster_path", "poster_url")
                       if c in cols), None)
    films = []
    for n, row in enumerate(rows, 1):
        title, year_in_title = split_title_year(row.get(cols["title"]) or "")
        if not title:
            continue
        year = _int_or_none(row.get(cols["year"])) if "year" in cols else None
        genres, _ = parse_genres(row.get(cols["genres"]) if "genres" in cols else None)
        fid = (row.get(id_col) or "").strip() if id_col else ""
        posters = tuple(x.strip() for x in (row.get(poster_col) or "").split("|")
                        if x.strip()) if poster_col else ()
        films.append(Film("file", fid or str(n), title, year or year_in_title, tuple(genres),
                          posters=posters))
    return films


def _text_of(p: Path) -> str:
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise CatalogueError(f"{p}: {e.strerror or e}") from e
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as e:
            raise CatalogueError(f"{p}: not a valid gzip file") from e
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise CatalogueError(f"{p}: not UTF-8 text") from e


def _read_poster_file(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise CatalogueError(f"{path}: {e.strerror or e}") from e


def _with_akas(films: list[Film], akas: Path, max_per_film: int = 8) -> list[Film]:
    """Add IMDb's other titles of each film (title.akas: titleId, ordering, title, region,
    language, types, attributes, isOriginalTitle) as aliases, at most `max_per_film`."""
    text = _text_of(akas)
    lines = text.splitlines()
    cols = lines[0].split("\t") if lines else []
    try:
        i_id, i_title = cols.index("titleId"), cols.index("title")
    except ValueError as e:
        raise CatalogueError(f"{akas}: IMDb title.akas header lacks a column ({e})") from e
    known = {f.film_id: f for f in films}
    extra: dict[str, list[str]] = {}
    for line in lines[1:]:
        f = line.split("\t")
        if len(f) <= max(i_id, i_title) or f[i_id] not in known:
            continue
        t = f[i_title]
        film = known[f[i_id]]
        got = extra.setdefault(f[i_id], [])
        if t and t != "\\N" and t not in got and t != film.title and len(got) < max_per_film:
            got.append(t)
    return [replace(f, aliases=tuple(extra.get(f.film_id, ())), keys=frozenset())
            for f in films]


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


def open_catalogue(spec: str | None):
    """``tmdb`` (or None) -> TMDbCatalogue; anything else is a catalogue file path."""
    if spec is None or spec.lower() == "tmdb":
        return TMDbCatalogue()
    return LocalCatalogue.from_file(spec)


from posterdb.reading.identify.tmdb_catalogue import TMDbCatalogue  # noqa: E402  (re-export)
