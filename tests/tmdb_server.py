"""A real local HTTP server shaped like The Movie Database's API v3 (there is no internet here).

It answers, on 127.0.0.1 only, with TMDb's documented response shapes:

- ``GET /3/configuration``         images.base_url / secure_base_url (this server) and poster_sizes
- ``GET /3/genre/movie/list``      TMDb's 19 movie genres, ids and order as TMDb has them
- ``GET /3/discover/movie``        ``primary_release_date.gte/.lte``, ``release_date.gte/.lte``,
                                   ``vote_count.gte``, ``with_genres`` (``,`` = and, ``|`` = or),
                                   ``sort_by`` (popularity/vote_count/primary_release_date/
                                   original_title/title .asc|.desc), ``page`` 1..500, 20 a page,
                                   ``total_pages``/``total_results``
- ``GET /3/search/movie``          ``query`` matched on normalised titles (accents, case and
                                   punctuation ignored; every query word must start a word of the
                                   title or original title), ``year`` / ``primary_release_year``,
                                   ``page``; exact title matches first, then by popularity
- ``GET /3/movie/{id}/images``     ``posters[]`` (``file_path``, ``iso_639_1``, ``width``,
                                   ``height``, ``aspect_ratio``, ``vote_average``, ``vote_count``),
                                   ``backdrops`` and ``logos`` empty; 404 for an unknown id
- ``GET /t/p/<size>/<file>``       the poster bytes (no credentials needed, as on TMDb's CDN)

API calls need ``?api_key=<api_key>`` or ``Authorization: Bearer <read_token>``, else ``401``
with TMDb's error body. ``latency`` (seconds) is slept on every request, to make concurrency
meaningful. Faults, each armed on the running server: :meth:`TMDbServer.rate_limit` (``429`` +
``Retry-After``), :meth:`TMDbServer.fail_image` (e.g. ``503`` once), :meth:`TMDbServer.truncate_image`
(a cut image with a correct ``Content-Length``), :meth:`TMDbServer.drop_image` (the connection
closes mid-body). Trust-boundary knobs: ``host=`` (bind another loopback address, e.g.
``127.0.0.2``: a second *host*), ``server.image_base`` (what ``/configuration`` names as the
image base, e.g. another server's), :meth:`TMDbServer.redirect_image` (a ``302`` to any
``Location``). Counters: ``api_hits`` (path → n), ``image_hits`` (film id → n),
``image_requests_with_credentials`` (must stay 0).

Use::

    from tests.tmdb_server import TMDbServer, generated_films, shared_films, distractor_films

    films = shared_films() + distractor_films(5000, start_id=10_000_000)   # or generated_films(...)
    with TMDbServer(films, latency=0.02) as server:
        env = server.env()      # POSTERDB_TMDB_URL, TMDB_API_KEY, NO_PROXY for a subprocess
        client = TMDbClient(server.url, Credentials(api_key=server.api_key))
        client.search_movie("the godfather", year=1972)

A :class:`Film` is ``id, title, year, genre_ids`` (TMDb ids, TMDb's order) and ``poster``: a
file path, bytes, a :class:`Recapture`, :data:`GENERATE` (a small JPEG made from the id, the
default) or None (no ``poster_path``); ``images`` (the posters ``/movie/{id}/images`` lists, the
first being ``poster``) defaults to ``[poster]``, or none. :func:`recapture` makes *another
capture* of an artwork (crop, slight rotation, colour, blur, rescale, JPEG re-encode), as TMDb's
copy of a poster a dealer scanned would be: never the scan's own bytes.
``server.set_films(...)`` swaps the catalogue while it runs.
"""
from __future__ import annotations

import csv
import io
import json
import random
import re
import threading
import time
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

