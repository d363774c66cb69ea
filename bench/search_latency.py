"""`similar` latency: exact (Flat) vs the store's approximate index, with recall@10 against exact.

Sizes: 5,097 real poster vectors; 100k synthetic ones = real poster vectors + Gaussian noise
(σ = 0.01 per dimension, i.e. a copy keeps cos ≈ 0.94 to its poster), re-normalised, generated
in chunks of 100k. Queries are fresh noisy copies of random real posters (for 5k: real poster
vectors). Latency = one query per call through `VectorIndex.search` (what `PosterDB.similar`
calls), k = 10. The approximate index is what the store builds above its threshold
(`choose_factory(n, exact_max=0)`). 1M, on vectors that resemble real ones (blends, which these
noisy copies do not), is bench/index_scale.py (`--only index`, ~40 min); `--sizes 1000000`
here still measures the noisy copies at 1M, with the previous default IVF2048,SQfp16 beside.
Also: `db.similar(id)` end to end (DuckDB + FAISS + metadata) on a real 5k store.
"""
from __future__ import annotations

import argparse
import gc
import time

import numpy as np

from .common import (
    MODELS,
    THREADS,
    Figure,
    Timer,
    ensure_store,
    loadavg,
    percentiles,
    real_vectors,
)

NAME = "search"
SIGMA = 0.01
CHUNK = 100_000
K = 10
GOAL_RECALL, GOAL_MS = 0.98, 3.0
PREVIOUS = ("IVF2048,SQfp16", 6)        # the store's index at 1M before issue 12
QUOTED_1M = "quoted earlier at 1M: Flat 280 ms & 5 GB; IVF1024,SQ8 nprobe 8: 2.3 ms, recall 0.975, 1.3 GB"


def _spec():
    from posterdb.embedders.base import ModelSpec

    return ModelSpec("mobilenet-v2", "bench", "0" * 64, 1280)


def synth_chunks(real: np.ndarray, n: int, seed: int, chunk: int = CHUNK):
    """(ids, vectors) chunks of n synthetic vectors; chunk i depends only on (seed, start)."""
    d = real.shape[1]
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        rng = np.random.default_rng([seed, start])
        x = real[rng.integers(0, len(real), m)]
        x += rng.standard_normal((m, d), dtype=np.float32) * np.float32(SIGMA)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        yield np.arange(start, start + m, dtype=np.int64), x


def data(real: np.ndarray, n: int):
    """A re-iterable source of the n base vectors (real ones for n ≤ len(real))."""
    if n <= len(real):
        return lambda: iter([(np.arange(n, dtype=np.int64), real[:n])])
    return lambda: synth_chunks(real, n, seed=1)


def queries(real: np.ndarray, n: int, nq: int) -> np.ndarray:
    if n <= len(real):
        pick = np.random.default_rng(5).choice(n, size=min(nq, n), replace=False)
        return np.ascontiguousarray(real[pick])
    return next(synth_chunks(real, nq, seed=999, chunk=nq))[1]


def approx_factory(n: int) -> str:
    """The kind the store picks above its threshold, sized for n (also for sizes it keeps exact)."""
    from posterdb.vectors.index import choose_factory

    return choose_factory(n, exact_max=0)


def index_bytes(vi) -> int:
    """What the index holds (bytes `faiss.write_index` writes, re-rank copies included)."""
    from .index_scale import index_bytes as written

    return written(vi)


def build(factories: list[tuple[str, int | None]], n: int, source, sample):
    """Build like `PosterDB._rebuild` (train on ≤ 100k vectors, add in chunks), several indexes
    in one pass over the chunks. Returns [(VectorIndex, train_s)], add seconds (all)."""

    from posterdb.vectors.index import VectorIndex

    out = []
    for factory, nprobe in factories:
        vi = VectorIndex.empty(_spec(), factory)
        t_train = 0.0
        if not vi.index.is_trained:
            with Timer() as t:
                vi.index.train(sample)
            t_train = t.seconds
        if nprobe is not None and factory != "Flat":
            vi.nprobe = nprobe
        out.append((vi, t_train))
    with Timer() as t:
        for ids, x in source():
            for vi, _ in out:
                vi.add(ids, x)
    return out, t.seconds


def train_sample(real: np.ndarray, n: int, source) -> np.ndarray:
    """≤ 100k vectors to train on: all of them when small, else a fresh draw from the same
    generator (statistically what the store's random sample of its vectors is)."""
    if n <= 100_000:
        return np.concatenate([x for _, x in source()])
    return next(synth_chunks(real, 100_000, seed=2, chunk=100_000))[1]


def latency(vi, q: np.ndarray, n_calls: int) -> tuple[float, float]:
    for i in range(min(3, len(q))):
        vi.search(q[i:i + 1], K)
    samples = []
    for i in range(n_calls):
        j = i % len(q)
        t0 = time.perf_counter()
        vi.search(q[j:j + 1], K)
        samples.append(time.perf_counter() - t0)
    return percentiles(samples)


def recall(vi, q: np.ndarray, truth: np.ndarray) -> float:
    got = vi.search(q, K).ids
    return float(np.mean([len(set(a) & set(b)) / K for a, b in zip(got, truth)]))


