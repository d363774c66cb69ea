"""Side-by-side scores of several embedders of one store on the *same* posters and split.

Each model's vectors are aligned on the posters every model has; the seeded split is drawn once
(near-duplicate groups from the first model's vectors) and every model is scored on those rows
with `evaluate` (heads, vote, blend); train/test decades that do not overlap split by decade.
"""
from __future__ import annotations

from functools import reduce

import numpy as np

from posterdb.classify.experiment import evaluate
from posterdb.classify.splits import (
    DEFAULT_DUP_THRESHOLD, grouped_train_test_split, near_duplicate_groups)

METHODS = ("heads", "vote", "blend")


def compare_models(data: dict, *, train_decades=None, test_decades=None, seed: int = 0,
                   test_size: float = 0.25, transductive: bool = True, progress=None) -> dict:
    """data: model name -> (ids, X, Y, decades) as GenreService.training_data returns them."""
    if len(data) < 1:
        raise ValueError("compare_models needs at least one model")
    say = progress or (lambda _m: None)
    names = list(data)
    common = reduce(np.intersect1d, [np.asarray(data[m][0]) for m in names])
    aligned = {}
    for m in names:
        ids, X, Y, dec = data[m]
        pos = {int(i): j for j, i in enumerate(ids)}
        rows = np.asarray([pos[int(i)] for i in common], dtype=np.int64)
        aligned[m] = (np.asarray(X)[rows], np.asarray(Y)[rows], np.asarray(dec)[rows])
    X0, _, dec = aligned[names[0]]
    tr_set = set(train_decades or ()) or None
    te_set = set(test_decades or ()) or None
    if tr_set and te_set and not (tr_set & te_set):
        tr = np.flatnonzero(np.isin(dec, sorted(tr_set)))
        te = np.flatnonzero(np.isin(dec, sorted(te_set)))
        desc = f"train {sorted(tr_set)} -> test {sorted(te_set)}"
    else:
        tr, te = grouped_train_test_split(X0, test_size, seed,
                                          groups=near_duplicate_groups(X0, DEFAULT_DUP_THRESHOLD))
        if tr_set:
            tr = tr[np.isin(dec[tr], sorted(tr_set))]
        if te_set:
            te = te[np.isin(dec[te], sorted(te_set))]
        desc = f"seeded split (seed {seed}, test {test_size:.0%}; groups from {names[0]})"
    if len(tr) < 10 or len(te) == 0:
        raise ValueError(f"not enough posters to compare: {len(tr)} training, {len(te)} test")
    out = {"setup": {"description": desc, "n_common": int(len(common)), "n_train": int(len(tr)),
                     "n_test": int(len(te)), "transductive": bool(transductive)}, "models": {}}
    for m in names:
        X, Y, d = aligned[m]
        say(f"scoring {m} on {len(tr)} / {len(te)} posters")
        r = evaluate(X[tr], Y[tr], d[tr], X_test=X[te], Y_test=Y[te], test_years_or_decades=d[te],
                     methods=METHODS, cross_decade=False, transductive=transductive)
        out["models"][m] = {k: dict(v.averages) for k, v in r.methods.items()} | {
            "n_test": r.setup["n_test"]}
    return out
