"""Ingest with the Ray engine vs the local engine, same posters, same run, same 2 cores.

One worker process starts a local Ray (`ray.init(num_cpus=2)`, timed on its own), then ingests
the same real posters into fresh stores alternately with the local engine and the Ray engine
(best of 2 each; the machine is shared). Ray's overhead is the ratio Ray / local posters/s.
Both include everything `posterdb ingest` does (hash, decode, embed, image copies, DuckDB
commits, FAISS); the Ray run also pays for starting its actor (loading the model there).
Also measured in the same worker, for sizing a cluster (docs/scale.md): read + sha256 + decode +
preprocess alone, one thread, posters per CPU-second (by CPU time: the machine is shared).
"""
from __future__ import annotations

import argparse
import json
import shutil
import time

from .common import CACHE, MODELS, Figure, loadavg, poster_folder, run_worker, warm

NAME = "ray"
REPEATS = 2


def _worker(n: int) -> dict:
    import ray

    from posterdb.ingest.ray_engine import RayEngine
    from posterdb.store import PosterDB

    folder = poster_folder(n)
    warm(folder)
    t0 = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    start_s = time.perf_counter() - t0
    from posterdb.media.images import decode, read_bytes, sha256_bytes

    emb = PosterDB.open(CACHE / "ray-bench-probe", model_dir=MODELS).models.embedder("mobilenet-v2")
    files = sorted((folder / "images").iterdir())
    t0, c0 = time.perf_counter(), time.process_time()
    for f in files:
        data = read_bytes(f)
        sha256_bytes(data)
        emb.preprocess(decode(data, str(f)).image)
    decode_wall = len(files) / (time.perf_counter() - t0)
    decode_per_core = len(files) / (time.process_time() - c0)   # per CPU-second: load-proof
    runs: dict[str, list[float]] = {"local": [], "ray": []}
    for _ in range(REPEATS):
        for kind in ("local", "ray"):
            store = CACHE / f"ray-bench-{kind}"
            shutil.rmtree(store, ignore_errors=True)
            db = PosterDB.open(store, model_dir=MODELS)
            emb = db.models.embedder("mobilenet-v2")
            engine = RayEngine(emb) if kind == "ray" else None
            t0 = time.perf_counter()
            rep = db.ingest(folder, folder / "labels.csv", engine=engine, auto_classify=False)
            seconds = time.perf_counter() - t0
            assert rep.added == n and not rep.failed, (rep.added, rep.failed[:3])
            runs[kind].append(n / seconds)
    ray.shutdown()
    return {"n": n, "ray_start_s": start_s, "runs": runs, "decode_per_core": decode_per_core,
            "decode_wall": decode_wall}


def run(quick: bool = False) -> list[Figure]:
    n = 300 if quick else 2000
    load = loadavg()
    res = run_worker("ray_ingest", ["--n", str(n)], timeout=3600)
    load += f" → {loadavg()}"
    best = {k: max(v) for k, v in res["runs"].items()}
    runs = "; ".join(f"{k}: " + ", ".join(f"{x:.0f}" for x in v) for k, v in res["runs"].items())
    return [
        Figure(NAME, f"ingest --engine ray, {n} real posters, local Ray on 2 CPUs", best["ray"],
               "posters/s", best["local"], "local engine (same posters, same run)", "", None,
               load=load, note=f"best of {REPEATS} (posters/s {runs}); Ray start-up "
                               f"{res['ray_start_s']:.1f} s, not counted",
               extra=res),
        Figure(NAME, "read + sha256 + decode + preprocess, per CPU-second", res["decode_per_core"],
               "posters/s", None, "", "", None, load=load,
               note=f"one thread, by CPU time (wall: {res['decode_wall']:.0f}/s): what feeding "
                    "one embedding actor costs per core (docs/scale.md)"),
    ]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--worker", action="store_true")
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    if a.worker:
        print(json.dumps(_worker(a.n)))
    else:
        for f in run(a.quick):
            print(f.to_dict())


if __name__ == "__main__":
    main()
