"""Side-by-side evaluation: the study's SVMs vs posterdb's heads, vote and blend on the SAME split.

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
"""
from __future__ import annotations

import json
import math
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from sklearn.metrics import f1_score, precision_recall_fscore_support

from posterdb.classify.blend import GenreClassifier
from posterdb.classify.heads import UNKNOWN, as_decades
from posterdb.classify.splits import (DEFAULT_DUP_THRESHOLD, drop_near_duplicates_of,
                                      grouped_train_test_split, near_duplicate_groups)
from posterdb.classify.study import StudySVM
from posterdb.genres import GENRES

METHODS = ("study_svm", "study_svm_balanced", "heads", "vote", "blend")
METHOD_LABELS = {
    "study_svm": "study: RBF SVM (unbalanced)",
    "study_svm_balanced": "study: RBF SVM (balanced)",
    "heads": "posterdb: SVM heads only",
    "vote": "posterdb: similarity vote only",
    "blend": "posterdb: blend",
}
HEADS_LABELS = {"exact": "exact RBF SVMs", "nystroem": "Nystroem + balanced linear"}
AVERAGES = ("weighted", "macro", "micro", "samples")
MACRO_NOTE = ("macro F1 averages only the genres with support > 0 in the test set; "
              "genres absent from the test set are left out of the macro average for every method")


def scores(Y_true: np.ndarray, Y_pred: np.ndarray) -> dict[str, float]:
    """weighted / macro (genres with support only) / micro / samples F1."""
    Y_true = np.asarray(Y_true).astype(int)
    Y_pred = np.asarray(Y_pred).astype(int)
    if len(Y_true) == 0:
        return {a: float("nan") for a in AVERAGES}
    has = Y_true.sum(0) > 0
    return {
        "weighted": float(f1_score(Y_true, Y_pred, average="weighted", zero_division=0)),
        "macro": float(f1_score(Y_true[:, has], Y_pred[:, has], average="macro", zero_division=0))
        if has.any() else float("nan"),
        "micro": float(f1_score(Y_true, Y_pred, average="micro", zero_division=0)),
        "samples": float(f1_score(Y_true, Y_pred, average="samples", zero_division=0)),
    }


@dataclass
class MethodResult:
    name: str
    label: str
    averages: dict[str, float]
    per_genre: dict[str, dict[str, float]]
    fit_seconds: float
    predict_seconds: float

    @classmethod
    def compute(cls, name, Y_true, Y_pred, fit_s=0.0, pred_s=0.0) -> "MethodResult":
        p, r, f, s = precision_recall_fscore_support(Y_true, Y_pred, average=None,
                                                     labels=list(range(len(GENRES))), zero_division=0)
        per = {g: {"precision": float(p[j]), "recall": float(r[j]), "f1": float(f[j]), "support": int(s[j])}
               for j, g in enumerate(GENRES)}
        return cls(name, METHOD_LABELS.get(name, name), scores(Y_true, Y_pred), per, float(fit_s), float(pred_s))


