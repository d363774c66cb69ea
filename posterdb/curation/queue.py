"""What a person should look at first: review ranking and duplicate tiers (pure functions).

* New posters (no labels) are ranked by **uncertainty**: the smallest distance of any genre's
  probability to a decision threshold (predict or publish). A poster far from every threshold
  needs nobody; one sitting on a threshold is a coin toss.
* Labelled posters are ranked by **mistakenness**: how strongly the out-of-fold probability
  contradicts the label (a labelled genre with low p, or an unlabelled genre with high p), and
  whether the two halves of the classifier (SVM heads, neighbour vote) disagree.
* Duplicates come in tiers, because a dealer treats them differently: an **exact copy** (same
  bytes under another name: nothing to do), a **near-duplicate** (a rescan of the same poster:
  keep the better scan), a **look-alike** (same style or series: a different poster, keep both).
  The thresholds and how they were measured: `posterdb.core.settings.Thresholds`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from posterdb.core.settings import THRESHOLDS

NEAR_DUPLICATE = THRESHOLDS.near_duplicate
LOOK_ALIKE = THRESHOLDS.look_alike
TIERS = ("exact copy", "near-duplicate", "look-alike")


def duplicate_tier(cosine: float, same_bytes: bool = False, *, near: float = NEAR_DUPLICATE,
                   look_alike: float = LOOK_ALIKE) -> str | None:
    """The tier of a pair of posters, or None when they are just different posters."""
    if same_bytes:
        return "exact copy"
    if cosine >= near:
        return "near-duplicate"
    if cosine >= look_alike:
        return "look-alike"
    return None


def uncertainty(P, *threshold_sets: np.ndarray) -> np.ndarray:
    """Per row of probabilities P (n, g): the smallest |p - t| over every finite threshold in the
    given sets (small = unsure). inf when no threshold is finite."""
    P = np.atleast_2d(np.asarray(P, dtype=np.float64))
    best = np.full(len(P), np.inf)
    for t in threshold_sets:
        t = np.asarray(t, dtype=np.float64)
        finite = np.isfinite(t)
        if finite.any():
            best = np.minimum(best, np.abs(P[:, finite] - t[finite]).min(axis=1))
    return best


@dataclass(frozen=True)
class Suspicion:
    """Why a labelled poster may be mislabelled: a score in [0, 1] (higher = look first), the genre
    most at odds with its label and what the classifier says about it."""

    score: float
    genre: str
    reason: str


def mistakenness(p, y, genres: list[str], heads=None, vote=None, *, weight_disagreement: float = 0.25) -> Suspicion:
    """Score one labelled poster: p out-of-fold probabilities (g,), y its multi-hot label (g,);
    heads / vote (optional, (g,)): the two parts of the blend.

    label conflict = max over genres of |y - p| (a labelled genre the model finds unlikely, or an
    unlabelled one it finds likely); disagreement = max |heads - vote| on the conflicting genre.
    score = (1 - w)·conflict + w·disagreement.
    """
    p = np.asarray(p, dtype=np.float64)
    y = np.asarray(y).astype(bool)
    gap = np.where(y, 1.0 - p, p)
    j = int(np.argmax(gap))
    dis = 0.0
    if heads is not None and vote is not None:
        dis = float(abs(float(np.asarray(heads)[j]) - float(np.asarray(vote)[j])))
    score = (1 - weight_disagreement) * float(gap[j]) + weight_disagreement * dis
    g = genres[j]
    reason = (f"labelled {g} but p={p[j]:.2f}" if y[j] else f"{g} p={p[j]:.2f} is not labelled")
    if heads is not None and vote is not None:
        reason += f" (heads {float(np.asarray(heads)[j]):.2f}, vote {float(np.asarray(vote)[j]):.2f})"
    return Suspicion(round(score, 4), g, reason)
