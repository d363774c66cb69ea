"""The original study's classifier, reimplemented as an explicit per-genre loop.

The study used `OneVsRestClassifier(SVC(kernel="rbf"))` (C=1, gamma="scale"), unbalanced and
with `class_weight="balanced"`. `StudySVM` fits one `SVC` per genre on the same data and predicts
exactly what OneVsRestClassifier predicts, including its corner cases:

* a genre with a single class in training (e.g. TV Movie: no positives) gets a constant predictor
  whose score is that class (0 or 1);
* the decision threshold is 0 on SVC decision values - unless the FIRST genre is constant, in which
  case OneVsRestClassifier uses 0.5 for every genre (it looks at estimators_[0] only). Mirrored.

`precompute_kernel=True` computes the RBF kernel (gamma="scale" resolved the way SVC does:
1 / (n_features * X.var())) once and fits `SVC(kernel="precomputed")` per genre: the same model
up to floating-point rounding in the kernel, ~10x faster on 1280-d features. evaluate() uses it;
the tests check it against the exact variant.
"""
from __future__ import annotations

import numpy as np
from sklearn.svm import SVC


def _rbf64(A: np.ndarray, B: np.ndarray, gamma: float) -> np.ndarray:
    sq = (np.einsum("ij,ij->i", A, A)[:, None] + np.einsum("ij,ij->i", B, B)[None, :] - 2.0 * (A @ B.T))
    return np.exp(-gamma * np.maximum(sq, 0.0))


class StudySVM:
    """One-vs-rest RBF SVC per genre, as in the study (no thresholds, no calibration)."""

    def __init__(self, C: float = 1.0, gamma: float | str = "scale", class_weight: str | None = None,
                 precompute_kernel: bool = False):
        self.C = C
        self.gamma = gamma
        self.class_weight = class_weight
        self.precompute_kernel = precompute_kernel

    def fit(self, X, Y) -> "StudySVM":
        X = np.asarray(X, dtype=np.float64)
        Y = (np.asarray(Y) > 0).astype(int)
        if len(X) != len(Y):
            raise ValueError(f"X has {len(X)} rows, Y has {len(Y)}")
        self.n_genres_ = Y.shape[1]
        if self.precompute_kernel:
            self.gamma_ = 1.0 / (X.shape[1] * X.var()) if self.gamma == "scale" else float(self.gamma)
            self.X_ = X
            K = _rbf64(X, X, self.gamma_)
        self.estimators_: list[SVC | int] = []
        for j in range(Y.shape[1]):
            y = Y[:, j]
            if y.min() == y.max():
                self.estimators_.append(int(y[0]))  # constant predictor, score = the class
                continue
            if self.precompute_kernel:
                m = SVC(kernel="precomputed", C=self.C, class_weight=self.class_weight).fit(K, y)
            else:
                m = SVC(kernel="rbf", C=self.C, gamma=self.gamma, class_weight=self.class_weight).fit(X, y)
            self.estimators_.append(m)
        self.threshold_ = 0.0 if isinstance(self.estimators_[0], SVC) else 0.5
        return self

    def decision_function(self, X) -> np.ndarray:
        """(n, g) SVC decision values (constant genres: their class, 0 or 1)."""
        X = np.asarray(X, dtype=np.float64)
        K = _rbf64(X, self.X_, self.gamma_) if self.precompute_kernel else None
        out = np.zeros((len(X), self.n_genres_))
        for j, e in enumerate(self.estimators_):
            if isinstance(e, SVC):
                out[:, j] = e.decision_function(K if K is not None else X)
            else:
                out[:, j] = float(e)
        return out

    def predict(self, X) -> np.ndarray:
        """(n, g) uint8 multi-hot; rows may be empty, as in the study."""
        return (self.decision_function(X) > self.threshold_).astype(np.uint8)
