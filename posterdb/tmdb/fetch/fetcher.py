"""The fetch itself: discover pages → bounded concurrent downloads → validated images + rows."""
from __future__ import annotations

import fcntl
import os
import re
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

from posterdb.core.errors import ImageError, UsageError
from posterdb.media.images import decode, open_poster
from posterdb.tmdb.client import (
    MAX_PAGE, Movie, TMDbAuthError, TMDbClient, TMDbError, TMDbHostError, TMDbUsageError)
from posterdb.tmdb.fetch.files import LabelsFile, write_atomic
from posterdb.tmdb.fetch.options import (DecadeReport, FetchError, FetchOptions, FetchReport)

LOCK_NAME = ".posterdb-fetch.lock"
_PART = re.compile(r"^\..+\.part$")


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
                    except TMDbHostError:
                        raise  # a URL outside TMDb's hosts: the fetch stops, one line says why
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
        if self.out.exists() and not self.out.is_dir():
            raise UsageError(f"{self.out}: is a file, not a folder")
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
