"""posterdb's settings: one object, the only reader of the environment.

Where a value comes from, first found wins:
    1. an explicit argument (a command-line flag, a keyword to `PosterDB.open`)
    2. the environment (read here, once per `Settings.from_env()` call)
    3. what the store remembers (`posterdb config`, saved in its catalogue; `with_store`)
    4. the defaults below

Thresholds live here too, each named for what it decides, so a policy is stated once.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

DEFAULT_STORE = Path("posterdb-store")
DEFAULT_MODEL = "mobilenet-v2"
CATALOG_FILE = "catalog.duckdb"

# environment variables (documented in the README's "Settings")
ENV_STORE = "POSTERDB_STORE"
ENV_MODEL_DIR = "POSTERDB_MODEL_DIR"
ENV_OFFLINE = "POSTERDB_OFFLINE"
ENV_TMDB_URL = "POSTERDB_TMDB_URL"
ENV_TMDB_KEY = "TMDB_API_KEY"
ENV_TMDB_TOKEN = "TMDB_READ_TOKEN"
ENV_TMDB_IMAGE_HOST = "POSTERDB_TMDB_IMAGE_HOST"   # the one host posters may come from, besides the API's
ENV_HF_ENDPOINT = "HF_ENDPOINT"
ENV_CRASH_AT = "POSTERDB_CRASH_AT"   # fault injection for the crash tests (core.faults)
ENV_WRITE_WAIT = "POSTERDB_WRITE_WAIT"   # seconds a writer waits for another (default 600)
WRITE_WAIT = 600.0
ENV_CATALOGUE = "POSTERDB_CATALOGUE"  # the film catalogue to identify against: tmdb or a file

# what a store remembers (`posterdb config set KEY VALUE`; the catalogue's `meta` table)
STORE_CATALOGUE = "catalogue"   # "tmdb" or the absolute path of a film file; never credentials
STORE_MODEL_DIR = "model_dir"   # the folder holding model weight files
STORE_KEYS: dict[str, str] = {
    STORE_CATALOGUE: "the film catalogue posters are identified against: tmdb (credentials "
                     "stay in TMDB_API_KEY / TMDB_READ_TOKEN) or a film file (IMDb "
                     "title.basics.tsv[.gz], or a CSV with title, year, genres)",
    STORE_MODEL_DIR: "the folder holding model weight files",
}
TMDB_CATALOGUE = "tmdb"

TMDB_DEFAULT_URL = "https://api.themoviedb.org/3"
TMDB_DEFAULT_IMAGE_HOST = "image.tmdb.org"
HF_DEFAULT_ENDPOINT = "https://huggingface.co"


@dataclass(frozen=True)
class Thresholds:
    """Cosine similarities between two posters' vectors (MobileNetV2 features unless noted).

    Measured on ../shared/posters: rescans of one poster (JPEG q75 plus a resize, 3 % crop,
    1.5° rotation or colour shift) score 0.85–0.99, median 0.94; among the 5,097 distinct
    posters only 4 have a neighbour at ≥ 0.90 and 10 % one at ≥ 0.80.
    """

    near_duplicate: float = 0.90   # a rescan of the same poster: flagged at ingest, tier in review
    look_alike: float = 0.80       # same style or series: a different poster, kept
    same_image: float = 0.97       # the same image re-encoded: one fold in cross-validation


THRESHOLDS = Thresholds()


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


def _seconds(value: str | None, default: float) -> float:
    try:
        return max(0.0, float(value)) if value not in (None, "") else default
    except ValueError:
        return default


def _path(value: str | os.PathLike | None) -> Path | None:
    if value is None or str(value).strip() == "":
        return None
    return Path(value).expanduser()


@dataclass(frozen=True)
class TMDbSettings:
    """Where TMDb is and how to sign in; the repr never shows a key or token."""

    url: str = TMDB_DEFAULT_URL
    api_key: str | None = field(default=None, repr=False)
    read_token: str | None = field(default=None, repr=False)
    image_host: str = TMDB_DEFAULT_IMAGE_HOST   # host[:port] images may come from (and the API's)

    @property
    def has_credentials(self) -> bool:
        return bool(self.api_key or self.read_token)


@dataclass(frozen=True)
class Settings:
    """Everything a command, the page or a library caller configures."""

    store: Path = DEFAULT_STORE
    model_dir: Path | None = None
    default_model: str = DEFAULT_MODEL
    offline: bool = False
    tmdb: TMDbSettings = TMDbSettings()
    hf_endpoint: str = HF_DEFAULT_ENDPOINT
    crash_at: str = ""
    write_wait: float = WRITE_WAIT     # one writer at a time: how long the next one waits
    catalogue: str | None = None   # "tmdb" or a film file: identify against it by default
    thresholds: Thresholds = THRESHOLDS
    saved: Mapping[str, str] = field(default_factory=dict)   # what the store remembers

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **explicit) -> Settings:
        """Explicit values (None = not given) over the environment over the defaults."""
        env = os.environ if env is None else env
        given = {k: v for k, v in explicit.items() if v is not None}
        tmdb = TMDbSettings(
            url=(env.get(ENV_TMDB_URL) or TMDB_DEFAULT_URL).strip().rstrip("/"),
            api_key=(env.get(ENV_TMDB_KEY) or "").strip() or None,
            read_token=(env.get(ENV_TMDB_TOKEN) or "").strip() or None,
            image_host=(env.get(ENV_TMDB_IMAGE_HOST) or "").strip() or TMDB_DEFAULT_IMAGE_HOST)
        base = cls(store=_path(env.get(ENV_STORE)) or DEFAULT_STORE,
                   model_dir=_path(env.get(ENV_MODEL_DIR)),
                   offline=_truthy(env.get(ENV_OFFLINE)),
                   tmdb=tmdb,
                   hf_endpoint=(env.get(ENV_HF_ENDPOINT) or HF_DEFAULT_ENDPOINT).strip(),
                   crash_at=(env.get(ENV_CRASH_AT) or "").strip(),
                   write_wait=_seconds(env.get(ENV_WRITE_WAIT), WRITE_WAIT),
                   catalogue=(env.get(ENV_CATALOGUE) or "").strip() or None)
        for key in ("store", "model_dir"):
            if key in given:
                given[key] = _path(given[key])
        return replace(base, **given)

    def with_store(self, saved: Mapping[str, str]) -> Settings:
        """Fill what neither a flag nor the environment gave from the store's saved settings."""
        out = replace(self, saved=dict(saved))
        if out.model_dir is None and saved.get(STORE_MODEL_DIR):
            out = replace(out, model_dir=_path(saved[STORE_MODEL_DIR]))
        if out.catalogue is None and saved.get(STORE_CATALOGUE):
            out = replace(out, catalogue=saved[STORE_CATALOGUE])
        return out

    def source_of(self, key: str) -> str:
        """Where a store setting's value comes from now: "store" when the store's saved value
        is the one in effect, else "flag or environment" (or "unset")."""
        value = {STORE_CATALOGUE: self.catalogue, STORE_MODEL_DIR: self.model_dir}[key]
        if value is None:
            return "unset"
        saved = self.saved.get(key)
        same = saved is not None and (str(_path(saved)) == str(value) if key == STORE_MODEL_DIR
                                      else saved == value)
        return "store" if same else "flag or environment"

    def weights_dirs(self) -> list[Path]:
        """Where weight files are looked for: the model dir, then the user's cache."""
        default = Path.home() / ".cache" / "posterdb" / "models"
        dirs = [self.model_dir] if self.model_dir else []
        return dirs + ([default] if default not in dirs else [])


def crash_point_spec() -> str:
    """$POSTERDB_CRASH_AT, read at each crash point (the crash tests set it per process)."""
    return (os.environ.get(ENV_CRASH_AT) or "").strip()


def current(**explicit) -> Settings:
    """The settings of this process now (environment read at the call)."""
    return Settings.from_env(**explicit)
