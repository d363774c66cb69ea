"""A memory window: a counting semaphore on bytes, shared by the threads that decode images.

Each decode holds its estimated decoded size (see `posterdb.media.images.decode_cost`) while
it decodes, so the decoded pixels in flight across threads never exceed `capacity`, however
many threads there are and whatever the files' sizes. A request larger than the whole window
is granted alone (when nothing else is held), so one huge image runs by itself, never
deadlocks. Grants are first come, first served: a big request is not starved by small ones.

The accounting (`in_use`, `peak`, `largest`, `waits`, `grants`) is kept for tests and benches.
"""
from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager


class MemoryWindow:
    """At most `capacity` bytes held at once (or one request alone, if it is bigger)."""

    def __init__(self, capacity: int):
        if capacity < 1:
            raise ValueError(f"a memory window needs a positive capacity, not {capacity}")
        self.capacity = int(capacity)
        self._cond = threading.Condition()
        self._queue: deque[object] = deque()   # waiting tickets, first come first served
        self.in_use = 0          # bytes held now
        self.holders = 0         # grants not released yet
        self.peak = 0            # highest `in_use` seen
        self.largest = 0         # largest single grant
        self.grants = 0          # grants so far
        self.waits = 0           # grants that had to wait for others to release

    def _fits(self, n: int) -> bool:
        return self.holders == 0 or self.in_use + n <= self.capacity

    def acquire(self, n: int) -> int:
        """Block until `n` bytes fit in the window (or the window is empty); returns `n`."""
        n = max(0, int(n))
        ticket = object()
        with self._cond:
            self._queue.append(ticket)
            waited = False
            while self._queue[0] is not ticket or not self._fits(n):
                waited = True
                self._cond.wait()
            self._queue.popleft()
            self.in_use += n
            self.holders += 1
            self.grants += 1
            self.waits += waited
            self.peak = max(self.peak, self.in_use)
            self.largest = max(self.largest, n)
            self._cond.notify_all()      # the next ticket may fit too
        return n

    def release(self, n: int) -> None:
        with self._cond:
            if self.holders <= 0 or n > self.in_use:
                raise RuntimeError("memory window released more than was acquired")
            self.in_use -= n
            self.holders -= 1
            self._cond.notify_all()

    @contextmanager
    def hold(self, n: int) -> Iterator[int]:
        """`acquire(n)` for the duration of a with-block."""
        got = self.acquire(n)
        try:
            yield got
        finally:
            self.release(got)

    def stats(self) -> dict:
        with self._cond:
            return {"capacity": self.capacity, "in_use": self.in_use, "peak": self.peak,
                    "largest": self.largest, "grants": self.grants, "waits": self.waits}