SHARED_POSTERS = Path(__file__).resolve().parents[1].parent / "shared" / "posters"
GENRE_LIST: tuple[tuple[int, str], ...] = (
    (28, "Action"), (12, "Adventure"), (16, "Animation"), (35, "Comedy"), (80, "Crime"),
    (99, "Documentary"), (18, "Drama"), (10751, "Family"), (14, "Fantasy"), (36, "History"),
    (27, "Horror"), (10402, "Music"), (9648, "Mystery"), (10749, "Romance"),
    (878, "Science Fiction"), (10770, "TV Movie"), (53, "Thriller"), (10752, "War"),
    (37, "Western"))
GENRE_ID = {name: gid for gid, name in GENRE_LIST}
POSTER_SIZES = ("w92", "w154", "w185", "w342", "w500", "w780", "original")
PAGE_SIZE = 20
GENERATE = "generate"
_WORDS = ("night", "blood", "river", "last", "city", "house", "dark", "summer", "love", "war",
          "star", "king", "lost", "road", "dead", "secret", "moon", "fire", "silent", "golden",
          "shadow", "heart", "wild", "ghost", "island", "storm", "empire", "dream", "iron", "glass")


def recapture(data: bytes, seed: int, strength: float = 1.0) -> bytes:
    """Another capture of the artwork in `data`: cropped 0-8 % a side, rotated up to 4 degrees,
    colour, brightness, contrast and channel gains changed, blurred, rescaled 0.8-2x and
    re-encoded as JPEG (quality 55-90); each amount drawn from `seed`, scaled by `strength`."""
    import numpy as np
    from PIL import Image, ImageEnhance, ImageFilter

    rng = random.Random(seed)
    s = strength
    im = Image.open(io.BytesIO(data)).convert("RGB")
    w, h = im.size
    left, top = (int(rng.uniform(0, 0.08 * s) * d) for d in (w, h))
    right, bottom = (int(rng.uniform(0, 0.08 * s) * d) for d in (w, h))
    im = im.crop((left, top, w - right, h - bottom))
    im = im.rotate(rng.uniform(-4 * s, 4 * s), resample=Image.BICUBIC,
                   fillcolor=tuple(rng.randint(200, 255) for _ in range(3)))
    im = ImageEnhance.Color(im).enhance(rng.uniform(1 - 0.4 * s, 1 + 0.3 * s))
    im = ImageEnhance.Brightness(im).enhance(rng.uniform(1 - 0.2 * s, 1 + 0.2 * s))
    im = ImageEnhance.Contrast(im).enhance(rng.uniform(1 - 0.25 * s, 1 + 0.25 * s))
    gains = np.array([rng.uniform(1 - 0.1 * s, 1 + 0.1 * s) for _ in range(3)], np.float32)
    im = Image.fromarray(np.clip(np.asarray(im, np.float32) * gains, 0, 255).astype(np.uint8))
    im = im.filter(ImageFilter.GaussianBlur(rng.uniform(0, 1.2 * s)))
    k = rng.uniform(0.8, 2.0)
    im = im.resize((max(32, int(im.width * k)), max(32, int(im.height * k))), Image.BICUBIC)
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=rng.randint(55, 90))
    return buf.getvalue()


@dataclass(frozen=True)
class Recapture:
    """A poster served as :func:`recapture` of the artwork at `source` (rendered on demand)."""

    source: Path | bytes
    seed: int
    strength: float = 1.0

    def render(self) -> bytes:
        data = self.source if isinstance(self.source, bytes) else Path(self.source).read_bytes()
        return recapture(data, self.seed, self.strength)


