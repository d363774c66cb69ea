"""Review ranking and duplicate tiers."""
import numpy as np
import pytest

from posterdb.curation.queue import duplicate_tier, mistakenness, uncertainty

G = ["Comedy", "Drama", "Horror"]


def test_duplicate_tiers():
    assert duplicate_tier(0.2, same_bytes=True) == "exact copy"
    assert duplicate_tier(0.95) == "near-duplicate"
    assert duplicate_tier(0.85) == "look-alike"
    assert duplicate_tier(0.5) is None


def test_uncertainty_takes_the_closest_threshold_of_any_set():
    P = np.array([[0.5, 0.2, 0.9], [0.9, 0.9, 0.0]])
    predict = np.array([0.45, 0.5, np.inf])
    publish = np.array([0.8, np.inf, np.inf])
    u = uncertainty(P, predict, publish)
    assert u[0] == pytest.approx(0.05) and u[1] == pytest.approx(0.1)
    assert np.argsort(u).tolist() == [0, 1]
    assert uncertainty(P, np.full(3, np.inf)).tolist() == [np.inf, np.inf]


def test_mistakenness_finds_the_conflicting_genre_and_heads_vote_disagreement():
    s = mistakenness([0.1, 0.8, 0.05], [1, 1, 0], G)
    assert s.genre == "Comedy" and s.score == pytest.approx(0.75 * 0.9)
    assert s.reason == "labelled Comedy but p=0.10"
    t = mistakenness([0.1, 0.9, 0.95], [0, 1, 0], G, heads=[0.1, 0.9, 0.9], vote=[0.1, 0.9, 0.1])
    assert t.genre == "Horror" and "is not labelled" in t.reason and "vote 0.10" in t.reason
    assert t.score == pytest.approx(0.75 * 0.95 + 0.25 * 0.8)
    agree = mistakenness([0.9, 0.9, 0.1], [1, 1, 0], G)
    assert agree.score < s.score < t.score
