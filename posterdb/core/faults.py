"""Fault injection for crash tests: `crash_point(name)` SIGKILLs this process on demand.

Set ``POSTERDB_CRASH_AT=name`` (die on the first hit of that point) or ``name:N`` (die on the
N-th hit, counted per process). Unset, a call costs one dictionary lookup. Points in the code:

    before_commit / after_commit        Catalog.write(), around DuckDB's COMMIT
    index_tmp_written / index_renamed   VectorIndex.save(), before the rename / before the sidecar
    image_tmp_written                   ingest's image copy, temp file written, not yet renamed
"""
from __future__ import annotations

import os
import signal
import threading

from posterdb.core.settings import ENV_CRASH_AT, crash_point_spec

ENV = ENV_CRASH_AT   # the variable the crash tests set

_hits: dict[str, int] = {}
_lock = threading.Lock()


def _target() -> tuple[str, int] | None:
    spec = crash_point_spec()
    if not spec:
        return None
    name, _, nth = spec.partition(":")
    try:
        n = int(nth) if nth else 1
    except ValueError:
        n = 1
    return name, max(1, n)


def crash_point(name: str) -> None:
    """SIGKILL the current process if $POSTERDB_CRASH_AT names this point (and hit count)."""
    target = _target()
    if target is None or target[0] != name:
        return
    with _lock:
        _hits[name] = _hits.get(name, 0) + 1
        hit = _hits[name]
    if hit == target[1]:
        os.kill(os.getpid(), signal.SIGKILL)
