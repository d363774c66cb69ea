"""Stages 2 and 3, decode and embed: the pluggable engine.

An engine turns the plan's sources into a stream of items, in any order:

    Failed(path, reason)                 the file could not be read or decoded
    Known(path, row, sha256)             bytes already stored with a vector (nothing to do)
    Embedded(items, vectors)             a batch: Item(path, row, poster) + (n, dim) vectors

`LocalEngine` hashes, decodes and preprocesses in worker threads and embeds batches in the
caller's thread, within byte bounds (see its docstring). Another engine (e.g. a Ray Data pipeline decoding and embedding elsewhere)
only has to yield the same three kinds; plan, commit and the post-commit steps are shared.
An `Item.poster` needs `sha256, path, width, height, format, suffix, data` (the bytes, for the
content-addressed copy).
"""
from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

import numpy as np
from PIL import Image

from posterdb.core.errors import ImageError
from posterdb.embedders.base import Embedder
from posterdb.ingest.plan import IngestPlan, Source
from posterdb.media.images import PosterImage, decode, read_bytes, sha256_bytes
from posterdb.media.labels import LabelRow
from posterdb.media.window import MemoryWindow


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


# Memory bounds of one local ingest (bytes). They hold whatever the files' sizes: decoded
# pixels by a window across decode threads, encoded file bytes by the read-ahead and the batch.
DECODE_WINDOW = 256 * 1024**2   # decoded pixels in flight across the decode threads
READ_AHEAD = 128 * 1024**2      # file bytes read (or being read) and not yet handed on
BATCH_BYTES = 64 * 1024**2      # file bytes in the batch waiting for the model


def input_side(embedder) -> int | None:
    """The side of the embedder's input image (224 for MobileNet): decoding needs no more than
    REDUCING_GAP × that. None when its preprocess output is not an image."""
    side = getattr(embedder, "input_side", None)
    if side:
        return int(side)
    probe = np.asarray(embedder.preprocess(Image.new("RGB", (8, 8))))
    return int(max(probe.shape)) if probe.ndim >= 2 else None


def load_one(source: Source, skip: frozenset[str], preprocess, *, fit: int | None = None,
             window: MemoryWindow | None = None) -> _Decoded | Known | Failed:
    """Hash first (skip stored bytes), then decode (no more pixels than `fit` needs, inside the
    decode `window`) and preprocess; never raises. The decoded image is dropped once the model's
    input is made: an item keeps the file's bytes (for the stored copy) and its metadata."""
    path, row = source
    try:
        data = read_bytes(path)
        sha = sha256_bytes(data)
        if sha in skip:
            return Known(path, row, sha)
        poster = decode(data, str(path), fit=fit, window=window)
        array = preprocess(poster.image)
        return _Decoded(Item(path, row, replace(poster, image=None)), array)
    except ImageError as e:
        return Failed(path, e.reason)
    except MemoryError:
        return Failed(path, "image too large to decode (out of memory)")
    except Exception as e:  # never let one file stop the run
        return Failed(path, f"{type(e).__name__}: {e}")


def file_size(source: Source) -> int:
    try:
        return max(0, os.stat(source[0]).st_size)
    except (OSError, ValueError):
        return 0


class ReadAhead:
    """pool.map in order with a bounded number of results in flight and a bounded number of
    file bytes (by size on disk when submitted): the next file is submitted only while both are
    under their limit (one file is always allowed, whatever its size). `peak_bytes` is the most
    bytes ever in flight: at most `max_bytes` + the largest file."""

    def __init__(self, pool: ThreadPoolExecutor, fn, items: list, *, max_items: int,
                 max_bytes: int, size_of=file_size):
        self.pool, self.fn, self.items = pool, fn, items
        self.max_items, self.max_bytes, self.size_of = max_items, max_bytes, size_of
        self.in_flight = 0
        self.peak_bytes = 0
        self.peak_items = 0

    def __iter__(self) -> Iterator:
        pending: deque[tuple[Future, int]] = deque()
        it = iter(self.items)
        nxt = next(it, None)
        while nxt is not None or pending:
            while nxt is not None and (not pending or (len(pending) < self.max_items
                                                       and self.in_flight < self.max_bytes)):
                size = self.size_of(nxt)
                pending.append((self.pool.submit(self.fn, nxt), size))
                self.in_flight += size
                self.peak_bytes = max(self.peak_bytes, self.in_flight)
                self.peak_items = max(self.peak_items, len(pending))
                nxt = next(it, None)
            fut, size = pending.popleft()
            self.in_flight -= size
            yield fut.result()


def poster_bytes(items) -> int:
    return sum(len(it.poster.data) for it in items)


class LocalEngine:
    """Decode threads + batched embedding in this process. Bytes seen twice in one run (two
    names) are embedded once: the second comes back as `Known`.

    Memory is bounded by bytes, not by file count: decoded pixels by `decode_window` across the
    threads (and never more pixels than the model's input needs), file bytes by `read_ahead` and
    `batch_bytes` (a batch goes to the model early when its files are large). `stats` holds the
    accounting of the last run."""

    def __init__(self, embedder: Embedder, *, batch_size: int | None = None,
                 workers: int | None = None, decode_window: int = DECODE_WINDOW,
                 read_ahead: int = READ_AHEAD, batch_bytes: int = BATCH_BYTES):
        self.embedder = embedder
        self.batch_size = batch_size or embedder.batch_size
        self.workers = workers or min(4, (os.cpu_count() or 2) + 1)
        self.window = MemoryWindow(decode_window)
        self.read_ahead = read_ahead
        self.batch_bytes = batch_bytes
        self.stats: dict = {}

    def run(self, plan: IngestPlan, progress=None) -> Iterator[Failed | Known | Embedded]:
        batch: list[_Decoded] = []
        held = 0                      # file bytes in `batch`
        seen: set[str] = set()
        fit = input_side(self.embedder)
        load = lambda s: load_one(s, plan.done_shas, self.embedder.preprocess,  # noqa: E731
                                  fit=fit, window=self.window)
        self.stats = {"fit": fit, "batch_bytes_peak": 0, "batches": 0}
        with ThreadPoolExecutor(self.workers, thread_name_prefix="posterdb-decode") as pool:
            ahead = ReadAhead(pool, load, plan.sources, max_items=max(4 * self.batch_size, 64),
                              max_bytes=self.read_ahead)
            for done, got in enumerate(ahead, start=1):
                if isinstance(got, _Decoded) and got.item.poster.sha256 in seen:
                    got = Known(got.item.path, got.item.row, got.item.poster.sha256, True)
                if isinstance(got, _Decoded):
                    seen.add(got.item.poster.sha256)
                    batch.append(got)
                    held += len(got.item.poster.data)
                    self.stats["batch_bytes_peak"] = max(self.stats["batch_bytes_peak"], held)
                else:
                    yield got
                if len(batch) >= self.batch_size or held >= self.batch_bytes:
                    yield self._embed(batch)
                    batch, held = [], 0
                if progress:
                    progress(done, len(plan.sources))
            self.stats |= {"read_ahead_peak": ahead.peak_bytes, "read_ahead_items": ahead.peak_items}
        if batch:
            yield self._embed(batch)
        self.stats["decode"] = self.window.stats()

    def _embed(self, batch: list[_Decoded]) -> Embedded:
        self.stats["batches"] = self.stats.get("batches", 0) + 1
        vectors = self.embedder.embed_batch(np.stack([d.array for d in batch]))
        return Embedded([d.item for d in batch], vectors)
