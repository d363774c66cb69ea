"""Publishing policy: per-genre thresholds reaching a target precision on out-of-fold scores."""
import numpy as np
import pytest

from posterdb.classify.publish import (
    margins,
    policy_report,
    precision_threshold,
    publish_thresholds,
    published,
    wilson_lower,
)


def test_threshold_keeps_the_deepest_cut_at_target_precision():
    # scores 10..1: top 8 are 7 positives + 1 negative (precision 0.875), then negatives
    p = np.arange(10, 0, -1) / 10
    y = np.array([1, 1, 1, 0, 1, 1, 1, 1, 0, 0])
    t = precision_threshold(p, y, 0.8, z=0, min_hits=1)
    assert 0.2 < t < 0.3                      # keeps the 8 highest: precision 7/8
    assert ((p >= t) & (y == 1)).sum() / (p >= t).sum() >= 0.8
    # a stricter target moves the cut up (top 3 are all positives)
    assert 0.7 < precision_threshold(p, y, 1.0, z=0, min_hits=1) < 0.8


def test_never_published_when_target_unreachable_or_too_few_hits():
    p = np.linspace(1, 0, 20)
    y = np.tile([1, 0], 10)                   # precision 0.5 at every depth past the first
    assert precision_threshold(p, y, 0.8, z=1.0, min_hits=5) == np.inf
    assert precision_threshold(p, np.zeros(20), 0.8) == np.inf
    # 3 perfect hits: enough without a hit floor, not with min_hits=5
    y3 = np.r_[1, 1, 1, np.zeros(17)]
    assert np.isfinite(precision_threshold(p, y3, 0.8, z=0, min_hits=1))
    assert precision_threshold(p, y3, 0.8, z=0, min_hits=5) == np.inf


def test_wilson_bound_is_conservative_and_shrinks_with_evidence():
    assert wilson_lower(4, 5, 1.0) < 0.8 < wilson_lower(90, 100, 1.0) < 0.9
    assert wilson_lower(0, 0, 1.0) == 0.0
    assert wilson_lower(8, 10, 0.0) == pytest.approx(0.8)


def test_ties_are_never_split():
    p = np.array([0.9, 0.5, 0.5, 0.5, 0.1])
    y = np.array([1, 1, 1, 0, 0])
    t = precision_threshold(p, y, 0.7, z=0, min_hits=1)
    assert 0.1 < t < 0.5                      # the three tied 0.5s go in together: precision 3/4


def test_publish_thresholds_per_column_and_published_subset_of_predicted():
    rng = np.random.default_rng(0)
    Y = (rng.random((400, 3)) < [0.5, 0.2, 0.05]).astype(np.uint8)
    P = np.clip(Y * 0.5 + rng.random((400, 3)) * 0.6, 0, 1)
    P[:, 2] = rng.random(400)                 # pure noise: cannot reach 0.8
    t = publish_thresholds(P, Y, 0.8, z=1.0, min_hits=5)
    assert np.isfinite(t[0]) and np.isfinite(t[1]) and t[2] == np.inf
    predicted = (P >= 0.3).astype(np.uint8)
    M = published(predicted, P, t)
    assert (M <= predicted).all() and M[:, 2].sum() == 0
    rep = policy_report(Y, M, t, ["A", "B", "C"])
    assert rep["micro_precision"] >= 0.8 and rep["published_genres"] == 2
    assert rep["per_genre"][2]["threshold"] is None and rep["per_genre"][2]["precision"] is None
    assert 0 < rep["share_with_published"] <= 1


def test_margins_rank_uncertain_posters_first():
    t = np.array([0.5, np.inf, 0.3])
    P = np.array([[0.51, 0.9, 0.9], [0.9, 0.0, 0.0]])
    m = margins(P, t)
    assert m[0] == pytest.approx(0.01) and m[1] == pytest.approx(0.3)
    assert margins(P, np.full(3, np.inf)).tolist() == [np.inf, np.inf]


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError):
        publish_thresholds(np.zeros((3, 2)), np.zeros((3, 3)))
    with pytest.raises(ValueError):
        precision_threshold([0.1], [1], 0.0)
