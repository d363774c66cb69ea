"""Heads whose time and memory grow linearly in the number of posters: an explicit RBF feature
map (scikit-learn's `Nystroem`, `n_components` landmarks) feeding balanced linear heads.

Why not liblinear / SGD: with a few thousand dense features, the balanced squared-loss linear
model (a least-squares SVM, i.e. kernel ridge on the Nystroem features) has a closed form that
needs only Gram matrices: with class weights w+ = n/(2 n+), w- = n/(2 n-) (sklearn's
"balanced") and targets ±1,

    (w- G + (w+ - w-) G+ + lambda I) theta = w+ s+ - w- (s - s+)

where G = sum a a^T over all rows, G+ over the genre's positives, s / s+ the row sums. The Grams
are sums over rows, so the Gram of "all folds but f" is the total minus fold f's: the K-fold
out-of-fold decision values (for Platt calibration, alpha/k/T and thresholds upstream) cost one
pass over the data per genre, never a copy of the data per fold. Memory: the n x (m + 1) float32
feature matrix plus a few (m + 1)^2 Grams; time: O(n m^2) + O(genres x folds x m^3).

lambda = 1 / C; with several candidate Cs, each genre's global head keeps the one with the best
out-of-fold F1 (one more factorisation per candidate) and its decade heads reuse it. Global +
per-decade heads, Platt scaling and the out-of-fold decade weight are shared with the exact
heads (`DecadeMixture`).
"""
from __future__ import annotations

import numpy as np
from scipy.linalg import LinAlgError, cho_factor, cho_solve
from sklearn.kernel_approximation import Nystroem
from threadpoolctl import threadpool_limits

from posterdb.classify.heads import DecadeMixture, _Block, platt_apply, platt_fit
from posterdb.classify.progress import FitProgress, as_progress
from posterdb.classify.splits import group_kfold
from posterdb.classify.thresholds import best_f1_threshold

BIAS_REG = 1e-3  # ridge on the bias column, relative to lambda (almost free, keeps M definite)


def _gram(A: np.ndarray, chunk: int = 16384) -> np.ndarray:
    """A^T A in float64, accumulated over row chunks of float32 products."""
    G = np.zeros((A.shape[1], A.shape[1]))
    for s in range(0, len(A), chunk):
        a = A[s : s + chunk]
        G += (a.T @ a).astype(np.float64)
    return G


