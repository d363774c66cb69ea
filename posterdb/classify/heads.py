"""One-vs-rest RBF SVM heads with class balancing and Platt-calibrated probabilities.

`SVMHeads` fits, per genre, `SVC(kernel="rbf", C, gamma, class_weight="balanced")` on a kernel
matrix computed once and shared by all genres (kernel="precomputed": the same model, much faster
than letting libsvm recompute 1280-d distances per genre). Probabilities come from a Platt sigmoid
fitted on out-of-fold decision values (K folds that keep near-duplicate groups together); the
out-of-fold probabilities are kept (`oof_proba_`) for model selection and threshold tuning upstream.

Besides the global head, decades with at least `min_decade_size` labelled posters get a head of
their own; for a poster of such a decade p = beta * p_decade + (1 - beta) * p_global (beta chosen
on out-of-fold data when `decade_weight="auto"`); unknown decade or a decade without a head ->
the global head. Genres with fewer than `min_positives` positives (or negatives) get a constant
prior instead of an SVM, so e.g. TV Movie (no poster) never crashes anything.

`DecadeCentering` is the (optionally transductive) feature normalisation: subtract the mean vector
of the poster's decade, then L2-normalise.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from sklearn.svm import SVC

from posterdb.classify.progress import as_progress
from posterdb.classify.splits import group_kfold
from posterdb.classify.thresholds import best_f1_threshold

UNKNOWN = -1  # decade code for "year unknown"


# ---------------------------------------------------------------------------------------------
# small shared helpers
def as_decades(decades, n: int) -> np.ndarray:
    """Years or decades (ints, None/NaN/-1 for unknown) -> int64 decades with -1 for unknown."""
    if decades is None:
        return np.full(n, UNKNOWN, dtype=np.int64)
    out = np.full(n, UNKNOWN, dtype=np.int64)
    vals = list(decades) if not isinstance(decades, np.ndarray) else decades.tolist()
    if len(vals) != n:
        raise ValueError(f"decades has {len(vals)} entries for {n} posters")
    for i, v in enumerate(vals):
        if v is None:
            continue
        try:
            f = float(v)
        except (TypeError, ValueError):
            continue
        if np.isnan(f) or f < 0:
            continue
        out[i] = int(f) // 10 * 10
    return out


def l2n(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def rbf_kernel(A: np.ndarray, B: np.ndarray, gamma: float,
               B_sq: np.ndarray | None = None) -> np.ndarray:
    """exp(-gamma * |a - b|^2) as float64 (n_a, n_b); inner products in float32 for speed.
    `B_sq`: the rows of B's squared norms, when the caller keeps them (B fixed across calls)."""
    A = np.asarray(A, dtype=np.float32)
    B = np.asarray(B, dtype=np.float32)
    if B_sq is None:
        B_sq = np.einsum("ij,ij->i", B, B)
    sq = (np.einsum("ij,ij->i", A, A)[:, None] + B_sq[None, :] - 2.0 * (A @ B.T))
    return np.exp(-gamma * np.maximum(sq, 0.0), dtype=np.float64)


def f1_objective(P: np.ndarray, Y: np.ndarray) -> tuple[float, float]:
    """(weighted F1, macro F1) over genres with positives, each genre at its F1-optimal threshold.
    Cheap stand-in for the full report, used for model selection on out-of-fold data."""
    f1s, sup = [], []
    for j in range(Y.shape[1]):
        s = int(Y[:, j].sum())
        if s == 0:
            continue
        f1s.append(best_f1_threshold(P[:, j], Y[:, j])[1])
        sup.append(s)
    if not f1s:
        return 0.0, 0.0
    f1s, sup = np.array(f1s), np.array(sup, dtype=float)
    return float((f1s * sup).sum() / sup.sum()), float(f1s.mean())


