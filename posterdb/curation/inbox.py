"""The inbox folder a dealer drops scans into, independent of the store.

What a dealer sees:

* drop images into ``INBOX/`` (sub-folders are fine);
* each one, once stored with its genres, moves to ``INBOX/done/<same relative path>``;
* one that cannot be stored moves to ``INBOX/failed/<same relative path>`` with the reason in
  ``<name>.error.txt`` beside it; to retry, move it back into ``INBOX/``;
* a labels file (CSV / JSON Lines, the format of ``posterdb ingest --labels``) left in the inbox
  gives titles, years (and genres, which then count as labels); without one, a name such as
  ``Title (1974).jpg`` or ``Title [1974].jpg`` gives title and year. Labels files stay put.

A file is taken only once it is complete: its size and mtime unchanged for `settle` seconds (a
copy still being written keeps changing), or it was renamed into the folder whole (an old mtime).
Temporary names (``.part``, ``.crdownload``, ``.tmp``, ``~``, dot-files) are ignored until renamed.
Moving is the caller's last step, after the poster is committed: a kill before the move leaves the
file in the inbox and the next run re-ingests it (ingest dedups by sha256), so nothing is lost or
stored twice.

Outsiders write to the inbox, so nothing in it is followed or trusted (docs/intake.md, "Inbox
safety"): the folder is opened once and every name below it is reached through that descriptor
without following links (posterdb.core.safefs). A symbolic link (to a file or a folder), a FIFO,
a socket, a device or a hard link dropped in the inbox is never read: it is moved, as it is, to
failed/ with the reason. The lock file, done/ and failed/ must be what they should be (a plain
file, real folders), or the watcher refuses with one line naming the path.
"""
from __future__ import annotations

import errno
import fcntl
import os
import re
import stat
import threading
import time
from collections.abc import Iterable
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from posterdb.core import safefs
from posterdb.core.errors import LabelsError, RefusedError, UsageError
from posterdb.core.rules import MAX_TITLE_CHARS
from posterdb.core.safefs import Unsafe
from posterdb.core.text import readable_name, shown
from posterdb.media.images import MAX_FILE_BYTES, SUPPORTED_SUFFIXES, sha256_bytes
from posterdb.media.labels import JSONL_SUFFIXES, YEAR_MAX, YEAR_MIN, read_labels

DONE, FAILED = "done", "failed"
LOCK_NAME = ".posterdb-watch.lock"
LABEL_SUFFIXES = frozenset({".csv", ".tsv", ".json"}) | JSONL_SUFFIXES
TEMP_SUFFIXES = (".part", ".partial", ".crdownload", ".download", ".tmp", ".temp", ".swp", "~")
ERROR_SUFFIX = ".error.txt"
NAME_MAX = 255          # bytes in one file name (Linux, macOS)
_TEMP_EXTRA = 14        # write_atomic's temp name: "." + name + "." + 8 random + ".tmp"
DEFAULT_SETTLE_S = 2.0
NAME_MAX = 255          # bytes in one file name (Linux, macOS)
_NAME_YEAR = re.compile(r"^(?P<title>.*?)[\s._-]*[(\[](?P<year>\d{4})[)\]]\s*$")


class InboxBusy(RefusedError):
    """Another watcher holds this inbox."""


@dataclass(frozen=True)
class Hint:
    """What the dealer told us about one file: from a labels file, else from its name."""

    title: str | None = None
    year: int | None = None
    genres: tuple[str, ...] = ()
    source: str = "none"            # "labels" (with the labels file name), "name" or "none"


def is_temporary(name: str) -> bool:
    """Names of files still being written or hidden: never taken."""
    low = name.lower()
    return name.startswith((".", "#")) or low.endswith(TEMP_SUFFIXES)


