"""Work units of a classifier fit, reported as (stage, done, total) to an optional callback, so
that a caller (`posterdb train`) can draw a progress bar with an ETA without knowing the fit."""
from __future__ import annotations

from collections.abc import Callable

Callback = Callable[[str, int, int], None]


class FitProgress:
    """Counts units: `add(n)` when the plan grows, `step(stage)` when a unit is done. One head
    block genre, one vote search, one selection pass... are one unit each (rough, but it moves)."""

    def __init__(self, callback: Callback | None = None):
        self.callback, self.done, self.total = callback, 0, 0

    def add(self, units: int) -> None:
        self.total += int(units)

    def step(self, stage: str, units: int = 1) -> None:
        self.done = min(self.done + int(units), self.total)
        if self.callback is not None:
            self.callback(stage, self.done, self.total)


def as_progress(progress) -> FitProgress:
    """None, a callback or a FitProgress -> a FitProgress."""
    return progress if isinstance(progress, FitProgress) else FitProgress(progress)


def peak_rss_mib() -> float:
    """This process's peak resident memory so far (MiB; Linux reports ru_maxrss in KiB)."""
    import resource
    import sys

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024**2 if sys.platform == "darwin" else peak / 1024
