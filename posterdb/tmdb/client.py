"""A small client for The Movie Database (TMDb) API v3, on httpx.

Why not a bare ``httpx.get``: TMDb rate-limits (``429`` + ``Retry-After``), its CDN and API
have bad moments (``5xx``, dropped connections), and the credentials must never leak — not
into logs, error messages, or requests to the image host. This module handles all three and
nothing else: ``fetch_tmdb`` builds the training set on it, the poster reader identifies films
with :meth:`TMDbClient.search_movie`.

Credentials: a v3 API key (``api_key`` query parameter) or a v4 read access token
(``Authorization: Bearer``), from ``TMDB_API_KEY`` / ``TMDB_READ_TOKEN`` by default. The API
root is ``POSTERDB_TMDB_URL`` (default ``https://api.themoviedb.org/3``); the environment is read
by `posterdb.core.settings` only. Image URLs come from ``GET /configuration``, never hard-coded,
and are fetched without credentials — from the API's own host or the TMDb image host
(``POSTERDB_TMDB_IMAGE_HOST``, default ``image.tmdb.org``) only: every image URL and every
redirect hop goes through :class:`posterdb.tmdb.hosts.HostPolicy` before it is requested.
"""
from __future__ import annotations

import email.utils
import logging
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from posterdb.core.settings import (
    ENV_TMDB_KEY, ENV_TMDB_TOKEN, ENV_TMDB_URL, TMDB_DEFAULT_URL, Settings)
from posterdb.tmdb.errors import TMDbAuthError, TMDbError, TMDbHostError, TMDbUsageError
from posterdb.tmdb.hosts import MAX_REDIRECTS, REDIRECT_STATUSES, HostPolicy

__all__ = ["Credentials", "ImageConfig", "Movie", "MoviePage", "TMDbAuthError", "TMDbClient",
           "TMDbError", "TMDbHostError", "TMDbUsageError"]

DEFAULT_URL = TMDB_DEFAULT_URL
URL_ENV, KEY_ENV, TOKEN_ENV = ENV_TMDB_URL, ENV_TMDB_KEY, ENV_TMDB_TOKEN
MAX_IMAGE_BYTES = 64 * 1024**2
MAX_PAGE = 500  # TMDb serves pages 1..500 of any list

# httpx logs every request URL at INFO, api_key included: keep it quiet whatever the app sets.
logging.getLogger("httpx").setLevel(logging.WARNING)
logging.getLogger("httpcore").setLevel(logging.WARNING)
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Credentials:
    """A v3 key or a v4 token; the repr never shows either."""

    api_key: str | None = field(default=None, repr=False)
    read_token: str | None = field(default=None, repr=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, *, api_key: str | None = None,
                 read_token: str | None = None) -> Credentials:
        """Explicit values win over ``TMDB_API_KEY`` / ``TMDB_READ_TOKEN`` (read by settings)."""
        tmdb = Settings.from_env(env).tmdb
        key = (api_key or "").strip() or tmdb.api_key
        token = (read_token or "").strip() or tmdb.read_token
        return cls(key, token)

    def __bool__(self) -> bool:
        return bool(self.api_key or self.read_token)

    def __repr__(self) -> str:
        kind = "api_key" if self.api_key else "read_token" if self.read_token else "none"
        return f"Credentials({kind}=***)"


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
class MoviePage:
    """One page of a movie list: ``page`` of ``total_pages`` (``total_results`` films in all)."""

    page: int
    total_pages: int
    total_results: int
    results: tuple[Movie, ...]


def _retry_after(value: str | None, default: float) -> float:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if not value:
        return default
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
        return max(0.0, when.timestamp() - time.time())
    except (TypeError, ValueError, OverflowError):
        return default


def _message(resp: httpx.Response) -> str:
    """TMDb's ``status_message`` (JSON error body), if any, shortened."""
    try:
        msg = resp.json().get("status_message")
    except Exception:
        msg = None
    return f": {str(msg)[:160]}" if msg else ""


