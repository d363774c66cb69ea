"""What a DuckDB (or OS) error on the catalogue file means, as one posterdb error.

    damaged pages, header or WAL, a truncated file, a folder in its place → CatalogDamagedError
    a read-only file system or no write permission                       → StoreReadOnlyError
    a full disk                                                          → StoreFullError
    DuckDB's internal / fatal errors                                     → StoreError
All are exit 3 with one line that names the file and what to do. Anything else (a bug in a
query, a constraint) is left as it is.
"""
from __future__ import annotations

import errno
from pathlib import Path

import duckdb

from posterdb.core.atomic import write_error
from posterdb.core.errors import CatalogDamagedError, StoreError, StoreReadOnlyError

DAMAGE_MARKERS = (
    "corrupt database file", "not a valid duckdb database file", "could not read enough bytes",
    "could not read from file", "checksum", "failure while replaying wal", "is a directory",
    "serialization error", "deserializ", "invalid block", "not a regular file", "database has been invalidated", "unexpected end of file",
)
READ_ONLY_MARKERS = ("read-only file system", "permission denied", "operation not permitted")
FULL_MARKERS = ("no space left on device", "disk quota exceeded", "file too large")


def _detail(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return text if len(text) <= 200 else text[:197] + "..."


def damaged(path: Path, e: BaseException) -> CatalogDamagedError:
    return CatalogDamagedError(
        f"{path}: the catalogue file is damaged ({_detail(e)}); posterdb will not read or "
        f"change it. Restore {path.name} from a backup (the image copies under "
        f"{path.parent / 'images'} are separate files), then run `posterdb check --deep "
        f"--store {path.parent}`")


def first_cause(e: BaseException) -> BaseException:
    """The error that aborted a transaction, not the "transaction is aborted" that a cleanup
    step (a `finally` unregistering a table) raised on top of it."""
    seen = set()
    while ("transaction is aborted" in str(e).lower() and e.__context__ is not None
           and id(e) not in seen):
        seen.add(id(e))
        e = e.__context__
    return e


def translate(e: BaseException, path: Path, *, passthrough: bool = False,
              writing: bool = True) -> BaseException:
    """The posterdb error for `e` met on the catalogue at `path`; with `passthrough`, an error
    of no known kind comes back unchanged (the caller re-raises it), else as a StoreError.
    `writing`: whether the connection was opened to write (a denied read is not read-only)."""
    path = Path(path)
    cause = first_cause(e)
    if cause is not e and isinstance(cause, (duckdb.Error, OSError)):
        mapped = translate(cause, path, passthrough=True, writing=writing)
        if mapped is not cause:
            return mapped
    text = str(e).lower()
    if isinstance(e, OSError):
        if e.errno in (errno.EISDIR, errno.ENOTDIR) or "not a regular file" in text:
            return damaged(path, OSError(e.errno, f"{path} is not a file"))
        return write_error(e, path) or StoreError(f"{path}: {_detail(e)}")
    if found := next((m for m in READ_ONLY_MARKERS if m in text), None):
        if not writing:
            return StoreError(f"cannot read {path}: {_detail(e)}")
        return StoreReadOnlyError(
            f"{path.parent} is read-only ({found.capitalize()}): posterdb can read it but not "
            "change it; make it writable, or work on a copy", errno.EROFS, str(path))
    if found := next((m for m in FULL_MARKERS if m in text), None):
        return write_error(OSError(errno.ENOSPC, found.capitalize()), path)
    if any(m in text for m in DAMAGE_MARKERS):
        return damaged(path, e)
    if isinstance(e, (duckdb.InternalException, duckdb.FatalException)):
        return StoreError(f"{path}: DuckDB failed ({_detail(e)}); the catalogue may be damaged: "
                          f"run `posterdb check --deep --store {path.parent}`")
    if passthrough:
        return e
    return StoreError(f"{path}: {_detail(e)}")
