"""The watch loop: settled inbox files -> batches -> a processor (the store) -> done/ or failed/.

The loop knows nothing of the store: `process(batch)` ingests and classifies a batch (one
commit or more, with ingest's own crash safety) and returns one Outcome per file. Only after it
returns — the posters are committed — are the files moved, so a kill -9 at any moment leaves
unmoved files in the inbox and the next run re-ingests them (dedup by sha256: nothing twice).
After the move, `after_commit(outcomes)` (optional) reads and identifies the batch's posters
(posterdb.reading.daily): a slow or unreachable catalogue delays only that, never the filing,
and what it leaves undone is picked up later. While the inbox is empty, `idle()` (optional)
does one slice of older work and says whether there may be more.
Crash points for tests (POSTERDB_CRASH_AT, see posterdb.faults): `inbox_before_move` (a batch
committed, no file moved) and `inbox_moved` (after each move).

Each file is read once through a no-follow descriptor before its batch (`Inbox.snapshot`: which
file, its sha256) and again when it is filed away. It moves to done/ only if it is still that
same file and its bytes are the ones committed (`Outcome.sha256`, when the processor gives it);
a file overwritten, renamed over or swapped for a link while its batch ran stays in the inbox for
the next pass and is counted as changed (`retried`). Links, FIFOs, devices and hard links are
filed away as failed without being handed to the processor. A done/ or failed/ that turns out
to be a link stops the watcher with `Unsafe` (the batch's report says so in `stopped`).
"""
from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from posterdb.core.faults import crash_point
from posterdb.core.safefs import Unsafe
from posterdb.curation.inbox import Hint, Inbox, Snapshot, Waker

DEFAULT_BATCH = 64
DEFAULT_INTERVAL_S = 5.0


@dataclass
class Outcome:
    """What became of one inbox file. `stored`: its poster is committed (new or already there);
    `sha256`: of the bytes committed for it, when the processor knows (checked before filing)."""

    path: Path
    stored: bool
    poster_id: int | None = None
    new: bool = False
    reason: str | None = None
    published: tuple[str, ...] = ()
    suggested: tuple[str, ...] = ()
    sha256: str | None = None
    created: tuple[tuple[int, str], ...] = ()   # (id, sha256) of every poster the batch made
                                                # from this file's name, when the processor knows


Process = Callable[[list[tuple[Path, Hint]]], list[Outcome]]


@dataclass
class BatchReport:
    """One batch, as logged (one line) and returned by --json."""

    batch: int
    at: str
    files: int = 0
    added: int = 0
    already: int = 0
    failed: int = 0
    retried: int = 0
    published: int = 0
    review: int = 0
    seconds: float = 0.0
    error: str | None = None        # the batch could not be stored at all (files left in place)
    stopped: str | None = None      # a control path (done/, failed/) is unsafe: the watcher stops
    failures: list[dict] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    identify: dict | None = None    # what after_commit did (read / identified / left pending)

    def line(self) -> str:
        if self.error:
            return (f"{self.at} batch {self.batch}: {self.files} file(s) left in the inbox, "
                    f"to retry: {self.error}")
        return (f"{self.at} batch {self.batch}: {self.files} file(s) -> {self.added} added, "
                f"{self.already} already stored, {self.failed} failed"
                + (f", {self.retried} changed while read (retried)" if self.retried else "")
                + f"; {self.published} with published genres, {self.review} for review"
                + (f"; {self.identify['line']}" if self.identify and self.identify.get("line")
                   else "")
                + f"; {self.seconds:.1f} s" + (f"; stopped: {self.stopped}" if self.stopped else ""))


