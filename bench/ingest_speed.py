"""Ingest throughput end to end vs the raw embedder on the same images, and peak memory.

Each measurement runs in its own subprocess (`--worker raw|ingest`) so that its RSS high-water
mark (`resource.getrusage(RUSAGE_SELF).ru_maxrss`) is its own. Both exclude loading the model:
  raw:    read + decode (+sha256) + preprocess + embed_batch in a plain loop, batch 64, 1 thread
  ingest: PosterDB.ingest(folder, labels) into a fresh store (decode threads, commits, image
          copies, FAISS index save included)
"""
from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

from .common import (
    CACHE,
    Figure,
    loadavg,
    poster_folder,
    rss_peak_mib,
    run_worker,
    warm,
)

NAME = "ingest"
BATCH = 64
REPEATS = 2


def _worker(kind: str, folder: Path, store: Path) -> dict:
    from .common import MODELS, embedder, raw_embed

    files = sorted((folder / "images").iterdir())
    if kind == "raw":
        emb = embedder(BATCH)
        raw_embed(files[:8], BATCH, emb)   # warm the interpreter (as ingest's first batch is not)
        t0 = time.perf_counter()
        v = raw_embed(files, BATCH, emb)
        seconds = time.perf_counter() - t0
        n = len(v)
    else:
        from posterdb.store import PosterDB

        shutil.rmtree(store, ignore_errors=True)
        db = PosterDB.open(store, model_dir=MODELS)
        emb = db.models.embedder("mobilenet-v2")
        emb.embed_images([])
        t0 = time.perf_counter()
        rep = db.ingest(folder, folder / "labels.csv", batch_size=BATCH)
        seconds = time.perf_counter() - t0
        n = rep.added
        assert not rep.failed, rep.failed[:3]
    return {"n": n, "seconds": seconds, "per_s": n / seconds, "rss_peak_mib": rss_peak_mib()}


def run(quick: bool = False) -> list[Figure]:
    n = 1000 if quick else 5097
    folder = poster_folder(n)
    warm(folder)
    store = CACHE / f"store-{n}"
    load = loadavg()
    raws, ings = [], []
    for _ in range(REPEATS):     # alternate, keep the best of each: the machine is shared
        raws.append(run_worker("ingest_speed", ["raw", str(folder), str(store)]))
        ings.append(run_worker("ingest_speed", ["ingest", str(folder), str(store)]))
    load += f" → {loadavg()}"
    raw = max(raws, key=lambda r: r["per_s"])
    ing = max(ings, key=lambda r: r["per_s"])
    ratio = ing["per_s"] / raw["per_s"]
    runs = "runs: ingest {}; raw {} posters/s".format(
        ", ".join(f"{r['per_s']:.0f}" for r in ings), ", ".join(f"{r['per_s']:.0f}" for r in raws))
    return [
        Figure(NAME, f"ingest posters/s ({ing['n']} real posters, fresh store)", ing["per_s"],
               "posters/s", raw["per_s"], "raw embedder loop (same images, batch 64)",
               "≥ 0.9× raw", ratio >= 0.9, load=load,
               note=f"best of {REPEATS}: ingest {ing['seconds']:.1f} s, raw {raw['seconds']:.1f} s; "
                    + runs),
        Figure(NAME, "ingest peak RSS", max(r["rss_peak_mib"] for r in ings), "MiB",
               max(r["rss_peak_mib"] for r in raws),
               "raw loop peak RSS", "", None, load=load,
               note="ru_maxrss of a subprocess per measurement"),
    ]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--worker", nargs=3, metavar=("KIND", "FOLDER", "STORE"))
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    if a.worker:
        kind, folder, store = a.worker
        print(json.dumps(_worker(kind, Path(folder), Path(store))))
    else:
        for f in run(a.quick):
            print(f.to_dict())


if __name__ == "__main__":
    main()