def _clean(o):
    """JSON-safe: NaN/inf -> None, numpy scalars -> python."""
    if isinstance(o, dict):
        return {str(k): _clean(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_clean(v) for v in o]
    if isinstance(o, np.ndarray):
        return _clean(o.tolist())
    if isinstance(o, (np.floating, float)):
        f = float(o)
        return None if not math.isfinite(f) else f
    if isinstance(o, np.integer):
        return int(o)
    return o


@dataclass
class EvalReport:
    setup: dict
    methods: dict[str, MethodResult]
    per_decade: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    cross_decade: dict | None = None
    classifier: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)

    # -- serialisation -----------------------------------------------------------------------
    def to_dict(self) -> dict:
        return _clean({
            "setup": self.setup,
            "methods": {k: asdict(v) for k, v in self.methods.items()},
            "per_decade": self.per_decade,
            "cross_decade": self.cross_decade,
            "classifier": self.classifier,
            "timings": self.timings,
        })

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    def save_json(self, path: str | Path) -> Path:
        path = Path(path)
        _atomic_write(path, self.to_json().encode("utf-8"))
        return path

    # -- rendering ---------------------------------------------------------------------------
    def to_markdown(self) -> str:
        s = self.setup
        lines = [f"**Setup**: {s.get('description', '')} - {s['n_train']} training posters, "
                 f"{s['n_test']} test posters"
                 + (f" ({s['n_dropped_duplicates']} test near-duplicates of training posters dropped)"
                    if s.get("n_dropped_duplicates") else "") + ".", ""]
        lines += ["| method | weighted F1 | macro F1 | micro F1 | samples F1 |", "|---|---:|---:|---:|---:|"]
        for name, m in self.methods.items():
            a = m.averages
            lines.append(f"| {m.label} | " + " | ".join(_f(a[k]) for k in AVERAGES) + " |")
        lines += ["", f"_{MACRO_NOTE} ({len(s.get('genres_in_macro', []))} of {len(GENRES)} here)._"]
        if s.get("transductive"):
            lines.append("_Transductive: the test posters' features (not labels) were used for the "
                         "per-decade centring means._")
        if self.classifier:
            c = self.classifier
            lines.append(f"_Blend: {HEADS_LABELS.get(c.get('heads', 'exact'), c.get('heads'))} heads"
                         + (f" ({c['n_components']} landmarks)" if c.get("n_components") else "")
                         + f", alpha={c.get('alpha')}, k={c.get('k')}, T={c.get('temperature')}, "
                         f"C={c.get('C')}, decade heads={c.get('decade_heads')} "
                         f"(weight {c.get('decade_weight')}); chosen out of fold on the training side._")
        names = list(self.methods)
        lines += ["", "| genre | support | " + " | ".join(self.methods[n].label for n in names) + " |",
                  "|---|---:|" + "---:|" * len(names)]
        for g in GENRES:
            sup = self.methods[names[0]].per_genre[g]["support"]
            lines.append(f"| {g} | {sup} | " + " | ".join(_f(self.methods[n].per_genre[g]["f1"]) for n in names) + " |")
        if self.per_decade:
            decs = sorted({d for v in self.per_decade.values() for d in v}, key=_dec_key)
            lines += ["", "| decade | n | " + " | ".join(f"{METHOD_LABELS.get(m, m)} weighted / macro" for m in self.per_decade) + " |",
                      "|---|---:|" + "---:|" * len(self.per_decade)]
            for d in decs:
                first = next(iter(self.per_decade.values()))
                n = first.get(d, {}).get("n", 0)
                cells = []
                for m, v in self.per_decade.items():
                    r = v.get(d)
                    cells.append("-" if r is None else f"{_f(r['weighted'])} / {_f(r['macro'])}")
                lines.append(f"| {d} | {n} | " + " | ".join(cells) + " |")
        if self.cross_decade:
            cd = self.cross_decade
            decs = cd["decades"]
            for m, mats in cd["methods"].items():
                lines += ["", f"Cross-decade weighted F1, {METHOD_LABELS.get(m, m)} (rows: train decade, columns: test decade)", "",
                          "| train \\ test | " + " | ".join(str(d) for d in decs) + " |",
                          "|---|" + "---:|" * len(decs)]
                for i, d in enumerate(decs):
                    lines.append(f"| {d} | " + " | ".join(_f(v) for v in mats["weighted"][i]) + " |")
        return "\n".join(lines) + "\n"

    def render_png(self, path: str | Path, dpi: int = 110) -> Path:
        import matplotlib
        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt

        path = Path(path)
        names = list(self.methods)
        genres = [g for g in GENRES if self.methods[names[0]].per_genre[g]["support"] > 0]
        has_cd = bool(self.cross_decade and self.cross_decade.get("methods")
                      and self.cross_decade.get("decades"))
        fig = plt.figure(figsize=(15, 10 if has_cd else 5.5))
        ax = fig.add_subplot(2 if has_cd else 1, 1, 1)
        width = 0.8 / max(len(names), 1)
        xs = np.arange(len(genres))
        for i, n in enumerate(names):
            m = self.methods[n]
            ax.bar(xs + (i - (len(names) - 1) / 2) * width, [m.per_genre[g]["f1"] for g in genres], width,
                   label=f"{m.label} (w {m.averages['weighted']:.2f} / macro {m.averages['macro']:.2f})")
        ax.set_xticks(xs)
        ax.set_xticklabels([f"{g}\n({self.methods[names[0]].per_genre[g]['support']})" for g in genres],
                           rotation=45, ha="right", fontsize=8)
        ax.set_ylabel("F1")
        ax.set_ylim(0, 1)
        ax.set_title(f"Per-genre F1 - {self.setup.get('description', '')}", fontsize=10)
        ax.legend(fontsize=8, loc="upper right")
        if has_cd:
            cd = self.cross_decade
            decs = cd["decades"]
            meths = list(cd["methods"])
            vals = [np.array(cd["methods"][m]["weighted"], dtype=float) for m in meths]
            finite = [x for v in vals for x in v.ravel() if np.isfinite(x)]
            vmax = max(finite) if finite else 1.0
            for i, (m, v) in enumerate(zip(meths, vals)):
                axh = fig.add_subplot(2, len(meths), len(meths) + i + 1)
                im = axh.imshow(v, vmin=0, vmax=vmax, cmap="viridis")
                axh.set_xticks(range(len(decs)))
                axh.set_xticklabels([str(d) for d in decs], rotation=45, fontsize=8)
                axh.set_yticks(range(len(decs)))
                axh.set_yticklabels([str(d) for d in decs], fontsize=8)
                axh.set_xlabel("test decade")
                axh.set_ylabel("train decade")
                axh.set_title(f"cross-decade weighted F1: {METHOD_LABELS.get(m, m)}", fontsize=9)
                for r in range(len(decs)):
                    for c in range(len(decs)):
                        if np.isfinite(v[r, c]):
                            axh.text(c, r, f"{v[r, c]:.2f}", ha="center", va="center", fontsize=6,
                                     color="white" if v[r, c] < 0.6 * vmax else "black")
                fig.colorbar(im, ax=axh, fraction=0.046)
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".png", dir=path.parent)
        os.close(fd)
        try:
            fig.savefig(tmp, dpi=dpi, format="png")
            os.replace(tmp, path)
        finally:
            plt.close(fig)
            if os.path.exists(tmp):
                os.unlink(tmp)
        return path


def _f(v) -> str:
    return "-" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:.3f}"


def _dec_key(d):
    try:
        return int(d)
    except (TypeError, ValueError):
        return 10**9


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


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
