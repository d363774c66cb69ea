"""`RayEngine`: stages 2 and 3 (decode, embed) on a Ray cluster with Ray Data; commit stays here.

It yields the same Failed / Known / Embedded items as `LocalEngine`, so plan (what is new),
commit (one DuckDB writer, one transaction per commit, error records, crash-resume) and the
post-commit steps are the very same code whichever engine embeds. The pipeline:

    ray.data.from_items(file list)                        the plan's sources, as (index, path)
      .map_batches(decode_batch)                          CPU tasks: read, sha256, skip bytes
                                                          already stored, decode, preprocess
      .map_batches(EmbedActor, compute=ActorPoolStrategy) an actor pool, one model per actor,
                                                          num_gpus=1 each when the cluster has
                                                          GPUs, batch size from the embedder
                                                          (fewer rows for huge files)
      .iter_batches()                                     streamed back to this process

Weights: each actor loads the driver's weights file by path (a folder every node sees), or,
with `ship_weights`, from the driver's bytes put in Ray's object store; either way it refuses
weights whose sha256 differs from the driver's (vectors of another model version).
`preprocess` is the embedder's own (CLIP's depends on its checkpoint), so each CPU worker
builds the embedder once, on the CPU, and only preprocesses with it.

Memory: each decode task decodes one file at a time, no more pixels than the model's input
needs (as `LocalEngine`), and a batch carries at most ~`BLOCK_BYTES` of file bytes (fewer rows
than the embedder's batch size when the files are huge scans), so a Ray block stays small.
"""
from __future__ import annotations

import logging
import math
import os
import tempfile
from collections.abc import Callable, Iterator
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

from posterdb.core.errors import RefusedError
from posterdb.core.text import clean_text
from posterdb.embedders.base import Embedder
from posterdb.ingest.engine import Embedded, Failed, Item, Known, file_size, load_one
from posterdb.ingest.plan import IngestPlan
from posterdb.media.images import PosterImage

CPU_ONLY = {"mobilenet-v2"}          # embedders that never use a GPU
BLOCK_BYTES = 64 * 1024**2   # file bytes a batch (a Ray block: bytes + model inputs) carries
DECODE_CPUS = 0.5   # ≠ the actor's 1 CPU, so Ray Data keeps decode in its own tasks (not fused)
OK, KNOWN, FAILED = 0, 1, 2


def _import_ray():
    try:
        import ray
        import ray.data
    except ImportError as e:
        raise RefusedError("the ray engine needs Ray Data: pip install 'posterdb[ray]' "
                           f"({e})") from None
    return ray


@lru_cache(maxsize=2)
def _worker_embedder(name: str, weights: str, options: tuple, device: str | None = None):
    from posterdb.embedders import get_embedder

    return get_embedder(name, weights=weights, device=device, allow_download=False,
                        **dict(options))


_shipped: dict[str, str] = {}


def _weights_here(weights: str, shipped: list | None) -> str:
    """The weights file on this worker: the driver's path, or (shipped) the driver's bytes from
    the object store written once per worker process under the same file name."""
    if not shipped:
        return weights
    if weights not in _shipped:
        import ray

        target = Path(tempfile.mkdtemp(prefix="posterdb-weights-")) / Path(weights).name
        target.write_bytes(ray.get(shipped[0]))
        _shipped[weights] = str(target)
    return _shipped[weights]


def decode_batch(batch: dict, *, skip: frozenset, name: str, weights: str, shipped: list | None,
                 options: tuple, shape: tuple, dtype: str, fit: int | None = None) -> dict:
    """Ray task: read + hash + decode (no more pixels than `fit` needs) + preprocess each file
    of the batch, one at a time (never raises)."""
    weights = _weights_here(weights, shipped)
    preprocess = _worker_embedder(name, weights, options, "cpu").preprocess
    n = len(batch["path"])
    out = {"i": batch["i"], "status": np.zeros(n, np.int8), "reason": np.full(n, "", object),
           "sha256": np.full(n, "", object), "data": np.full(n, b"", object),
           "width": np.zeros(n, np.int32), "height": np.zeros(n, np.int32),
           "format": np.full(n, "", object), "suffix": np.full(n, "", object),
           "array": np.zeros((n, *shape), dtype)}
    for j, path in enumerate(batch["path"]):     # bytes: a name need not be UTF-8
        got = load_one((Path(os.fsdecode(path)), None), skip, preprocess, fit=fit)
        if isinstance(got, Failed):
            out["status"][j], out["reason"][j] = FAILED, clean_text(got.reason)
        elif isinstance(got, Known):
            out["status"][j], out["sha256"][j] = KNOWN, got.sha256
        else:        # decoded: the item (poster without its image) + the model input
            p = got.item.poster
            out["sha256"][j], out["data"][j] = p.sha256, p.data
            out["width"][j], out["height"][j], out["format"][j], out["suffix"][j] = \
                p.width, p.height, p.format, p.suffix
            out["array"][j] = got.array
    return out


