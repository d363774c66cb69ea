"""Stages 2 and 3, decode and embed: the pluggable engine.

An engine turns the plan's sources into a stream of items, in any order:

    Failed(path, reason)                 the file could not be read or decoded
    Known(path, row, sha256)             bytes already stored with a vector (nothing to do)
    Embedded(items, vectors)             a batch: Item(path, row, poster) + (n, dim) vectors

`LocalEngine` hashes, decodes and preprocesses in worker threads and embeds batches in the
caller's thread. Another engine (e.g. a Ray Data pipeline decoding and embedding elsewhere)
only has to yield the same three kinds; plan, commit and the post-commit steps are shared.
An `Item.poster` needs `sha256, path, width, height, format, suffix, data` (the bytes, for the
content-addressed copy).
"""
from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from posterdb.core.errors import ImageError
from posterdb.embedders.base import Embedder
from posterdb.ingest.plan import IngestPlan, Source
from posterdb.media.images import PosterImage, decode, read_bytes, sha256_bytes
from posterdb.media.labels import LabelRow


@dataclass
class Failed:
    path: Path
    reason: str


@dataclass
class Known:
    path: Path
    row: LabelRow | None
    sha256: str
    duplicate: bool = False   # True: seen earlier in this run (not stored before it)


@dataclass
class Item:
    path: Path
    row: LabelRow | None
    poster: PosterImage


@dataclass
class Embedded:
    items: list[Item]
    vectors: np.ndarray


class Engine(Protocol):
    def run(self, plan: IngestPlan, progress: Callable[[int, int], None] | None = None
            ) -> Iterator[Failed | Known | Embedded]: ...


@dataclass
class _Decoded:
    item: Item
    array: np.ndarray


def load_one(source: Source, skip: frozenset[str], preprocess) -> _Decoded | Known | Failed:
    """Hash first (skip stored bytes), then decode and preprocess; never raises."""
    path, row = source
    try:
        data = read_bytes(path)
        sha = sha256_bytes(data)
        if sha in skip:
            return Known(path, row, sha)
        poster = decode(data, str(path))
        return _Decoded(Item(path, row, poster), preprocess(poster.image))
    except ImageError as e:
        return Failed(path, e.reason)
    except Exception as e:  # never let one file stop the run
        return Failed(path, f"{type(e).__name__}: {e}")


def _ordered(pool: ThreadPoolExecutor, fn, items: list, window: int) -> Iterator:
    """pool.map with a bounded number of results in flight (bounded memory)."""
    pending: deque[Future] = deque()
    it = iter(items)
    for item in it:
        pending.append(pool.submit(fn, item))
        if len(pending) >= window:
            break
    while pending:
        fut = pending.popleft()
        nxt = next(it, None)
        if nxt is not None:
            pending.append(pool.submit(fn, nxt))
        yield fut.result()


class LocalEngine:
    """Decode threads + batched embedding in this process. Bytes seen twice in one run (two
    names) are embedded once: the second comes back as `Known`."""

    def __init__(self, embedder: Embedder, *, batch_size: int | None = None,
                 workers: int | None = None):
        self.embedder = embedder
        self.batch_size = batch_size or embedder.batch_size
        self.workers = workers or min(4, (os.cpu_count() or 2) + 1)

    def run(self, plan: IngestPlan, progress=None) -> Iterator[Failed | Known | Embedded]:
        batch: list[_Decoded] = []
        seen: set[str] = set()
        load = lambda s: load_one(s, plan.done_shas, self.embedder.preprocess)  # noqa: E731
        window = max(4 * self.batch_size, 64)
        with ThreadPoolExecutor(self.workers, thread_name_prefix="posterdb-decode") as pool:
            for done, got in enumerate(_ordered(pool, load, plan.sources, window), start=1):
                if isinstance(got, _Decoded) and got.item.poster.sha256 in seen:
                    got = Known(got.item.path, got.item.row, got.item.poster.sha256, True)
                if isinstance(got, _Decoded):
                    seen.add(got.item.poster.sha256)
                    batch.append(got)
                else:
                    yield got
                if len(batch) >= self.batch_size:
                    yield self._embed(batch)
                    batch = []
                if progress:
                    progress(done, len(plan.sources))
        if batch:
            yield self._embed(batch)

    def _embed(self, batch: list[_Decoded]) -> Embedded:
        vectors = self.embedder.embed_batch(np.stack([d.array for d in batch]))
        return Embedded([d.item for d in batch], vectors)
