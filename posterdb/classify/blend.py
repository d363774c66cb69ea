"""GenreClassifier: calibrated SVM heads blended with a similarity vote, per-genre thresholds.

    p = alpha * heads(x) + (1 - alpha) * vote(x)

alpha, k and T are chosen on out-of-fold predictions of the training set (heads: K-fold; vote:
leave-the-near-duplicate-group-out), then one threshold per genre is tuned on the same
out-of-fold blend to maximise that genre's F1. Every prediction carries at least one genre (the
genre with the largest margin over its threshold).

Features are first centred by decade (`center="decade"`): x -> l2(x - mean of its decade). The
decade means may include unlabelled posters (`fit(..., X_unlabelled=, decades_unlabelled=)` or
`adapt(X, decades)` later): that is transductive use of the store's unlabelled images, never of
their labels. `center=None` switches it off.
"""
from __future__ import annotations

import time

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.metrics import f1_score

from posterdb.classify.ann import single_thread_if_small
from posterdb.classify.heads import (
    UNKNOWN, DecadeCentering, SVMHeads, as_decades, f1_objective, l2n)
from posterdb.classify.nystroem import NystroemHeads
from posterdb.classify.progress import as_progress
from posterdb.classify.splits import DEFAULT_DUP_THRESHOLD, near_duplicate_groups
from posterdb.classify.thresholds import apply_thresholds, tune_thresholds
from posterdb.classify.vote import KNNVote, vote_from_neighbours
from posterdb.core.genres import GENRES
from posterdb.core.records import Neighbour, Prediction

COMPONENTS = ("blend", "heads", "vote")
HEADS = ("auto", "exact", "nystroem")
EXACT_MAX = 6000  # heads="auto": exact RBF SVMs up to this many labelled posters, Nystroem above


def _scores(Y: np.ndarray, Yhat: np.ndarray) -> dict[str, float]:
    has = Y.sum(0) > 0
    return {
        "weighted": float(f1_score(Y, Yhat, average="weighted", zero_division=0)),
        "macro": float(f1_score(Y[:, has], Yhat[:, has], average="macro", zero_division=0)) if has.any() else 0.0,
        "micro": float(f1_score(Y, Yhat, average="micro", zero_division=0)),
        "samples": float(f1_score(Y, Yhat, average="samples", zero_division=0)),
    }


