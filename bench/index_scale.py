"""The index at scale on realistic vectors: the store's chosen index vs the previous default.

Vectors: n blends of real posters (bench/realistic_vectors.py), 1,000 fresh blends as queries,
exact top-10 by brute force as truth (cached). Each index is built in its own worker process the
way the store's `IndexCache` does (train on a random sample of `train_size(factory)` stored
vectors, add in 100k chunks) and measured there: train and add seconds, bytes the index holds
(what `faiss.write_index` writes), the worker's peak RSS, recall@10 over the 1,000 queries, and
single-query latency (one `VectorIndex.search` call per query, k = 10) for each (breadth,
re-rank) setting asked for (breadth: the graph's efSearch, or IVF's nprobe). A filtered search
(10 % of the ids allowed, as a decade filter would) is measured too, with recall against the
exact filtered top-10, and a removal of 1,000 ids.

    python -m bench.index_scale --n 1000000      # ~25-40 min on 2 cores, ≤ ~6 GiB per worker
"""
from __future__ import annotations

import argparse
import gc
import json
import time

import numpy as np

from .common import (
    CACHE,
    THREADS,
    Figure,
    Timer,
    loadavg,
    percentiles,
    real_vectors,
    rss_peak_mib,
    run_worker,
)
from .realistic_vectors import QUERY_SEED, generate, read_rows

NAME = "index"
K = 10
CHUNK = 100_000
GOAL_RECALL, GOAL_MS = 0.98, 3.0
PREVIOUS = ("IVF2048,SQfp16", [6, 64])          # the default before issue 12 (nprobe 6)
FILTER_FRACTION = 0.1


def paths(n: int):
    return (CACHE / f"blend-{n}.npy", CACHE / "blend-queries-1000.npy",
            CACHE / f"blend-{n}-truth.npy")


def prepare(n: int) -> None:
    """Base vectors, queries and exact top-10 truth, each written once under CACHE."""
    import faiss

    base, qpath, tpath = paths(n)
    real = real_vectors()
    generate(real, 1000, qpath, seed=QUERY_SEED)
    generate(real, n, base)
    if tpath.exists():
        return
    q = np.load(qpath)
    best_s = np.full((len(q), K), -np.inf, np.float32)
    best_i = np.full((len(q), K), -1, np.int64)
    for start in range(0, n, CHUNK):
        x = read_rows(base, start, min(n, start + CHUNK))
        flat = faiss.IndexFlatIP(x.shape[1])
        flat.add(x)
        s, i = flat.search(q, K)
        s2, i2 = np.hstack([best_s, s]), np.hstack([best_i, i + start])
        order = np.argsort(-s2, axis=1, kind="stable")[:, :K]
        best_s, best_i = np.take_along_axis(s2, order, 1), np.take_along_axis(i2, order, 1)
    np.save(tpath, best_i)


def _spec():
    from posterdb.embedders.base import ModelSpec

    return ModelSpec("mobilenet-v2", "bench", "0" * 64, 1280)


def index_bytes(vi) -> int:
    """Bytes `faiss.write_index` writes for the index (+ re-rank copies): what it holds."""
    import faiss

    total = 0

    def count(b):
        nonlocal total
        total += len(b)
        return len(b)

    w = faiss.PyCallbackIOWriter(count)
    faiss.write_index(vi.index, w)
    if vi.refine is not None:
        faiss.write_index(vi.refine, w)
    del w
    return total


def build(factory: str, n: int):
    """Train + add like the store; returns (VectorIndex, train_s, add_s)."""
    from posterdb.vectors.index import VectorIndex, train_size

    base, _, _ = paths(n)
    vi = VectorIndex.empty(_spec(), factory)
    want = min(n, train_size(factory))
    rows = np.sort(np.random.default_rng(0).choice(n, size=want, replace=False))
    mm = np.load(base, mmap_mode="r")
    sample = np.ascontiguousarray(mm[rows])
    del mm
    with Timer() as t_train:
        vi.index.train(sample)
    del sample
    gc.collect()
    with Timer() as t_add:
        for start in range(0, n, CHUNK):
            stop = min(n, start + CHUNK)
            vi.add(np.arange(start, stop, dtype=np.int64), read_rows(base, start, stop))
    return vi, t_train.seconds, t_add.seconds


def recall(got: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(a[a >= 0]) & set(b)) / K for a, b in zip(got, truth)]))


def latency(vi, q: np.ndarray, calls: int, allowed=None) -> tuple[float, float]:
    for i in range(5):
        vi.search(q[i:i + 1], K, allowed)
    samples = []
    for i in range(calls):
        j = i % len(q)
        t0 = time.perf_counter()
        vi.search(q[j:j + 1], K, allowed)
        samples.append(time.perf_counter() - t0)
    return percentiles(samples)


def filtered_truth(n: int, q: np.ndarray, allowed: np.ndarray) -> np.ndarray:
    base, _, _ = paths(n)
    mm = np.load(base, mmap_mode="r")
    x = np.ascontiguousarray(mm[allowed])
    del mm
    s = q @ x.T
    return allowed[np.argsort(-s, axis=1)[:, :K]]


