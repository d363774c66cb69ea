"""Heads that grow linearly (Nystroem + balanced least squares), the FAISS vote and ANN groups.

Real features: every 10th shared poster (510) embedded by the production MobileNetV2 once per
module. Memory growth is measured with tracemalloc at two sizes (numpy reports its buffers to
tracemalloc), never with a timing.
"""
from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from sklearn.linear_model import Ridge

from posterdb.classify import (
    GenreClassifier,
    grouped_train_test_split,
    load_classifier,
    save_classifier,
)
from posterdb.classify.heads import SVMHeads, l2n
from posterdb.classify.nystroem import NystroemHeads
from posterdb.classify.splits import near_duplicate_groups
from posterdb.classify.vote import KNNVote
from posterdb.core.genres import GENRE_INDEX, GENRES

TV = GENRE_INDEX["TV Movie"]
FAST = dict(n_folds=3, k_grid=(10, 40), temperature_grid=(0.05,), alpha_grid=(0.5, 0.8))


@pytest.fixture(scope="module")
def nystroem_fit(real):
    X, Y, years, ids = real
    tr, te = grouped_train_test_split(X, 0.25, seed=0)
    clf = GenreClassifier(heads="nystroem", n_components=256, min_decade_size=120, vote_flat_max=100,
                          **FAST).fit(X[tr], Y[tr], years[tr], ids[tr])
    return clf, tr, te


def test_nystroem_fit_predict_real(real, nystroem_fit):
    from sklearn.metrics import f1_score

    X, Y, years, ids = real
    clf, tr, te = nystroem_fit
    assert clf.heads_kind_ == "nystroem" and isinstance(clf.heads_, NystroemHeads)
    assert clf.summary()["heads"] == "nystroem" and clf.summary()["n_components"] == 256
    assert clf.decades_ == [2010] and np.isinf(clf.thresholds_[TV])
    assert not clf.vote_.exact_  # 382 > vote_flat_max=100: the vote searches an IVF index
    P = clf.predict_proba(X[te], years[te])
    assert P.shape == (len(te), 19) and (P >= 0).all() and (P <= 1).all() and np.allclose(P[:, TV], 0)
    H, used = clf.heads_.predict_proba(clf.centering_.transform(X[te], years[te]), years[te],
                                       return_heads=True)
    assert set(used) <= {2010, None} and (2010 in used) == (years[te] // 10 * 10 == 2010).any()
    Yhat = clf.predict(X[te], years[te])
    assert (Yhat.sum(1) >= 1).all() and Yhat[:, TV].sum() == 0
    assert f1_score(Y[te], Yhat, average="weighted", zero_division=0) > 0.3
    # the out-of-fold heads are calibrated probabilities, not raw decision values
    oof, ok = clf.heads_.oof_proba_global_, clf.heads_.global_.ok
    assert oof.shape == (len(tr), 19) and not ok[TV] and ok.sum() >= 10
    assert (oof[:, ok] > 0).all() and (oof[:, ok] < 1).all() and len(np.unique(oof[:, ok])) > 100


def test_exact_option_and_auto(real):
    X, Y, years, _ = real
    small = GenreClassifier(**FAST).fit(X[:200], Y[:200], years[:200])
    assert small.heads_kind_ == "exact" and isinstance(small.heads_, SVMHeads)  # auto, n <= exact_max
    forced = GenreClassifier(heads="exact", exact_max=10, **FAST).fit(X[:200], Y[:200], years[:200])
    assert forced.summary()["heads"] == "exact"
    auto_big = GenreClassifier(exact_max=100, n_components=64, **FAST).fit(X[:200], Y[:200], years[:200])
    assert auto_big.heads_kind_ == "nystroem"
    with pytest.raises(ValueError, match="heads must be one of"):
        GenreClassifier(heads="svm").fit(X[:200], Y[:200])


def test_heads_solve_balanced_ridge(real):
    """The Gram closed form (with folds by subtraction) is sklearn's weighted Ridge on the same
    Nystroem features, class weights 'balanced'."""
    X, Y, _, _ = real
    Z = l2n(X[:300])
    y = Y[:300, GENRE_INDEX["Drama"]]
    h = NystroemHeads(n_components=64, n_folds=3, C=0.5).fit(Z, Y[:300])
    A = h.features(Z)
    w = np.where(y == 1, len(y) / (2 * y.sum()), len(y) / (2 * (len(y) - y.sum())))
    ref = Ridge(alpha=1 / 0.5, fit_intercept=True).fit(A[:, :-1], 2.0 * y - 1, sample_weight=w)
    ours = h.global_.W[:, GENRE_INDEX["Drama"]]
    assert np.allclose(ours[:-1], ref.coef_, atol=2e-3 * np.abs(ref.coef_).max())
    assert ours[-1] == pytest.approx(ref.intercept_, abs=2e-3)


def _peak_bytes(fn) -> int:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_fit_memory_grows_linearly(real):
    """Doubling the posters at most doubles the fit's peak memory (plus a small constant); the
    exact kernel heads quadruple theirs (n x n kernel): the test would see a quadratic fit."""
    X, Y, years, _ = real
    rng = np.random.default_rng(0)

    def data(n):  # real vectors with small noise, labels and years inherited
        src = rng.integers(0, len(X), n)
        Xn = X[src] + rng.normal(scale=0.02, size=(n, X.shape[1])).astype(np.float32)
        return Xn, Y[src], years[src]

    small, big = data(1000), data(2000)
    params = dict(heads="nystroem", n_components=128, **FAST)
    m1 = _peak_bytes(lambda: GenreClassifier(**params).fit(*small))
    m2 = _peak_bytes(lambda: GenreClassifier(**params).fit(*big))
    assert m2 / m1 < 2.2, (m1, m2)
    e1 = _peak_bytes(lambda: SVMHeads(n_folds=2).fit(l2n(small[0][:500]), small[1][:500]))
    e2 = _peak_bytes(lambda: SVMHeads(n_folds=2).fit(l2n(big[0][:1000]), big[1][:1000]))
    assert e2 / e1 > 3.0, (e1, e2)  # the measure does see quadratic growth


def test_faiss_vote_matches_exact_search_and_shows_labels(real):
    X, Y, years, ids = real
    Z = l2n(X)
    flat = KNNVote().fit(Z, Y, ids, years, normalized=True)
    rows, sims = flat.neighbours(Z[:20], 10, exclude_ids=list(ids[:20]))
    S = Z[:20] @ Z.T
    S[np.arange(20), np.arange(20)] = -np.inf
    ref = np.argsort(-S, axis=1, kind="stable")[:, :10]
    assert np.allclose(sims, np.take_along_axis(S, ref, 1), atol=1e-5)
    assert (rows != np.arange(20)[:, None]).all()
    # group exclusion: nobody in the query's group votes
    groups = np.arange(len(Z)) // 3
    r2, _ = flat.neighbours(Z, 5, exclude_groups=(groups, groups))
    assert (groups[r2] != groups[:, None]).all()
    ivf = KNNVote(flat_max=50, nprobe=64).fit(Z, Y, ids, years, normalized=True)
    assert not ivf.exact_
    r_ivf, _ = ivf.neighbours(Z[:50], 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(r_ivf, flat.neighbours(Z[:50], 10)[0])])
    assert recall > 0.9


