"""TMDb as a catalogue: ``/search/movie`` for candidates, ``/movie/{id}/images`` for a film's
own posters, ``/discover/movie`` for a reference of the most voted films of chosen decades.

Every request goes through :class:`posterdb.tmdb.client.TMDbClient` (retries, rate limits, the
configured API and image hosts, no credentials on the image host). When TMDb is down or keeps
answering 429 the call raises :class:`CatalogueUnavailable` and the poster stays *pending*.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence

from rapidfuzz import fuzz

from posterdb.core.genres import parse_genres
from posterdb.reading.identify.catalogues import CatalogueUnavailable, Film, PosterRef
from posterdb.reading.identify.text import Query


_NOT_TITLE_WORDS = frozenset(
    "THE AND WITH FROM STARRING PRESENTS PRESENT PICTURE PICTURES PRODUCTION PRODUCTIONS FILM "
    "FILMS COLOR COLOUR TECHNICOLOR DIRECTED PRODUCED SCREENPLAY STORY MUSIC INTRODUCING ALSO "
    "THAT THIS THEIR YOUR THEY WHEN WHAT WHERE WHO RELEASE RELEASED COMPANY ENTERTAINMENT "
    "CINEMA STUDIOS STUDIO ACADEMY AWARD AWARDS WINNER BEST ACTOR ACTRESS NOVEL BASED".split())


def _close_title(films: Iterable[Film], queries: Sequence[Query], ratio: float = 88.0) -> bool:
    """Whether a found film's title is close to one of the tall queries read."""
    tall = [q.key for q in queries if q.height >= 0.5]
    return any(fuzz.ratio(k, qk) >= ratio for f in films for k in f.keys for qk in tall)


def _title_words(queries: Sequence[Query], sent: Sequence[str]) -> list[str]:
    """Distinct words of 4+ letters from the tallest lines (tallest and longest first)."""
    words: dict[str, float] = {}
    already = {w for s in sent for w in s.split() if len(s.split()) == 1}
    for q in queries:
        if len(q.lines) != 1:
            continue
        for w in q.search_text.split():
            if len(w) >= 4 and w.isalpha() and w not in _NOT_TITLE_WORDS and w not in already:
                words[w] = max(words.get(w, 0.0), q.height + len(w) / 100)
    return sorted(words, key=lambda w: -words[w])


class TMDbCatalogue:
    """TMDb's ``/search/movie`` through :class:`posterdb.tmdb.TMDbClient` (retries inside it).

    Only the `max_queries` tallest distinct queries are sent: each is one request. When none of
    the films found has a title close to a tall query (a misread word fails TMDb's word search),
    up to `word_queries` single words of the tallest lines are searched too (with the year, when
    known, a word narrows the films to a few).
    """

    source = "tmdb"
    has_posters = True

    def __init__(self, client=None, max_queries: int = 3, word_queries: int = 3):
        if client is None:
            from posterdb.tmdb.client import TMDbClient
            client = TMDbClient()
        self.client = client
        self.max_queries = max_queries
        self.word_queries = word_queries
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

            def search(text: str) -> None:
                for m in self.client.search_movie(text, year=year):
                    if m.id not in found:
                        genres, _ = parse_genres(m.genre_names(names))
                        found[m.id] = Film("tmdb", str(m.id), m.title, m.year, tuple(genres),
                                           m.original_title).with_keys()
            for text in sent:
                search(text)
            if self.word_queries and not _close_title(found.values(), queries):
                for word in _title_words(queries, sent)[:self.word_queries]:
                    search(word)
        except TMDbAuthError:
            raise
        except TMDbError as e:
            raise CatalogueUnavailable(f"TMDb search: {e}") from e
        return list(found.values())


    def film_posters(self, film: Film, limit: int = 3) -> list[PosterRef]:
        """The film's own posters (``GET /movie/{id}/images``): English and language-neutral
        ones first, then TMDb's order; fetched through the client's image download (the
        configured image host, no credentials). A film TMDb does not know has none."""
        from posterdb.tmdb.client import PosterInfo, TMDbAuthError, TMDbError, TMDbUsageError
        try:
            listed = ([PosterInfo(p) for p in film.posters] if film.posters   # from discover
                      else self.client.movie_images(int(film.film_id)))
        except TMDbUsageError:
            return []          # 404: not a film TMDb knows (any more)
        except TMDbAuthError:
            raise
        except TMDbError as e:
            raise CatalogueUnavailable(f"TMDb images: {e}") from e
        listed = sorted(listed, key=lambda p: p.iso_639_1 not in (None, "en"))

        def fetch(path: str) -> bytes:
            try:
                return self.client.poster_image(path)
            except TMDbAuthError:
                raise
            except TMDbError as e:
                raise CatalogueUnavailable(f"TMDb poster: {e}") from e
        return [PosterRef(p.file_path, lambda fp=p.file_path: fetch(fp), p.iso_639_1,
                          p.width or None, p.height or None) for p in listed[:limit]]


    def reference_films(self, decades: Iterable[int], per_decade: int = 1000) -> list[Film]:
        """The films with a poster among the `per_decade` most voted of each decade
        (``GET /discover/movie`` sorted by ``vote_count.desc``, 20 a page), each carrying its
        ``poster_path``: their posters make the reference for art alone (one download a film,
        no ``/movie/{id}/images`` request)."""
        from posterdb.tmdb.client import TMDbAuthError, TMDbError
        out: list[Film] = []
        try:
            names = self.client.movie_genres()
            for d in decades:
                page = got = 0
                while got < per_decade:
                    page += 1
                    res = self.client.discover_movies(page, **{
                        "primary_release_date.gte": f"{d}-01-01",
                        "primary_release_date.lte": f"{d + 9}-12-31",
                        "sort_by": "vote_count.desc"})
                    for m in res.results[:per_decade - got]:
                        if not m.poster_path:
                            continue
                        genres, _ = parse_genres(m.genre_names(names))
                        out.append(Film("tmdb", str(m.id), m.title, m.year, tuple(genres),
                                        m.original_title, posters=(m.poster_path,)))
                    got += len(res.results)
                    if page >= min(res.total_pages, 500) or not res.results:
                        break
        except TMDbAuthError:
            raise
        except TMDbError as e:
            raise CatalogueUnavailable(f"TMDb discover: {e}") from e
        return out
