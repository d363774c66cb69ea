"""Side-by-side evaluation: the study's SVMs vs posterdb's heads, vote and blend on the SAME split
(on vectors; a store's `posterdb eval` is classify/evaluation.py).

`evaluate()` returns an `EvalReport` with, per method, per-genre precision / recall / F1 /
support and the micro, macro, weighted and samples averages (sklearn, zero_division=0); per-decade
F1 for the blend and the study's balanced SVM; and a cross-decade matrix (train on decade A, test
on decade B) for those two. Macro F1 averages only the genres with support > 0 in the test set
(a genre absent from the test set has no defined F1; counting it as 0 would punish every method
alike and hide differences) - the report lists which genres counted.

Protocol: hyper-parameters, thresholds and alpha are chosen inside GenreClassifier.fit on
out-of-fold predictions of the training side only. With `transductive=True` (default) the test
posters' FEATURES (never their labels) are given to fit as unlabelled posters, for the per-decade
centring means - the store holds those images, labelled or not. The report says so.
The report's type, its JSON and its rendering live in report.py.
"""
from __future__ import annotations

import time

import numpy as np

from posterdb.classify.blend import GenreClassifier
from posterdb.classify.heads import UNKNOWN, as_decades
from posterdb.classify.report import (
    HEADS_LABELS, MACRO_NOTE, METHOD_LABELS, METHODS, EvalReport, MethodResult, scores)
from posterdb.classify.splits import (
    DEFAULT_DUP_THRESHOLD, drop_near_duplicates_of, grouped_train_test_split,
    near_duplicate_groups)
from posterdb.classify.study import StudySVM
from posterdb.core.genres import GENRES


