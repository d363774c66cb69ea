"""The review queue's scoring: which labels most likely are wrong, and which predictions unsure.

Confident-learning style: a labelled poster is judged by probabilities that did not see its own
label (the out-of-fold ones kept at training), so a mislabel stands out instead of being
memorised. Pure functions over arrays; `GenreService.review_queue` feeds them.
"""
from __future__ import annotations

import numpy as np

from posterdb.core.genres import GENRES


def suspicion(probs: dict[str, float], labels: list[str] | None) -> tuple[float, str]:
    """(score in [0, 1], reason). Labelled: mean over its genres of (1 − p), averaged with the top
    probability among genres it lacks. Unlabelled: 1 − the top probability."""
    if labels:
        miss = float(np.mean([1 - probs[g] for g in labels]))
        extra = max((g for g in GENRES if g not in labels), key=probs.__getitem__)
        weakest = min(labels, key=probs.__getitem__)
        return (0.5 * miss + 0.5 * probs[extra],
                f"labelled {weakest} but p={probs[weakest]:.2f}; "
                f"{extra} p={probs[extra]:.2f} is not labelled")
    top = max(GENRES, key=probs.__getitem__)
    return 1 - probs[top], f"unlabelled; most likely {top} at only p={probs[top]:.2f}"


def score_queue(ids: np.ndarray, proba: np.ndarray, labels: dict[int, list[str]],
                limit: int) -> list[tuple[float, int, str, dict[str, float]]]:
    """The `limit` most suspicious posters: (score, id, reason, probabilities), worst first."""
    scored = []
    for pid, p in zip(ids.tolist(), proba):
        probs = dict(zip(GENRES, map(float, p)))
        s, reason = suspicion(probs, labels.get(pid))
        scored.append((s, pid, reason, probs))
    scored.sort(key=lambda t: -t[0])
    return scored[:limit]