# ---------------------------------------------------------------------------------------------
# Platt scaling
def platt_fit(d: np.ndarray, y: np.ndarray, iters: int = 100) -> tuple[float, float]:
    """Fit p = sigmoid(a*d + b) by Newton's method on Platt's smoothed targets; returns (a, b)."""
    d = np.asarray(d, dtype=np.float64)
    y = np.asarray(y).astype(bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    t = np.where(y, (n_pos + 1.0) / (n_pos + 2.0), 1.0 / (n_neg + 2.0))
    a, b = 1.0, float(np.log((n_pos + 1.0) / (n_neg + 1.0)))

    def loss(a_, b_):
        z = a_ * d + b_
        return float(np.sum(np.logaddexp(0, z) - t * z))

    cur = loss(a, b)
    for _ in range(iters):
        z = a * d + b
        p = 1.0 / (1.0 + np.exp(-z))
        g = np.array([np.sum((p - t) * d), np.sum(p - t)])
        w = p * (1 - p) + 1e-12
        H = np.array([[np.sum(w * d * d), np.sum(w * d)], [np.sum(w * d), np.sum(w)]]) + 1e-9 * np.eye(2)
        step = np.linalg.solve(H, g)
        s = 1.0
        while s > 1e-8:
            na, nb = a - s * step[0], b - s * step[1]
            new = loss(na, nb)
            if new <= cur + 1e-12:
                break
            s /= 2
        if s <= 1e-8:
            break
        a, b, gain = na, nb, cur - new
        cur = new
        if gain < 1e-10 * max(1.0, abs(cur)):
            break
    return float(a), float(b)


def platt_apply(D: np.ndarray, ab: np.ndarray) -> np.ndarray:
    """D (n, g) decision values, ab (g, 2) -> probabilities (n, g)."""
    z = D * ab[:, 0] + ab[:, 1]
    return 1.0 / (1.0 + np.exp(-np.clip(z, -40, 40)))


# ---------------------------------------------------------------------------------------------
class DecadeCentering:
    """x -> l2(x - mean of x's decade). Decades with fewer than `min_size` posters (and unknown
    years) use the global mean. Means may come from unlabelled posters too (transductive): the
    store holds those images even when nobody labelled them."""

    def __init__(self, mode: str | None = "decade", min_size: int = 20):
        if mode not in ("decade", "global", None):
            raise ValueError(f"centering mode must be 'decade', 'global' or None, got {mode!r}")
        self.mode = mode
        self.min_size = min_size

    def fit(self, X: np.ndarray, decades: np.ndarray) -> "DecadeCentering":
        X = l2n(X)
        decades = np.asarray(decades)
        self.global_mean_ = X.mean(0) if len(X) else np.zeros(X.shape[1], np.float32)
        self.means_: dict[int, np.ndarray] = {}
        self.counts_: dict[int, int] = {}
        if self.mode == "decade":
            for d in np.unique(decades):
                if d == UNKNOWN:
                    continue
                m = decades == d
                self.counts_[int(d)] = int(m.sum())
                if m.sum() >= self.min_size:
                    self.means_[int(d)] = X[m].mean(0)
        return self

    def add(self, X: np.ndarray, decades: np.ndarray, overwrite: bool = False) -> list[int]:
        """Learn means for decades not known yet (or all of them given `overwrite`) from X."""
        X = l2n(X)
        decades = np.asarray(decades)
        added = []
        if self.mode != "decade":
            return added
        for d in np.unique(decades):
            d = int(d)
            if d == UNKNOWN or (d in self.means_ and not overwrite):
                continue
            m = decades == d
            if m.sum() >= self.min_size:
                self.means_[d] = X[m].mean(0)
                self.counts_[d] = int(m.sum())
                added.append(d)
        return added

    def transform(self, X: np.ndarray, decades: np.ndarray) -> np.ndarray:
        X = l2n(X)
        if self.mode is None:
            return X
        decades = np.asarray(decades)
        mu = np.repeat(self.global_mean_[None, :], len(X), axis=0)
        if self.mode == "decade":
            for d, m in self.means_.items():
                sel = decades == d
                if sel.any():
                    mu[sel] = m
        return l2n(X - mu)


# ---------------------------------------------------------------------------------------------
class _Block:
    """One set of per-genre heads (global, or one decade) over training rows `rows`.
    `cols`: which columns of the head's query features this block reads (None = all of them;
    exact heads read the kernel columns of their own training rows)."""

    def __init__(self, rows, W, b, ab, ok, prior, cols="rows"):
        self.rows, self.W, self.b, self.ab, self.ok, self.prior = rows, W, b, ab, ok, prior
        self.cols = rows if isinstance(cols, str) and cols == "rows" else cols

    def __setstate__(self, state):  # blocks pickled before `cols` existed read their own rows
        self.__dict__.update(state)
        self.__dict__.setdefault("cols", self.rows)

    def proba(self, F: np.ndarray) -> np.ndarray:
        """F: the query features this block reads (kernel columns of its rows, or all features)."""
        D = F @ self.W + self.b
        P = platt_apply(D, self.ab)
        return np.where(self.ok, P, self.prior)


class DecadeMixture:
    """What exact and approximate heads share: global + per-decade blocks, the out-of-fold choice
    of the decade weight beta, and p = beta * p_decade + (1 - beta) * p_global at prediction.
    Subclasses set `global_` and `decade_blocks_` and implement `features(X)`."""

    decade_weight: float | str
    decade_weight_grid: tuple[float, ...]

    def features(self, X: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def _fit_inputs(self, X, Y, decades, groups):
        """The checks and casts every `fit` starts with; sets `n_genres_` and `gamma_`."""
        X = np.asarray(X, dtype=np.float32)
        Y = np.asarray(Y).astype(np.uint8)
        n = len(X)
        if n < 2:
            raise ValueError("need at least 2 labelled posters to fit the heads")
        groups = np.arange(n) if groups is None else np.asarray(groups)
        self.n_genres_ = Y.shape[1]
        self.gamma_ = (1.0 / (X.shape[1] * float(X.var()))) if self.gamma == "scale" else float(self.gamma)
        return X, Y, n, as_decades(decades, n), groups

    def _decade_rows(self, dec: np.ndarray, n: int):
        """(decade, rows) for each decade that gets a head of its own: known, at least
        `min_decade_size` posters, and not every poster (then it is the global head)."""
        for d in np.unique(dec):
            rows = np.flatnonzero(dec == d)
            if d != UNKNOWN and self.min_decade_size <= len(rows) < n:
                yield int(d), rows

    def _choose_decade_weight(self, oof_global: np.ndarray, oof_dec: dict[int, np.ndarray],
                              Y: np.ndarray) -> None:
        def combine(beta):
            P = oof_global.copy()
            for d, blk in self.decade_blocks_.items():
                P[blk.rows] = np.where(blk.ok, beta * oof_dec[d] + (1 - beta) * oof_global[blk.rows],
                                       oof_global[blk.rows])
            return P

        if not self.decade_blocks_:
            self.decade_weight_ = 0.0
        elif self.decade_weight == "auto":
            scores = {b: sum(f1_objective(combine(b), Y)) for b in self.decade_weight_grid}
            self.decade_weight_ = float(max(scores, key=lambda b: (scores[b], -b)))
        else:
            self.decade_weight_ = float(self.decade_weight)
        self.oof_proba_ = combine(self.decade_weight_)
        self.oof_proba_global_ = oof_global
        self.decades_ = sorted(self.decade_blocks_)

    def predict_proba(self, X: np.ndarray, decades=None, K: np.ndarray | None = None,
                      return_heads: bool = False):
        """(n, g) probabilities; with `return_heads`, also the decade whose head was used per row
        (None = global only). `K`: the query features, when the caller has them already."""
        n = len(X)
        dec = as_decades(decades, n)
        F = self.features(X) if K is None else K
        P = self.global_.proba(F)
        used: list[int | None] = [None] * n
        beta = self.decade_weight_
        for d, blk in self.decade_blocks_.items():
            sel = np.flatnonzero(dec == d)
            if not len(sel) or beta == 0.0:
                continue
            Pd = blk.proba(F[sel] if blk.cols is None else F[np.ix_(sel, blk.cols)])
            P[sel] = np.where(blk.ok, beta * Pd + (1 - beta) * P[sel], P[sel])
            for i in sel:
                used[i] = int(d)
        return (P, used) if return_heads else P


class SVMHeads(DecadeMixture):
    """Per-genre balanced RBF SVMs (global + per-decade), Platt-calibrated out of fold."""

    def __init__(self, C: float = 0.3, gamma: float | str = "scale", n_folds: int = 3,
                 min_positives: int = 3, min_decade_size: int = 300,
                 decade_weight: float | str = "auto",
                 decade_weight_grid: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0),
                 n_jobs: int | None = None, random_state: int = 0):
        self.C = C
        self.gamma = gamma
        self.n_folds = n_folds
        self.min_positives = min_positives
        self.min_decade_size = min_decade_size
        self.decade_weight = decade_weight
        self.decade_weight_grid = decade_weight_grid
        self.n_jobs = n_jobs
        self.random_state = random_state

    # -- fitting -----------------------------------------------------------------------------
    def _fit_block(self, K: np.ndarray, Y: np.ndarray, rows: np.ndarray, groups: np.ndarray,
                   pool: ThreadPoolExecutor, prog=None, label: str = "global") -> tuple[_Block, np.ndarray]:
        """Fit heads on training rows `rows` (K restricted to them); returns block and OOF proba."""
        n, g = len(rows), Y.shape[1]
        Yb = Y[rows]
        prior = Yb.mean(0).astype(np.float64)
        folds = group_kfold(groups[rows], min(self.n_folds, n), seed=self.random_state)
        Kb = K[np.ix_(rows, rows)]
        fold_K = [(a, b, np.ascontiguousarray(Kb[np.ix_(a, a)]), Kb[np.ix_(b, a)]) for a, b in folds]
        W = np.zeros((n, g))
        bias = np.zeros(g)
        ab = np.zeros((g, 2))
        ok = np.zeros(g, dtype=bool)
        oof = np.tile(prior, (n, 1))

        def enough(y):
            return y.sum() >= self.min_positives and (len(y) - y.sum()) >= self.min_positives

        def one(j):
            y = Yb[:, j].astype(int)
            if not enough(y):
                return j, None
            d_oof = np.full(n, np.nan)
            for a, b, Kaa, Kba in fold_K:
                ya = y[a]
                if ya.min() == ya.max():
                    continue
                m = SVC(kernel="precomputed", C=self.C, class_weight="balanced").fit(Kaa, ya)
                d_oof[b] = m.decision_function(Kba)
            valid = ~np.isnan(d_oof)
            if valid.sum() < 2 or y[valid].min() == y[valid].max():
                return j, None
            a_, b_ = platt_fit(d_oof[valid], y[valid])
            m = SVC(kernel="precomputed", C=self.C, class_weight="balanced").fit(Kb, y)
            w = np.zeros(n)
            w[m.support_] = m.dual_coef_[0]
            return j, (w, float(m.intercept_[0]), (a_, b_), d_oof, valid)

        for j, res in pool.map(one, range(g)):
            if prog is not None:
                prog.step(f"heads ({label}, exact RBF SVM)")
            if res is None:
                continue
            w, b0, (a_, b_), d_oof, valid = res
            W[:, j], bias[j], ab[j] = w, b0, (a_, b_)
            ok[j] = True
            oof[valid, j] = platt_apply(d_oof[valid, None], ab[j : j + 1])[:, 0]
        return _Block(rows, W, bias, ab, ok, prior), oof

    def fit(self, X: np.ndarray, Y: np.ndarray, decades=None, groups=None, progress=None) -> "SVMHeads":
        prog = as_progress(progress)
        X, Y, n, dec, groups = self._fit_inputs(X, Y, decades, groups)
        self.X_ = X
        K = rbf_kernel(X, X, self.gamma_)
        n_jobs = self.n_jobs or min(os.cpu_count() or 1, 4)
        with ThreadPoolExecutor(max_workers=n_jobs) as pool:
            self.global_, oof_global = self._fit_block(K, Y, np.arange(n), groups, pool, prog, "global")
            self.decade_blocks_: dict[int, _Block] = {}
            oof_dec = {}
            for d, rows in self._decade_rows(dec, n):
                blk, oof = self._fit_block(K, Y, rows, groups, pool, prog, f"{d}s")
                if blk.ok.any():
                    self.decade_blocks_[d], oof_dec[d] = blk, oof
        del K
        self._choose_decade_weight(oof_global, oof_dec, Y)
        return self

    # -- prediction --------------------------------------------------------------------------
    def features(self, X: np.ndarray) -> np.ndarray:
        return self.kernel(X)

    def kernel(self, X: np.ndarray) -> np.ndarray:
        sq = getattr(self, "_X_sq", None)  # computed once per fitted/loaded model, not pickled
        if sq is None or len(sq) != len(self.X_):
            sq = self._X_sq = np.einsum("ij,ij->i", self.X_, self.X_)
        return rbf_kernel(np.asarray(X, dtype=np.float32), self.X_, self.gamma_, sq)

    def __getstate__(self):
        state = dict(self.__dict__)
        state.pop("_X_sq", None)
        return state
