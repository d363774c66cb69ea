"""Saving and loading a fitted classifier: pickle, written atomically, verified by sha256.

Unpickling runs code chosen by whoever wrote the file, so `load_classifier` reads the bytes,
checks their sha256 against the hash the store recorded (DuckDB) and only then unpickles.

The file starts with a one-line JSON header (`FORMAT_VERSION`, the posterdb version) before the
pickle, so a classifier written by another format is refused with "retrain" before unpickling
is attempted (a renamed class would otherwise fail deep inside pickle). Bump FORMAT_VERSION
whenever a stored classifier's classes or attributes change incompatibly.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import pickle
from pathlib import Path

from posterdb import __version__
from posterdb.core.atomic import fsync_dir, write_atomic
from posterdb.core.errors import ClassifierFormatError, ClassifierIntegrityError

PICKLE_PROTOCOL = 5
FORMAT_VERSION = 3          # 1: a bare pickle without header (posterdb before issue 8); 2: the vote
                            # kept a numpy copy of the vectors (before issue 9: FAISS index)
MAGIC = b"POSTERDB-CLASSIFIER "
RETRAIN = "retrain it with `posterdb train`"


def _header() -> bytes:
    return MAGIC + json.dumps({"format": FORMAT_VERSION, "posterdb": __version__}).encode() + b"\n"


def read_header(data: bytes, path: Path | str = "classifier") -> dict:
    """The header of a classifier file's bytes; ClassifierFormatError when it is another format."""
    if not data.startswith(MAGIC):
        raise ClassifierFormatError(
            f"{path}: classifier written by an older posterdb (format 1, no header); "
            f"this posterdb reads format {FORMAT_VERSION}: {RETRAIN}")
    line = data[len(MAGIC):data.index(b"\n")] if b"\n" in data else b""
    try:
        header = json.loads(line)
    except ValueError as e:
        raise ClassifierFormatError(f"{path}: unreadable classifier header: {RETRAIN}") from e
    if header.get("format") != FORMAT_VERSION:
        raise ClassifierFormatError(
            f"{path}: classifier format {header.get('format')} (written by posterdb "
            f"{header.get('posterdb')}); this posterdb {__version__} reads format "
            f"{FORMAT_VERSION}: {RETRAIN}")
    return header


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_classifier(clf, path: str | Path) -> str:
    """Pickle `clf` to `path` atomically (temp file in the same folder, fsync, os.replace).
    Returns the sha256 (hex) of the bytes written: record it, loading needs it."""
    path = Path(path)
    data = _header() + pickle.dumps(clf, protocol=PICKLE_PROTOCOL)
    digest = sha256_bytes(data)
    write_atomic(path, data)
    fsync_dir(path.parent)  # make the rename durable too
    return digest


def load_classifier(path: str | Path, expected_sha256: str):
    """Unpickle the classifier at `path` only if its bytes hash to `expected_sha256`.
    Raises StoreError when the file is missing/unreadable, the hash is absent or differs."""
    path = Path(path)
    expected = (expected_sha256 or "").strip().lower()
    if len(expected) != 64 or any(c not in "0123456789abcdef" for c in expected):
        raise ClassifierIntegrityError(
            f"{path}: refusing to load a classifier without a valid recorded sha256")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ClassifierIntegrityError(
            f"{path}: cannot read the classifier file ({e.strerror or e})") from e
    actual = sha256_bytes(data)
    if not hmac.compare_digest(actual, expected):
        raise ClassifierIntegrityError(
            f"{path}: sha256 {actual} does not match the recorded {expected}; the file was "
            "modified or replaced - refusing to unpickle it (`posterdb prune` removes it, "
            "`posterdb train` makes a new one)")
    read_header(data, path)
    try:
        return pickle.loads(data[data.index(b"\n") + 1:])
    except Exception as e:  # hash and format matched but the content is not loadable
        raise ClassifierFormatError(
            f"{path}: classifier cannot be loaded by this posterdb {__version__} "
            f"({type(e).__name__}: {e}): {RETRAIN}") from e
