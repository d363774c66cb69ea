"""A memory window: a counting semaphore on bytes, shared by the threads that decode images.

Each decode holds its estimated decoded size (see `posterdb.media.images.decode_cost`) while
it decodes, so the decoded pixels in flight across threads never exceed `capacity`, however
many threads there are and whatever the files' sizes. A request larger than the whole window
is granted alone (when nothing else is held), so one huge image runs by itself, never
deadlocks. Grants are first come, first served: a big request is not starved by small ones.

Freed is not returned: glibc serves PIL's 16 MiB pixel blocks from per-thread arenas once a
first big block has been freed (its mmap threshold adapts upwards), and keeps what they free.
Decoding in 4 threads one after another then holds ~4 decodes' worth of resident memory (16
RGBA 6300² PNGs: 1,050 MiB peak vs 628 MiB in one thread). So releasing a grant of at least
`TRIM_ABOVE` bytes calls glibc's `malloc_trim(0)`, handing the freed pages back (628 MiB in 4
threads too); a no-op where there is no glibc.

The accounting (`in_use`, `peak`, `largest`, `waits`, `grants`, `trims`) is kept for tests and
benches.
"""
from __future__ import annotations

import ctypes
import threading
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import lru_cache

TRIM_ABOVE = 32 * 1024**2


@lru_cache(maxsize=1)
def _malloc_trim() -> Callable[[int], int] | None:
    try:
        fn = ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc (macOS, musl, Windows)
        return None
    fn.argtypes = [ctypes.c_size_t]
    fn.restype = ctypes.c_int
    return fn


def give_back_freed_memory() -> bool:
    """Return the pages malloc keeps after frees to the OS (glibc); False where unsupported."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True


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
        self.trims = 0           # big releases followed by malloc_trim

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
        if n >= TRIM_ABOVE and give_back_freed_memory():
            with self._cond:
                self.trims += 1

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
                    "largest": self.largest, "grants": self.grants, "waits": self.waits,
                    "trims": self.trims}