def batch_rows(sources: list, batch_size: int, block_bytes: int = BLOCK_BYTES) -> int:
    """Rows a batch may hold so that its file bytes stay near `block_bytes` (sized by the 95th
    percentile of up to 1,000 files' sizes on disk); `batch_size` for ordinary posters."""
    step = max(1, len(sources) // 1000)
    sizes = sorted(file_size(s) for s in sources[::step])
    if not sizes:
        return batch_size
    big = max(1, sizes[min(len(sizes) - 1, int(len(sizes) * 0.95))])
    return max(1, min(batch_size, block_bytes // big))


class EmbedActor:
    """Ray actor: one embedder, checked against the driver's weights; embeds the decoded rows."""

    def __init__(self, name: str, weights: str, shipped: list | None, sha256: str,
                 options: tuple):
        weights = _weights_here(weights, shipped)
        self.embedder = _worker_embedder(name, weights, options)
        if self.embedder.weights_sha256 != sha256:
            raise RefusedError(f"{weights} on this worker has sha256 "
                               f"{self.embedder.weights_sha256[:12]}, the driver's "
                               f"{sha256[:12]}: share the model folder or ship the weights")

    def __call__(self, batch: dict) -> dict:
        ok = np.flatnonzero(batch["status"] == OK)
        vectors = np.zeros((len(batch["status"]), self.embedder.dim), np.float32)
        if len(ok):
            vectors[ok] = self.embedder.embed_batch(np.ascontiguousarray(batch["array"][ok]))
        out = {k: v for k, v in batch.items() if k != "array"}
        out["vector"] = vectors
        return out


class RayEngine:
    """Decode in Ray tasks, embed in a Ray actor pool; results stream back in any order."""

    def __init__(self, embedder: Embedder, *, address: str | None = None,
                 batch_size: int | None = None, actors: int | None = None,
                 num_cpus: int | None = None, ship_weights: bool = False,
                 embedder_options: dict | None = None):
        self.embedder = embedder
        self.address = address
        self.batch_size = batch_size or embedder.batch_size
        self.actors = actors
        self.num_cpus = num_cpus
        self.ship_weights = ship_weights
        opts = {"batch_size": self.batch_size} | dict(embedder_options or {})
        self.options = tuple(sorted(opts.items()))

    def _connect(self):
        """Join the running Ray (tests, notebooks), the cluster at `address`, or start a local
        one with `num_cpus` (default: all cores) in this process."""
        ray = _import_ray()
        logging.getLogger("ray").setLevel(logging.WARNING)
        if not ray.is_initialized():
            kw = dict(include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
            try:
                if self.address:
                    ray.init(address=self.address, **kw)
                else:
                    ray.init(num_cpus=self.num_cpus or os.cpu_count(), **kw)
            except (ConnectionError, RuntimeError, ValueError) as e:
                where = self.address or "a local Ray"
                raise RefusedError(f"cannot start or reach {where}: {e}") from None
        logging.getLogger("ray.data").setLevel(logging.ERROR)   # our own progress bar instead
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        ctx.print_on_execution_start = False
        return ray

    def run(self, plan: IngestPlan, progress: Callable[[int, int], None] | None = None
            ) -> Iterator[Failed | Known | Embedded]:
        if not plan.sources:
            return
        ray = self._connect()
        emb = self.embedder
        weights = str(getattr(emb, "path", ""))
        probe = np.asarray(emb.preprocess(Image.new("RGB", (8, 8))))
        gpus = ray.cluster_resources().get("GPU", 0)
        use_gpu = gpus >= 1 and emb.name not in CPU_ONLY
        size = self.actors or (int(gpus) if use_gpu else 1)
        ref = ray.put(Path(weights).read_bytes()) if self.ship_weights else None
        n = len(plan.sources)
        rows = batch_rows(plan.sources, self.batch_size)
        files = [{"i": i, "path": os.fsencode(p)} for i, (p, _) in enumerate(plan.sources)]
        ds = ray.data.from_items(files, override_num_blocks=max(1, math.ceil(n / rows)))
        ds = ds.map_batches(decode_batch, batch_size=rows, num_cpus=DECODE_CPUS,
                            fn_kwargs=dict(skip=plan.done_shas, name=emb.name, weights=weights,
                                           shipped=[ref] if ref else None,
                                           options=self.options, shape=probe.shape,
                                           dtype=str(probe.dtype),
                                           fit=int(max(probe.shape)) if probe.ndim >= 2
                                           else None))
        ds = ds.map_batches(EmbedActor, batch_size=rows,
                            compute=ray.data.ActorPoolStrategy(min_size=1, max_size=size),
                            num_gpus=1 if use_gpu else 0, num_cpus=0 if use_gpu else 1,
                            fn_constructor_args=(emb.name, weights, [ref] if ref else None,
                                                 emb.weights_sha256, self.options))
        seen: set[str] = set()
        done = 0
        for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
            items, vectors = [], []
            for j, i in enumerate(batch["i"]):
                path, row = plan.sources[int(i)]
                status, sha = int(batch["status"][j]), str(batch["sha256"][j])
                if status == FAILED:
                    yield Failed(path, str(batch["reason"][j]))
                elif status == KNOWN or sha in seen:
                    yield Known(path, row, sha, duplicate=status != KNOWN)
                else:
                    seen.add(sha)
                    poster = PosterImage(str(path), bytes(batch["data"][j]), sha, None,
                                         int(batch["width"][j]), int(batch["height"][j]),
                                         str(batch["format"][j]), str(batch["suffix"][j]))
                    items.append(Item(path, row, poster))
                    vectors.append(batch["vector"][j])
            if items:
                yield Embedded(items, np.asarray(vectors, np.float32))
            done += len(batch["i"])
            if progress:
                progress(done, n)