class TMDbClient:
    """Thread-safe TMDb v3 client: JSON endpoints with credentials, images without.

    Retries: ``429`` waits for ``Retry-After`` (capped at `max_retry_after`); ``5xx``, timeouts
    and connection errors back off exponentially from `backoff` seconds, `retries` times.
    ``401`` raises :class:`TMDbAuthError` at once.
    """

    def __init__(self, base_url: str | None = None, credentials: Credentials | None = None, *,
                 max_connections: int = 8, timeout: float = 30.0, retries: int = 5,
                 backoff: float = 0.5, max_retry_after: float = 60.0,
                 sleep: Callable[[float], None] = time.sleep, image_host: str | None = None):
        settings = Settings.from_env().tmdb
        self.base_url = (base_url or settings.url or DEFAULT_URL).strip().rstrip("/")
        if not self.base_url.lower().startswith(("http://", "https://")):
            raise TMDbUsageError(f"{URL_ENV}={self.base_url!r}: not an http(s) URL")
        # where images (and their redirects) may come from: the API's host + the image host
        self.hosts = HostPolicy.for_tmdb(self.base_url, image_host or settings.image_host)
        self.credentials = credentials if credentials is not None else Credentials.from_env()
        self.retries, self.backoff, self.max_retry_after = retries, backoff, max_retry_after
        self._sleep = sleep
        limits = httpx.Limits(max_connections=max_connections + 2,
                              max_keepalive_connections=max_connections + 2)
        headers = {"Accept": "application/json", "User-Agent": "posterdb"}
        params = {}
        if self.credentials.read_token:
            headers["Authorization"] = f"Bearer {self.credentials.read_token}"
        elif self.credentials.api_key:
            params["api_key"] = self.credentials.api_key
        self._api = httpx.Client(base_url=self.base_url + "/", headers=headers, params=params,
                                 timeout=timeout, limits=limits)
        # Images come from another host (TMDb's CDN): a separate client that carries no secret.
        # Redirects are followed by `download` itself, each hop checked by `self.hosts`.
        self._images = httpx.Client(headers={"User-Agent": "posterdb"}, timeout=timeout,
                                    limits=limits, follow_redirects=False)
        self._genres: dict[str, dict[int, str]] = {}
        self._lock = threading.Lock()
        self.requests = 0  # HTTP requests sent, retries included

    # -- plumbing ---------------------------------------------------------------------------
    def close(self) -> None:
        self._api.close()
        self._images.close()

    def __enter__(self) -> TMDbClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _wait(self, attempt: int) -> float:
        return min(30.0, self.backoff * 2**attempt) * (0.5 + random.random() / 2)

    def _send(self, what: str, call: Callable[[], httpx.Response]) -> httpx.Response:
        """`call()` with retries; `what` names the request in errors (no query string, no secret)."""
        attempt = 0
        while True:
            with self._lock:
                self.requests += 1
            try:
                resp = call()
            except httpx.UnsupportedProtocol:  # can never succeed: no retry
                raise TMDbHostError(f"{what}: not an http(s) URL; refused") from None
            except httpx.TransportError as e:  # connect/read timeouts, refused, dropped, truncated
                if attempt >= self.retries:
                    raise TMDbError(f"{what}: {type(e).__name__} after {attempt + 1} tries "
                                    "(is the server reachable?)") from None
                log.info("%s: %s, retrying", what, type(e).__name__)
                self._sleep(self._wait(attempt))
                attempt += 1
                continue
            status = resp.status_code
            if status == 401:
                raise TMDbAuthError(
                    "TMDb refused the credentials (HTTP 401): check TMDB_API_KEY or "
                    "TMDB_READ_TOKEN" if self.credentials else
                    "no TMDb credentials: set TMDB_API_KEY (v3 key) or TMDB_READ_TOKEN "
                    "(v4 read access token)")
            if status == 429 or status >= 500:
                if attempt >= self.retries:
                    raise TMDbError(f"{what}: HTTP {status} after {attempt + 1} tries"
                                    f"{_message(resp)}")
                wait = (min(self.max_retry_after, _retry_after(resp.headers.get("Retry-After"),
                                                               self._wait(attempt)))
                        if status == 429 else self._wait(attempt))
                log.info("%s: HTTP %s, retrying in %.1f s", what, status, wait)
                resp.close()
                self._sleep(wait)
                attempt += 1
                continue
            if status >= 400:
                cls = TMDbUsageError if status in (400, 404, 422) else TMDbError
                raise cls(f"{what}: HTTP {status}{_message(resp)}")
            return resp

    def get_json(self, path: str, **params: Any) -> dict[str, Any]:
        """``GET {base}/{path}`` with `params` (None values dropped) → the JSON object."""
        path = path.lstrip("/")
        query = {k: v for k, v in params.items() if v is not None}
        what = f"GET {self.base_url}/{path}"
        resp = self._send(what, lambda: self._api.get(path, params=query))
        if resp.status_code != 200 and 300 <= resp.status_code < 400:  # never followed
            where = self._location_host(resp)
            raise TMDbError(f"{what}: HTTP {resp.status_code} redirect{where}; not followed")
        try:
            data = resp.json()
        except ValueError:
            raise TMDbError(f"{what}: the answer is not JSON") from None
        if not isinstance(data, dict):
            raise TMDbError(f"{what}: unexpected answer (not a JSON object)")
        return data

    # -- endpoints --------------------------------------------------------------------------
    def configuration(self) -> ImageConfig:
        """Image base URL and poster sizes (``GET /configuration``)."""
        images = self.get_json("configuration").get("images") or {}
        if not isinstance(images, dict):
            raise TMDbError("GET /configuration: no image base URL or poster sizes in the answer")
        base = images.get("secure_base_url") or images.get("base_url")
        sizes = tuple(str(s) for s in images.get("poster_sizes") or ())
        if not base or not isinstance(base, str) or not sizes:
            raise TMDbError("GET /configuration: no image base URL or poster sizes in the answer")
        self.hosts.check(base, "GET /configuration: the image base URL")  # before any image
        return ImageConfig(base, sizes)

    def movie_genres(self, language: str = "en-US") -> dict[int, str]:
        """Genre id → name, in TMDb's order (``GET /genre/movie/list``); cached per language."""
        if language not in self._genres:
            data = self.get_json("genre/movie/list", language=language)
            self._genres[language] = {int(g["id"]): str(g["name"])
                                      for g in data.get("genres") or ()}
        return self._genres[language]

    def _page(self, path: str, params: dict[str, Any]) -> MoviePage:
        data = self.get_json(path, **params)
        try:
            return MoviePage(page=int(data.get("page") or params.get("page") or 1),
                             total_pages=int(data.get("total_pages") or 0),
                             total_results=int(data.get("total_results") or 0),
                             results=tuple(Movie.from_json(m) for m in data.get("results") or ()))
        except (KeyError, TypeError, ValueError) as e:
            raise TMDbError(f"GET /{path}: malformed movie list ({type(e).__name__})") from None

    def discover_movies(self, page: int = 1, **filters: Any) -> MoviePage:
        """One page of ``GET /discover/movie``; `filters` use TMDb's names, e.g.
        ``**{"primary_release_date.gte": "1970-01-01", "sort_by": "vote_count.desc"}``."""
        if not 1 <= page <= MAX_PAGE:
            raise TMDbUsageError(f"page {page} outside 1..{MAX_PAGE}")
        return self._page("discover/movie", {**filters, "page": page})

    def search_movie(self, query: str, year: int | None = None, *, page: int = 1,
                     primary_release_year: int | None = None, language: str | None = None,
                     include_adult: bool = False) -> list[Movie]:
        """Films matching `query` (``GET /search/movie``), best match first, one page of them.

        Genre names: ``movie.genre_names(client.movie_genres())``. See :meth:`search_movie_page`
        for the page counts.
        """
        return list(self.search_movie_page(query, year, page=page, language=language,
                                           primary_release_year=primary_release_year,
                                           include_adult=include_adult).results)

    def search_movie_page(self, query: str, year: int | None = None, *, page: int = 1,
                          primary_release_year: int | None = None, language: str | None = None,
                          include_adult: bool = False) -> MoviePage:
        """:meth:`search_movie` with ``page``/``total_pages``/``total_results``."""
        if not query or not query.strip():
            raise TMDbUsageError("search: empty query")
        return self._page("search/movie", {
            "query": query.strip(), "year": year, "primary_release_year": primary_release_year,
            "page": page, "language": language,
            "include_adult": "true" if include_adult else "false"})

    @staticmethod
    def _location_host(resp: httpx.Response) -> str:
        """' to host X' for a redirect's Location (host only: a URL may carry anything)."""
        try:
            target = resp.url.join(resp.headers.get("Location") or "")
            return f" to host {target.host or '?'}"
        except (httpx.InvalidURL, ValueError, TypeError):
            return ""

    def _get_image(self, url: httpx.URL, max_bytes: int) -> httpx.Response:
        """One GET of an image (no redirect followed), the body read into memory if 200."""
        with self._images.stream("GET", url) as resp:
            body = bytearray()
            if resp.status_code == 200:
                size = int(resp.headers.get("Content-Length") or 0)
                if size > max_bytes:
                    raise TMDbError(f"GET {url}: image too large ({size:,} bytes)")
                for chunk in resp.iter_bytes():
                    body += chunk
                    if len(body) > max_bytes:
                        raise TMDbError(f"GET {url}: image too large (> {max_bytes:,} bytes)")
            headers = [(k, v) for k, v in resp.headers.items()   # body already decoded
                       if k.lower() not in ("content-encoding", "content-length",
                                            "transfer-encoding")]
            return httpx.Response(resp.status_code, headers=headers, content=bytes(body),
                                  request=resp.request)

    def download(self, url: str, max_bytes: int = MAX_IMAGE_BYTES) -> bytes:
        """An image's bytes (no credentials sent); retried like the API; TMDbError if too large.

        The URL and every redirect hop must pass :attr:`hosts` (else :class:`TMDbHostError`
        at once, nothing sent there); at most ``MAX_REDIRECTS`` hops, a loop is refused."""
        target = self.hosts.check(url, "image URL")
        visited = {str(target)}
        for _ in range(MAX_REDIRECTS + 1):
            resp = self._send(f"GET {target}", lambda t=target: self._get_image(t, max_bytes))
            if resp.status_code == 200:
                return resp.content
            if resp.status_code not in REDIRECT_STATUSES:
                raise TMDbError(f"GET {target}: unexpected HTTP {resp.status_code}")
            location = resp.headers.get("Location")
            if not location:
                raise TMDbError(f"GET {target}: HTTP {resp.status_code} without a Location")
            try:
                following = target.join(location)
            except (httpx.InvalidURL, ValueError, TypeError):
                raise TMDbHostError(f"GET {target}: redirect to an invalid URL; refused") from None
            following = self.hosts.check(following, f"GET {target}: redirect")
            if str(following) in visited:
                raise TMDbError(f"GET {target}: redirect loop (back to {following}); refused")
            visited.add(str(following))
            target = following
        raise TMDbError(f"GET {url}: more than {MAX_REDIRECTS} redirects; refused")