@dataclass
class Film:
    """One catalogue entry; `poster`: a Path, bytes, Recapture, GENERATE or None (no
    poster_path); `images`: the posters of /movie/{id}/images (default: [poster] or none)."""

    id: int
    title: str
    year: int | None
    genre_ids: list[int]
    poster: Path | bytes | str | None = GENERATE
    original_title: str | None = None
    popularity: float = 1.0
    vote_count: int = 10
    release_date: str | None = None
    original_language: str = "en"
    images: list | None = None

    @property
    def posters(self) -> list:
        """What /movie/{id}/images lists, the primary poster first."""
        if self.images is not None:
            return list(self.images)
        return [] if self.poster is None else [self.poster]

    def image_path(self, k: int) -> str:
        """file_path of the film's k-th listed poster (0: `poster_path` when it has one)."""
        if k == 0 and self.poster is not None:
            return self.poster_path
        return f"/p{self.id}x{(self.id * 2654435761) % 2**32:08x}-{k + 1}.jpg"

    @property
    def date(self) -> str:
        return self.release_date or (f"{self.year}-06-15" if self.year else "")

    @property
    def poster_path(self) -> str | None:
        if self.poster is None:
            return None
        suffix = Path(self.poster).suffix if isinstance(self.poster, Path) else ".jpg"
        return f"/p{self.id}x{(self.id * 2654435761) % 2**32:08x}{suffix or '.jpg'}"

    def to_json(self) -> dict[str, Any]:
        return {"adult": False, "backdrop_path": None, "genre_ids": list(self.genre_ids),
                "id": self.id, "original_language": self.original_language,
                "original_title": self.original_title or self.title, "overview": "",
                "popularity": self.popularity, "poster_path": self.poster_path,
                "release_date": self.date, "title": self.title, "video": False,
                "vote_average": 6.5, "vote_count": self.vote_count}


