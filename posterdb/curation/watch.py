"""The watch loop: settled inbox files -> batches -> a processor (the store) -> done/ or failed/.

The loop knows nothing of the store: `process(batch)` ingests and classifies a batch (one
commit or more, with ingest's own crash safety) and returns one Outcome per file. Only after it
returns — the posters are committed — are the files moved, so a kill -9 at any moment leaves
unmoved files in the inbox and the next run re-ingests them (dedup by sha256: nothing twice).
After the move, `after_commit(outcomes)` (optional) reads and identifies the batch's posters
(posterdb.curation.daily): a slow or unreachable catalogue delays only that, never the filing,
and what it leaves undone is picked up later. While the inbox is empty, `idle()` (optional)
does one slice of older work and says whether there may be more.
Crash points for tests (POSTERDB_CRASH_AT, see posterdb.faults): `inbox_before_move` (a batch
committed, no file moved) and `inbox_moved` (after each move).
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
from posterdb.curation.inbox import Hint, Inbox, Waker

DEFAULT_BATCH = 64
DEFAULT_INTERVAL_S = 5.0


@dataclass
class Outcome:
    """What became of one inbox file. `stored`: its poster is committed (new or already there)."""

    path: Path
    stored: bool
    poster_id: int | None = None
    new: bool = False
    reason: str | None = None
    published: tuple[str, ...] = ()
    suggested: tuple[str, ...] = ()


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
                   else "") + f"; {self.seconds:.1f} s")


class Watcher:
    """Feed settled inbox files to `process` in batches and file them away afterwards."""

    def __init__(self, inbox: Inbox, process: Process, *, batch_size: int = DEFAULT_BATCH,
                 interval: float = DEFAULT_INTERVAL_S,
                 after_batch: Callable[[BatchReport], None] | None = None,
                 after_commit: Callable[[list[Outcome]], dict | None] | None = None,
                 idle: Callable[[], bool] | None = None):
        if batch_size < 1:
            raise ValueError("batch size must be at least 1")
        self.inbox = inbox
        self.process = process
        self.batch_size = batch_size
        self.interval = max(0.05, float(interval))
        self.after_batch = after_batch
        self.after_commit = after_commit
        self.idle = idle
        self.batches = 0
        self.stop = threading.Event()

    def _batch(self, files: list[Path]) -> BatchReport:
        t0 = time.perf_counter()
        self.batches += 1
        rep = BatchReport(self.batches, datetime.now(timezone.utc).isoformat(timespec="seconds"),
                          files=len(files))
        hints, rep.warnings = self.inbox.hints(files)
        try:
            outcomes = {o.path: o for o in self.process([(f, hints[f]) for f in files])}
        except Exception as e:  # noqa: BLE001 - a busy or full store must not end the watcher
            rep.error = f"{type(e).__name__}: {e}"
            rep.seconds = time.perf_counter() - t0
            if self.after_batch is not None:
                self.after_batch(rep)
            return rep
        crash_point("inbox_before_move")          # crash tests: committed, nothing moved yet
        for f in files:       # committed: now (and only now) file them away
            o = outcomes.get(f) or Outcome(f, False, reason="not processed")
            try:
                self._file_away(f, o, rep)
                crash_point("inbox_moved")        # crash tests: some files of the batch moved
            except OSError as e:  # cannot move it (permissions, disk): say so, leave it there
                rep.warnings.append(f"{f}: cannot move it out of the inbox: {e.strerror or e}")
        if self.after_commit is not None:   # read + identify: after the commit and the move
            try:
                rep.identify = self.after_commit([o for o in outcomes.values() if o.stored])
            except Exception as e:  # noqa: BLE001 - the posters are stored; the next pass retries
                rep.warnings.append(f"reading/identifying left for the next pass: "
                                    f"{type(e).__name__}: {e}")
        rep.seconds = time.perf_counter() - t0
        if self.after_batch is not None:
            self.after_batch(rep)
        return rep

    def _idle(self) -> bool:
        """One slice of older work while the inbox is empty; True when there may be more."""
        if self.idle is None or self.stop.is_set() or self.inbox.pending():
            return False
        try:
            return bool(self.idle())
        except Exception:  # noqa: BLE001 - older work never ends the watcher
            return False

    def _file_away(self, f: Path, o: Outcome, rep: BatchReport) -> None:
        if o.stored:
            self.inbox.mark_done(f)
            rep.added += o.new
            rep.already += not o.new
            rep.published += bool(o.published)
            rep.review += bool(o.suggested) and not o.published
        elif not self.inbox.unchanged(f):   # still being written: try again when settled
            rep.retried += 1
        else:
            self.inbox.mark_failed(f, o.reason or "failed")
            rep.failed += 1
            rep.failures.append({"path": str(f), "reason": o.reason})

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
