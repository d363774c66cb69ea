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
"""
from __future__ import annotations

import fcntl
import hashlib
import os
import re
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from posterdb.core.atomic import write_atomic
from posterdb.core.errors import LabelsError, RefusedError
from posterdb.core.rules import MAX_TITLE_CHARS
from posterdb.core.text import readable_name, shown
from posterdb.media.images import SUPPORTED_SUFFIXES
from posterdb.media.labels import JSONL_SUFFIXES, YEAR_MAX, YEAR_MIN, read_labels

DONE, FAILED = "done", "failed"
LOCK_NAME = ".posterdb-watch.lock"
LABEL_SUFFIXES = frozenset({".csv", ".tsv", ".json"}) | JSONL_SUFFIXES
TEMP_SUFFIXES = (".part", ".partial", ".crdownload", ".download", ".tmp", ".temp", ".swp", "~")
ERROR_SUFFIX = ".error.txt"
NAME_MAX = 255          # bytes in one file name (Linux, macOS)
_TEMP_EXTRA = 14        # write_atomic's temp name: "." + name + "." + 8 random + ".tmp"
DEFAULT_SETTLE_S = 2.0
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


class Inbox:
    """Scan, settle, hint and file away the posters of one inbox folder."""

    def __init__(self, root: str | Path, settle: float = DEFAULT_SETTLE_S):
        self.root = Path(root).absolute()
        self.settle = float(settle)
        self._seen: dict[Path, _Seen] = {}
        self._lock_fd: int | None = None

    @property
    def done_dir(self) -> Path:
        return self.root / DONE

    @property
    def failed_dir(self) -> Path:
        return self.root / FAILED

    # -- one watcher per inbox -----------------------------------------------------------------
    def lock(self) -> None:
        """Take the inbox for this process (released on exit, even on kill -9)."""
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.root / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
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
    def _walk(self) -> Iterable[Path]:
        skip = {self.done_dir, self.failed_dir}
        for dirpath, dirnames, filenames in os.walk(self.root):
            here = Path(dirpath)
            dirnames[:] = sorted(d for d in dirnames
                                 if not d.startswith(".") and here / d not in skip)
            for name in sorted(filenames):
                if not is_temporary(name):
                    yield here / name

    def labels_files(self) -> list[Path]:
        return [p for p in self._walk() if p.suffix.lower() in LABEL_SUFFIXES]

    def pending(self) -> list[Path]:
        """Every file waiting in the inbox (complete or not), labels files excluded."""
        return [p for p in self._walk() if p.suffix.lower() not in LABEL_SUFFIXES]

    def ready(self, now: float | None = None) -> list[Path]:
        """Pending files that are complete: unchanged since the previous call and older than
        `settle` seconds (by mtime), or — seen for the first time — already older than that."""
        now = time.time() if now is None else now
        ready, seen = [], {}
        for p in self.pending():
            try:
                st = p.stat()
            except OSError:      # vanished or unreadable: readable ones are retried next scan
                continue
            cur = _Seen(st.st_size, st.st_mtime_ns)
            seen[p] = cur
            before = self._seen.get(p)
            if (before is None or before == cur) and now - st.st_mtime_ns / 1e9 >= self.settle:
                ready.append(p)
        self._seen = seen
        return ready

    def unchanged(self, path: Path) -> bool:
        """Is the file as the last `ready()` saw it? (A writer that paused past `settle` and went
        on must not have its file filed away half-written.)"""
        before = self._seen.get(path)
        try:
            st = path.stat()
        except OSError:
            return False
        return before is not None and before == _Seen(st.st_size, st.st_mtime_ns)

    @staticmethod
    def is_image(path: Path) -> bool:
        return path.suffix.lower() in SUPPORTED_SUFFIXES

    # -- what the dealer told us -----------------------------------------------------------------
    def hints(self, paths: Iterable[Path]) -> tuple[dict[Path, Hint], list[str]]:
        """Hint per path (labels files first, then the name) and warnings about labels files."""
        by_path: dict[Path, Hint] = {}
        warnings: list[str] = []
        for lf in self.labels_files():
            try:
                rows, problems = read_labels(lf, root=self.root)
            except LabelsError as e:
                warnings.append(str(e))
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
    def _target(self, base: Path, path: Path) -> Path:
        rel = Path(path).absolute().relative_to(self.root)
        dest = base / rel
        n = 2
        while os.path.lexists(dest) or os.path.lexists(_note(dest)):
            dest = base / rel.parent / _fit(f"{Path(rel.name).stem} ({n}){Path(rel.name).suffix}")
            n += 1
        return dest

    def mark_done(self, path: Path) -> Path:
        """Move a stored poster's file to done/ (call only after its commit)."""
        dest = self._target(self.done_dir, path)
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, dest)
        self._seen.pop(Path(path), None)
        return dest

    def mark_failed(self, path: Path, reason: str) -> Path:
        """Write the reason (atomically), then move the file to failed/ beside it."""
        dest = self._target(self.failed_dir, path)
        dest.parent.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
        note = _note(dest)     # the name and reason escaped: the note is read in a terminal
        write_atomic(note, f"{shown(Path(path).name)}: {shown(reason)}\n(posterdb watch, {stamp}; "
                     f"move the file back into the inbox to retry)\n".encode(), fsync=False)
        os.replace(path, dest)
        self._seen.pop(Path(path), None)
        return dest


def _fit(name: str, limit: int = NAME_MAX) -> str:
    """`name`, or (over `limit` bytes) its stem cut with a short hash of the whole name added,
    so that a name near NAME_MAX still gets its numbered twin and its error note."""
    raw = os.fsencode(name)
    if len(raw) <= limit:
        return name
    stem, suffix = os.path.splitext(name)
    suffix = suffix if len(os.fsencode(suffix)) <= 16 else ""
    tag = "~" + hashlib.sha1(raw).hexdigest()[:8]
    room = limit - len(os.fsencode(tag + suffix))
    return os.fsdecode(os.fsencode(stem)[:room]) + tag + suffix


def _note(dest: Path) -> Path:
    """The error note beside a failed file: NAME.error.txt (NAME cut to fit, see `_fit`)."""
    return dest.with_name(_fit(dest.name, NAME_MAX - _TEMP_EXTRA - len(ERROR_SUFFIX))
                          + ERROR_SUFFIX)


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
        except Exception:  # ImportError, inotify limits, odd file systems: polling still works
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
