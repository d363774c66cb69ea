"""`db.classify([poster])` end to end for one new poster: decode + embed + heads + vote +
evidence metadata. Goal p50 ≤ 50 ms on CPU with mobilenet-v2. Reference: decode + embed alone
(`db.embed`) of the same posters, measured in the same run."""
from __future__ import annotations

import time

from .common import (
    MODELS,
    POSTERS,
    Figure,
    api_missing,
    ensure_store,
    label_rows,
    loadavg,
    percentiles,
    standalone,
)

NAME = "classify"
GOAL_MS = 50.0


def run(quick: bool = False) -> list[Figure]:
    from posterdb.store import PosterDB

    n = 1000 if quick else 4000
    n_queries = 30 if quick else 100
    why = api_missing(PosterDB, "classify") or api_missing(PosterDB, "train")
    if why:
        return [Figure(NAME, "classify one poster p50", None, "ms", goal=f"≤ {GOAL_MS:.0f} ms",
                       note=f"skipped: {why}")]
    db = PosterDB.open(ensure_store(n), model_dir=MODELS)
    try:
        if db.genres.classifier() is None:
            db.train()
    except (ImportError, AttributeError, NotImplementedError) as e:
        return [Figure(NAME, "classify one poster p50", None, "ms", goal=f"≤ {GOAL_MS:.0f} ms",
                       note=f"skipped: db.train()/classifier() not usable yet "
                            f"({type(e).__name__}: {e})")]
    rows = label_rows()[n:n + n_queries]          # posters the store has never seen
    paths = [POSTERS / r["file"] for r in rows]
    for p in paths[:3]:                           # warm: model, index, classifier, caches
        db.classify([p])
        db.models.embed([p])
    load = loadavg()
    t_cls, t_emb = [], []
    for p, r in zip(paths, rows):
        t0 = time.perf_counter()
        (c,) = db.classify([p], [int(r["year"])])
        t_cls.append(time.perf_counter() - t0)
        assert c.genres is not None and len(c.evidence) > 0
        t0 = time.perf_counter()
        db.models.embed([p])
        t_emb.append(time.perf_counter() - t0)
    load += f" → {loadavg()}"
    p50, p99 = percentiles(t_cls)
    e50, e99 = percentiles(t_emb)
    return [
        Figure(NAME, f"classify one poster p50 ({n}-poster store)", p50, "ms", e50,
               "decode+embed only (db.embed) p50", f"≤ {GOAL_MS:.0f} ms", p50 <= GOAL_MS, load=load,
               note=f"{len(paths)} new posters, one call each, n_evidence 10"),
        Figure(NAME, "classify one poster p99", p99, "ms", e99, "decode+embed only p99", "", None,
               load=load),
    ]


if __name__ == "__main__":
    standalone(run)
