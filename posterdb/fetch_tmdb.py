"""Build a labelled training set from TMDb, as the study did: N posters per decade plus labels.

``OUT/images/<decade>s/<tmdb_id>.<ext>`` and ``OUT/labels.csv`` (file, tmdb_id, title, year,
genres ``|``-separated in TMDb's order, cut at ``max_genres``), which ``posterdb ingest OUT
--labels OUT/labels.csv`` reads. Films come from ``/discover/movie`` (primary release date within
the decade, a stable sort), page by page until the decade has N posters or the pages run out.

Why it survives a kill at any moment: an image lands by write-temp, fsync, rename; labels.csv is
rewritten whole the same way (about every second, and at the end), so there is never a torn row.
Why a re-run downloads nothing twice: rows already in labels.csv count towards N and are skipped;
an image that a kill left on disk without its row is validated and adopted, not fetched again.
A lock file keeps two fetches from writing the same folder.
"""
from __future__ import annotations

import csv
import fcntl
import io
import os
import re
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from pathlib import Path

from posterdb.errors import ImageError, PosterDBError
from posterdb.images import decode, open_poster
from posterdb.tmdb import (MAX_PAGE, Movie, TMDbAuthError, TMDbClient, TMDbError,
                           TMDbUsageError)

LABEL_COLUMNS = ("file", "tmdb_id", "title", "year", "genres")
SORTS = ("vote_count.desc", "popularity.desc", "revenue.desc", "vote_average.desc",
         "primary_release_date.asc", "primary_release_date.desc", "original_title.asc")
FLUSH_SECONDS = 1.0
LOCK_NAME = ".posterdb-fetch.lock"
_PART = re.compile(r"^\..+\.part$")


class FetchError(PosterDBError):
    """The output folder cannot be used (locked by another fetch, not writable, ...)."""

    exit_code = 3


@dataclass(frozen=True)
class FetchOptions:
    """What to fetch; :meth:`check` raises TMDbUsageError (exit 2) for impossible values."""

    decades: tuple[int, ...]
    per_decade: int
    max_genres: int = 5
    size: str = "w342"
    min_votes: int | None = None
    language: str | None = None
    sort_by: str = "vote_count.desc"
    concurrency: int = 8

    def check(self) -> FetchOptions:
        if not self.decades:
            raise TMDbUsageError("no decades given (e.g. --decades 1970,2010)")
        for d in self.decades:
            if d % 10 or not 1870 <= d <= 2100:
                raise TMDbUsageError(f"bad decade {d}: give the first year, e.g. 1970")
        if self.per_decade < 1:
            raise TMDbUsageError(f"--per-decade must be at least 1 (got {self.per_decade})")
        if self.per_decade > MAX_PAGE * 20:
            raise TMDbUsageError(f"--per-decade {self.per_decade}: TMDb lists at most "
                                 f"{MAX_PAGE * 20:,} films per query")
        if self.max_genres < 1:
            raise TMDbUsageError(f"--max-genres must be at least 1 (got {self.max_genres})")
        if not 1 <= self.concurrency <= 64:
            raise TMDbUsageError(f"--concurrency must be 1..64 (got {self.concurrency})")
        if self.min_votes is not None and self.min_votes < 0:
            raise TMDbUsageError(f"--min-votes must be >= 0 (got {self.min_votes})")
        if self.sort_by not in SORTS:
            raise TMDbUsageError(f"--sort {self.sort_by!r}: one of {', '.join(SORTS)}")
        return self


@dataclass
class DecadeReport:
    """One decade's counts: `had` rows before this run, `have` now (had + downloaded + adopted)."""

    decade: int
    wanted: int
    had: int = 0
    downloaded: int = 0
    adopted: int = 0
    failed: int = 0
    pages: int = 0
    available: int | None = None  # TMDb's total_results for the decade's query

    @property
    def have(self) -> int:
        return self.had + self.downloaded + self.adopted


