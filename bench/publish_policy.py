"""Publishing policy on ../shared/posters (issue 11, acceptance 3).

Seeded split by poster (seed 0, 25 % test, near-duplicates on one side; test posters that are
near-duplicates of training posters dropped), the same split as `posterdb eval`. The classifier is
fitted on the training side; the per-genre publishing thresholds come from its out-of-fold
probabilities only; the test side is scored once: micro precision / recall of the published
genres, the share of test posters with at least one published genre, per-genre figures.
`python -m bench.publish_policy [--precision 0.8]` prints the table and writes
artifacts/publish_policy.json.
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np

from .common import ARTIFACTS, Figure, label_rows, loadavg, real_vectors

NAME = "publish"


def measure(precision: float = 0.8, seed: int = 0) -> dict:
    from posterdb.classify.blend import GenreClassifier
    from posterdb.classify.heads import as_decades
    from posterdb.classify.publish import choose_publishing, policy_report, published
    from posterdb.classify.splits import (
        DEFAULT_DUP_THRESHOLD,
        drop_near_duplicates_of,
        grouped_train_test_split,
        near_duplicate_groups,
    )
    from posterdb.classify.thresholds import apply_thresholds
    from posterdb.core.genres import GENRES, parse_genres, to_multi_hot

    rows = label_rows()
    X = real_vectors(len(rows))
    X = X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)
    Y = to_multi_hot([parse_genres(r["genres"])[0] for r in rows])
    dec = as_decades([int(r["year"]) if r.get("year") else None for r in rows], len(rows))
    keep = Y.sum(1) > 0
    X, Y, dec = X[keep], Y[keep], dec[keep]
    tr, te = grouped_train_test_split(X, 0.25, seed, groups=near_duplicate_groups(X, DEFAULT_DUP_THRESHOLD))
    te = te[drop_near_duplicates_of(X[tr], X[te], DEFAULT_DUP_THRESHOLD)]
    t0 = time.perf_counter()
    clf = GenreClassifier().fit(X[tr], Y[tr], dec[tr], X_unlabelled=X[te], decades_unlabelled=dec[te])
    fit_s = time.perf_counter() - t0
    choose_publishing(clf, precision)          # exactly what `posterdb train` does
    t_pub = clf.publish_thresholds_
    P = clf.predict_proba(X[te], dec[te])
    predicted = apply_thresholds(P, clf.thresholds_, clf.min_genres)
    M = published(predicted, P, t_pub)
    test = policy_report(Y[te], M, t_pub, list(GENRES))
    oof = policy_report(clf.Y_, published(apply_thresholds(clf.oof_proba_, clf.thresholds_, 1),
                                          clf.oof_proba_, t_pub), t_pub, list(GENRES))
    all_pred = policy_report(Y[te], predicted, clf.thresholds_, list(GENRES))
    return {"precision_target": precision, "seed": seed, "n_train": int(len(tr)), "n_test": int(len(te)),
            "fit_s": round(fit_s, 1), "test": test, "train_oof": oof,
            "all_predicted_test": {k: all_pred[k] for k in ("micro_precision", "micro_recall")}}


def run(quick: bool = False, precision: float = 0.8) -> list[Figure]:
    load = loadavg()
    res = measure(precision)
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "publish_policy.json").write_text(json.dumps(res, indent=1))
    t = res["test"]
    return [Figure(NAME, f"published genres, micro precision on the test side (target {precision})",
                   t["micro_precision"], "", res["all_predicted_test"]["micro_precision"],
                   "every predicted genre (F1 thresholds)", f"≥ {precision}",
                   (t["micro_precision"] or 0) >= precision, load=load,
                   note=f"share of test posters with ≥ 1 published genre {t['share_with_published']:.3f}; "
                        f"micro recall {t['micro_recall']:.3f}; {t['published_genres']} genres publish")]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--precision", type=float, default=0.8)
    args = ap.parse_args()
    res = measure(args.precision)
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "publish_policy.json").write_text(json.dumps(res, indent=1))
    t = res["test"]
    print(f"seeded split seed {res['seed']}: {res['n_train']} train / {res['n_test']} test; "
          f"target precision {res['precision_target']}")
    print(f"test: micro precision {t['micro_precision']:.3f}, micro recall {t['micro_recall']:.3f}, "
          f"share with >= 1 published genre {t['share_with_published']:.3f} "
          f"({t['published_genres']} genres publish); all predicted genres: micro precision "
          f"{res['all_predicted_test']['micro_precision']:.3f}")
    print("| genre | threshold | test precision | test recall | published | positives |")
    print("| --- | --- | --- | --- | --- | --- |")
    for g in t["per_genre"]:
        thr = "never" if g["threshold"] is None else f"{g['threshold']:.3f}"
        prec = "—" if g["precision"] is None else f"{g['precision']:.3f}"
        print(f"| {g['genre']} | {thr} | {prec} | {g['recall']:.3f} | {g['published']} | {g['positives']} |")


if __name__ == "__main__":
    main()