def measure_size(real: np.ndarray, n: int, quick: bool, full_1m: bool) -> list[Figure]:
    label = f"{n // 1000}k" if n >= 10_000 else f"{n:,}"
    kind = "real" if n <= len(real) else "synthetic"
    source = data(real, n)
    q = queries(real, n, 1000 if n > 10_000 else 300)
    load = loadavg()
    (flat, _), = build([("Flat", None)], n, source, None)[0]
    truth = flat.search(q, K).ids
    flat_calls = 300 if n <= 10_000 else (100 if n <= 200_000 else (20 if quick else 40))
    f50, f99 = latency(flat, q, flat_calls)
    flat_mem = index_bytes(flat)
    del flat
    gc.collect()
    factory = approx_factory(n)
    wanted = [(factory, None)]
    if full_1m and n >= 1_000_000:
        wanted.append(PREVIOUS)
    built, t_add = build(wanted, n, source, train_sample(real, n, source))
    (vi, t_train) = built[0]
    a50, a99 = latency(vi, q, 500)
    rec = recall(vi, q, truth)
    mem = index_bytes(vi)
    del vi
    is_goal = n >= 1_000_000
    figs = [
        Figure(NAME, f"similar exact Flat p50 @ {label} {kind}", f50, "ms", None, "",
               "", None, load=load, note=f"p99 {f99:.2f} ms; index {flat_mem / 2**30:.2f} GiB",
               extra={"p99_ms": f99, "index_bytes": flat_mem, "n": n, "calls": flat_calls}),
        Figure(NAME, f"similar {factory} p50 @ {label}", a50, "ms", f50,
               "exact Flat p50", f"≤ {GOAL_MS:.0f} ms" if is_goal else "",
               (a50 <= GOAL_MS) if is_goal else None, load=load,
               note=f"p99 {a99:.2f} ms; index {mem / 2**30:.2f} GiB; "
                    f"train {t_train:.0f} s + add {t_add:.0f} s",
               extra={"p99_ms": a99, "index_bytes": mem, "train_s": t_train, "add_s": t_add,
                      "factory": factory, "n": n}),
    ]
    ref, ref_label = None, ""
    if len(built) > 1:
        pf, pn = PREVIOUS
        old = built[1][0]
        o50, o99 = latency(old, q, 500)
        ref, ref_label = recall(old, q, truth), f"previous {pf} nprobe {pn} (p50 {o50:.2f} ms)"
        figs.append(Figure(NAME, f"previous default {pf} nprobe {pn} p50 @ {label}", o50, "ms",
                           f50, "exact Flat p50", "", None, load=load,
                           note=f"p99 {o99:.2f} ms; index {index_bytes(old) / 2**30:.2f} GiB"))
        del old
    del built
    gc.collect()
    figs.append(Figure(NAME, f"recall@10 {factory} @ {label}", rec, "",
                       ref, ref_label, f"≥ {GOAL_RECALL}" if is_goal else "",
                       (rec >= GOAL_RECALL) if is_goal else None, load=f"{load} → {loadavg()}",
                       note=QUOTED_1M if is_goal else f"{len(q)} queries vs exact top-10"))
    return figs


def end_to_end(quick: bool) -> list[Figure]:
    """PosterDB.similar(poster id) on a real store: DuckDB vector + FAISS + metadata."""
    from posterdb.store import PosterDB

    n = 1000 if quick else 5097
    db = PosterDB.open(ensure_store(n), model_dir=MODELS)
    ids = db.indexes.index().ids()
    pick = np.random.default_rng(3).choice(ids, size=min(200, len(ids)), replace=False)
    for pid in pick[:3]:
        db.similar(int(pid), k=K)
    load = loadavg()
    samples = []
    for pid in pick:
        t0 = time.perf_counter()
        hits = db.similar(int(pid), k=K)
        samples.append(time.perf_counter() - t0)
        assert len(hits) == K
    p50, p99 = percentiles(samples)
    return [Figure(NAME, f"db.similar(id) end to end p50 @ {n:,} real (store)", p50, "ms", None,
                   "", "", None, load=load, note=f"p99 {p99:.2f} ms; opens DuckDB per call",
                   extra={"p99_ms": p99})]


def run(quick: bool = False) -> list[Figure]:
    import faiss

    faiss.omp_set_num_threads(THREADS)
    real = real_vectors()
    sizes = [len(real), 100_000]      # 1M: bench/index_scale.py (realistic vectors, ~40 min)
    figs = end_to_end(quick)
    for n in sizes:
        figs += measure_size(real, n, quick, full_1m=not quick)
        print(f"  search @ {n}: done", flush=True)
    return figs


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--sizes", default="", help="comma-separated sizes (default: by --quick)")
    a = ap.parse_args()
    if a.sizes:
        import faiss

        faiss.omp_set_num_threads(THREADS)
        real = real_vectors()
        for n in (int(s) for s in a.sizes.split(",")):
            for f in measure_size(real, n, a.quick, full_1m=True):
                print(f.to_dict(), flush=True)
    else:
        for f in run(a.quick):
            print(f.to_dict(), flush=True)


if __name__ == "__main__":
    main()
