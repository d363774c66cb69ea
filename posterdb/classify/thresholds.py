"""Per-genre decision thresholds chosen to maximise F1 on out-of-fold probabilities."""
from __future__ import annotations

import numpy as np

NEVER = np.inf  # threshold of a genre that must never be predicted (no positives to learn from)


def best_f1_threshold(p: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """The threshold t maximising F1 of `p >= t` against binary `y`, and that F1.

    Every distinct score is a candidate cut; t is placed halfway between the last score kept and
    the next lower one (so that slightly shifted scores keep the same side). Ties in F1 go to the
    higher threshold (fewer positives predicted). No positives in `y` -> (inf, 0.0).
    """
    p = np.asarray(p, dtype=np.float64).ravel()
    y = np.asarray(y).ravel().astype(bool)
    if p.shape != y.shape:
        raise ValueError(f"p and y differ in length: {p.shape} vs {y.shape}")
    n_pos = int(y.sum())
    if n_pos == 0 or len(p) == 0:
        return NEVER, 0.0
    order = np.argsort(-p, kind="stable")
    ps, ys = p[order], y[order]
    tp = np.cumsum(ys)
    k = np.arange(1, len(ps) + 1)
    f1 = 2.0 * tp / (k + n_pos)
    # a cut is only possible after the last of a run of equal scores
    cut_ok = np.r_[ps[1:] < ps[:-1], True]
    f1 = np.where(cut_ok, f1, -1.0)
    i = int(np.argmax(f1))  # first maximum = highest threshold among ties
    lower = ps[i + 1] if i + 1 < len(ps) else ps[i] - 1e-6
    return float((ps[i] + lower) / 2.0), float(f1[i])


def tune_thresholds(P: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """One F1-optimal threshold per column of P (n, g) against multi-hot Y (n, g)."""
    P = np.asarray(P, dtype=np.float64)
    Y = np.asarray(Y)
    if P.shape != Y.shape:
        raise ValueError(f"P and Y differ in shape: {P.shape} vs {Y.shape}")
    return np.array([best_f1_threshold(P[:, j], Y[:, j])[0] for j in range(P.shape[1])])


def apply_thresholds(P: np.ndarray, thresholds: np.ndarray, min_genres: int = 1) -> np.ndarray:
    """Multi-hot (n, g) uint8: `P >= thresholds`, plus the top-margin genre(s) for rows left with
    fewer than `min_genres` (margin = P - threshold; genres that are never predicted have margin
    -inf and are only picked when nothing else is possible)."""
    P = np.asarray(P, dtype=np.float64)
    t = np.asarray(thresholds, dtype=np.float64)
    out = (P >= t).astype(np.uint8)
    if min_genres > 0 and len(P):
        with np.errstate(invalid="ignore"):
            margin = np.where(np.isfinite(t), P - np.where(np.isfinite(t), t, 0.0), -np.inf)
        short = np.flatnonzero(out.sum(1) < min_genres)
        if len(short):
            top = np.argsort(-margin[short], axis=1, kind="stable")[:, :min_genres]
            for r, cols in zip(short, top):
                out[r, cols] = 1
    return out
