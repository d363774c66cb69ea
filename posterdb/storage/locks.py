"""Advisory file locks between posterdb processes: one writer at a time, index saves in order.

`StoreLock` is an exclusive `flock` on a small file in the store (`writer.lock`, or
`index/<model>.lock`). It is released by the kernel when its holder exits, killed or not, so a
crash never leaves a store locked. Inside one process it is re-entrant for the thread that holds
it and other threads wait, like other processes do. The holder writes one line into the file
(what, pid, since when), which a waiting process shows. A lock file that cannot be created (a
read-only store) raises `StoreReadOnlyError`, so every writer is refused in one line before it
changes anything.
"""
from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

from posterdb.core.atomic import write_error
from posterdb.core.errors import StoreBusyError, StoreReadOnlyError

try:  # POSIX; elsewhere the lock is a no-op (DuckDB's own file lock still serialises commits)
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None

_registry_guard = threading.Lock()
_held: dict[str, tuple[threading.RLock, list]] = {}   # path -> (thread lock, [fd, depth])


def _slot(path: Path) -> tuple[threading.RLock, list]:
    key = os.path.abspath(path)
    with _registry_guard:
        if key not in _held:
            _held[key] = (threading.RLock(), [None, 0])
        return _held[key]


def holder(path: Path) -> str:
    """Who holds (or last held) the lock, as the holder wrote it; '' when unknown."""
    try:
        info = json.loads(Path(path).read_text() or "{}")
    except (OSError, ValueError):
        return ""
    if not isinstance(info, dict) or "pid" not in info:
        return ""
    return f"{info.get('what', 'a writer')} (pid {info.get('pid')}, since {info.get('since', '?')})"


class StoreLock:
    """An exclusive inter-process lock on `path` (see the module docstring)."""

    def __init__(self, path: str | Path, *, label: str = "the store"):
        self.path = Path(path)
        self.label = label

    def _open(self) -> int:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            return os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            err = write_error(e, self.path) or e
            if isinstance(err, StoreReadOnlyError):
                err = StoreReadOnlyError(
                    f"{self.label} is read-only ({e.strerror or e}): posterdb can read it but "
                    "not change it; make it writable, or work on a copy", e.errno, str(self.path))
            raise err from None

    def probe(self) -> None:
        """Raise StoreReadOnlyError when the lock file cannot be opened for writing."""
        os.close(self._open())

    @contextmanager
    def hold(self, what: str, *, wait: float = 600.0,
             notify: Callable[[str], None] | None = None) -> Iterator[None]:
        """Hold the lock for `what` (e.g. "ingest"), waiting up to `wait` seconds for another
        holder (`notify` gets one line when the wait starts); StoreBusyError past that."""
        thread_lock, state = _slot(self.path)
        deadline = time.monotonic() + max(0.0, wait)
        told = False
        if not thread_lock.acquire(blocking=False):
            told = self._tell(notify, wait)
            if not thread_lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
                raise self._busy(wait)
        try:
            if state[1] == 0:
                fd = self._open()
                try:
                    self._lock(fd, deadline, wait, notify, told)
                except BaseException:
                    os.close(fd)
                    raise
                state[0] = fd
                self._stamp(fd, what)
            state[1] += 1
            try:
                yield
            finally:
                state[1] -= 1
                if state[1] == 0:
                    fd, state[0] = state[0], None
                    try:
                        fcntl.flock(fd, fcntl.LOCK_UN) if fcntl else None
                    finally:
                        os.close(fd)
        finally:
            thread_lock.release()

    def _lock(self, fd: int, deadline: float, wait: float, notify, told: bool) -> None:
        if fcntl is None:  # pragma: no cover
            return
        delay = 0.02
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                pass
            except OSError as e:  # a file system without flock: DuckDB's lock still holds
                if e.errno in (getattr(os, "ENOLCK", 37), 38, 95):  # ENOLCK, ENOSYS, EOPNOTSUPP
                    return
                raise
            if not told:
                told = self._tell(notify, wait)
            if time.monotonic() >= deadline:
                raise self._busy(wait)
            time.sleep(delay)
            delay = min(delay * 1.5, 0.25)

    def _tell(self, notify, wait: float) -> bool:
        if notify is not None and wait >= 1:   # a short wait is not worth a line
            who = holder(self.path) or "another posterdb process"
            notify(f"waiting for {who} to finish writing to {self.label} "
                   f"(up to {wait:g} s) ...")
        return True

    def _busy(self, wait: float) -> StoreBusyError:
        who = holder(self.path) or "another posterdb process"
        return StoreBusyError(f"{self.label} is being written by {who}; waited {wait:g} s. "
                              "Run this again when it has finished (one writer at a time)")

    @staticmethod
    def _stamp(fd: int, what: str) -> None:
        line = json.dumps({"what": what, "pid": os.getpid(),
                           "since": datetime.now().isoformat(timespec="seconds")}) + "\n"
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, line.encode(), 0)
        except OSError:  # only informational
            pass