def _decade_set(v) -> set[int] | None:
    if v is None:
        return None
    if isinstance(v, (int, np.integer)):
        v = [v]
    return {int(x) // 10 * 10 for x in v}


def _per_decade(Y, P, dec) -> dict[str, dict[str, float]]:
    out = {}
    for d in sorted(set(dec.tolist())):
        m = dec == d
        s = scores(Y[m], P[m])
        s["n"] = int(m.sum())
        out["unknown" if d == UNKNOWN else str(d)] = s
    return out


# ---------------------------------------------------------------------------------------------
def evaluate(X, Y, years_or_decades=None, *, train_decades=None, test_decades=None, seed: int = 0,
             test_size: float = 0.25, X_test=None, Y_test=None, test_years_or_decades=None,
             transductive: bool = True, dup_threshold: float = DEFAULT_DUP_THRESHOLD,
             methods: tuple[str, ...] = METHODS, cross_decade: bool = True, cross_decade_min: int = 150,
             cross_decade_diagonal: bool = True, classifier_params: dict | None = None,
             study_precompute_kernel: bool = True, compare_heads: str | None = None,
             progress=None) -> EvalReport:
    """Evaluate the study's SVMs and posterdb's classifier side by side on one split.

    X (n, d) L2-normalised vectors, Y (n, 19) multi-hot (GENRES order), years_or_decades per row
    (None = unknown). The split:
      * X_test / Y_test given (external test set, e.g. --test-labels): train on X (restricted to
        train_decades if given), test on X_test (restricted to test_decades if given);
      * train_decades and test_decades given and disjoint: train on the posters of the one, test
        on the posters of the other, no split;
      * otherwise a seeded split by poster (near-duplicates together), test_size of the posters,
        then restricted to train_decades / test_decades on each side.
    Test posters that are near-duplicates (cos >= dup_threshold) of training posters are dropped.
    The cross-decade matrix covers decades with >= cross_decade_min labelled posters in X.
    `compare_heads` ("exact" / "nystroem"): also fit the classifier with those heads on the same
    split and report its heads and blend as extra rows ("heads[KIND]", "blend[KIND]").
    `progress`: optional callable(str) for status lines.
    """
    say = progress or (lambda _msg: None)
    t_start = time.perf_counter()
    X = np.asarray(X, dtype=np.float32)
    Y = (np.asarray(Y) > 0).astype(np.uint8)
    if Y.shape != (len(X), len(GENRES)):
        raise ValueError(f"Y must be (n, {len(GENRES)}) for X with n={len(X)} rows, got {Y.shape}")
    dec = as_decades(years_or_decades, len(X))
    tr_set, te_set = _decade_set(train_decades), _decade_set(test_decades)
    unknown_methods = set(methods) - set(METHODS)
    if unknown_methods:
        raise ValueError(f"unknown methods {sorted(unknown_methods)}; choose from {METHODS}")

    def in_set(d, s):
        return np.ones(len(d), bool) if s is None else np.isin(d, sorted(s))

    n_dropped = 0
    if X_test is not None:
        if Y_test is None:
            raise ValueError("X_test needs Y_test")
        Xte = np.asarray(X_test, dtype=np.float32)
        Yte = (np.asarray(Y_test) > 0).astype(np.uint8)
        dte = as_decades(test_years_or_decades, len(Xte))
        tr = np.flatnonzero(in_set(dec, tr_set))
        keep = in_set(dte, te_set)
        Xtr, Ytr, dtr = X[tr], Y[tr], dec[tr]
        Xte, Yte, dte = Xte[keep], Yte[keep], dte[keep]
        mode = "external"
        desc = "external test set"
    else:
        disjoint = tr_set is not None and te_set is not None and not (tr_set & te_set)
        if disjoint:
            tr = np.flatnonzero(in_set(dec, tr_set))
            te = np.flatnonzero(in_set(dec, te_set))
            mode = "cross-decade"
            desc = (f"train {'+'.join(f'{d}s' for d in sorted(tr_set))} -> "
                    f"test {'+'.join(f'{d}s' for d in sorted(te_set))}")
        else:
            groups = near_duplicate_groups(X, dup_threshold)
            tr_all, te_all = grouped_train_test_split(X, test_size, seed, groups=groups)
            tr = tr_all[in_set(dec[tr_all], tr_set)]
            te = te_all[in_set(dec[te_all], te_set)]
            mode = "split"
            desc = (f"seeded split (seed {seed}, test {test_size:.0%})"
                    + (f", train decades {sorted(tr_set)}" if tr_set else "")
                    + (f", test decades {sorted(te_set)}" if te_set else ""))
        Xtr, Ytr, dtr = X[tr], Y[tr], dec[tr]
        Xte, Yte, dte = X[te], Y[te], dec[te]
    keep = drop_near_duplicates_of(Xtr, Xte, dup_threshold)
    n_dropped = int((~keep).sum())
    Xte, Yte, dte = Xte[keep], Yte[keep], dte[keep]
    if len(Xtr) < 10 or len(Xte) == 0:
        raise ValueError(f"not enough posters to evaluate: {len(Xtr)} training, {len(Xte)} test")

    results: dict[str, MethodResult] = {}
    preds: dict[str, np.ndarray] = {}
    timings = {}
    for cw, name in ((None, "study_svm"), ("balanced", "study_svm_balanced")):
        if name not in methods:
            continue
        say(f"fitting {METHOD_LABELS[name]} on {len(Xtr)} posters")
        t0 = time.perf_counter()
        m = StudySVM(class_weight=cw, precompute_kernel=study_precompute_kernel).fit(Xtr, Ytr)
        t1 = time.perf_counter()
        preds[name] = m.predict(Xte)
        t2 = time.perf_counter()
        results[name] = MethodResult.compute(name, Yte, preds[name], t1 - t0, t2 - t1)
    clf_summary = {}
    if {"heads", "vote", "blend"} & set(methods):
        say(f"fitting posterdb GenreClassifier on {len(Xtr)} posters")
        t0 = time.perf_counter()
        clf = GenreClassifier(**(classifier_params or {})).fit(
            Xtr, Ytr, dtr, X_unlabelled=Xte if transductive else None,
            decades_unlabelled=dte if transductive else None)
        t1 = time.perf_counter()
        for name in ("heads", "vote", "blend"):
            if name in methods:
                t2 = time.perf_counter()
                preds[name] = clf.predict(Xte, dte, component=name)
                t3 = time.perf_counter()
                results[name] = MethodResult.compute(name, Yte, preds[name], t1 - t0, t3 - t2)
        clf_summary = clf.summary()
        if "heads" in results:
            results["heads"].label = f"{METHOD_LABELS['heads']} ({HEADS_LABELS[clf.heads_kind_]})"
    extra = {}
    if compare_heads is not None:
        say(f"fitting posterdb GenreClassifier with {compare_heads} heads on {len(Xtr)} posters")
        t0 = time.perf_counter()
        alt = GenreClassifier(**((classifier_params or {}) | {"heads": compare_heads})).fit(
            Xtr, Ytr, dtr, X_unlabelled=Xte if transductive else None,
            decades_unlabelled=dte if transductive else None)
        t1 = time.perf_counter()
        for comp in ("heads", "blend"):
            t2 = time.perf_counter()
            pred = alt.predict(Xte, dte, component=comp)
            name = f"{comp}[{alt.heads_kind_}]"
            extra[name] = MethodResult.compute(name, Yte, pred, t1 - t0, time.perf_counter() - t2)
            extra[name].label = (f"posterdb: {'heads only' if comp == 'heads' else 'blend'} "
                                 f"({HEADS_LABELS[alt.heads_kind_]})")
        clf_summary["compared"] = alt.summary()
    results = {k: results[k] for k in METHODS if k in results} | extra
    per_decade = {name: _per_decade(Yte, preds[name], dte)
                  for name in ("blend", "study_svm_balanced") if name in preds}
    timings["main"] = time.perf_counter() - t_start

    cd = None
    if cross_decade:
        t0 = time.perf_counter()
        cd = cross_decade_matrix(X, Y, dec, min_posters=cross_decade_min, seed=seed,
                                 test_size=test_size, diagonal=cross_decade_diagonal,
                                 transductive=transductive, dup_threshold=dup_threshold,
                                 classifier_params=classifier_params,
                                 study_precompute_kernel=study_precompute_kernel, progress=say)
        timings["cross_decade"] = time.perf_counter() - t0
    timings["total"] = time.perf_counter() - t_start

    genres_in_macro = [g for j, g in enumerate(GENRES) if Yte[:, j].sum() > 0]
    setup = {
        "mode": mode, "description": desc, "n_train": int(len(Xtr)), "n_test": int(len(Xte)),
        "train_decades": sorted({int(d) for d in dtr if d != UNKNOWN}),
        "test_decades": sorted({int(d) for d in dte if d != UNKNOWN}),
        "seed": seed, "test_size": test_size if mode == "split" else None,
        "dup_threshold": dup_threshold, "n_dropped_duplicates": n_dropped,
        "transductive": bool(transductive),
        "transductive_note": ("test posters' features (not labels) used for per-decade centring means"
                              if transductive else "no test-side information used"),
        "macro_note": MACRO_NOTE, "genres_in_macro": genres_in_macro,
        "selection": "alpha, k, T, decade weight and per-genre thresholds chosen on out-of-fold "
                     "predictions of the training side; the test side is never used for tuning",
        "study_svm": "SVC(kernel='rbf', C=1, gamma='scale') per genre, class_weight None / 'balanced'"
                     + (" (kernel precomputed: same model, faster)" if study_precompute_kernel else ""),
    }
    return EvalReport(setup, results, per_decade, cd, clf_summary, timings)


def cross_decade_matrix(X, Y, decades, *, min_posters: int = 150, seed: int = 0, test_size: float = 0.25,
                        diagonal: bool = True, transductive: bool = True,
                        dup_threshold: float = DEFAULT_DUP_THRESHOLD, classifier_params: dict | None = None,
                        study_precompute_kernel: bool = True, progress=None) -> dict:
    """Train on decade A, test on decade B for every pair of decades with >= min_posters labelled
    posters, for the blend and the study's balanced SVM. Diagonal (A == A): seeded split within
    the decade (or NaN with diagonal=False). Cells hold weighted / macro F1. One fit per train
    decade (plus one per diagonal cell): bounded by the number of eligible decades."""
    say = progress or (lambda _msg: None)
    X = np.asarray(X, dtype=np.float32)
    Y = (np.asarray(Y) > 0).astype(np.uint8)
    dec = as_decades(decades, len(X))
    vals, counts = np.unique(dec[dec != UNKNOWN], return_counts=True)
    decs = [int(d) for d, c in zip(vals, counts) if c >= min_posters]
    n = len(decs)
    mats = {m: {"weighted": np.full((n, n), np.nan), "macro": np.full((n, n), np.nan)}
            for m in ("blend", "study_svm_balanced")}
    n_test = np.zeros((n, n), dtype=int)

    def fit_predict(tr_idx, tests: dict[int, np.ndarray]):
        unl = np.concatenate(list(tests.values())) if tests else np.zeros(0, int)
        clf = GenreClassifier(**(classifier_params or {})).fit(
            X[tr_idx], Y[tr_idx], dec[tr_idx],
            X_unlabelled=X[unl] if transductive and len(unl) else None,
            decades_unlabelled=dec[unl] if transductive and len(unl) else None)
        svm = StudySVM(class_weight="balanced", precompute_kernel=study_precompute_kernel).fit(X[tr_idx], Y[tr_idx])
        out = {}
        for key, te_idx in tests.items():
            te_idx = te_idx[drop_near_duplicates_of(X[tr_idx], X[te_idx], dup_threshold)]
            if not len(te_idx):
                continue
            out[key] = (len(te_idx), scores(Y[te_idx], clf.predict(X[te_idx], dec[te_idx])),
                        scores(Y[te_idx], svm.predict(X[te_idx])))
        return out

    for i, a in enumerate(decs):
        say(f"cross-decade: training on the {a}s")
        rows_a = np.flatnonzero(dec == a)
        tests = {j: np.flatnonzero(dec == b) for j, b in enumerate(decs) if b != a}
        res = fit_predict(rows_a, tests)
        if diagonal:
            tr_l, te_l = grouped_train_test_split(X[rows_a], test_size, seed,
                                                  groups=near_duplicate_groups(X[rows_a], dup_threshold))
            res.update(fit_predict(rows_a[tr_l], {i: rows_a[te_l]}))
        for j, (cnt, s_blend, s_svm) in res.items():
            n_test[i, j] = cnt
            for m, s in (("blend", s_blend), ("study_svm_balanced", s_svm)):
                mats[m]["weighted"][i, j] = s["weighted"]
                mats[m]["macro"][i, j] = s["macro"]
    off = ~np.eye(n, dtype=bool)
    summary = {m: {"mean_off_diagonal_weighted": float(np.nanmean(v["weighted"][off])) if n > 1 else None,
                   "mean_off_diagonal_macro": float(np.nanmean(v["macro"][off])) if n > 1 else None}
               for m, v in mats.items()}
    return {"decades": decs, "min_posters": min_posters,
            "diagonal": "seeded split within the decade" if diagonal else "not computed",
            "methods": {m: {k: v.tolist() for k, v in d.items()} for m, d in mats.items()},
            "n_test": n_test.tolist(), "summary": summary}
