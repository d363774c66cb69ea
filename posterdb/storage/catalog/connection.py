"""Short-lived, lock-aware DuckDB connections, the schema check and the generation counter.

DuckDB allows one read-write process or many read-only ones, never both. So no connection is
held between operations: each `read()` / `write()` opens the file, does its work and closes it,
retrying with back-off while another process holds the lock. A long ingest therefore locks the
file only for the few milliseconds of each batch commit, and the page keeps answering.
"""
from __future__ import annotations

import os
import random
import stat
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb
import numpy as np

from posterdb.core.atomic import write_atomic
from posterdb.core.errors import SchemaVersionError, StoreBusyError, StoreError
from posterdb.core.faults import crash_point
from posterdb.storage.catalog.schema import MIGRATIONS, SCHEMA_VERSION

_LOCK_MARKERS = ("Could not set lock", "Conflicting lock", "database is locked")
_HINT_BYTES = 32   # the generation file holds one decimal number; anything longer is no hint
_process_lock = threading.RLock()  # one DuckDB handle at a time per process (read-only vs read-write)


class Connections:
    """A handle on `catalog.duckdb`; opens short-lived connections on demand."""

    def __init__(self, path: str | Path, *, busy_timeout: float = 60.0):
        self.path = Path(path)
        self.busy_timeout = busy_timeout
        self._local = threading.local()  # this thread's open session: (connection, read_only)

    @contextmanager
    def _connect(self, read_only: bool) -> Iterator[duckdb.DuckDBPyConnection]:
        """Open the file (retrying while another process holds the lock), or reuse the session
        this thread already has open: nested `read()`/`write()` calls share one connection."""
        session = getattr(self._local, "session", None)
        if session is not None:
            con, session_read_only = session
            if session_read_only and not read_only:
                raise StoreError("a write was asked for inside a read-only session")
            yield con
            return
        deadline = time.monotonic() + self.busy_timeout
        delay = 0.01
        with _process_lock:
            while True:
                try:
                    con = duckdb.connect(str(self.path), read_only=read_only)
                    break
                except duckdb.IOException as e:
                    if not any(m in str(e) for m in _LOCK_MARKERS):
                        raise StoreError(f"{self.path}: {e}") from e
                    if time.monotonic() > deadline:
                        raise StoreBusyError(
                            f"{self.path} stayed locked by another process for "
                            f"{self.busy_timeout:.0f} s") from e
                    time.sleep(delay * (0.5 + random.random()))
                    delay = min(delay * 2, 0.5)
            self._local.session = (con, read_only)
            try:
                yield con
            finally:
                self._local.session = None
                con.close()

    @contextmanager
    def read(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A read-only connection (many processes may hold one at once); nested calls share it."""
        if getattr(self._local, "session", None) is None and not self.path.exists():
            raise StoreError(f"no catalogue at {self.path}: ingest something first")
        with self._connect(read_only=True) as con:
            yield con

    @contextmanager
    def write(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A read-write connection inside one transaction, committed on success.

        Nested inside another `write()` on this thread it joins that transaction."""
        if getattr(self._local, "session", None) is not None:
            with self._connect(read_only=False) as con:
                yield con
            return
        with self._connect(read_only=False) as con:
            con.execute("BEGIN TRANSACTION")
            try:
                yield con
            except BaseException:
                con.execute("ROLLBACK")
                raise
            new = max(self.generation(con), self.generation_hint() or 0) + 1
            con.execute("UPDATE meta SET value = ? WHERE key = 'generation'", [str(new)])
            self._write_generation_file(new)  # before COMMIT: the file may run ahead, never behind
            crash_point("before_commit")
            con.execute("COMMIT")
            crash_point("after_commit")

    # -- schema -------------------------------------------------------------------------------

    def migrate(self) -> int:
        """Create the file if needed and apply pending numbered migrations; returns the version.
        Refuses a store written by a newer posterdb."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect(read_only=False) as con:
            con.execute("CREATE TABLE IF NOT EXISTS schema_migrations "
                        "(version INTEGER PRIMARY KEY, applied_at TIMESTAMP DEFAULT current_timestamp)")
            self._refuse_newer(self.schema_version(con))
            done = {r[0] for r in con.execute("SELECT version FROM schema_migrations").fetchall()}
            for m in MIGRATIONS:
                if m.version in done:
                    continue
                con.execute("BEGIN TRANSACTION")
                con.execute(m.sql)
                con.execute("INSERT INTO schema_migrations (version) VALUES (?)", [m.version])
                con.execute("COMMIT")
            if self.generation_hint() is None:  # stores made before the file existed
                self._write_generation_file(self.generation(con))
        return SCHEMA_VERSION

    def check_schema(self) -> int:
        """For readers: the store's schema version, or SchemaVersionError when it is not this
        code's (newer: upgrade posterdb; older: a writer must migrate it first)."""
        with self.read() as con:
            version = self.schema_version(con)
        self._refuse_newer(version)
        if version < SCHEMA_VERSION:
            raise SchemaVersionError(
                f"{self.path.parent} is at schema version {version}; this posterdb uses "
                f"{SCHEMA_VERSION}. Run `posterdb migrate --store {self.path.parent}` (or any "
                "writing command) to upgrade it")
        return version

    def _refuse_newer(self, version: int) -> None:
        if version > SCHEMA_VERSION:
            raise SchemaVersionError(
                f"{self.path.parent} was written by a newer posterdb (schema version {version}; "
                f"this posterdb knows up to {SCHEMA_VERSION}): upgrade posterdb to open it")

    @staticmethod
    def schema_version(con) -> int:
        try:
            return int(con.execute("SELECT coalesce(max(version), 0) FROM schema_migrations")
                       .fetchall()[0][0])
        except duckdb.CatalogException:
            return 0

    # -- generation ---------------------------------------------------------------------------

    @property
    def generation_file(self) -> Path:
        return self.path.with_name("generation")

    def generation_hint(self) -> int | None:
        """The generation from the small file beside the catalogue (no DuckDB open), if any.

        Untrusted: opened without following a symlink (nor blocking on a FIFO), read only if it
        is a regular file of a few bytes, at most `_HINT_BYTES` + 1 of them, and only plain ASCII
        digits count. Anything else (a link to /dev/zero, a device, a huge or garbled file, a
        directory) is no hint: None, and the catalogue's own counter decides."""
        flags = (os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
                 | getattr(os, "O_CLOEXEC", 0))
        try:
            fd = os.open(self.generation_file, flags)
        except (OSError, ValueError):
            return None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_size > _HINT_BYTES:
                return None
            raw = os.read(fd, _HINT_BYTES + 1)
        except OSError:
            return None
        finally:
            os.close(fd)
        text = raw.strip()
        if len(raw) > _HINT_BYTES or not text.isdigit() or len(text) > 18:
            return None
        return int(text)

    def _write_generation_file(self, generation: int) -> None:
        write_atomic(self.generation_file, str(generation).encode(), fsync=False)

    @staticmethod
    def generation(con) -> int:
        """A counter bumped by every committed write: readers use it to invalidate caches."""
        return int(con.execute("SELECT value FROM meta WHERE key = 'generation'").fetchall()[0][0])

    def current_generation(self) -> int:
        """The hint file when present, else DuckDB's counter."""
        hint = self.generation_hint()
        if hint is not None:
            return hint
        with self.read() as con:
            return self.generation(con)

    @staticmethod
    def allocate_ids(con, n: int) -> np.ndarray:
        """Reserve n new poster ids (never reused, even after removal) inside the transaction."""
        start = int(con.execute("SELECT value FROM meta WHERE key = 'next_poster_id'").fetchall()[0][0])
        con.execute("UPDATE meta SET value = ? WHERE key = 'next_poster_id'", [str(start + n)])
        return np.arange(start, start + n, dtype=np.int64)