def generated_poster(seed: int, size: tuple[int, int] = (120, 180)) -> bytes:
    """A small, valid, deterministic JPEG (coloured bands + noise) for film `seed`."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    w, h = size
    base = rng.integers(0, 256, size=(8, 1, 3)).repeat(h // 8 + 1, 0)[:h].repeat(w, 1)
    img = np.clip(base + rng.integers(-30, 30, size=(h, w, 3)), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "JPEG", quality=80)
    return buf.getvalue()


def normalise(text: str) -> list[str]:
    """Words of a title: accents dropped, case folded, punctuation as spaces."""
    text = unicodedata.normalize("NFKD", text)
    text = "".join(c for c in text if not unicodedata.combining(c)).casefold()
    return re.sub(r"[^\w]+", " ", text).split()


# ---------------------------------------------------------------- catalogues


def generated_films(decades: tuple[int, ...] = (1970, 2010), per_decade: int = 60, *,
                    start_id: int = 1, seed: int = 0, no_poster_every: int = 0) -> list[Film]:
    """`per_decade` films per decade with 1-4 genres each (TMDb order: random, as TMDb's is)
    and distinct vote counts (so ``vote_count.desc`` is a total order); generated posters.
    Every `no_poster_every`-th film has no poster_path."""
    rng = random.Random(seed)
    films, fid = [], start_id
    for d in decades:
        for i in range(per_decade):
            gids = rng.sample([g for g, _ in GENRE_LIST], rng.randint(1, 4))
            words = rng.sample(_WORDS, rng.randint(1, 3))
            films.append(Film(
                id=fid, title=f"{' '.join(words).title()} {fid}", year=d + i % 10,
                genre_ids=gids, vote_count=100_000 - fid, popularity=1000.0 - i / 10,
                poster=None if no_poster_every and (i + 1) % no_poster_every == 0 else GENERATE))
            fid += 1
    return films


def shared_films(labels_csv: Path = SHARED_POSTERS / "labels.csv") -> list[Film]:
    """The shared real posters as TMDb films (id = the IMDb number; genres mapped to TMDb ids,
    in a per-film shuffled order: TMDb's own order is not the alphabetical one of labels.csv)."""
    films = []
    with open(labels_csv, newline="", encoding="utf-8") as f:
        for i, r in enumerate(csv.DictReader(f)):
            year = int(r["year"]) if r.get("year", "").isdigit() else None
            title = re.sub(r"\s*\(\d{4}\)$", "", r.get("title") or "").strip()
            gids = [GENRE_ID[g] for g in (r.get("genres") or "").split("|") if g in GENRE_ID]
            fid = int(re.sub(r"\D", "", r.get("imdb_id") or "") or 9_000_000 + i)
            random.Random(fid).shuffle(gids)
            films.append(Film(id=fid, title=title, year=year, genre_ids=gids,
                              poster=labels_csv.parent / r["file"], vote_count=50_000 - i,
                              popularity=500.0 - i / 100))
    return films


def distractor_films(n: int, *, start_id: int = 10_000_000, seed: int = 1,
                     years: tuple[int, int] = (1920, 2019)) -> list[Film]:
    """`n` films with word-salad titles (no poster by default: they only crowd searches)."""
    rng = random.Random(seed)
    return [Film(id=start_id + i, title=" ".join(rng.sample(_WORDS, rng.randint(1, 4))).title(),
                 year=rng.randint(*years), genre_ids=rng.sample([g for g, _ in GENRE_LIST], 2),
                 poster=None, vote_count=rng.randint(0, 5000), popularity=rng.random() * 50)
            for i in range(n)]


# ---------------------------------------------------------------- the server


def _error(code: int, message: str) -> dict[str, Any]:
    return {"success": False, "status_code": code, "status_message": message}


@dataclass
class _Faults:
    rate_limited: dict[str, list[int]] = field(default_factory=dict)  # path -> [times, retry]
    image_status: dict[int, list[int]] = field(default_factory=dict)  # id -> [times, status]
    truncated: set[int] = field(default_factory=set)
    dropped: dict[int, int] = field(default_factory=dict)  # id -> times
    redirects: dict[int, str] = field(default_factory=dict)  # id -> Location (every request)


class TMDbServer:
    """The fake TMDb on 127.0.0.1 (a free port); a context manager. See the module docstring."""

    def __init__(self, films: list[Film] | tuple[Film, ...] = (), *, api_key: str = "test-api-key",
                 read_token: str = "test-read-token", latency: float = 0.0,
                 host: str = "127.0.0.1"):
        self.api_key, self.read_token, self.latency = api_key, read_token, latency
        self.api_hits: Counter[str] = Counter()
        self.image_hits: Counter[int] = Counter()
        self.image_requests_with_credentials = 0
        self.faults = _Faults()
        self._lock = threading.Lock()
        self._posters: dict[tuple, bytes] = {}
        self._discovered: dict[tuple, tuple[list, list]] = {}
        self.set_films(films)
        server = self

        class Handler(_Handler):
            owner = server

        self._httpd = ThreadingHTTPServer((host, 0), Handler)
        self._httpd.daemon_threads = True
        self._httpd.request_queue_size = 128
        self.port = self._httpd.server_address[1]
        self.root = f"http://{host}:{self.port}"
        self.url = f"{self.root}/3"
        self.image_base: str | None = None   # /configuration's image base; None: this server
        self._thread: threading.Thread | None = None

    # -- catalogue ----------------------------------------------------------------------------
    def set_films(self, films) -> None:
        with self._lock:
            self.films = list(films)
            self._by_poster = {f.poster_path: (f, None) for f in self.films if f.poster_path}
            self._by_id = {f.id: f for f in self.films}
            for f in self.films:
                for k in range(1 if f.poster is not None else 0, len(f.posters)):
                    self._by_poster[f.image_path(k)] = (f, k)
            self._posters = {}
            self._words = {f.id: [normalise(t) for t in dict.fromkeys(
                [f.title, f.original_title or f.title])] for f in self.films}
            self._prefix: dict[str, set[int]] = {}   # first 2 letters of a title word -> films
            for f in self.films:
                for tw in self._words[f.id]:
                    for w in tw:
                        self._prefix.setdefault(w[:2], set()).add(f.id)

    def poster_bytes(self, film: Film, k: int | None = None) -> bytes:
        """The bytes of the film's primary poster (k None) or of its k-th listed poster."""
        src = film.poster if k is None else film.posters[k]
        if isinstance(src, bytes):
            return src
        if isinstance(src, Path):
            return src.read_bytes()
        key = (film.id, k)
        with self._lock:
            hit = self._posters.get(key)
        if hit is None:
            hit = src.render() if isinstance(src, Recapture) else generated_poster(film.id)
            with self._lock:
                self._posters[key] = hit
        return hit

    # -- faults -------------------------------------------------------------------------------
    def rate_limit(self, path: str = "/discover/movie", times: int = 1, retry_after: int = 1):
        """The next `times` requests to `path` (under /3) get 429 with ``Retry-After``;
        ``/movie/images`` stands for every film's ``/movie/{id}/images``."""
        self.faults.rate_limited[path] = [times, retry_after]

    def fail_image(self, film_id: int, status: int = 503, times: int = 1) -> None:
        self.faults.image_status[film_id] = [times, status]

    def truncate_image(self, film_id: int) -> None:
        """Always serve the first half of this film's poster (a well-formed HTTP answer)."""
        self.faults.truncated.add(film_id)

    def drop_image(self, film_id: int, times: int = 1) -> None:
        """Announce the full length, send half, close the connection."""
        self.faults.dropped[film_id] = times

    def redirect_image(self, film_id: int, location: str) -> None:
        """Answer this film's poster with ``302 Location: <location>`` (absolute or relative)."""
        self.faults.redirects[film_id] = location

    # -- lifecycle ----------------------------------------------------------------------------
    def env(self, credentials: bool = True) -> dict[str, str]:
        """Environment for a posterdb subprocess pointed at this server."""
        out = {"POSTERDB_TMDB_URL": self.url, "NO_PROXY": "127.0.0.1,localhost",
               "no_proxy": "127.0.0.1,localhost"}
        return out | ({"TMDB_API_KEY": self.api_key} if credentials else {})

    def start(self) -> TMDbServer:
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="tmdb-server",
                                        kwargs={"poll_interval": 0.1}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> TMDbServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- endpoints (called from handler threads) --------------------------------------------
    def configuration(self, q) -> tuple[int, dict]:
        base = self.image_base or f"{self.root}/t/p/"
        return 200, {"images": {"base_url": base, "secure_base_url": base,
                                "backdrop_sizes": ["w300", "w780", "w1280", "original"],
                                "logo_sizes": ["w45", "w92", "w154", "original"],
                                "poster_sizes": list(POSTER_SIZES),
                                "profile_sizes": ["w45", "w185", "original"],
                                "still_sizes": ["w92", "w185", "original"]},
                     "change_keys": ["adult", "genres", "images", "release_dates", "title"]}

    def genre_list(self, q) -> tuple[int, dict]:
        return 200, {"genres": [{"id": g, "name": n} for g, n in GENRE_LIST]}

    @staticmethod
    def _paged(films: list[Film], q) -> tuple[int, dict]:
        raw = q.get("page", "1")
        if not raw.isdigit() or not 1 <= int(raw) <= 500:
            return 400, _error(22, "Invalid page: Pages start at 1 and max at 500. "
                                   "They are expected to be an integer.")
        page = int(raw)
        total = len(films)
        chunk = films[(page - 1) * PAGE_SIZE: page * PAGE_SIZE]
        return 200, {"page": page, "results": [f.to_json() for f in chunk],
                     "total_pages": (total + PAGE_SIZE - 1) // PAGE_SIZE,
                     "total_results": total}

    def discover(self, q) -> tuple[int, dict]:
        key = tuple(sorted((k, v) for k, v in q.items() if k not in ("page", "api_key")))
        with self._lock:
            hit = self._discovered.get(key)
        if hit is not None and hit[0] is self.films:
            return self._paged(hit[1], q)
        films = self.films
        for key, op in (("primary_release_date.gte", ">="), ("primary_release_date.lte", "<="),
                        ("release_date.gte", ">="), ("release_date.lte", "<=")):
            if key in q:
                v = q[key]
                films = [f for f in films if f.date and (f.date >= v if op == ">=" else f.date <= v)]
        if "vote_count.gte" in q:
            films = [f for f in films if f.vote_count >= float(q["vote_count.gte"])]
        if q.get("with_genres"):
            wanted = q["with_genres"]
            ids = {int(x) for x in re.split(r"[,|]", wanted) if x.strip().isdigit()}
            test = all if "," in wanted else any
            films = [f for f in films if test(g in f.genre_ids for g in ids)]
        field_, _, order = q.get("sort_by", "popularity.desc").partition(".")
        key = {"popularity": lambda f: f.popularity, "vote_count": lambda f: f.vote_count,
               "primary_release_date": lambda f: f.date, "release_date": lambda f: f.date,
               "original_title": lambda f: (f.original_title or f.title).casefold(),
               "title": lambda f: f.title.casefold()}.get(field_, lambda f: f.popularity)
        films = sorted(films, key=lambda f: f.id)
        films.sort(key=key, reverse=order != "asc")
        with self._lock:   # the same listing's next pages come from this sorted list
            self._discovered = {k: v for k, v in self._discovered.items() if v[0] is self.films}
            self._discovered[key] = (self.films, films)
        return self._paged(films, q)

    def movie_images(self, film_id: int, q) -> tuple[int, dict]:
        film = self._by_id.get(film_id)
        if film is None:
            return 404, _error(34, "The resource you requested could not be found.")
        out = []
        for k, src in enumerate(film.posters):
            path = film.image_path(k)
            rng = random.Random(film.id * 31 + k)
            w = rng.choice((500, 1000, 1400, 2000))
            lang = None if k % 3 == 2 else film.original_language
            out.append({"aspect_ratio": 0.667, "height": int(w * 1.5), "iso_639_1": lang,
                        "file_path": path, "vote_average": round(5.5 - k * 0.3, 3),
                        "vote_count": max(0, 4 - k), "width": w})
        langs = q.get("include_image_language")
        if langs:
            want = {x.strip() for x in langs.split(",")}
            out = [p for p in out if (p["iso_639_1"] or "null") in want]
        return 200, {"id": film.id, "backdrops": [], "logos": [], "posters": out}

    def search(self, q) -> tuple[int, dict]:
        words = normalise(q.get("query", ""))
        if not words:
            return 200, {"page": 1, "results": [], "total_pages": 1, "total_results": 0}
        year = q.get("primary_release_year") or q.get("year")
        scored = []
        pools = [set().union(*(ids for k, ids in self._prefix.items() if k.startswith(w)))
                 if len(w) < 2 else self._prefix.get(w[:2], set()) for w in words]
        ids = set.intersection(*pools) if pools else set()
        for f in (self._by_id[i] for i in sorted(ids)):
            if year and str(f.year) != year:
                continue
            best = None
            for tw in self._words[f.id]:
                if all(any(w.startswith(x) for w in tw) for x in words):
                    score = (tw == words, len(words) / max(len(tw), 1))
                    best = max(best or score, score)
            if best is not None:
                scored.append((best, f.popularity, -f.id, f))
        scored.sort(key=lambda s: s[:3], reverse=True)
        return self._paged([s[3] for s in scored], q)


class _Handler(BaseHTTPRequestHandler):
    owner: TMDbServer
    protocol_version = "HTTP/1.1"
    timeout = 30

    def log_message(self, *args: object) -> None:  # quiet
        pass

    def _send(self, status: int, body: bytes, ctype: str, extra: dict | None = None,
              length: int | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, data: dict, extra: dict | None = None) -> None:
        self._send(status, json.dumps(data).encode(), "application/json;charset=utf-8", extra)

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        srv = self.owner
        if srv.latency:
            time.sleep(srv.latency)
        url = urlsplit(self.path)
        q = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        path = unquote(url.path)
        if path.startswith("/t/p/"):
            return self._image(path, "api_key" in q or "Authorization" in self.headers)
        if not path.startswith("/3/"):
            return self._json(404, _error(34, "The resource you requested could not be found."))
        path = path[2:]
        with srv._lock:
            srv.api_hits[path] += 1
        auth = self.headers.get("Authorization", "")
        if q.get("api_key") != srv.api_key and auth != f"Bearer {srv.read_token}":
            return self._json(401, _error(7, "Invalid API key: You must be granted a valid key."))
        with srv._lock:
            rl = (srv.faults.rate_limited.get(path)
                  or srv.faults.rate_limited.get(re.sub(r"/\d+/", "/", path)))
            if rl and rl[0] > 0:
                rl[0] -= 1
                return self._json(429, _error(25, "Your request count is over the allowed limit."),
                                  {"Retry-After": str(rl[1])})
        route = {"/configuration": srv.configuration, "/genre/movie/list": srv.genre_list,
                 "/discover/movie": srv.discover, "/search/movie": srv.search}.get(path)
        m = re.fullmatch(r"/movie/(\d+)/images", path)
        if m:
            route = lambda q: srv.movie_images(int(m.group(1)), q)  # noqa: E731
        if route is None:
            return self._json(404, _error(34, "The resource you requested could not be found."))
        status, body = route(q)
        self._json(status, body)

    def _image(self, path: str, credentials: bool) -> None:
        srv = self.owner
        parts = path.split("/")  # ['', 't', 'p', size, file]
        film, k = srv._by_poster.get("/" + parts[-1], (None, None)) if len(parts) == 5 else (None, None)
        if film is None or parts[3] not in POSTER_SIZES:
            return self._send(404, b"Not Found", "text/plain")
        with srv._lock:
            srv.image_hits[film.id] += 1
            srv.image_requests_with_credentials += credentials
            fault = srv.faults.image_status.get(film.id)
            status = None
            if fault and fault[0] > 0:
                fault[0] -= 1
                status = fault[1]
            drop = srv.faults.dropped.get(film.id, 0) > 0
            if drop:
                srv.faults.dropped[film.id] -= 1
            location = srv.faults.redirects.get(film.id)
        if location is not None:
            return self._send(302, b"", "text/plain", {"Location": location})
        if status is not None:
            return self._send(status, b"<html>Service Unavailable</html>", "text/html")
        data = srv.poster_bytes(film, k)
        ctype = "image/png" if data[:4] == b"\x89PNG" else "image/jpeg"
        if film.id in srv.faults.truncated:
            data = data[: len(data) // 2]
        if drop:
            self._send(200, data[: len(data) // 2], ctype, length=len(data))
            self.close_connection = True
            return
        self._send(200, data, ctype)


# ---------------------------------------------------------------- a catalogue that goes down


def reopen(server: TMDbServer) -> TMDbServer:
    """Serve again on the same port after `server.stop()`: a catalogue that was down comes back
    at the address the store's commands were given (the daily flow's tests)."""
    handler = server._httpd.RequestHandlerClass
    server._httpd = ThreadingHTTPServer(("127.0.0.1", server.port), handler)
    server._httpd.daemon_threads = True
    server._httpd.request_queue_size = 128
    return server.start()


def main(argv: list[str] | None = None) -> None:
    """``python -m tests.tmdb_server [--films shared|generated] [--latency S]``: serve until killed.

    Prints the API root on the first line, then the environment a posterdb command needs.
    """
    import argparse
    import sys

    ap = argparse.ArgumentParser(prog="python -m tests.tmdb_server", description=main.__doc__)
    ap.add_argument("--films", choices=("shared", "generated"), default="shared")
    ap.add_argument("--decades", default="1970,2010", help="generated films: these decades")
    ap.add_argument("--per-decade", type=int, default=300, help="generated films per decade")
    ap.add_argument("--distractors", type=int, default=0, help="extra poster-less films")
    ap.add_argument("--latency", type=float, default=0.0, help="seconds slept per request")
    a = ap.parse_args(argv)
    films = (shared_films() if a.films == "shared" else
             generated_films(tuple(int(d) for d in a.decades.split(",")), a.per_decade))
    films += distractor_films(a.distractors)
    with TMDbServer(films, latency=a.latency) as server:
        print(server.url)
        for k, v in server.env().items():
            print(f"export {k}={v}")
        sys.stdout.flush()
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
