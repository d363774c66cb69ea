"""Finding weights files: explicit path -> model dir -> library cache -> download -> clear error.

No torch at import time (the MobileNet path must work without it).
"""
from __future__ import annotations

import glob
import hashlib
import logging
import os
import socket
import threading
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

from posterdb.core.atomic import replacing
from posterdb.core.errors import WeightsLoadError, WeightsNotFoundError
from posterdb.core.settings import ENV_MODEL_DIR as MODEL_DIR_ENV
from posterdb.core.settings import ENV_OFFLINE as OFFLINE_ENV
from posterdb.core.settings import current as current_settings

log = logging.getLogger(__name__)



def default_model_dir() -> Path:
    """$POSTERDB_MODEL_DIR if set, else ~/.cache/posterdb/models (posterdb.core.settings)."""
    return current_settings().weights_dirs()[0]


def offline() -> bool:
    """True when $POSTERDB_OFFLINE is set to a true value (1/true/yes/on)."""
    return current_settings().offline


def reachable(host: str, port: int = 443, timeout: float = 3.0) -> bool:
    """Fast probe so downloads fail in seconds, not minutes, when there is no network."""
    try:
        socket.create_connection((host, port), timeout=timeout).close()
        return True
    except OSError:
        return False


@dataclass(frozen=True)
class Download:
    """How to fetch a missing file: `host` is probed first; `fetch()` returns the local path."""

    source: str
    host: str
    fetch: Callable[[], str | Path]


def _model_dirs(model_dir: str | Path | None) -> list[Path]:
    dirs = [Path(model_dir).expanduser()] if model_dir else []
    default = default_model_dir()
    if default not in dirs:
        dirs.append(default)
    return dirs


def _first_existing(pattern: str | Path) -> Path | None:
    pattern = str(pattern)
    if any(c in pattern for c in "*?["):
        hits = sorted(glob.glob(pattern))
        return Path(hits[-1]) if hits else None
    return Path(pattern) if os.path.isfile(pattern) else None


def resolve_weights(
    what: str,
    filenames: Sequence[str],
    *,
    explicit: str | Path | None = None,
    model_dir: str | Path | None = None,
    cache_paths: Iterable[str | Path] = (),
    download: Download | None = None,
    allow_download: bool | None = None,
) -> Path:
    """Return the path of the weights for `what`, searching in the documented order.

    explicit: a file (used as is) or a folder (searched for `filenames`); if it does not exist
    nothing else is tried. model_dir: searched, then `default_model_dir()`. cache_paths: the
    library's own cache locations (glob patterns allowed). download: tried last unless
    `allow_download` is False (default: allowed unless $POSTERDB_OFFLINE is set).
    """
    names = ", ".join(filenames)
    if explicit is not None:
        p = Path(explicit).expanduser()
        if p.is_file():
            return p
        if p.is_dir():
            for fn in filenames:
                if (p / fn).is_file():
                    return p / fn
            raise WeightsNotFoundError(
                f"{what} weights not found: {p} holds none of the expected files ({names})")
        raise WeightsNotFoundError(f"{what} weights file {p} does not exist (expected one of: {names})")

    searched: list[str] = []
    dirs = _model_dirs(model_dir)
    for d in dirs:
        for fn in filenames:
            searched.append(str(d / fn))
            if (d / fn).is_file():
                return d / fn
    for pattern in cache_paths:
        searched.append(str(pattern))
        hit = _first_existing(pattern)
        if hit is not None:
            return hit

    if allow_download is None:
        allow_download = not offline()
    if download is None:
        dl_note = "no download source known"
    elif not allow_download:
        dl_note = f"download from {download.source} disabled (allow_download=False or ${OFFLINE_ENV})"
    elif not reachable(download.host):
        dl_note = f"download from {download.source} skipped: {download.host} is unreachable"
    else:
        try:
            log.info("downloading %s weights from %s", what, download.source)
            path = Path(download.fetch())
            if path.is_file():
                return path
            dl_note = f"download from {download.source} produced no file"
        except Exception as e:  # network, hash mismatch, hub errors: report, don't crash
            dl_note = f"download from {download.source} failed: {type(e).__name__}: {e}"

    where = "\n".join(f"  {s}" for s in searched)
    raise WeightsNotFoundError(
        f"{what} weights not found. Expected file name(s): {names}\n"
        f"Searched:\n{where}\n{dl_note}.\n"
        f"Put the file in {dirs[0]} (or set ${MODEL_DIR_ENV}), or pass its path explicitly (weights=...)."
    )


def download_url(url: str, dest: Path, sha256: str | None = None, timeout: float = 30.0) -> Path:
    """Fetch url into dest atomically, checking sha256 (full hex or prefix) when given."""
    h = hashlib.sha256()
    with urllib.request.urlopen(url, timeout=timeout) as r, replacing(dest, suffix=".part") as f:
        while chunk := r.read(1 << 20):
            h.update(chunk)
            f.write(chunk)
        if sha256 and not h.hexdigest().startswith(sha256):  # raised inside: dest untouched
            raise WeightsLoadError(f"{url}: sha256 {h.hexdigest()} does not match expected {sha256}")
    return dest


_sha_cache: dict[tuple[str, int, int], str] = {}
_sha_lock = threading.Lock()


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file, streamed; memoised per process by (real path, size, mtime)."""
    p = os.path.realpath(path)
    st = os.stat(p)
    key = (p, st.st_size, st.st_mtime_ns)
    with _sha_lock:
        if key in _sha_cache:
            return _sha_cache[key]
    h = hashlib.sha256()
    with open(p, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    digest = h.hexdigest()
    with _sha_lock:
        _sha_cache[key] = digest
    return digest


def load_torch_state_dict(path: str | Path, what: str) -> dict:
    """Load a state dict safely: safetensors, or torch.load(weights_only=True) on CPU.

    Unwraps {"state_dict": ...} / {"model": ...} and a "module." prefix. Raises WeightsLoadError
    naming the file when it cannot be read or holds no tensors.
    """
    import torch

    path = Path(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            obj = load_file(str(path), device="cpu")
        else:
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise WeightsLoadError(
            f"{path}: cannot read {what} weights ({type(e).__name__}: {e}). "
            "Expected a PyTorch state dict (.pth/.pt/.bin) or .safetensors file.") from e
    for key in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not obj or not all(torch.is_tensor(v) for v in obj.values()):
        raise WeightsLoadError(f"{path}: not a {what} state dict (expected a mapping of names to tensors)")
    if all(k.startswith("module.") for k in obj):
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return obj


def describe_mismatch(expected: dict, got: dict, limit: int = 3) -> str:
    """Short summary of how state dict `got` differs from `expected` (name -> tensor)."""
    missing = [k for k in expected if k not in got]
    unexpected = [k for k in got if k not in expected]
    shapes = [f"{k} {tuple(got[k].shape)} != {tuple(expected[k].shape)}"
              for k in expected if k in got and tuple(got[k].shape) != tuple(expected[k].shape)]
    parts = [f"{len(v)} {label} (e.g. {'; '.join(v[:limit])})"
             for label, v in (("missing keys", missing), ("unexpected keys", unexpected),
                              ("shape mismatches", shapes)) if v]
    return ", ".join(parts) or "keys and shapes match"