def test_saved_classifier_round_trips(real, nystroem_fit, tmp_path):
    X, Y, years, ids = real
    clf, tr, te = nystroem_fit
    sha = save_classifier(clf, tmp_path / "clf.pkl")
    back = load_classifier(tmp_path / "clf.pkl", sha)
    assert back.vote_.index_.ntotal == len(tr) and back.heads_kind_ == "nystroem"
    assert np.array_equal(back.predict_proba(X[te], years[te]), clf.predict_proba(X[te], years[te]))
    a = clf.explain(X[te[:3]], years[te[:3]], n_evidence=5)
    b = back.explain(X[te[:3]], years[te[:3]], n_evidence=5)
    assert [p.to_dict() for p in a] == [p.to_dict() for p in b]
    ev = b[0].evidence
    row = {int(i): r for r, i in enumerate(ids)}
    assert len(ev) == 5 and all(e.genres == [GENRES[j] for j in np.flatnonzero(Y[row[e.id]])] for e in ev)


def test_ann_near_duplicate_groups_match_exact(real):
    X = real[0]
    Xd = np.concatenate([X, X[:40] + 1e-3])  # 40 planted near-duplicates
    exact = near_duplicate_groups(Xd)
    ann = near_duplicate_groups(Xd, flat_max=100)
    assert np.array_equal(exact, ann)
    assert (exact[len(X):] == exact[:40]).all() and exact.max() <= len(X) - 1
