"""The catalogue a store identifies against: what a person names (checked), which one a command
uses (a flag, else the environment, else what the store remembers), and opening it.

Credentials never pass through here into the store: TMDb's key and token come from the
environment (`posterdb.core.settings`) each time a catalogue is opened.
"""
from __future__ import annotations

import gzip
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from posterdb.core.errors import UsageError
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


__all__ = ["CatalogueChoice", "check_catalogue", "check_setting", "choose_catalogue",
           "open_catalogue"]