@dataclass
class FetchReport:
    out_dir: str
    labels: str
    decades: list[DecadeReport]
    failed: list[dict] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=lambda: {
        "no_poster": 0, "no_genres": 0, "no_year": 0, "repeated": 0})
    dropped_rows: int = 0      # rows of labels.csv whose image had gone (fetched again)
    removed_orphans: int = 0   # images with no row that the run did not reach (deleted)
    seconds: float = 0.0
    requests: int = 0

    @property
    def downloaded(self) -> int:
        return sum(d.downloaded for d in self.decades)

    @property
    def adopted(self) -> int:
        return sum(d.adopted for d in self.decades)

    @property
    def posters_per_s(self) -> float:
        return self.downloaded / self.seconds if self.seconds > 0 else 0.0

    @property
    def short(self) -> dict[int, int]:
        """Decades that ran out of films: decade → posters missing."""
        return {d.decade: d.wanted - d.have for d in self.decades if d.have < d.wanted}

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else 0

    def to_dict(self) -> dict:
        return {"out_dir": self.out_dir, "labels": self.labels,
                "decades": [asdict(d) | {"have": d.have} for d in self.decades],
                "downloaded": self.downloaded, "adopted": self.adopted,
                "posters": sum(d.have for d in self.decades), "failed": self.failed,
                "skipped": self.skipped, "dropped_rows": self.dropped_rows,
                "removed_orphans": self.removed_orphans, "short": self.short,
                "seconds": round(self.seconds, 3), "posters_per_s": round(self.posters_per_s, 2),
                "requests": self.requests}


# ---------------------------------------------------------------- files


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that a kill leaves either the old file or the new one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


