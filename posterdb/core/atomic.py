"""Atomic file replacement, written once: a kill at any moment leaves the old file or the new
one, never half of either (temp file beside the target, optional fsync, one `os.replace`).

Temp files are named `.<name>.<random>.tmp` in the target's folder, so a crash leaves only
dot-files that nothing reads (`ImageStore` sweeps its own; the TMDb fetch sweeps `.part` ones).
"""
from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from posterdb.core.errors import StoreFullError, StoreReadOnlyError, StoreWriteError

READ_ONLY_ERRNOS = frozenset({errno.EROFS, errno.EACCES, errno.EPERM})
FULL_ERRNOS = frozenset({errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC), errno.EFBIG})


def write_error(e: OSError, path: str | Path) -> StoreWriteError | None:
    """The one-line error for an OSError met while writing `path`: read-only (EROFS, EACCES,
    EPERM) or full (ENOSPC, EDQUOT, EFBIG); None for any other OSError (raise it as it is)."""
    if isinstance(e, StoreWriteError):
        return e
    reason = e.strerror or str(e)
    if e.errno in READ_ONLY_ERRNOS:
        return StoreReadOnlyError(
            f"cannot write {path}: {reason} (read-only file system or no write permission); "
            "posterdb reads such a folder but cannot change it: make it writable, or work on a "
            "copy", e.errno, str(path))
    if e.errno in FULL_ERRNOS:
        return StoreFullError(f"cannot write {path}: {reason} (the disk is full); free some "
                              "space and run the command again", e.errno, str(path))
    return None


@contextmanager
def replacing(path: str | Path, *, fsync: bool = True, mode: int | None = 0o644,
              suffix: str = ".tmp") -> Iterator[IO[bytes]]:
    """Yield a binary file to write `path`'s new content into. On a clean exit it is flushed,
    fsynced (unless `fsync=False`) and renamed over `path`; on an exception it is removed and
    `path` is untouched. `mode`: permissions of the new file (mkstemp's 0600 otherwise);
    `suffix`: of the temp name, for callers that sweep their own leftovers.
    Read-only and full-disk errors come out as `StoreReadOnlyError` / `StoreFullError` (one
    line, exit 3; still OSErrors), naming `path`."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    except OSError as e:
        raise (write_error(e, path) or e) from None
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            if fsync:
                os.fsync(f.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except OSError as e:
        translated = write_error(e, path)
        if translated is None or translated is e:
            raise
        raise translated from e
    finally:
        try:
            os.unlink(tmp)
        except OSError:
            pass


def write_atomic(path: str | Path, data: bytes, *, fsync: bool = True, suffix: str = ".tmp") -> None:
    """Replace `path` with `data` in one rename."""
    with replacing(path, fsync=fsync, suffix=suffix) as f:
        f.write(data)


def fsync_dir(folder: str | Path) -> None:
    """Make a rename in `folder` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