def worker(factory: str, n: int, settings: list[tuple[int, int]]) -> dict:
    """Build one index and measure it at each (nprobe, rerank) setting."""
    import faiss

    faiss.omp_set_num_threads(THREADS)
    _, qpath, tpath = paths(n)
    q, truth = np.load(qpath), np.load(tpath)
    vi, t_train, t_add = build(factory, n)
    out = {"factory": factory, "n": n, "train_s": t_train, "add_s": t_add,
           "index_bytes": index_bytes(vi), "rss_peak_mib": rss_peak_mib(), "runs": []}
    for nprobe, rerank in settings:
        vi.nprobe, vi.rerank = nprobe, rerank
        load = loadavg()
        got = vi.search(q, K).ids
        p50, p99 = latency(vi, q, 500)
        out["runs"].append({"nprobe": nprobe, "rerank": rerank, "recall": recall(got, truth),
                            "p50_ms": p50, "p99_ms": p99, "load": load})
    allowed = np.sort(np.random.default_rng(4).choice(n, int(n * FILTER_FRACTION), replace=False))
    vi.nprobe, vi.rerank = settings[0]
    qf = q[:200]
    got = vi.search(qf, K, allowed).ids
    f50, f99 = latency(vi, qf, 200, allowed)
    out["filtered"] = {"fraction": FILTER_FRACTION,
                       "recall": recall(got, filtered_truth(n, qf, allowed)),
                       "p50_ms": f50, "p99_ms": f99, "nprobe": settings[0][0]}
    # a remove + add round trip keeps the ids equal (what sync does against DuckDB)
    gone = np.arange(0, n, max(1, n // 1000))
    with Timer() as t_rm:
        vi.remove(gone)
    keep = vi.ids()
    out["remove_1000_s"] = t_rm.seconds
    out["ids_after_remove_ok"] = bool(len(keep) == n - len(gone) and not np.isin(gone, keep).any())
    return out


def figures(res: dict, chosen: bool) -> list[Figure]:
    gib = res["index_bytes"] / 2**30
    label = f"{res['n'] // 1000}k" if res["n"] < 1_000_000 else f"{res['n'] / 1e6:g}M"
    build_note = (f"build: train {res['train_s']:.0f} s + add {res['add_s']:.0f} s; index "
                  f"{gib:.2f} GiB; worker peak RSS {res['rss_peak_mib'] / 1024:.2f} GiB")
    figs = []
    breadth = "nprobe" if "IVF" in res["factory"] else "efSearch"
    for i, r in enumerate(res["runs"]):
        goal = chosen and i == 0
        ok = r["p50_ms"] <= GOAL_MS and r["recall"] >= GOAL_RECALL
        figs.append(Figure(
            NAME, f"{res['factory']} {breadth} {r['nprobe']}"
                  + (f" re-rank {r['rerank']}·k" if "Refine" in res["factory"] else "")
                  + f" @ {label} blends", r["p50_ms"], "ms", None, "",
            f"p50 ≤ {GOAL_MS:.0f} ms and recall@10 ≥ {GOAL_RECALL}" if goal else "",
            ok if goal else None, load=r["load"],
            note=f"recall@10 {r['recall']:.3f}; p99 {r['p99_ms']:.2f} ms; " + build_note,
            extra=r | {k: v for k, v in res.items() if k != "runs"}))
    f = res["filtered"]
    figs.append(Figure(NAME, f"{res['factory']} filtered to {f['fraction']:.0%} of ids @ {label}",
                       f["p50_ms"], "ms", None, "", "", None,
                       note=f"recall@10 {f['recall']:.3f} vs exact filtered top-10; p99 "
                            f"{f['p99_ms']:.2f} ms; remove 1,000 ids {res['remove_1000_s']:.2f} s, "
                            f"ids equal after: {res['ids_after_remove_ok']}", extra=f))
    return figs


def run(quick: bool = False, n: int | None = None, chosen_settings=None) -> list[Figure]:
    from posterdb.vectors.index import EF_SEARCH, RERANK, choose_factory

    n = n or (100_000 if quick else 1_000_000)
    prepare(n)
    factory = choose_factory(n, exact_max=0)
    settings = chosen_settings or [(EF_SEARCH, RERANK), (EF_SEARCH // 2, RERANK),
                                   (EF_SEARCH * 2, RERANK), (EF_SEARCH, 2 * RERANK)]
    figs = []
    for f, sets in ((factory, settings), (PREVIOUS[0], [(p, 1) for p in PREVIOUS[1]])):
        res = run_worker("index_scale", ["--factory", f, "--n", str(n),
                                         "--settings", json.dumps(sets)], timeout=3600)
        figs += figures(res, chosen=f == factory)
        print(f"  index @ {n}: {f} done", flush=True)
    return figs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--n", type=int, default=None)
    ap.add_argument("--worker", action="store_true")
    ap.add_argument("--factory", default="")
    ap.add_argument("--settings", default="", help='JSON [[nprobe, rerank], ...]')
    a = ap.parse_args()
    sets = [tuple(s) for s in json.loads(a.settings)] if a.settings else None
    if a.worker:
        print(json.dumps(worker(a.factory, a.n, sets)), flush=True)
        return
    if a.factory:  # one index, measured in this process (exploration)
        prepare(a.n)
        for f in figures(worker(a.factory, a.n, sets or [(16, 10)]), chosen=True):
            print(f.to_dict(), flush=True)
        return
    for f in run(a.quick, a.n, sets):
        print(f.to_dict(), flush=True)


if __name__ == "__main__":
    main()