def hint_from_name(path: Path) -> Hint:
    """`Title (1974).jpg` / `Title [1974].jpg` / `Some_Title_(1974).png` -> title and year."""
    m = _NAME_YEAR.match(readable_name(Path(path).stem)[:MAX_TITLE_CHARS + 16])
    if not m:
        return Hint()
    year = int(m.group("year"))
    if not YEAR_MIN <= year <= YEAR_MAX:
        return Hint()
    title = m.group("title")
    if " " not in title:
        title = title.replace("_", " ")
    title = title.strip(" ._-")
    return Hint(title=title or None, year=year, source="name")


@dataclass(frozen=True)
class _Seen:
    size: int
    mtime_ns: int


@dataclass(frozen=True)
class Snapshot:
    """One inbox file as read through a no-follow descriptor: which file (device, inode,
    change time: a rename, a rewrite or a new link changes it), its size, mtime and the sha256
    of its bytes. Two equal snapshots: the same bytes under the same name, untouched between."""

    dev: int
    ino: int
    size: int
    mtime_ns: int
    ctime_ns: int
    sha256: str


class Inbox:
    """Scan, settle, hint and file away the posters of one inbox folder.

    The folder is opened once (a directory descriptor) and everything inside it is reached
    through that descriptor without following links (posterdb.core.safefs)."""

    def __init__(self, root: str | Path, settle: float = DEFAULT_SETTLE_S):
        self.root = Path(root).absolute()
        self.settle = float(settle)
        self._seen: dict[Path, _Seen] = {}
        self._lock_fd: int | None = None
        self._fd: int | None = None

    @property
    def fd(self) -> int:
        """The inbox folder's descriptor, opened on first use (UsageError: no such folder)."""
        if self._fd is None:
            try:
                self._fd = safefs.open_root(self.root)
            except FileNotFoundError:
                raise UsageError(f"{self.root}: no such inbox folder") from None
            except NotADirectoryError:
                raise UsageError(f"{self.root}: not a folder") from None
            except OSError as e:
                raise RefusedError(f"{self.root}: cannot open the inbox: {e.strerror or e}") from None
        return self._fd

    def close(self) -> None:
        self.unlock()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __del__(self):
        with suppress(OSError):
            self.close()

    def _rel(self, path: Path | str) -> str:
        return Path(path).absolute().relative_to(self.root).as_posix()

    # -- one watcher per inbox -----------------------------------------------------------------
    def check_controls(self) -> None:
        """Refuse (`Unsafe`, exit 3) a done/ or failed/ that is a link or not a folder: the
        watcher never writes through them."""
        for name in (DONE, FAILED):
            try:
                st = safefs.lstat(self.fd, name)
            except FileNotFoundError:
                continue
            if not stat.S_ISDIR(st.st_mode):
                raise Unsafe(self.root / name, f"{safefs.kind(st)}, not a folder: the watcher "
                             "will not write through it (remove it; it is made again as a folder)")

    def lock(self) -> None:
        """Take the inbox for this process (released on exit, even on kill -9). The lock file
        must be a plain file with one name (never a link, folder, FIFO or hard link: it is
        written to); done/ and failed/ are checked too."""
        self.check_controls()
        path = self.root / LOCK_NAME

        def refuse(st: os.stat_result) -> Unsafe:
            what = (f"a hard link ({st.st_nlink} names)" if stat.S_ISREG(st.st_mode)
                    else safefs.kind(st))
            return Unsafe(path, f"{what}, not the watcher's lock file: the watcher will not "
                          "write to it (remove it; a new one is made)")
        try:
            fd = os.open(LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK
                         | os.O_NOCTTY | os.O_CLOEXEC, 0o644, dir_fd=self.fd)
        except OSError as e:
            try:
                st = safefs.lstat(self.fd, LOCK_NAME)
            except OSError:
                raise RefusedError(f"{path}: cannot open the lock: {e.strerror or e}") from None
            raise refuse(st) from None
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
            os.close(fd)
            raise refuse(st)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise InboxBusy(f"{self.root}: another `posterdb watch` is working on this inbox") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._lock_fd = fd

    def unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    # -- what is there ---------------------------------------------------------------------------
    def _entries(self) -> list[tuple[Path, os.stat_result]]:
        """(path, lstat) of every entry to look at: not in done/ or failed/, no dot-folders, no
        temporary names; links, FIFOs and devices included (they are filed away, unread)."""
        def enter(rel: str) -> bool:
            return rel not in (DONE, FAILED) and not rel.rsplit("/", 1)[-1].startswith(".")
        return [(self.root / rel, st) for rel, st in safefs.walk(self.fd, enter=enter)
                if not is_temporary(rel.rsplit("/", 1)[-1])]

    @staticmethod
    def _is_labels(path: Path, st: os.stat_result) -> bool:
        """A labels file the watcher reads: the suffix and a plain file with one name (a labels
        name on a link, FIFO or hard link is filed away like any other unusable drop)."""
        return path.suffix.lower() in LABEL_SUFFIXES and safefs.not_regular(st) is None

    def labels_files(self) -> list[Path]:
        return [p for p, st in self._entries() if self._is_labels(p, st)]

    def pending(self) -> list[Path]:
        """Every entry waiting in the inbox (complete or not), labels files excluded."""
        return [p for p, st in self._entries() if not self._is_labels(p, st)]

    def ready(self, now: float | None = None) -> list[Path]:
        """Pending entries that are complete: unchanged since the previous call and older than
        `settle` seconds (by mtime), or — seen for the first time — already older than that."""
        now = time.time() if now is None else now
        ready, seen = [], {}
        for p, st in self._entries():
            if self._is_labels(p, st):
                continue
            cur = _Seen(st.st_size, st.st_mtime_ns)
            seen[p] = cur
            before = self._seen.get(p)
            if (before is None or before == cur) and now - st.st_mtime_ns / 1e9 >= self.settle:
                ready.append(p)
        self._seen = seen
        return ready

    def unchanged(self, path: Path) -> bool:
        """Is the entry as the last `ready()` saw it?"""
        before = self._seen.get(Path(path))
        try:
            st = safefs.lstat(self.fd, self._rel(path))
        except (OSError, Unsafe):
            return False
        return before is not None and before == _Seen(st.st_size, st.st_mtime_ns)

    def snapshot(self, path: Path) -> Snapshot:
        """Read the file through a no-follow descriptor: `Unsafe` (with the reason to file it
        away under) for a link, a FIFO, a device, a socket or a hard link; OSError if it is gone
        or unreadable."""
        data, st = safefs.read_file(self.fd, self._rel(path), max_bytes=MAX_FILE_BYTES + 1,
                                    shown=str(self.root))
        return Snapshot(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns,
                        sha256_bytes(data))

    @staticmethod
    def is_image(path: Path) -> bool:
        return path.suffix.lower() in SUPPORTED_SUFFIXES

    # -- what the dealer told us -----------------------------------------------------------------
    def _identity(self, path: Path) -> tuple | None:
        try:
            st = safefs.lstat(self.fd, self._rel(path))
        except (OSError, Unsafe):
            return None
        return None if safefs.not_regular(st) else (st.st_dev, st.st_ino, st.st_size,
                                                     st.st_mtime_ns, st.st_ctime_ns)

    def hints(self, paths: Iterable[Path]) -> tuple[dict[Path, Hint], list[str]]:
        """Hint per path (labels files first, then the name) and warnings about labels files.
        A labels file is used only if it is the same plain file (no link) before and after it
        is read; one swapped while read is skipped this time, its content unused."""
        by_path: dict[Path, Hint] = {}
        warnings: list[str] = []
        for lf in self.labels_files():
            before = self._identity(lf)
            try:
                rows, problems = read_labels(lf, root=self.root)
                error = None
            except LabelsError as e:
                rows, problems, error = [], [], str(e)
            if before is None or self._identity(lf) != before:
                warnings.append(f"{lf.name}: changed while read; not used this time")
                continue
            if error:
                warnings.append(error)
                continue
            for r in rows:
                by_path.setdefault(r.path, Hint(r.title, r.year, tuple(r.genres), f"labels:{lf.name}"))
            warnings += [f"{lf.name} row {p.row}: {p.reason}" for p in problems
                         if p.reason not in ("file not found",)]   # rows of files already filed away
        out = {}
        for p in paths:
            h = by_path.get(Path(os.path.realpath(p)))
            out[p] = h if h is not None else hint_from_name(p)
        return out, warnings

    # -- filing away -----------------------------------------------------------------------------
    def _target(self, base: int, rel: str, shown: str) -> str:
        """A free name for `rel` below the folder `base`: `a.jpg`, then `a (2).jpg`... (a name
        too long for the file system keeps its end and loses part of its stem)."""
        parent, _, name = rel.rpartition("/")
        stem, suffix = os.path.splitext(name)
        n = 1
        while True:
            tail = (f" ({n})" if n > 1 else "") + suffix
            room = len(os.fsencode(tail + ERROR_SUFFIX))
            raw = os.fsencode(stem)
            cand = (os.fsdecode(raw[:max(1, NAME_MAX - room)]) if len(raw) + room > NAME_MAX
                    else stem) + tail
            dest = f"{parent}/{cand}" if parent else cand
            if not (safefs.lexists(base, dest, shown=shown)
                    or safefs.lexists(base, dest + ERROR_SUFFIX, shown=shown)):
                return dest
            n += 1

    def _move(self, folder: str, path: Path, note: bytes | None) -> Path:
        """Move the entry `path` (as it is: a link stays a link) below done/ or failed/, with
        the same relative path; `note` is written to NAME.error.txt first. A control folder that
        is a link (or not a folder) raises `Unsafe`; a source that changed raises OSError."""
        rel = self._rel(path)
        shown = str(self.root / folder)
        with safefs.at(self.fd, folder, create=True, shown=str(self.root)) as base:
            dest = self._target(base, rel, shown)
            with safefs.at(base, dest.rpartition("/")[0], create=True, shown=shown):
                pass
            if note is not None:
                safefs.write_file(base, dest + ERROR_SUFFIX, note, shown=shown)
            try:
                with safefs.at(self.fd, rel.rpartition("/")[0]) as src:
                    safefs.rename(src, rel.rpartition("/")[2], base, dest, shown_dst=shown)
            except Unsafe as e:     # a folder of the inbox swapped for a link: leave it
                raise OSError(errno.ELOOP, e.reason) from None
        self._seen.pop(Path(path), None)
        return Path(shown) / dest

    def mark_done(self, path: Path) -> Path:
        """Move a stored poster's file to done/ (call only after its commit)."""
        return self._move(DONE, path, None)

    def mark_failed(self, path: Path, reason: str) -> Path:
        """Write the reason (atomically), then move the entry to failed/ beside it."""
        stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
        text = (f"{shown(Path(path).name)}: {shown(reason)}\n(posterdb watch, {stamp}; move the file back into "
                f"the inbox to retry)\n")
        return self._move(FAILED, path, text.encode("utf-8", "backslashreplace"))


class Waker:
    """Wakes the watch loop early when something changes in the inbox (watchdog, inotify);
    without watchdog, or if it cannot watch the folder, the loop just polls every interval."""

    def __init__(self, root: Path):
        self.event = threading.Event()
        self.mode = "polling"
        self._observer = None
        try:
            from watchdog.events import FileSystemEventHandler
            from watchdog.observers import Observer

            waker = self

            class _Handler(FileSystemEventHandler):
                def on_any_event(self, event):
                    if not event.is_directory or event.event_type != "opened":
                        waker.event.set()

            obs = Observer()
            obs.schedule(_Handler(), str(root), recursive=True)
            obs.daemon = True
            obs.start()
            self._observer, self.mode = obs, "watchdog"
        except Exception:  # noqa: BLE001 - ImportError, inotify limits, odd file systems: polling works
            self._observer = None

    def wait(self, timeout: float) -> bool:
        """Sleep up to `timeout` s; True when woken by a change."""
        woke = self.event.wait(timeout)
        self.event.clear()
        return woke

    def close(self) -> None:
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=2)
            self._observer = None