class LabelsFile:
    """labels.csv held in memory (tmdb_id → row) and rewritten atomically when `flush`ed."""

    def __init__(self, path: Path):
        self.path = path
        self.rows: dict[int, dict[str, str]] = {}
        self._dirty = False
        self._flushed = 0.0

    def load(self, out_dir: Path) -> int:
        """Read an existing file; rows whose image is gone are dropped (returned count)."""
        if not self.path.exists():
            return 0
        try:
            text = self.path.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as e:
            raise FetchError(f"{self.path}: cannot read the existing labels file: {e}") from e
        dropped = 0
        for rec in csv.DictReader(io.StringIO(text, newline="")):
            try:
                tmdb_id = int(rec.get("tmdb_id") or "")
            except ValueError:
                continue  # not one of ours (hand-added row): kept out of the resume logic
            file = (rec.get("file") or "").strip()
            if not file or not (out_dir / file).is_file():
                dropped += 1
                self._dirty = True
                continue
            self.rows[tmdb_id] = {c: rec.get(c) or "" for c in LABEL_COLUMNS}
        return dropped

    def add(self, row: dict[str, str]) -> None:
        self.rows[int(row["tmdb_id"])] = row
        self._dirty = True

    def count(self, decade: int) -> int:
        return sum(1 for r in self.rows.values()
                   if r["year"].isdigit() and int(r["year"]) // 10 * 10 == decade)

    def flush(self, force: bool = False) -> None:
        if not self._dirty or (not force and time.monotonic() - self._flushed < FLUSH_SECONDS):
            return
        buf = io.StringIO(newline="")
        w = csv.DictWriter(buf, fieldnames=LABEL_COLUMNS, lineterminator="\n")
        w.writeheader()
        w.writerows(self.rows.values())
        write_atomic(self.path, buf.getvalue().encode("utf-8"))
        self._dirty, self._flushed = False, time.monotonic()


# ---------------------------------------------------------------- the fetcher


@dataclass(frozen=True)
class _Job:
    movie: Movie
    decade: int
    genres: tuple[str, ...]
    url: str
    existing: Path | None  # an image a killed run left without its row


def _folder(out_dir: Path, decade: int) -> Path:
    return out_dir / "images" / f"{decade}s"


class Fetcher:
    """One run of `fetch_tmdb`; see the module docstring."""

    def __init__(self, out_dir: Path, options: FetchOptions, client: TMDbClient,
                 progress: Callable[[DecadeReport], None] | None = None):
        self.out = Path(out_dir)
        self.opt = options.check()
        self.client = client
        self.progress = progress or (lambda d: None)
        self.labels = LabelsFile(self.out / "labels.csv")
        self.report = FetchReport(str(self.out), str(self.labels.path),
                                  [DecadeReport(d, options.per_decade) for d in options.decades])
        self._seen: set[int] = set()

    # -- preparing ----------------------------------------------------------------------------
    def _prepare(self) -> None:
        for d in self.opt.decades:
            _folder(self.out, d).mkdir(parents=True, exist_ok=True)
        for folder in (self.out / "images").iterdir():  # temp files of a killed run
            if folder.is_dir():
                for p in folder.iterdir():
                    if _PART.match(p.name):
                        p.unlink(missing_ok=True)
        for p in self.out.iterdir():
            if _PART.match(p.name):
                p.unlink(missing_ok=True)
        self.report.dropped_rows = self.labels.load(self.out)
        for d in self.report.decades:
            d.had = self.labels.count(d.decade)

    def _jobs(self, d: DecadeReport, genres: dict[int, str], base: Callable[[str], str],
              ) -> Iterator[_Job]:
        """Films of decade `d` not yet in the labels, page after page."""
        filters = {"primary_release_date.gte": f"{d.decade}-01-01",
                   "primary_release_date.lte": f"{d.decade + 9}-12-31",
                   "sort_by": self.opt.sort_by, "include_adult": "false", "include_video": "false",
                   "vote_count.gte": self.opt.min_votes, "language": self.opt.language}
        skipped = self.report.skipped
        on_disk = {p.stem: p for p in _folder(self.out, d.decade).iterdir()
                   if p.is_file() and p.stem.isdigit()}  # a killed run's images, by tmdb id
        page, total = 1, 1
        while page <= min(total, MAX_PAGE):
            listing = self.client.discover_movies(page, **filters)
            d.pages += 1
            d.available, total = listing.total_results, listing.total_pages
            for m in listing.results:
                if m.id in self.labels.rows or m.id in self._seen:
                    skipped["repeated"] += m.id in self._seen
                    continue
                self._seen.add(m.id)
                names = tuple(m.genre_names(genres, self.opt.max_genres))
                if m.year is None or m.year // 10 * 10 != d.decade:
                    skipped["no_year"] += 1
                elif not m.poster_path:
                    skipped["no_poster"] += 1
                elif not names:
                    skipped["no_genres"] += 1
                else:
                    yield _Job(m, d.decade, names, base(m.poster_path), on_disk.get(str(m.id)))
            page += 1

    # -- one poster (worker thread) ----------------------------------------------------------
    def _obtain(self, job: _Job) -> tuple[dict[str, str], bool]:
        """(labels row, downloaded?); ImageError/TMDbError when the poster is not usable."""
        if job.existing is not None:
            try:
                open_poster(job.existing)  # the same loader as ingest
                path, adopted = job.existing, True
            except ImageError:
                job.existing.unlink(missing_ok=True)
                path, adopted = None, False
        else:
            path, adopted = None, False
        if path is None:
            data = self.client.download(job.url)
            poster = decode(data, job.url)
            path = _folder(self.out, job.decade) / f"{job.movie.id}{poster.suffix}"
            write_atomic(path, data)
        row = {"file": path.relative_to(self.out).as_posix(), "tmdb_id": str(job.movie.id),
               "title": job.movie.title, "year": str(job.movie.year),
               "genres": "|".join(job.genres)}
        return row, not adopted

    # -- the run ------------------------------------------------------------------------------
    def _decade(self, pool: ThreadPoolExecutor, d: DecadeReport, genres: dict[int, str],
                base: Callable[[str], str]) -> None:
        self.progress(d)
        if d.have >= d.wanted:
            return
        jobs = self._jobs(d, genres, base)
        pending: dict[Future, _Job] = {}
        more = True
        try:
            while True:
                while more and d.have + len(pending) < d.wanted:
                    job = next(jobs, None)
                    if job is None:
                        more = False
                    else:
                        pending[pool.submit(self._obtain, job)] = job
                if not pending:
                    break
                done, _ = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
                for fut in done:
                    job = pending.pop(fut)
                    try:
                        row, downloaded = fut.result()
                    except (ImageError, TMDbError) as e:
                        d.failed += 1
                        reason = e.reason if isinstance(e, ImageError) else str(e)
                        self.report.failed.append({"tmdb_id": job.movie.id,
                                                   "title": job.movie.title, "url": job.url,
                                                   "reason": reason})
                        continue
                    self.labels.add(row)
                    if downloaded:
                        d.downloaded += 1
                    else:
                        d.adopted += 1
                self.labels.flush()
                self.progress(d)
        finally:
            for fut in pending:
                fut.cancel()
            wait(pending)
            self.labels.flush(force=True)

    def _remove_orphans(self) -> None:
        """Images of ours (``<id>.<ext>``) with no row: a killed run's, not reached this time."""
        known = {self.out / r["file"] for r in self.labels.rows.values()}
        for d in self.opt.decades:
            for p in _folder(self.out, d).iterdir():
                if p.is_file() and p.stem.isdigit() and p not in known:
                    p.unlink(missing_ok=True)
                    self.report.removed_orphans += 1

    def run(self) -> FetchReport:
        t0 = time.perf_counter()
        requests0 = self.client.requests
        if not self.client.credentials:
            raise TMDbAuthError("no TMDb credentials: set TMDB_API_KEY (v3 key) or "
                                "TMDB_READ_TOKEN (v4 read access token)")
        try:
            self.out.mkdir(parents=True, exist_ok=True)
            lock = open(self.out / LOCK_NAME, "a+b")
        except OSError as e:
            raise FetchError(f"{self.out}: cannot write here: {e.strerror or e}") from e
        try:
            try:
                fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise FetchError(f"{self.out}: another fetch is writing this folder") from None
            try:
                self._prepare()
                config = self.client.configuration()
                if self.opt.size not in config.poster_sizes:
                    raise TMDbUsageError(f"--size {self.opt.size}: TMDb offers "
                                         f"{', '.join(config.poster_sizes)}")
                genres = self.client.movie_genres("en-US")  # names as posterdb knows them

                def base(poster_path: str) -> str:
                    return config.poster_url(self.opt.size, poster_path)

                with ThreadPoolExecutor(self.opt.concurrency, "tmdb-poster") as pool:
                    for d in self.report.decades:
                        self._decade(pool, d, genres, base)
                self._remove_orphans()
            except OSError as e:
                raise FetchError(f"{self.out}: cannot write: {e.strerror or e}") from e
            finally:
                self.labels.flush(force=True)
        finally:
            lock.close()
        self.report.seconds = time.perf_counter() - t0
        self.report.requests = self.client.requests - requests0
        return self.report


def fetch_tmdb(out_dir: str | os.PathLike, options: FetchOptions,
               client: TMDbClient | None = None,
               progress: Callable[[DecadeReport], None] | None = None) -> FetchReport:
    """Fetch ``options.per_decade`` posters per decade into `out_dir` (see the module docstring).

    Without `client`, one is made from the environment (``POSTERDB_TMDB_URL``, ``TMDB_API_KEY``
    or ``TMDB_READ_TOKEN``) with ``options.concurrency`` connections, and closed afterwards.
    """
    own = client is None
    client = client or TMDbClient(max_connections=options.concurrency)
    try:
        return Fetcher(Path(out_dir), options, client, progress).run()
    finally:
        if own:
            client.close()