class NystroemHeads(DecadeMixture):
    """Per-genre balanced least-squares heads on Nystroem RBF features, Platt-calibrated out of fold."""

    def __init__(self, C: float | tuple[float, ...] = (0.15, 0.3), gamma: float | str = "scale",
                 n_components: int = 2048,
                 n_folds: int = 3, min_positives: int = 3, min_decade_size: int = 300,
                 decade_weight: float | str = "auto",
                 decade_weight_grid: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0),
                 chunk: int = 8192, random_state: int = 0):
        self.C = C
        self.gamma = gamma
        self.n_components = n_components
        self.n_folds = n_folds
        self.min_positives = min_positives
        self.min_decade_size = min_decade_size
        self.decade_weight = decade_weight
        self.decade_weight_grid = decade_weight_grid
        self.chunk = chunk
        self.random_state = random_state

    # -- features ----------------------------------------------------------------------------
    def features(self, X: np.ndarray) -> np.ndarray:
        """(n, m + 1) float32: the Nystroem map of X plus a constant bias column, in row chunks.
        Same map as `Nystroem.transform` (kernel to the landmarks times `normalization_.T`), but in
        float32 with the landmarks' norms kept: sklearn upcasts float32 distances to float64 in
        small blocks, ~10x slower for one query and for 100k rows alike."""
        X = np.asarray(X, dtype=np.float32)
        L = self.map_.components_
        norm_t = getattr(self, "_norm_t", None)  # cached per fitted/loaded model, not pickled
        if norm_t is None:
            norm_t = self._norm_t = np.ascontiguousarray(self.map_.normalization_.T, dtype=np.float32)
            self._L_sq = np.einsum("ij,ij->i", L, L)
        m = L.shape[0]
        out = np.empty((len(X), m + 1), dtype=np.float32)
        out[:, m] = 1.0
        for s in range(0, len(X), self.chunk):
            x = X[s : s + self.chunk]
            sq = np.einsum("ij,ij->i", x, x)[:, None] + self._L_sq[None, :] - 2.0 * (x @ L.T)
            K = np.exp(-self.gamma_ * np.maximum(sq, 0.0, out=sq), out=sq)
            out[s : s + self.chunk, :m] = K @ norm_t
        return out

    def __getstate__(self):
        state = dict(self.__dict__)
        state.pop("_norm_t", None)
        state.pop("_L_sq", None)
        return state

    # -- fitting -----------------------------------------------------------------------------
    def _system(self, C, G, P, s, sp, n, n_pos, G_out=None, P_out=None, s_out=None, sp_out=None):
        """(M, rhs) of the balanced ridge problem on (all rows) minus (the `_out` fold's rows), or
        None when one class is missing. Built in one m x m buffer (these are big and many)."""
        if n_pos == 0 or n_pos == n:
            return None
        w_pos, w_neg = n / (2.0 * n_pos), n / (2.0 * (n - n_pos))
        M = np.multiply(G, w_neg)
        tmp = np.empty_like(M)
        for part, c in ((G_out, -w_neg), (P, w_pos - w_neg), (P_out, w_neg - w_pos)):
            if part is not None:
                M += np.multiply(part, c, out=tmp)
        lam = 1.0 / C
        M[np.diag_indices_from(M)] += lam
        M[-1, -1] += lam * (BIAS_REG - 1.0)
        if s_out is not None:
            s, sp = s - s_out, sp - sp_out
        return M, w_pos * sp - w_neg * (s - sp)

    @staticmethod
    def _pcg(M, rhs, factor, x0, tol: float = 1e-5, max_iter: int = 200) -> np.ndarray:
        """Conjugate gradients on M x = rhs preconditioned by the Cholesky factor of the all-folds
        system: a fold's system differs from it by one fold's rows, so a few m^2 iterations replace
        an m^3 factorisation per fold."""
        x = x0.copy()
        r = rhs - M @ x
        z = cho_solve(factor, r, check_finite=False)
        p = z.copy()
        rz = r @ z
        stop = tol * max(np.linalg.norm(rhs), 1e-30)
        for _ in range(max_iter):
            if np.linalg.norm(r) <= stop:
                break
            Mp = M @ p
            a = rz / (p @ Mp)
            x += a * p
            r -= a * Mp
            z = cho_solve(factor, r, check_finite=False)
            rz_new = r @ z
            p = z + (rz_new / rz) * p
            rz = rz_new
        return x

    def _fit_block(self, A: np.ndarray, Y: np.ndarray, groups: np.ndarray, Cs: np.ndarray,
                   prog: FitProgress, label: str) -> tuple[_Block, np.ndarray, np.ndarray]:
        """Heads on feature rows A (n, m + 1) with labels Y; per genre j, the C among the
        candidates Cs[j] with the best out-of-fold F1. Returns block, OOF probabilities, chosen C."""
        n, g = len(A), Y.shape[1]
        n_c = Cs.shape[1]
        prior = Y.mean(0).astype(np.float64)
        folds = group_kfold(groups, min(self.n_folds, n), seed=self.random_state)
        fold_of = np.empty(n, dtype=np.int64)
        for f, (_, te) in enumerate(folds):
            fold_of[te] = f
        n_f = np.array([len(te) for _, te in folds])
        G_f = [_gram(A[te]) for _, te in folds]
        s_f = [A[te].sum(0, dtype=np.float64) for _, te in folds]
        G, s = sum(G_f), sum(s_f)
        mp = A.shape[1]
        W = np.zeros((n_c, mp, g), dtype=np.float32)
        Theta_f = np.zeros((len(folds), mp, n_c * g), dtype=np.float32)  # column c * g + j
        fold_ok = np.zeros((len(folds), n_c * g), dtype=bool)
        ok = np.zeros(g, dtype=bool)
        for j in range(g):
            prog.step(f"heads ({label}, Nystroem)")
            y = Y[:, j].astype(bool)
            n_pos = int(y.sum())
            if n_pos < self.min_positives or n - n_pos < self.min_positives:
                continue
            pos = np.flatnonzero(y)
            Ap = A[pos]
            pf = fold_of[pos]
            P_f = [_gram(Ap[pf == f]) for f in range(len(folds))]
            sp_f = [Ap[pf == f].sum(0, dtype=np.float64) for f in range(len(folds))]
            np_f = np.bincount(pf, minlength=len(folds))
            del Ap
            P, sp = sum(P_f), sum(sp_f)
            for c, C in enumerate(Cs[j]):
                full = self._system(C, G, P, s, sp, n, n_pos)
                with threadpool_limits(1):  # small dense algebra: 2 BLAS threads lose on a busy machine
                    try:
                        factor = cho_factor(full[0], lower=False, check_finite=False)
                    except LinAlgError:  # not expected (lambda > 0), but never fail a fit over it
                        continue
                    theta = cho_solve(factor, full[1], check_finite=False)
                    W[c, :, j], ok[j] = theta, True
                    for f in range(len(folds)):
                        sysf = self._system(C, G, P, s, sp, int(n - n_f[f]), int(n_pos - np_f[f]),
                                            G_f[f], P_f[f], s_f[f], sp_f[f])
                        if sysf is not None:
                            Theta_f[f, :, c * g + j] = self._pcg(*sysf, factor, theta)
                            fold_ok[f, c * g + j] = True
        # out-of-fold decision values, one pass per fold for all genres (and C candidates) at once
        D = np.full((n, n_c * g), np.nan, dtype=np.float32)
        for f, (_, te) in enumerate(folds):
            D[te] = np.where(fold_ok[f], A[te] @ Theta_f[f], np.nan)
        ab = np.zeros((g, 2))
        oof = np.tile(prior, (n, 1))
        chosen = Cs[:, 0].astype(np.float64).copy()
        W_best = np.zeros((mp, g), dtype=np.float32)
        for j in np.flatnonzero(ok):
            y = Y[:, j].astype(int)
            best = None
            for c in range(n_c):
                d = D[:, c * g + j]
                valid = ~np.isnan(d)
                if valid.sum() < 2 or y[valid].min() == y[valid].max():
                    continue
                f1 = best_f1_threshold(d[valid], y[valid])[1]
                if best is None or f1 > best[0] + 1e-9:
                    best = (f1, c, valid)
            if best is None:
                ok[j] = False
                continue
            _, c, valid = best
            chosen[j], W_best[:, j] = Cs[j, c], W[c, :, j]
            d = D[:, c * g + j].astype(np.float64)
            ab[j] = platt_fit(d[valid], y[valid])
            oof[valid, j] = platt_apply(d[valid, None], ab[j : j + 1])[:, 0]
        return _Block(None, W_best, np.zeros(g, np.float32), ab, ok, prior, cols=None), oof, chosen

    def fit(self, X: np.ndarray, Y: np.ndarray, decades=None, groups=None, progress=None) -> "NystroemHeads":
        prog = as_progress(progress)
        X, Y, n, dec, groups = self._fit_inputs(X, Y, decades, groups)
        self.n_components_ = int(min(self.n_components, n))
        with threadpool_limits(1):  # the landmarks' SVD is small: see _fit_block
            self.map_ = Nystroem(kernel="rbf", gamma=self.gamma_, n_components=self.n_components_,
                                 random_state=self.random_state).fit(X)
            self.map_.components_ = np.ascontiguousarray(self.map_.components_, dtype=np.float32)
        A = self.features(X)
        Cs = np.tile(np.atleast_1d(np.asarray(self.C, dtype=np.float64)), (Y.shape[1], 1))
        self.global_, oof_global, self.C_ = self._fit_block(A, Y, groups, Cs, prog, "global")
        self.global_.rows = np.arange(n)
        self.decade_blocks_: dict[int, _Block] = {}
        oof_dec = {}
        for d, rows in self._decade_rows(dec, n):
            blk, oof, _ = self._fit_block(A[rows], Y[rows], groups[rows], self.C_[:, None], prog, f"{d}s")
            blk.rows = rows
            if blk.ok.any():
                self.decade_blocks_[d], oof_dec[d] = blk, oof
        del A
        self._choose_decade_weight(oof_global, oof_dec, Y)
        return self
