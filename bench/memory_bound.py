"""Peak memory of ingesting huge scans: 32 JPEGs of 6300×6300 vs 32 small real posters.

The huge scans are generated at run time (random content, quality 90, ~27 MB each, distinct
bytes) under the bench cache and removed afterwards. Each ingest runs in its own subprocess
(`--worker FOLDER STORE`) with the real int8 MobileNet into a fresh store, so that its RSS
high-water mark (`ru_maxrss`) is its own; the model is loaded before the clock starts. The
reference, measured in the same run, is the same ingest of 32 small real posters (the
process's floor: Python, DuckDB, FAISS, the TFLite interpreter). Goal: huge peak ≤ 1.5 GiB.
"""
from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np

from .common import CACHE, MODELS, Figure, loadavg, poster_folder, run_worker, warm

NAME = "memory"
N = 32
SIDE = 6300
QUALITY = 90
GOAL_MIB = 1.5 * 1024


def make_scans(folder: Path, n: int = N, side: int = SIDE, seed: int = 0) -> int:
    """n distinct side×side random-content JPEGs (quality 90) in `folder`; returns total bytes.

    One random field (values 0..127: ~27 MB at 6300², like a dense scan) shifted differently for
    each file, so that every file decodes to other pixels and hashes to other bytes."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    field = (np.frombuffer(rng.bytes(side * side * 3), np.uint8) >> 1).reshape(side, side, 3)
    total = 0
    for i in range(n):
        shifted = np.roll(field, (i * 997, i * 389), axis=(0, 1))
        shifted[:8, :8] = i                       # and never two equal files
        path = folder / f"scan-{i:03d}.jpg"
        Image.fromarray(shifted).save(path, "JPEG", quality=QUALITY)
        total += path.stat().st_size
        del shifted
    return total


def _worker(folder: Path, store: Path) -> dict:
    from posterdb.store import PosterDB

    from .common import rss_peak_mib

    shutil.rmtree(store, ignore_errors=True)
    db = PosterDB.open(store, model_dir=MODELS)
    emb = db.models.embedder("mobilenet-v2")
    emb.embed_images([])
    labels = folder / "labels.csv"
    t0 = time.perf_counter()
    rep = db.ingest(folder, labels if labels.exists() else None, auto_classify=False)
    seconds = time.perf_counter() - t0
    shutil.rmtree(store, ignore_errors=True)
    return {"n": rep.added, "failed": rep.failed[:3], "seconds": seconds,
            "per_s": rep.added / seconds, "rss_peak_mib": rss_peak_mib()}


def run(quick: bool = False) -> list[Figure]:
    n = 8 if quick else N
    small = poster_folder(n)
    warm(small)
    big = CACHE / f"memory-scans-{n}"
    shutil.rmtree(big, ignore_errors=True)
    t0 = time.perf_counter()
    total = make_scans(big, n)
    gen_s = time.perf_counter() - t0
    for p in sorted(big.iterdir()):   # neither measurement pays for a cold page cache
        p.read_bytes()
    load = loadavg()
    try:
        ref = run_worker("memory_bound", [str(small), str(CACHE / "memory-store-small")])
        got = run_worker("memory_bound", [str(big), str(CACHE / "memory-store-big")])
    finally:
        shutil.rmtree(big, ignore_errors=True)
    load += f" → {loadavg()}"
    ok = got["n"] == n and not got["failed"]
    note = (f"{n} × {SIDE}² JPEG q{QUALITY}, {total / n / 1e6:.1f} MB each "
            f"(generated in {gen_s:.0f} s); stored {got['n']}/{n}"
            + (f", failed: {got['failed']}" if got["failed"] else ""))
    return [
        Figure(NAME, f"ingest peak RSS, {n} huge scans ({SIDE}², ~27 MB each)",
               got["rss_peak_mib"], "MiB", ref["rss_peak_mib"],
               f"{n} small real posters (same run)", f"≤ {GOAL_MIB:,.0f} MiB",
               ok and got["rss_peak_mib"] <= GOAL_MIB, note=note, load=load,
               extra={"huge": got, "small": ref, "bytes_each": total / n}),
        Figure(NAME, f"ingest posters/s, {n} huge scans", got["per_s"], "posters/s",
               ref["per_s"], f"{n} small real posters (same run)", "", None, load=load,
               note=f"huge {got['seconds']:.1f} s, small {ref['seconds']:.1f} s"),
    ]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--worker", nargs=2, metavar=("FOLDER", "STORE"))
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    if a.worker:
        print(json.dumps(_worker(Path(a.worker[0]), Path(a.worker[1]))))
    else:
        for f in run(a.quick):
            print(f.to_dict())


if __name__ == "__main__":
    main()
