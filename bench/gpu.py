"""GPU: resnet50 (bf16 autocast, channels_last) ingest posters/s, with the local engine and with
the Ray engine (one GPU actor), vs the raw forward pass on the same device (random uint8
batches already in memory). Skipped without a CUDA device; the Ray row without the [ray] extra."""
from __future__ import annotations

import shutil
import time

import numpy as np

from .common import CACHE, MODELS, Figure, loadavg, poster_folder, standalone, warm

NAME = "gpu"


def _skip(why: str) -> list[Figure]:
    return [Figure(NAME, "resnet50 bf16 ingest posters/s", None, "posters/s",
                   goal="≥ 0.9× raw forward", note=f"skipped: {why}")]


def run(quick: bool = False) -> list[Figure]:
    try:
        import torch
    except ImportError:
        return _skip("torch is not installed (the [torch] extra)")
    if not torch.cuda.is_available():
        return _skip("no CUDA device")
    from posterdb.embedders import get_embedder
    from posterdb.store import PosterDB

    n = 1000 if quick else 5097
    emb = get_embedder("resnet50", model_dir=MODELS, device="cuda")
    bs = emb.batch_size
    x = np.random.default_rng(0).integers(0, 256, (bs, 224, 224, 3), dtype=np.uint8)
    for _ in range(3):
        emb.embed_batch(x)
    torch.cuda.synchronize()
    reps = max(4, n // bs)
    t0 = time.perf_counter()
    for _ in range(reps):
        emb.embed_batch(x)       # ends with a device->host copy: synchronous
    raw = reps * bs / (time.perf_counter() - t0)

    folder = poster_folder(n)
    warm(folder)
    store = CACHE / "gpu-store"
    shutil.rmtree(store, ignore_errors=True)
    db = PosterDB.open(store, model_dir=MODELS)
    db.models.use(emb)
    load = loadavg()
    t0 = time.perf_counter()
    rep = db.ingest(folder, folder / "labels.csv", model="resnet50", auto_classify=False)
    per_s = rep.added / (time.perf_counter() - t0)
    figs = [Figure(NAME, f"resnet50 bf16 ingest posters/s ({rep.added} posters, "
                         f"{torch.cuda.get_device_name()})", per_s, "posters/s", raw,
                   f"raw forward, batch {bs} (uint8 in host memory)", "≥ 0.9× raw forward",
                   per_s / raw >= 0.9, load=f"{load} → {loadavg()}",
                   note="ingest is bounded by decoding on the CPU cores when ratio < 1")]
    return figs + [_through_ray(emb, folder, raw, bs)]


def _through_ray(emb, folder, raw: float, bs: int) -> Figure:
    """The same ingest with `--engine ray`: decode in Ray tasks on every core, embed in one GPU
    actor (num_gpus=1), against the same raw forward pass (issue 12, item 4)."""
    import os

    label = "resnet50 bf16 ingest posters/s through Ray (1 GPU actor)"
    try:
        import ray

        from posterdb.ingest.ray_engine import RayEngine
    except ImportError as e:
        return Figure(NAME, label, None, "posters/s", note=f"skipped: {e} (the [ray] extra)")
    import torch

    from posterdb.store import PosterDB

    ray.init(num_cpus=os.cpu_count(), num_gpus=torch.cuda.device_count(),
             include_dashboard=False, log_to_driver=False)
    try:
        store = CACHE / "gpu-ray-store"
        shutil.rmtree(store, ignore_errors=True)
        db = PosterDB.open(store, model_dir=MODELS)
        db.models.use(emb)
        engine = RayEngine(emb, embedder_options={"device": "cuda"})
        load = loadavg()
        t0 = time.perf_counter()
        rep = db.ingest(folder, folder / "labels.csv", model="resnet50", auto_classify=False,
                        engine=engine)
        per_s = rep.added / (time.perf_counter() - t0)
    finally:
        ray.shutdown()
    return Figure(NAME, f"{label} ({rep.added} posters)", per_s, "posters/s", raw,
                  f"raw forward, batch {bs}", "≥ 0.9× raw forward", per_s / raw >= 0.9,
                  load=f"{load} → {loadavg()}",
                  note=f"{os.cpu_count()} CPUs decode; includes the actor's start and model load")


if __name__ == "__main__":
    standalone(run)