class GenreClassifier(BaseEstimator):
    """Multi-label poster genre classifier over L2-normalised image vectors.

    Parameters (None for alpha / k / temperature = choose from the grid on out-of-fold data):
      C, gamma            : RBF SVM heads (class_weight="balanced").
      n_folds             : folds for out-of-fold head predictions (calibration, selection).
      min_positives       : genres with fewer training positives get a constant prior.
      min_decade_size     : decades with at least this many labelled posters get their own heads.
      decade_weight       : weight of a decade head against the global one ("auto": chosen OOF).
      center              : "decade" (default), "global" or None: feature centring (see module doc).
      vote_space          : "centered" (vote on the centred features) or "raw" (original vectors).
      same_decade_weight  : extra weight of a neighbour from the query's decade.
      dup_threshold       : cosine at which two posters count as the same image (kept together in
                            folds; a poster's near-duplicates never vote for it out of fold).
      min_genres          : each prediction carries at least this many genres.
      heads               : "exact" (RBF SVMs on the n x n kernel), "nystroem" (linear in n:
                            classify/nystroem.py) or "auto" (exact up to `exact_max` posters).
      n_components, nystroem_C : Nystroem landmarks; candidate Cs (one chosen per genre, OOF).
      vote_flat_max       : exact FAISS search for the vote up to this many posters, IVF above.
    """

    def __init__(self, C: float = 0.3, gamma: float | str = "scale", n_folds: int = 5,
                 min_positives: int = 3, min_decade_size: int = 300,
                 decade_weight: float | str = "auto", center: str | None = "decade",
                 min_center_size: int = 20, vote_space: str = "centered",
                 alpha: float | None = None, k: int | None = None, temperature: float | None = None,
                 same_decade_weight: float = 1.0,
                 alpha_grid: tuple[float, ...] = (0.0, 0.2, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0),
                 k_grid: tuple[int, ...] = (10, 20, 40, 80, 160),
                 temperature_grid: tuple[float, ...] = (0.02, 0.05, 0.1, 0.2),
                 dup_threshold: float = DEFAULT_DUP_THRESHOLD, min_genres: int = 1,
                 heads: str = "auto", exact_max: int = EXACT_MAX, n_components: int = 2048,
                 nystroem_C: float | tuple[float, ...] = (0.15, 0.3), vote_flat_max: int = 20_000,
                 n_jobs: int | None = None, random_state: int = 0):
        self.C = C
        self.gamma = gamma
        self.n_folds = n_folds
        self.min_positives = min_positives
        self.min_decade_size = min_decade_size
        self.decade_weight = decade_weight
        self.center = center
        self.min_center_size = min_center_size
        self.vote_space = vote_space
        self.alpha = alpha
        self.k = k
        self.temperature = temperature
        self.same_decade_weight = same_decade_weight
        self.alpha_grid = alpha_grid
        self.k_grid = k_grid
        self.temperature_grid = temperature_grid
        self.dup_threshold = dup_threshold
        self.min_genres = min_genres
        self.heads = heads
        self.exact_max = exact_max
        self.n_components = n_components
        self.nystroem_C = nystroem_C
        self.vote_flat_max = vote_flat_max
        self.n_jobs = n_jobs
        self.random_state = random_state

    # -- fitting -----------------------------------------------------------------------------
    def fit(self, X, Y, decades=None, ids=None, X_unlabelled=None, decades_unlabelled=None,
            progress=None, groups=None) -> "GenreClassifier":
        """X (n, d) image vectors; Y (n, 19) multi-hot in GENRES order; decades: years or decades
        per poster (None / -1 = unknown); ids: int id per poster (returned as evidence; default
        0..n-1). X_unlabelled / decades_unlabelled: optional features of posters without labels,
        used only for the decade means of the centring (transductive). progress: optional
        callable(stage, done, total) called as work units finish (see classify/progress.py).
        groups: optional label per poster for copies the caller knows of (augmented copies of
        one poster); they stay in one fold, like near-duplicates found by similarity."""
        t0 = time.perf_counter()
        X = np.asarray(X, dtype=np.float32)
        Y = np.asarray(Y)
        if X.ndim != 2 or Y.ndim != 2 or len(X) != len(Y):
            raise ValueError(f"X {X.shape} and Y {Y.shape} must be 2-d with one row per poster")
        if Y.shape[1] != len(GENRES):
            raise ValueError(f"Y must have {len(GENRES)} columns (GENRES order), got {Y.shape[1]}")
        if len(X) < 2 * self.n_folds:
            raise ValueError(f"need at least {2 * self.n_folds} labelled posters, got {len(X)}")
        if self.vote_space not in ("centered", "raw"):
            raise ValueError(f"vote_space must be 'centered' or 'raw', got {self.vote_space!r}")
        Y = (Y > 0).astype(np.uint8)
        n = len(X)
        dec = as_decades(decades, n)
        self.ids_ = np.arange(n, dtype=np.int64) if ids is None else np.asarray(ids, dtype=np.int64)
        if len(self.ids_) != n or len(np.unique(self.ids_)) != n:
            raise ValueError("ids must be unique, one per poster")
        self.genres_ = list(GENRES)
        self.n_train_ = n
        self.n_features_in_ = X.shape[1]
        self.train_decades_ = dec
        self.Y_ = Y

        # centring (decade means from labelled + optional unlabelled posters)
        self.centering_ = DecadeCentering(self.center, self.min_center_size)
        if X_unlabelled is not None and len(X_unlabelled):
            dec_u = as_decades(decades_unlabelled, len(X_unlabelled))
            self.centering_.fit(np.concatenate([X, np.asarray(X_unlabelled, np.float32)]),
                                np.concatenate([dec, dec_u]))
            self.transductive_ = True
        else:
            self.centering_.fit(X, dec)
            self.transductive_ = False
        self.heads_kind_ = self._heads_kind(n)
        counts = np.bincount(dec[dec != UNKNOWN] // 10) if (dec != UNKNOWN).any() else np.zeros(0)
        n_blocks = 1 + int(((counts >= self.min_decade_size) & (counts < n)).sum())
        prog = as_progress(progress)
        prog.add(2 + len(GENRES) * n_blocks + 3)
        Z = self.centering_.transform(X, dec)
        prog.step("centring by decade")
        groups = near_duplicate_groups(X, self.dup_threshold, known=groups)
        prog.step("near-duplicate groups")

        # heads
        t1 = time.perf_counter()
        common = dict(gamma=self.gamma, n_folds=self.n_folds, min_positives=self.min_positives,
                      min_decade_size=self.min_decade_size, decade_weight=self.decade_weight,
                      random_state=self.random_state)
        if self.heads_kind_ == "exact":
            heads = SVMHeads(C=self.C, n_jobs=self.n_jobs, **common)
        else:
            heads = NystroemHeads(C=self.nystroem_C, n_components=self.n_components, **common)
        self.heads_ = heads.fit(Z, Y, dec, groups, progress=prog)
        H = self.heads_.oof_proba_
        t2 = time.perf_counter()

        # vote: out-of-fold = leave the poster's near-duplicate group out
        Xv = Z if self.vote_space == "centered" else l2n(X)
        self.vote_ = KNNVote(same_decade_weight=self.same_decade_weight, flat_max=self.vote_flat_max).fit(
            Xv, Y, self.ids_, dec, normalized=True)
        ks = (self.k,) if self.k is not None else tuple(sorted(set(self.k_grid)))
        Ts = (self.temperature,) if self.temperature is not None else tuple(self.temperature_grid)
        alphas = (self.alpha,) if self.alpha is not None else tuple(self.alpha_grid)
        kmax = max(ks)
        prog.step("vote: index")
        rows, sims = self.vote_.neighbours(Xv, kmax, exclude_groups=(groups, groups))
        del Xv, Z
        prog.step("vote: out-of-fold neighbours")

        # selection on out-of-fold predictions: mean of weighted and macro F1
        results = []
        best_vote = None
        for k in ks:
            for T in Ts:
                V = vote_from_neighbours(rows, sims, Y, k, T, self.same_decade_weight, dec, dec)
                v_score = sum(f1_objective(V, Y))
                if best_vote is None or v_score > best_vote[0]:
                    best_vote = (v_score, k, T, V)
                for a in alphas:
                    P = a * H + (1 - a) * V
                    w, m = f1_objective(P, Y)
                    results.append((w + m, a, k, T, w, m))
        results.sort(key=lambda r: (-r[0], -r[1], r[2], r[3]))
        _, self.alpha_, self.k_, self.temperature_, _, _ = results[0]
        self.alpha_, self.k_, self.temperature_ = float(self.alpha_), int(self.k_), float(self.temperature_)
        self.vote_.k, self.vote_.temperature = self.k_, self.temperature_
        self.vote_k_, self.vote_temperature_ = int(best_vote[1]), float(best_vote[2])
        V_best = vote_from_neighbours(rows, sims, Y, self.k_, self.temperature_, self.same_decade_weight, dec, dec)
        P = self.alpha_ * H + (1 - self.alpha_) * V_best
        Vonly = best_vote[3]

        prog.step("choosing alpha, k, T")
        # per-genre thresholds, per component
        rare = Y.sum(0) < self.min_positives  # too few examples to learn a threshold: never predicted

        def tune(Pc):
            t = tune_thresholds(Pc, Y)
            t[rare] = np.inf
            return t

        self.thresholds_ = tune(P)
        self.component_thresholds_ = {"blend": self.thresholds_, "heads": tune(H), "vote": tune(Vonly)}
        self.oof_proba_ = P
        self.validation_scores_ = {
            name: _scores(Y, apply_thresholds(Pc, self.component_thresholds_[name], self.min_genres))
            for name, Pc in (("blend", P), ("heads", H), ("vote", Vonly))
        }
        self.selection_ = [dict(alpha=float(r[1]), k=int(r[2]), temperature=float(r[3]),
                                oof_weighted_f1=float(r[4]), oof_macro_f1=float(r[5]))
                           for r in results[:10]]
        self.decade_weight_ = self.heads_.decade_weight_
        self.decades_ = list(self.heads_.decades_)
        t3 = time.perf_counter()
        self.fit_seconds_ = {"heads": t2 - t1, "vote_and_selection": t3 - t2, "total": t3 - t0}
        return self

    def _heads_kind(self, n: int) -> str:
        if self.heads not in HEADS:
            raise ValueError(f"heads must be one of {HEADS}, got {self.heads!r}")
        if self.heads == "auto":
            return "exact" if n <= self.exact_max else "nystroem"
        return self.heads

    def adapt(self, X, decades, overwrite: bool = False) -> list[int]:
        """Transductive: learn centring means for decades the model has no mean for yet (e.g. a
        decade with no labelled poster) from unlabelled vectors X. Returns the decades added.
        With overwrite=True, also replaces the means of known decades (the heads were trained
        with the old ones: only do this before a refit)."""
        self._check_fitted()
        return self.centering_.add(np.asarray(X, np.float32), as_decades(decades, len(X)), overwrite)

    # -- prediction --------------------------------------------------------------------------
    def _check_fitted(self):
        if not hasattr(self, "thresholds_"):
            raise RuntimeError("GenreClassifier is not fitted; call fit(X, Y, ...) first")

    def _parts(self, X, decades, exclude_ids, need_vote=True):
        self._check_fitted()
        X = np.asarray(X, dtype=np.float32)
        if X.ndim == 1:
            X = X[None, :]
        if X.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {X.shape[1]} features, the classifier was fitted on {self.n_features_in_}")
        with single_thread_if_small(len(X)):
            return self._parts_of(X, as_decades(decades, len(X)), exclude_ids, need_vote)

    def _parts_of(self, X, dec, exclude_ids, need_vote):
        Z = self.centering_.transform(X, dec)
        H, used = self.heads_.predict_proba(Z, dec, return_heads=True)
        if need_vote:
            k = max(self.k_, self.vote_k_)
            rows, sims = self.vote_.neighbours(Z if self.vote_space == "centered" else X, k, exclude_ids)
            V = vote_from_neighbours(rows, sims, self.Y_, self.k_, self.temperature_,
                                     self.same_decade_weight, dec, self.train_decades_)
            Vonly = vote_from_neighbours(rows, sims, self.Y_, self.vote_k_, self.vote_temperature_,
                                         self.same_decade_weight, dec, self.train_decades_)
        else:
            rows = sims = V = Vonly = None
        return dec, H, used, V, Vonly, rows, sims

    def predict_proba(self, X, decades=None, exclude_ids=None, component: str = "blend") -> np.ndarray:
        """(n, 19) genre probabilities. component: "blend" (default), "heads" or "vote"."""
        if component not in COMPONENTS:
            raise ValueError(f"component must be one of {COMPONENTS}, got {component!r}")
        _, H, _, V, Vonly, _, _ = self._parts(X, decades, exclude_ids, need_vote=component != "heads")
        if component == "heads":
            return H
        if component == "vote":
            return Vonly
        return self.alpha_ * H + (1 - self.alpha_) * V

    def predict(self, X, decades=None, exclude_ids=None, component: str = "blend") -> np.ndarray:
        """(n, 19) uint8 multi-hot; every row has at least `min_genres` genres."""
        P = self.predict_proba(X, decades, exclude_ids, component)
        return apply_thresholds(P, self.component_thresholds_[component], self.min_genres)

    def explain(self, X, decades=None, exclude_ids=None, n_evidence: int = 10) -> list[Prediction]:
        """One Prediction per row: genres, blended probabilities, head and vote parts, the decade
        head used (None = global), and the `n_evidence` nearest labelled posters (sims desc)."""
        dec, H, used, V, _, rows, sims = self._parts(X, decades, exclude_ids)
        P = self.alpha_ * H + (1 - self.alpha_) * V
        Yhat = apply_thresholds(P, self.thresholds_, self.min_genres)
        if n_evidence <= rows.shape[1]:  # the vote's own neighbours (sorted by similarity)
            ev_rows, ev_sims = rows[:, :n_evidence], sims[:, :n_evidence]
        else:
            Xq = np.asarray(X, dtype=np.float32)
            Xq = Xq[None, :] if Xq.ndim == 1 else Xq
            Zq = self.centering_.transform(Xq, dec) if self.vote_space == "centered" else Xq
            ev_rows, ev_sims = self.vote_.neighbours(Zq, n_evidence, exclude_ids)
        thr = {g: float(t) for g, t in zip(self.genres_, self.thresholds_)}
        out = []
        for i in range(len(P)):
            ev = [Neighbour(id=int(self.ids_[r]), similarity=float(s),
                            genres=[self.genres_[j] for j in np.flatnonzero(self.Y_[r])],
                            decade=None if self.train_decades_[r] == UNKNOWN else int(self.train_decades_[r]))
                  for r, s in zip(ev_rows[i], ev_sims[i]) if r >= 0]
            out.append(Prediction(
                genres=[self.genres_[j] for j in np.flatnonzero(Yhat[i])],
                probabilities={g: float(P[i, j]) for j, g in enumerate(self.genres_)},
                heads={g: float(H[i, j]) for j, g in enumerate(self.genres_)},
                vote={g: float(V[i, j]) for j, g in enumerate(self.genres_)},
                alpha=self.alpha_, decade_head=used[i], evidence=ev, thresholds=thr))
        return out

    def summary(self) -> dict:
        """Fitted hyper-parameters and out-of-fold scores (JSON-friendly)."""
        self._check_fitted()
        return {
            "n_train": self.n_train_, "alpha": self.alpha_, "k": self.k_, "temperature": self.temperature_,
            "vote_only_k": self.vote_k_, "vote_only_temperature": self.vote_temperature_,
            "heads": getattr(self, "heads_kind_", "exact"),
            "n_components": (self.heads_.n_components_ if getattr(self, "heads_kind_", "exact") == "nystroem"
                             else None),
            "C": (self.C if getattr(self, "heads_kind_", "exact") == "exact"
                  else {g: float(c) for g, c in zip(self.genres_, self.heads_.C_)}),
            "gamma": self.heads_.gamma_, "decade_heads": self.decades_,
            "decade_weight": self.decade_weight_, "center": self.center, "vote_space": self.vote_space,
            "transductive_centering": self.transductive_,
            "thresholds": {g: (float(t) if np.isfinite(t) else None) for g, t in zip(self.genres_, self.thresholds_)},
            "validation_scores": self.validation_scores_, "fit_seconds": self.fit_seconds_,
        }
