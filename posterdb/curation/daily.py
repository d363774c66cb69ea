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

import gzip
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path

from posterdb.core.errors import PosterDBError, UsageError
from posterdb.core.settings import (
    STORE_CATALOGUE,
    STORE_KEYS,
    STORE_MODEL_DIR,
    TMDB_CATALOGUE,
    Settings,
)

# TMDb in the daily flow: few retries, so that a catalogue that is down leaves the posters
# pending within seconds instead of holding a batch for minutes of back-off.
FLOW_TMDB_RETRIES = 1
FLOW_TMDB_TIMEOUT_S = 10.0
CATCH_UP_SLICE = 32


def check_catalogue(spec: str) -> str:
    """What a person names as the catalogue, checked and normalised: ``tmdb``, or the absolute
    path of a film file that exists and looks like one (IMDb title.basics.tsv[.gz], or a CSV
    with a title column). The file is read in full only when posters are identified."""
    spec = (spec or "").strip()
    if not spec:
        raise UsageError("name a catalogue: tmdb, or a film file (IMDb title.basics.tsv[.gz] "
                         "or a CSV with title, year, genres)")
    if spec.lower() == TMDB_CATALOGUE:
        return TMDB_CATALOGUE
    path = Path(spec).expanduser()
    if not path.is_file():
        raise UsageError(f"catalogue: no such file {spec} (give tmdb or a film file)")
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
        if head[:2] == b"\x1f\x8b":
            with gzip.open(path, "rb") as f:
                head = f.read(4096)
        first = head.decode("utf-8-sig", errors="replace").splitlines()[0] if head else ""
    except (OSError, EOFError) as e:
        raise UsageError(f"catalogue {spec}: cannot read it ({e})") from e
    cols = {c.strip().lower() for c in first.replace("\t", ",").split(",")}
    if "title" not in cols and "primarytitle" not in cols:
        raise UsageError(f"catalogue {spec}: not a film file (its first line has no 'title' "
                         "column; need IMDb title.basics.tsv[.gz] or a CSV with title, year, "
                         "genres)")
    return str(path.resolve())


def check_setting(key: str, value: str) -> str:
    """A store setting's value, checked and normalised (UsageError naming what is wrong)."""
    if key not in STORE_KEYS:
        raise UsageError(f"no store setting {key!r}; the settings are: "
                         + "; ".join(f"{k} ({v})" for k, v in STORE_KEYS.items()))
    if key == STORE_CATALOGUE:
        return check_catalogue(value)
    if key == STORE_MODEL_DIR:
        path = Path(str(value).strip()).expanduser()
        if not str(value).strip() or not path.is_dir():
            raise UsageError(f"model_dir: no such folder {value}")
        return str(path.resolve())
    return str(value)  # pragma: no cover - every key is handled above


@dataclass(frozen=True)
class CatalogueChoice:
    """The catalogue a command identifies against (None: identification is off) and why."""

    spec: str | None
    origin: str           # "--catalogue", "store", "environment", "TMDb credentials", "none"

    @property
    def on(self) -> bool:
        return self.spec is not None

    def describe(self) -> str:
        if self.spec is None:
            return "identification off (no catalogue: posterdb config set catalogue tmdb|FILE)"
        return f"catalogue {self.spec} (from {self.origin})"


def choose_catalogue(settings: Settings, given: str | None = None, *,
                     identify: bool | None = None) -> CatalogueChoice:
    """`given` (a flag) over the configured catalogue (environment, then the store). With
    `identify` None (not asked), identification is on exactly when a catalogue is configured;
    True (asked) and none configured: TMDb when its credentials are set, else a UsageError
    saying how to name one; False: off."""
    if identify is False:
        return CatalogueChoice(None, "--no-identify")
    if given is not None:
        return CatalogueChoice(check_catalogue(given), "--catalogue")
    if settings.catalogue:
        origin = ("store" if settings.saved.get(STORE_CATALOGUE) == settings.catalogue
                  else "environment")
        return CatalogueChoice(settings.catalogue, origin)
    if identify:
        if settings.tmdb.has_credentials:
            return CatalogueChoice(TMDB_CATALOGUE, "TMDb credentials")
        raise UsageError("no catalogue to identify against: give --catalogue tmdb|FILE, or set "
                         "it once for this store: posterdb config set catalogue tmdb|FILE "
                         "(TMDb also needs TMDB_API_KEY or TMDB_READ_TOKEN)")
    return CatalogueChoice(None, "none")


def open_catalogue(spec: str, settings: Settings, *, patient: bool = True):
    """The catalogue object for a spec. TMDb needs credentials (from the environment only);
    `patient=False` (the daily flow) gives up on an unreachable TMDb after one retry."""
    from posterdb.reading.identify import TMDbCatalogue

    if spec.lower() == TMDB_CATALOGUE:
        if not settings.tmdb.has_credentials:
            raise UsageError("the tmdb catalogue needs TMDB_API_KEY or TMDB_READ_TOKEN in the "
                             "environment (credentials are never saved in the store)")
        from posterdb.tmdb.client import Credentials, TMDbClient

        kw = {} if patient else {"retries": FLOW_TMDB_RETRIES, "timeout": FLOW_TMDB_TIMEOUT_S}
        client = TMDbClient(settings.tmdb.url, Credentials(api_key=settings.tmdb.api_key,
                                                           read_token=settings.tmdb.read_token),
                            **kw)
        return TMDbCatalogue(client)
    path = Path(spec)
    try:
        stamp = path.stat().st_mtime_ns
    except OSError as e:
        raise UsageError(f"catalogue: cannot read {spec} ({e.strerror or e})") from e
    return _film_file(str(path), stamp)


@lru_cache(maxsize=2)
def _film_file(path: str, stamp: int):
    """A film file loaded once per process (IMDb's file takes a while), again when it changed."""
    from posterdb.reading.identify import LocalCatalogue

    return LocalCatalogue.from_file(path)


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
    error: str | None = None

    def add(self, other: "FlowReport") -> "FlowReport":
        for k in ("read", "identified", "unidentified", "pending", "not_tried", "requests"):
            setattr(self, k, getattr(self, k) + getattr(other, k))
        for k in ("read_s", "identify_s", "read_cpu_s"):
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
        t0 = time.perf_counter()
        try:
            r = self.reading.identify(self.catalogue, ids)
        except PosterDBError as e:     # refused credentials, an unreadable film file
            rep.error = str(e)
            return rep
        for k in ("identified", "unidentified", "pending", "not_tried", "requests"):
            setattr(rep, k, int(r.get(k) or 0))
        rep.error = r.get("stopped")
        rep.identify_s = round(time.perf_counter() - t0, 3)
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

        lines = self.reading.reader(self.threads).read_image(image)
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
    one as `db.daily`. `reading()` gives the store's ReadingService (the `read` extra);
    `settings` are the store's as opened (flags and environment over what it remembered)."""

    def __init__(self, catalog, reading: Callable[[], object], settings: Settings):
        self.catalog, self.reading, self.opened = catalog, reading, settings

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


__all__ = ["DailySetup", "CatalogueChoice", "DailyFlow", "FlowReport", "check_catalogue", "check_setting",
           "choose_catalogue", "open_catalogue"]
