"""Publishing policy: which predicted genres are confident enough to go to the shop unreviewed.

The F1-tuned thresholds (thresholds.py) decide what is *predicted*; they trade precision for
recall, so a small store "predicts" many genres per poster. Publishing needs a different cut:
per genre, the lowest threshold whose out-of-fold precision still reaches a target (0.8 by
default). To keep the promise on posters the model has not seen, the precision of a cut is
judged by its Wilson lower bound (z standard errors below the observed rate) and must rest on
at least `min_hits` correct out-of-fold predictions; a genre that cannot reach the target at
any cut publishes nothing (threshold inf) and all its predictions stay *suggested*.

Pure functions over arrays (the caller supplies out-of-fold probabilities and labels), and the
two that set a fitted classifier's publishing thresholds from its own out-of-fold probabilities.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from posterdb.classify.thresholds import apply_thresholds

NEVER = np.inf
DEFAULT_PRECISION = 0.8
DEFAULT_Z = 1.0
DEFAULT_MIN_HITS = 5


def wilson_lower(hits: np.ndarray, n: np.ndarray, z: float) -> np.ndarray:
    """Wilson score lower bound of a binomial rate hits/n (0 where n == 0)."""
    hits = np.asarray(hits, dtype=np.float64)
    n = np.asarray(n, dtype=np.float64)
    if z <= 0:
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(n > 0, hits / np.maximum(n, 1), 0.0)
    safe = np.maximum(n, 1)
    p = hits / safe
    z2 = z * z
    centre = p + z2 / (2 * safe)
    spread = z * np.sqrt(np.maximum(p * (1 - p) / safe + z2 / (4 * safe * safe), 0.0))
    low = (centre - spread) / (1 + z2 / safe)
    return np.where(n > 0, low, 0.0)


def precision_threshold(p, y, precision: float = DEFAULT_PRECISION, *, z: float = DEFAULT_Z,
                        min_hits: int = DEFAULT_MIN_HITS) -> float:
    """The lowest threshold t such that the posters with p >= t are positives at a rate whose
    Wilson lower bound reaches `precision`, with at least `min_hits` of them; inf if none.

    Every distinct score is a candidate cut; t sits halfway between the last score kept and the
    next lower one, like the F1 thresholds.
    """
    if not 0.0 < precision <= 1.0:
        raise ValueError(f"precision must be in (0, 1], got {precision}")
    p = np.asarray(p, dtype=np.float64).ravel()
    y = np.asarray(y).ravel().astype(bool)
    if p.shape != y.shape:
        raise ValueError(f"p and y differ in length: {p.shape} vs {y.shape}")
    if not y.any():
        return NEVER
    order = np.argsort(-p, kind="stable")
    ps, ys = p[order], y[order]
    tp = np.cumsum(ys)
    k = np.arange(1, len(ps) + 1)
    cut_ok = np.r_[ps[1:] < ps[:-1], True]
    ok = cut_ok & (tp >= min_hits) & (wilson_lower(tp, k, z) >= precision - 1e-12)
    if not ok.any():
        return NEVER
    i = int(np.flatnonzero(ok)[-1])  # the deepest cut = the lowest threshold = most recall
    lower = ps[i + 1] if i + 1 < len(ps) else ps[i] - 1e-6
    return float((ps[i] + lower) / 2.0)


def publish_thresholds(P, Y, precision: float = DEFAULT_PRECISION, *, z: float = DEFAULT_Z,
                       min_hits: int = DEFAULT_MIN_HITS) -> np.ndarray:
    """One publishing threshold per column of out-of-fold probabilities P (n, g) against
    multi-hot labels Y (n, g); inf for genres that cannot reach the target precision."""
    P = np.asarray(P, dtype=np.float64)
    Y = np.asarray(Y)
    if P.shape != Y.shape or P.ndim != 2:
        raise ValueError(f"P and Y must be 2-d and of one shape: {P.shape} vs {Y.shape}")
    return np.array([precision_threshold(P[:, j], Y[:, j], precision, z=z, min_hits=min_hits)
                     for j in range(P.shape[1])])


def published(predicted, P, publish: np.ndarray) -> np.ndarray:
    """Multi-hot (n, g) uint8 of the published genres: predicted and at or above the publishing
    threshold. The rest of `predicted` is suggested (for a person to review)."""
    predicted = np.asarray(predicted).astype(bool)
    P = np.asarray(P, dtype=np.float64)
    return (predicted & (P >= np.asarray(publish, dtype=np.float64))).astype(np.uint8)


def margins(P, thresholds: np.ndarray) -> np.ndarray:
    """Per poster, the smallest |p - threshold| over genres with a finite threshold: how close the
    poster is to flipping a decision (small = uncertain, review first). inf when none is finite."""
    P = np.atleast_2d(np.asarray(P, dtype=np.float64))
    t = np.asarray(thresholds, dtype=np.float64)
    finite = np.isfinite(t)
    if not finite.any():
        return np.full(len(P), np.inf)
    return np.abs(P[:, finite] - t[finite]).min(axis=1)


@dataclass(frozen=True)
class GenreFigures:
    """Precision / recall of the published genre on a labelled set, and its support."""

    genre: str
    threshold: float | None
    precision: float | None
    recall: float
    published: int
    positives: int


def policy_report(Y, published_mask, thresholds: np.ndarray, genres: list[str]) -> dict:
    """Micro precision / recall of the published genres, the share of posters with at least one
    published genre, and per-genre figures (JSON-friendly)."""
    Y = np.asarray(Y).astype(bool)
    M = np.asarray(published_mask).astype(bool)
    tp, npub, npos = (Y & M).sum(0), M.sum(0), Y.sum(0)
    per = [GenreFigures(g, None if not np.isfinite(t) else float(t),
                        float(tp[j] / npub[j]) if npub[j] else None,
                        float(tp[j] / npos[j]) if npos[j] else 0.0, int(npub[j]), int(npos[j]))
           for j, (g, t) in enumerate(zip(genres, thresholds))]
    return {
        "posters": int(len(Y)),
        "micro_precision": float(tp.sum() / npub.sum()) if npub.sum() else None,
        "micro_recall": float(tp.sum() / npos.sum()) if npos.sum() else 0.0,
        "share_with_published": float(M.any(1).mean()) if len(M) else 0.0,
        "published_genres": int(np.isfinite(np.asarray(thresholds, dtype=np.float64)).sum()),
        "per_genre": [f.__dict__ for f in per],
    }


def choose_publishing(clf, precision: float) -> dict:
    """Set the classifier's publishing thresholds from its out-of-fold probabilities and return
    what they achieve out of fold (JSON-friendly)."""
    oof, Y = getattr(clf, "oof_proba_", None), getattr(clf, "Y_", None)
    if oof is None or Y is None:
        clf.publish_thresholds_ = np.full(len(clf.genres_), np.inf)
    else:
        clf.publish_thresholds_ = publish_thresholds(oof, Y, precision)
    clf.publish_precision_ = float(precision)
    out = {"precision_target": float(precision)}
    if oof is not None and Y is not None:
        predicted = apply_thresholds(oof, clf.thresholds_, getattr(clf, "min_genres", 1))
        rep = policy_report(Y, published(predicted, oof, clf.publish_thresholds_),
                            clf.publish_thresholds_, list(clf.genres_))
        out |= {"oof_" + k: v for k, v in rep.items() if k != "per_genre"}
        out["thresholds"] = {g["genre"]: g["threshold"] for g in rep["per_genre"]
                             if g["threshold"] is not None}
    return out


def publishing_thresholds(clf) -> np.ndarray:
    """The classifier's publishing thresholds; one trained before publishing existed gets them
    from its out-of-fold probabilities at the default precision."""
    if getattr(clf, "publish_thresholds_", None) is None:
        choose_publishing(clf, DEFAULT_PRECISION)
    return np.asarray(clf.publish_thresholds_, dtype=np.float64)
