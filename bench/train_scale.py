"""Training scale: GenreClassifier.fit at 5k, 20k, 50k and 100k labelled posters of realistic
vectors (bench/scale_vectors.py says how they are made), each size in its own subprocess so that
peak RSS is per size. Prints wall time, peak RSS, seconds per poster relative to the 5k run of
the same invocation (wall and CPU seconds: on a shared machine the CPU figure is the fair one),
which heads `auto` picked, and `explain` p50 for one poster (with evidence).

    python -m bench.train_scale [--sizes 5097,20388,50000,100000] [--heads auto]

Goals (issue 9): 100k ≤ 10 min and ≤ 4 GiB on 2 cores; time per poster at 100k ≤ 2x that at 5k.
"""
from __future__ import annotations

import argparse
import json
import resource
import sys
import time

import numpy as np

from .common import Figure, loadavg, run_worker

NAME = "train-scale"
SIZES = (5097, 20388, 50000, 100000)
GOAL_S, GOAL_GIB, GOAL_RATIO = 600.0, 4.0, 2.0


def _rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def _cpu_s() -> float:
    """CPU seconds of this process (all threads): what the fit costs when the machine is shared."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def worker(n: int, heads: str, n_queries: int = 200) -> dict:
    from posterdb.classify import GenreClassifier

    from .scale_vectors import vectors

    X, Y, years, source = vectors(n)
    rss_data = _rss_gib()
    load0 = loadavg()
    t0, c0 = time.perf_counter(), _cpu_s()
    clf = GenreClassifier(heads=heads).fit(X, Y, years, groups=source)  # copies of a poster: one fold
    wall, cpu = time.perf_counter() - t0, _cpu_s() - c0
    rss_fit = _rss_gib()
    rng = np.random.default_rng(1)
    q = rng.choice(n, min(n_queries, n), replace=False)
    lat = []
    for i in q:
        t = time.perf_counter()
        clf.explain(X[i], [years[i]], exclude_ids=[int(i)], n_evidence=10)
        lat.append(time.perf_counter() - t)
    return {"n": n, "heads": clf.heads_kind_, "wall_s": wall, "cpu_s": cpu, "peak_rss_gib": rss_fit,
            "rss_after_loading_gib": rss_data, "fit_seconds": clf.fit_seconds_,
            "explain_p50_ms": float(np.percentile(lat, 50) * 1000),
            "explain_p99_ms": float(np.percentile(lat, 99) * 1000),
            "vote_index": "Flat" if clf.vote_.exact_ else "IVF",
            "validation_blend": clf.validation_scores_["blend"], "load": f"{load0} -> {loadavg()}"}


def run(quick: bool = False, sizes=None, heads: str = "auto") -> list[Figure]:
    sizes = sizes or ((5097, 20388) if quick else SIZES)
    figs, ref, cpu_ref = [], None, None
    for n in sizes:
        r = run_worker("train_scale", [str(n), heads], timeout=3600)
        per = r["wall_s"] / n
        ref = ref or per
        cpu_ref = cpu_ref or r["cpu_s"] / n
        big = n >= 100_000
        ok = (r["wall_s"] <= GOAL_S and r["peak_rss_gib"] <= GOAL_GIB and per / ref <= GOAL_RATIO) if big else None
        figs.append(Figure(
            NAME, f"fit {n:,} posters ({r['heads']} heads, {r['vote_index']} vote)", r["wall_s"], "s",
            ref * n, f"5k's s/poster x {n:,}", "100k: ≤ 600 s, ≤ 4 GiB, ≤ 2x s/poster" if big else "",
            ok, load=r["load"],
            note=(f"peak RSS {r['peak_rss_gib']:.2f} GiB (data {r['rss_after_loading_gib']:.2f}); "
                  f"s/poster x{per / ref:.2f} of 5k (CPU s/poster x{r['cpu_s'] / n / cpu_ref:.2f}); "
                  f"explain p50 {r['explain_p50_ms']:.1f} ms"),
            extra=r))
        print(json.dumps(r), flush=True)
    return figs


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        print(json.dumps(worker(int(sys.argv[2]), sys.argv[3])))
        return
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--sizes", default=None, help="comma-separated poster counts")
    ap.add_argument("--heads", default="auto", choices=("auto", "exact", "nystroem"))
    a = ap.parse_args()
    sizes = tuple(int(s) for s in a.sizes.split(",")) if a.sizes else None
    figs = run(a.quick, sizes, a.heads)
    print(f"\n{'posters':>8} {'heads':>9} {'wall s':>8} {'CPU s':>8} {'peak GiB':>9} "
          f"{'s/poster vs first':>18} {'CPU s/poster vs first':>22} {'explain p50 ms':>15}")
    first = figs[0].extra
    for f in figs:
        r = f.extra
        cpu_ratio = (r["cpu_s"] / r["n"]) / (first["cpu_s"] / first["n"])
        print(f"{r['n']:>8,} {r['heads']:>9} {r['wall_s']:>8.1f} {r['cpu_s']:>8.1f} "
              f"{r['peak_rss_gib']:>9.2f} {f.ratio:>18.2f} {cpu_ratio:>22.2f} "
              f"{r['explain_p50_ms']:>15.1f}")


if __name__ == "__main__":
    main()