class Watcher:
    """Feed settled inbox files to `process` in batches and file them away afterwards."""

    def __init__(self, inbox: Inbox, process: Process, *, batch_size: int = DEFAULT_BATCH,
                 interval: float = DEFAULT_INTERVAL_S,
                 after_batch: Callable[[BatchReport], None] | None = None,
                 discard: Callable[[list[int]], None] | None = None,
                 after_commit: Callable[[list[Outcome]], dict | None] | None = None,
                 idle: Callable[[], bool] | None = None):
        """`discard(ids)`: take back posters the batch made from bytes that no file of the
        inbox held as a plain file (`Outcome.created`: a link swapped in while read).
        `after_commit` / `idle`: reading and identification (see the module docstring)."""
        if batch_size < 1:
            raise ValueError("batch size must be at least 1")
        self.inbox = inbox
        self.process = process
        self.batch_size = batch_size
        self.interval = max(0.05, float(interval))
        self.after_batch = after_batch
        self.discard = discard
        self.after_commit = after_commit
        self.idle = idle
        self.batches = 0
        self.stop = threading.Event()

    def _batch(self, files: list[Path]) -> BatchReport:
        t0 = time.perf_counter()
        self.batches += 1
        rep = BatchReport(self.batches, datetime.now(timezone.utc).isoformat(timespec="seconds"),
                          files=len(files))
        try:
            todo, snaps = self._read(files, rep)
            if todo:
                self._process(todo, snaps, rep)
        except Unsafe as e:      # done/ or failed/ is a link (or not a folder): stop, say so
            rep.stopped = str(e)
            raise
        finally:
            rep.seconds = time.perf_counter() - t0
            if self.after_batch is not None:
                self.after_batch(rep)
        return rep

    def _read(self, files: list[Path], rep: BatchReport) -> tuple[list[Path], dict[Path, Snapshot]]:
        """Snapshot each file (no-follow); links, FIFOs, devices, hard links and unreadable
        files are filed away as failed here, never handed to the processor."""
        todo, snaps = [], {}
        for f in files:
            try:
                snaps[f] = self.inbox.snapshot(f)
                todo.append(f)
                continue
            except Unsafe as e:
                reason = e.reason
            except FileNotFoundError:      # gone (moved away by its owner): nothing to do
                rep.files -= 1
                continue
            except PermissionError:
                reason = "permission denied"
            except OSError as e:           # e.g. a folder of the path swapped: next pass
                rep.files -= 1
                rep.warnings.append(f"{f}: cannot read it now: {e.strerror or e}")
                continue
            self._fail(f, reason, rep)
        return todo, snaps

    def _fail(self, f: Path, reason: str, rep: BatchReport) -> None:
        try:
            self.inbox.mark_failed(f, reason)
        except OSError as e:   # cannot move it (permissions, disk): say so, leave it there
            rep.warnings.append(f"{f}: cannot move it out of the inbox: {e.strerror or e}")
            return
        rep.failed += 1
        rep.failures.append({"path": str(f), "reason": reason})

    def _process(self, files: list[Path], snaps: dict[Path, Snapshot], rep: BatchReport) -> None:
        hints, warnings = self.inbox.hints(files)
        rep.warnings += warnings
        try:
            outcomes = {o.path: o for o in self.process([(f, hints[f]) for f in files])}
        except Exception as e:  # noqa: BLE001 - a busy or full store must not end the watcher
            odd = [f for f in files if not _utf8(f)]
            if not odd:
                rep.error = f"{type(e).__name__}: {e}"
                return
            # a name that is not UTF-8 must not hold up the whole inbox: fail those, try the rest
            for f in odd:
                self._fail(f, f"its name is not valid UTF-8 and the store could not take it "
                              f"({type(e).__name__}); rename it, then move it back", rep)
            rest = [f for f in files if f not in odd]
            if rest:
                self._process(rest, snaps, rep)
            return
        crash_point("inbox_before_move")          # crash tests: committed, nothing moved yet
        vouched: set[int] = set()     # posters whose bytes a file of the batch held, unlinked
        suspects: dict[int, Path] = {}
        for f in files:       # committed: now (and only now) file them away
            o = outcomes.get(f) or Outcome(f, False, reason="not processed")
            try:
                now = self.inbox.snapshot(f)
            except (Unsafe, OSError):
                now = None
            held = {snaps[f].sha256} | ({now.sha256} if now else set())
            if o.stored and (o.sha256 is None or o.sha256 in held):
                vouched.add(o.poster_id)
            made = o.created or (((o.poster_id, o.sha256),) if o.stored and o.new and o.sha256
                                 else ())
            suspects.update((pid, f) for pid, sha in made if sha not in held)
            try:
                self._file_away(f, o, snaps[f], now, rep)
                crash_point("inbox_moved")        # crash tests: some files of the batch moved
            except OSError as e:  # cannot move it (permissions, disk): say so, leave it there
                rep.warnings.append(f"{f}: cannot move it out of the inbox: {e.strerror or e}")
        take_back = {pid: f for pid, f in suspects.items() if pid not in vouched}
        if take_back and self.discard is not None:
            # a link (or other bytes) swapped in just before the store read the file: the new
            # poster holds bytes no file of the inbox held as a plain file, so it goes again
            self.discard(sorted(take_back))
            rep.warnings += [f"{f}: the store read other bytes than the file held (swapped "
                             f"while read); poster {pid} removed again"
                             for pid, f in take_back.items()]
        if self.after_commit is not None:   # read + identify: after the commit and the move
            kept = [o for o in outcomes.values() if o.stored and o.poster_id not in take_back]
            try:
                rep.identify = self.after_commit(kept)
            except Exception as e:  # noqa: BLE001 - the posters are stored; the next pass retries
                rep.warnings.append(f"reading/identifying left for the next pass: "
                                    f"{type(e).__name__}: {e}")

    def _idle(self) -> bool:
        """One slice of older work while the inbox is empty; True when there may be more."""
        if self.idle is None or self.stop.is_set() or self.inbox.pending():
            return False
        try:
            return bool(self.idle())
        except Exception:  # noqa: BLE001 - older work never ends the watcher
            return False

    def _file_away(self, f: Path, o: Outcome, before: Snapshot, now: Snapshot | None,
                   rep: BatchReport) -> None:
        if now != before or (o.stored and o.sha256 not in (None, now.sha256)):
            # overwritten, renamed over, swapped for a link or still being written: whatever
            # was committed is not this file's bytes; it stays for the next pass
            rep.retried += 1
            rep.warnings.append(f"{f}: changed while its batch ran; left in the inbox for the "
                                "next pass")
        elif o.stored:
            self.inbox.mark_done(f)
            rep.added += o.new
            rep.already += not o.new
            rep.published += bool(o.published)
            rep.review += bool(o.suggested) and not o.published
        else:
            self._fail(f, o.reason or "failed", rep)

    def drain(self) -> list[BatchReport]:
        """Process every file that is ready now, batch by batch."""
        out: list[BatchReport] = []
        seen: set[Path] = set()    # a file that could not be moved is not taken twice per drain
        while not self.stop.is_set():
            ready = [p for p in self.inbox.ready() if p not in seen]
            seen.update(ready)
            if not ready:
                break
            for i in range(0, len(ready), self.batch_size):
                out.append(self._batch(ready[i:i + self.batch_size]))
                if out[-1].error:    # the store cannot take batches now: try again later
                    return out
                if self.stop.is_set():
                    break
        return out

    def run_once(self, max_wait: float | None = None) -> list[BatchReport]:
        """Process what is in the inbox, waiting (up to `max_wait`, default 10 × settle, at least
        30 s) for files still being written to settle, then return (for cron)."""
        max_wait = max(30.0, 10 * self.inbox.settle) if max_wait is None else max_wait
        deadline = time.monotonic() + max_wait
        out = self.drain()
        while (self.inbox.pending() and time.monotonic() < deadline and not self.stop.is_set()
               and not any(r.error for r in out)):      # a store that fails: stop, say so
            time.sleep(min(0.5, max(0.05, self.inbox.settle / 4)))
            out += self.drain()
        return out

    def run(self) -> int:
        """Until stopped (SIGINT / SIGTERM or `stop.set()`): drain, then sleep until a change in
        the inbox (watchdog) or `interval` s. Returns the number of batches."""
        waker = Waker(self.inbox.root)
        try:
            while not self.stop.is_set():
                self.drain()
                if self.stop.is_set():
                    break
                if self._idle():       # did older work: look at the inbox again at once
                    continue
                # files still settling: look again soon; otherwise wait for a change or the interval
                wait = min(self.interval, max(0.2, self.inbox.settle / 2)) if self.inbox.pending() else self.interval
                if waker.wait(wait) and not self.stop.is_set():
                    self.stop.wait(min(0.2, self.inbox.settle))   # let a burst of events pass
        finally:
            waker.close()
        return self.batches

    def stop_on_signals(self) -> None:
        """SIGTERM / SIGINT finish the batch in hand, then stop (main thread only)."""
        def handler(signum, frame):
            self.stop.set()
        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)


def _utf8(path: Path) -> bool:
    try:
        str(path).encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False
