"""Review queue: out-of-fold vs in-sample probabilities at finding deliberately wrong labels.

    .venv/bin/python -m bench.review_oof [--swapped 100] [--top 200] [--seed 0] [--store DIR]

Ingests ../shared/posters (real mobilenet-v2 vectors), replaces the file labels of `--swapped`
labelled posters by one genre they do not have, trains, then counts how many of them reach the
top `--top` of the review queue's labelled posters ranked (a) with the out-of-fold probabilities
kept at training (what `db.curation.queue` uses) and (b) with in-sample probabilities of the
fitted model, both by the same mistakenness score (`posterdb.curation.queue.mistakenness`).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from posterdb.core.genres import GENRES, to_multi_hot
from posterdb.curation.queue import mistakenness
from posterdb.storage.catalog import embedding_table
from posterdb.store import PosterDB

from .common import CACHE, MODELS, POSTERS


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser()
    ap.add_argument("--swapped", type=int, default=100)
    ap.add_argument("--top", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--store", type=Path, default=CACHE / "review-oof-store")
    a = ap.parse_args(argv)
    db = PosterDB.open(a.store, model_dir=MODELS)
    if db.posters.count() < 5000:
        db.ingest(POSTERS, POSTERS / "labels.csv", auto_classify=False)
    model = db.models.default()
    rng = np.random.default_rng(a.seed)
    with db.catalog.read() as con:
        labels = db.catalog.labels(con, origin="file")
    chosen = sorted(rng.choice(sorted(labels), size=a.swapped, replace=False).tolist())
    wrong = {pid: [str(rng.choice([g for g in GENRES if g not in labels[pid]]))] for pid in chosen}
    with db.catalog.write() as con:
        db.catalog.set_labels(con, chosen, [wrong[p] for p in chosen], "file")
    try:
        t0 = time.perf_counter()
        db.train()
        train_s = time.perf_counter() - t0
        oof_top = [p["id"] for p in db.curation.queue("labelled", limit=a.top)]
        clf = db.genres.classifier()
        with db.catalog.read() as con:
            now = db.catalog.labels(con)
            ids, X = db.catalog.vectors(con, embedding_table(model))
            decades = db.catalog.decades(con)
        proba = clf.predict_proba(X, decades=[decades.get(int(i)) for i in ids])
        labelled = [k for k, i in enumerate(ids.tolist()) if now.get(i)]
        Y = to_multi_hot([now[int(ids[k])] for k in labelled])
        scores = [mistakenness(proba[k], y, list(GENRES)).score for k, y in zip(labelled, Y)]
        order = np.argsort(-np.asarray(scores), kind="stable")[:a.top]
        insample_top = [int(ids[labelled[j]]) for j in order]
    finally:  # put the true labels back
        with db.catalog.write() as con:
            db.catalog.set_labels(con, chosen, [labels[p] for p in chosen], "file")
    result = {"posters": db.posters.count(), "swapped": a.swapped, "top": a.top, "seed": a.seed,
              "train_seconds": round(train_s, 1),
              "found_out_of_fold": len(set(oof_top) & set(chosen)),
              "found_in_sample": len(set(insample_top) & set(chosen))}
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
