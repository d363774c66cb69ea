"""The daily flow: identification reaching the dealer.

A store remembers the film catalogue its posters are identified against (`posterdb config set
catalogue tmdb|FILE`, or the first `posterdb ingest --catalogue ...`). From then on every way
posters come in — `posterdb ingest`, `posterdb watch`, the page — reads them (OCR) and
identifies their films, after they are committed: an identified poster gets the film's
genres as labels of origin ``catalogue`` (facts, which the shop feed publishes with their
source and film id) and its title and year where it had none.

Order of work, so that today's arrivals are never behind older work:

1. `arrivals(ids)`: the posters just committed (a watch batch, an ingest's added posters) are
   read, then identified. A poster already read is never read again.
2. `catch_up(limit)`: posters read but not decided (a catalogue that was down or
   rate-limited leaves them *pending*; a run cut short leaves them untried), newest first;
   then posters never read (an older backlog), newest first. At most `limit` of each, so the
   caller can look at the inbox between slices.

Reading and identifying never block or lose an arrival: they run after the commit, a
catalogue that cannot answer leaves posters pending (tried again on the next pass), and an
error here is reported, never raised into the caller's loop.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from posterdb.core.errors import PosterDBError, RefusedError
from posterdb.classify.service import GenreService
from posterdb.core.settings import STORE_CATALOGUE, STORE_KEYS, Settings
from posterdb.reading.configured import (
    CatalogueChoice,
    check_catalogue,
    check_setting,
    choose_catalogue,
    open_catalogue,
)
from posterdb.storage.catalog import Catalog
from posterdb.storage.image_store import ImageStore
from posterdb.storage.posters import StoredPosters
from posterdb.vectors.models import StoreModels
from posterdb.vectors.similarity import Similarity

CATCH_UP_SLICE = 32


@dataclass
class FlowReport:
    """What one step of the flow did (JSON-friendly via `to_dict`)."""

    read: int = 0
    read_failed: list[dict] = field(default_factory=list)
    identified: int = 0
    unidentified: int = 0
    pending: int = 0
    not_tried: int = 0
    requests: int = 0
    read_s: float = 0.0
    identify_s: float = 0.0
    read_cpu_s: float = 0.0
    identify_cpu_s: float = 0.0
    error: str | None = None

    def add(self, other: "FlowReport") -> "FlowReport":
        for k in ("read", "identified", "unidentified", "pending", "not_tried", "requests"):
            setattr(self, k, getattr(self, k) + getattr(other, k))
        for k in ("read_s", "identify_s", "read_cpu_s", "identify_cpu_s"):
            setattr(self, k, round(getattr(self, k) + getattr(other, k), 3))
        self.read_failed += other.read_failed
        self.error = self.error or other.error
        return self

    @property
    def busy(self) -> bool:
        """Whether this step did anything (a caller slicing work stops when it did not)."""
        return bool(self.read or self.identified or self.unidentified)

    def to_dict(self) -> dict:
        return dict(self.__dict__)

    def line(self) -> str:
        parts = []
        if self.read or self.read_failed:
            parts.append(f"read {self.read}" + (f" ({len(self.read_failed)} unreadable)"
                                                if self.read_failed else ""))
        if self.identified or self.unidentified or self.pending or self.not_tried:
            left = self.pending + self.not_tried
            parts.append(f"identified {self.identified}, not identified {self.unidentified}"
                         + (f", {left} left for the next pass" if left else ""))
        if self.error:
            parts.append(f"identification stopped: {self.error}")
        return "; ".join(parts)


class DailyFlow:
    """Read and identify committed posters, arrivals first (see the module docstring).

    `reading` is the store's ReadingService, or a callable giving it (the `read` extra is
    imported on first need); `catalogue` an opened catalogue, or a callable that opens one
    (called once, on first need), or None (read only)."""

    def __init__(self, reading, catalogue=None, *, threads: int = 2,
                 choice: CatalogueChoice | None = None):
        self._reading = reading
        self.choice = choice
        self._catalogue = catalogue
        self._opened = not callable(catalogue)
        self.threads = threads
        self._unreadable: set[int] = set()   # stored images OCR could not decode: not retried

    @property
    def reading(self):
        if callable(self._reading):
            self._reading = self._reading()
        return self._reading

    @property
    def catalogue(self):
        if not self._opened:
            self._catalogue = self._catalogue()
            self._opened = True
        return self._catalogue

    def _read(self, ids) -> FlowReport:
        rep = FlowReport()
        t0 = time.perf_counter()
        try:
            r = self.reading.read(ids, threads=self.threads)
        except PosterDBError as e:     # the OCR extra missing, the store busy: next pass
            rep.error = str(e)
            return rep
        rep.read, rep.read_failed = r["read"], r["failed"]
        self._unreadable.update(int(f["id"]) for f in r["failed"])
        rep.read_cpu_s = round((r.get("cpu_s_per_poster") or 0) * r["read"], 3)
        rep.read_s = round(time.perf_counter() - t0, 3)
        return rep

    def _identify(self, ids) -> FlowReport:
        rep = FlowReport()
        if self._catalogue is None or (ids is not None and not ids):
            return rep
        t0, c0 = time.perf_counter(), time.process_time()
        try:
            r = self.reading.identify(self.catalogue, ids)
        except PosterDBError as e:     # refused credentials, an unreadable film file
            rep.error = str(e)
            return rep
        for k in ("identified", "unidentified", "pending", "not_tried", "requests"):
            setattr(rep, k, int(r.get(k) or 0))
        rep.error = r.get("stopped")
        rep.identify_s = round(time.perf_counter() - t0, 3)
        rep.identify_cpu_s = round(time.process_time() - c0, 3)
        return rep

    def arrivals(self, ids: list[int]) -> FlowReport:
        """Read the posters just committed (those not read yet), then identify them."""
        ids = list(dict.fromkeys(int(i) for i in ids))
        if not ids:
            return FlowReport()
        rep = self._read(ids)
        return rep.add(self._identify(ids))

    # -- one upload (the page's Classify, `posterdb classify`) --------------------------------
    def preview(self, image, year: int | None = None,
                probabilities: dict[str, float] | None = None) -> dict:
        """Read an image that is not stored (a PIL image) and identify its film, storing
        nothing: {"lines": [ReadLine], "identification": Identification | None, "error"}."""
        from posterdb.core.genres import GENRES
        from posterdb.reading.identify import Reading, identify

        try:
            lines = self.reading.reader(self.threads).read_image(image)
        except PosterDBError as e:         # the OCR extra missing: the film is not looked up
            return {"lines": [], "identification": None, "error": str(e)}
        probs = None if not probabilities else [float(probabilities.get(g, 0.0)) for g in GENRES]
        if self._catalogue is None:
            return {"lines": lines, "identification": None, "error": None}
        try:
            got = identify(Reading(lines, year, probs), self.catalogue)
        except PosterDBError as e:
            return {"lines": lines, "identification": None, "error": str(e)}
        return {"lines": lines, "identification": got, "error": got.error}

    def adopt(self, poster_id: int, lines) -> FlowReport:
        """A poster just added from an upload: store what `preview` read, then identify it
        (stored like any poster's: pending when the catalogue cannot answer now)."""
        self.reading.save_reads([int(poster_id)], [list(lines)])
        return self._identify([int(poster_id)])

    def catalogue_poster(self, source: str | None, film_id: str | None):
        """The file of a film's poster as the catalogue has it, when one is cached in the store
        (artwork verification caches them); else None."""
        if not source or not film_id:
            return None
        catalog = self.reading.catalog
        with catalog.read() as con:
            rel = catalog.catalogue_poster_path(con, source, film_id)
        path = self.reading.images.file(rel) if rel else None
        return path if path is not None and path.is_file() else None

    def undecided(self, limit: int) -> list[int]:
        """Read posters not identified yet or left pending, newest first (at most `limit`)."""
        catalog = self.reading.catalog
        with catalog.read() as con:
            todo = catalog.to_identify(con, None)
        return sorted(todo, reverse=True)[:max(0, limit)]

    def unread(self, limit: int) -> list[int]:
        """Posters never read (less those that could not be read this process), newest first."""
        catalog = self.reading.catalog
        with catalog.read() as con:
            todo = catalog.unread_ids(con, None)
        return [i for i in sorted(todo, reverse=True) if i not in self._unreadable][:max(0, limit)]

    def catch_up(self, limit: int = CATCH_UP_SLICE) -> FlowReport:
        """One slice of older work: undecided posters, then unread ones, newest first."""
        rep = FlowReport()
        if self._catalogue is not None:
            rep.add(self._identify(self.undecided(limit)))
            if rep.error:              # the catalogue cannot answer now: leave the rest
                return rep
        rep.add(self.arrivals(self.unread(limit)))
        return rep

    def catch_up_all(self, *, limit: int | None = None, slice_: int = CATCH_UP_SLICE,
                     between: Callable[[], bool] | None = None) -> FlowReport:
        """Slices until nothing is left, `limit` posters were handled, an error stopped a slice,
        or `between()` returned False (e.g. new files in the inbox, a stop request)."""
        rep = FlowReport()
        handled = 0
        while limit is None or handled < limit:
            n = slice_ if limit is None else min(slice_, limit - handled)
            got = self.catch_up(n)
            rep.add(got)
            handled += n
            if not got.busy or got.error or (between is not None and not between()):
                break
        return rep


class DailySetup:
    """What a store remembers (its `meta` settings) and the flow built from it; PosterDB wires
    one as `db.daily` with the store's parts. `settings` are the store's as opened (flags and
    environment over what it remembered); the ReadingService (the `read` extra) is built on
    first use."""

    def __init__(self, catalog: Catalog, images: ImageStore, posters: StoredPosters,
                 genres: GenreService, models: StoreModels, search: Similarity,
                 settings: Settings):
        self.catalog, self.images, self.posters, self.genres = catalog, images, posters, genres
        self.models, self.search = models, search
        self.opened = settings
        self._reading = None

    def reading(self):
        """The ReadingService of this store (RefusedError without the `read` extra)."""
        if self._reading is None:
            try:
                from posterdb.reading.service import ReadingService
            except ImportError as e:
                raise RefusedError(f"reading posters needs the `read` extra: pip install "
                                   f"'posterdb[read]' ({e})") from e
            self._reading = ReadingService(self.catalog, self.images, self.posters, self.genres,
                                           self.models, self.search)
        return self._reading

    def settings(self) -> Settings:
        """The settings now: a `posterdb config set` since the store was opened counts."""
        with self.catalog.read() as con:
            saved = self.catalog.store_settings(con)
        base = self.opened
        if base.catalogue is not None and base.catalogue == base.saved.get(STORE_CATALOGUE):
            base = replace(base, catalogue=None)        # it came from the store: take it anew
        return base.with_store(saved)

    def configure(self, key: str, value: str | None) -> Settings:
        """Remember (or, with None, forget) one setting, checked (`check_setting`)."""
        if key not in STORE_KEYS:
            check_setting(key, "")
        value = None if value is None else check_setting(key, value)
        with self.catalog.write() as con:
            self.catalog.set_store_setting(con, key, value)
        return self.settings()

    def flow(self, catalogue: str | None = None, *, identify: bool | None = None,
             threads: int = 2, patient: bool = False) -> DailyFlow | None:
        """The DailyFlow of this store (catalogue: the flag, else the configured one; identify
        None: on exactly when one is configured), or None when identification is off.
        `patient`: TMDb with its full retries (a command a person waits for) rather than
        failing fast to pending (the watcher)."""
        settings = self.settings()
        choice = choose_catalogue(settings, catalogue, identify=identify)
        if not choice.on:
            return None
        return DailyFlow(self.reading,
                         lambda: open_catalogue(choice.spec, settings, patient=patient),
                         threads=threads, choice=choice)


__all__ = ["CatalogueChoice", "DailyFlow", "DailySetup", "FlowReport", "check_catalogue",
           "check_setting", "choose_catalogue", "open_catalogue"]
