"""posterdb.classify: thresholds, splits, study baseline, heads/vote/blend, evidence, persistence.

Real-data tests embed a slice of ../shared/posters (every 10th poster: 510 posters, all decades)
with the production MobileNetV2 embedder once per module.
"""
from __future__ import annotations

import os
import pickle
import warnings

import numpy as np
import pytest
from sklearn.metrics import f1_score
from sklearn.multiclass import OneVsRestClassifier
from sklearn.svm import SVC

from posterdb.classify import (
    GenreClassifier,
    Neighbour,
    Prediction,
    StudySVM,
    apply_thresholds,
    grouped_train_test_split,
    load_classifier,
    near_duplicate_groups,
    save_classifier,
    tune_thresholds,
)
from posterdb.classify.heads import DecadeCentering, as_decades, platt_fit
from posterdb.classify.splits import drop_near_duplicates_of, group_kfold
from posterdb.classify.thresholds import best_f1_threshold
from posterdb.core.errors import StoreError
from posterdb.core.genres import GENRE_INDEX, GENRES

TV = GENRE_INDEX["TV Movie"]


# real features: the session's `real` fixture (conftest.py)
@pytest.fixture(scope="module")
def fitted(real):
    X, Y, years, ids = real
    tr, te = grouped_train_test_split(X, 0.25, seed=0)
    clf = GenreClassifier(min_decade_size=120, decade_weight=0.5).fit(X[tr], Y[tr], years[tr], ids[tr])
    return clf, tr, te


# --------------------------------------------------------------------------------------------
# thresholds
def test_threshold_known_optimum():
    p = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2])
    y = np.array([1, 1, 0, 1, 0, 0, 0, 0])
    t, f = best_f1_threshold(p, y)
    # top-4 cut: tp=3, predicted=4, positives=3 -> F1 = 6/7; threshold halfway between 0.6 and 0.5
    assert t == pytest.approx(0.55)
    assert f == pytest.approx(6 / 7)
    assert f1_score(y, p >= t) == pytest.approx(6 / 7)


def test_threshold_matches_brute_force_and_handles_ties():
    rng = np.random.default_rng(1)
    for trial in range(20):
        n = 60
        y = (rng.random(n) < 0.3).astype(int)
        y[0] = 1
        p = np.round(np.clip(0.3 * y + rng.normal(0.35, 0.2, n), 0, 1), 2)  # many ties
        t, f = best_f1_threshold(p, y)
        brute = max(f1_score(y, p >= c, zero_division=0) for c in np.unique(p))
        assert f == pytest.approx(brute)
        assert f1_score(y, p >= t, zero_division=0) == pytest.approx(brute)


def test_thresholds_no_positive_never_predicted_and_top1_fallback():
    P = np.array([[0.9, 0.1, 0.2], [0.1, 0.2, 0.3], [0.8, 0.7, 0.1], [0.2, 0.1, 0.9]])
    Y = np.array([[1, 0, 0], [0, 1, 0], [1, 1, 0], [0, 0, 0]])
    t = tune_thresholds(P, Y)
    assert np.isinf(t[2])  # no positive: never predicted on its own
    out = apply_thresholds(P, t)
    assert (out.sum(1) >= 1).all()
    assert out[:, 2].sum() == 0 or out[3, 2] == 1
    out0 = apply_thresholds(P, t, min_genres=0)
    assert out0[:, 2].sum() == 0
    # a row with nothing over threshold gets its largest margin genre
    out = apply_thresholds(np.array([[0.30, 0.50, 0.99]]), np.array([0.4, 0.6, np.inf]))
    assert out.tolist() == [[0, 1, 0]]


def test_platt_is_monotone_and_sane():
    rng = np.random.default_rng(0)
    d = np.r_[rng.normal(1, 1, 200), rng.normal(-1, 1, 800)]
    y = np.r_[np.ones(200), np.zeros(800)]
    a, b = platt_fit(d, y)
    assert a > 0
    p = 1 / (1 + np.exp(-(a * d + b)))
    assert abs(p.mean() - 0.2) < 0.02


# --------------------------------------------------------------------------------------------
# splits
def _dup_data(seed=0):
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(300, 64)).astype(np.float32)
    dups = base[:30] + 0.01 * rng.normal(size=(30, 64)).astype(np.float32)  # near-identical copies
    exact = base[30:40].copy()                                               # identical images
    X = np.concatenate([base, dups, exact])
    return X / np.linalg.norm(X, axis=1, keepdims=True)


def test_split_keeps_near_duplicates_together():
    X = _dup_data()
    groups = near_duplicate_groups(X, 0.97)
    assert len(np.unique(groups)) == 300
    for i in range(30):
        assert groups[i] == groups[300 + i]
    for i in range(10):
        assert groups[30 + i] == groups[330 + i]
    for seed in range(5):
        tr, te = grouped_train_test_split(X, 0.25, seed=seed)
        assert len(np.intersect1d(tr, te)) == 0 and len(tr) + len(te) == len(X)
        assert abs(len(te) - 0.25 * len(X)) <= 2
        side = np.zeros(len(X), bool)
        side[te] = True
        for i in range(30):
            assert side[i] == side[300 + i]
        for i in range(10):
            assert side[30 + i] == side[330 + i]
    a = grouped_train_test_split(X, 0.25, seed=3)
    b = grouped_train_test_split(X, 0.25, seed=3)
    c = grouped_train_test_split(X, 0.25, seed=4)
    assert np.array_equal(a[1], b[1]) and not np.array_equal(a[1], c[1])
    # folds keep groups together too; nothing of the training side has duplicates on the test side
    for trf, tef in group_kfold(groups, 5, seed=0):
        assert not set(groups[trf]) & set(groups[tef])
    tr, te = a
    assert drop_near_duplicates_of(X[tr], X[te]).all()
    assert not drop_near_duplicates_of(X[:5], X[300:305]).any()


def test_chain_of_near_duplicates_is_one_group():
    v = np.zeros((3, 3), np.float32)
    v[0] = [1, 0, 0]
    v[1] = [np.cos(0.2), np.sin(0.2), 0]
    v[2] = [np.cos(0.4), np.sin(0.4), 0]  # cos(v0, v2) = 0.92 < 0.97, linked through v1
    X = np.concatenate([v, np.eye(3, dtype=np.float32)[[1, 2]]])
    g = near_duplicate_groups(X, 0.97)
    assert g[0] == g[1] == g[2] and len(set(g)) == 3


def test_known_groups_join_copies_the_threshold_misses():
    """Augmented copies of one poster may look further apart than the threshold: the caller's
    groups keep them together (and in one fold), on top of the similarity groups."""
    X = np.eye(5, dtype=np.float32)
    X[1] = X[0] * 0.9 + X[1] * 0.1  # a near-duplicate of row 0 by similarity alone
    g = near_duplicate_groups(X / np.linalg.norm(X, axis=1, keepdims=True), 0.97,
                              known=[7, 7, 3, 7, 5])  # rows 0 and 3 are copies of one poster
    assert g.tolist() == [0, 0, 1, 0, 2]
    with pytest.raises(ValueError, match="2 labels for 5 posters"):
        near_duplicate_groups(X, 0.97, known=[1, 2])


# --------------------------------------------------------------------------------------------
# the study's baseline
@pytest.mark.parametrize("class_weight", [None, "balanced"])
def test_study_svm_equals_one_vs_rest(real, class_weight):
    X, Y, _, _ = real
    Xtr, Ytr, Xte = X[:160].astype(np.float64), Y[:160].copy(), X[160:260].astype(np.float64)
    Ytr[:, GENRE_INDEX["Western"]] = 0  # a second genre absent from training (TV Movie already is)
    assert Ytr[:, TV].sum() == 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = OneVsRestClassifier(SVC(kernel="rbf", C=1, gamma="scale", class_weight=class_weight)).fit(Xtr, Ytr)
        expected = ref.predict(Xte)
    mine = StudySVM(class_weight=class_weight).fit(Xtr, Ytr)
    assert np.array_equal(mine.predict(Xte), expected)
    assert np.array_equal(mine.predict(Xtr), ref.predict(Xtr))
    # the fast precomputed-kernel variant is the same model
    fast = StudySVM(class_weight=class_weight, precompute_kernel=True).fit(Xtr, Ytr)
    assert np.array_equal(fast.predict(Xte), expected)
    assert np.allclose(fast.decision_function(Xte)[:, 0], mine.decision_function(Xte)[:, 0], atol=1e-6)


def test_study_svm_first_genre_constant_quirk(real):
    """OneVsRestClassifier takes its threshold from estimators_[0]: constant first genre -> 0.5."""
    X, Y, _, _ = real
    Xtr, Ytr, Xte = X[:120].astype(np.float64), Y[:120].copy(), X[120:200].astype(np.float64)
    Ytr[:, 0] = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = OneVsRestClassifier(SVC(kernel="rbf", class_weight="balanced")).fit(Xtr, Ytr).predict(Xte)
    assert np.array_equal(StudySVM(class_weight="balanced").fit(Xtr, Ytr).predict(Xte), expected)


# --------------------------------------------------------------------------------------------
# GenreClassifier on real features
def test_fit_predict_real(real, fitted):
    X, Y, years, ids = real
    clf, tr, te = fitted
    assert clf.n_train_ == len(tr)
    assert clf.thresholds_.shape == (19,) and np.isinf(clf.thresholds_[TV])
    assert 0.0 <= clf.alpha_ <= 1.0 and clf.alpha_ in clf.alpha_grid
    assert clf.k_ in clf.k_grid and clf.temperature_ in clf.temperature_grid
    assert clf.decades_ == [2010]  # only the 2010s reach min_decade_size=120 in this slice
    assert set(clf.validation_scores_) == {"blend", "heads", "vote"}
    assert set(clf.validation_scores_["blend"]) == {"weighted", "macro", "micro", "samples"}
    P = clf.predict_proba(X[te], years[te])
    assert P.shape == (len(te), 19) and (P >= 0).all() and (P <= 1).all()
    assert np.allclose(P[:, TV], 0.0)
    Yhat = clf.predict(X[te], years[te])
    assert Yhat.dtype == np.uint8 and (Yhat.sum(1) >= 1).all() and Yhat[:, TV].sum() == 0
    for comp in ("heads", "vote"):
        Yc = clf.predict(X[te], years[te], component=comp)
        assert (Yc.sum(1) >= 1).all()
    # learnt something: beats the study's unbalanced SVM (which predicts mostly Drama) on this slice
    study = StudySVM().fit(X[tr], Y[tr]).predict(X[te])
    ours = f1_score(Y[te], Yhat, average="weighted", zero_division=0)
    assert ours > f1_score(Y[te], study, average="weighted", zero_division=0)
    assert ours > 0.3
    # a single 1-d vector is accepted too
    assert clf.predict_proba(X[te[0]], [years[te[0]]]).shape == (1, 19)
    with pytest.raises(ValueError):
        clf.predict(X[te][:, :100])


def test_decade_fallback(real, fitted):
    X, Y, years, ids = real
    clf, tr, te = fitted
    q = X[te[:6]]
    preds = clf.explain(q, [2015, 2012, 1975, 1931, None, float("nan")], n_evidence=0)
    assert [p.decade_head for p in preds] == [2010, 2010, None, None, None, None]
    # no head for the 1970s / 1930s / unknown year: exactly the global head's probabilities
    Z = clf.centering_.transform(q, as_decades([1975] * 6, 6))
    glob = clf.heads_.predict_proba(Z, None)
    assert np.allclose(clf.heads_.predict_proba(Z, [1975] * 6), glob)
    with_2010 = clf.heads_.predict_proba(Z, [2010] * 6)
    assert not np.allclose(with_2010, glob)
    blk = clf.heads_.decade_blocks_[2010]
    dec_only = blk.proba(clf.heads_.kernel(Z)[:, blk.rows])
    assert np.allclose(with_2010, np.where(blk.ok, 0.5 * dec_only + 0.5 * glob, glob))


def test_decade_heads_small_decades_and_unknown_years_synthetic():
    """Decades below min_decade_size fall back to global; rare genres get a constant prior."""
    rng = np.random.default_rng(0)
    n = 240
    Y = np.zeros((n, 19), np.uint8)
    Y[:, 6] = rng.random(n) < 0.5         # Drama, learnable from feature 0
    Y[:, 3] = 1 - Y[:, 6]                   # Comedy: the others
    Y[:2, 13] = 1                           # Romance: 2 positives -> constant prior
    X = rng.normal(size=(n, 16)).astype(np.float32)
    X[:, 0] += 3 * Y[:, 6]
    dec = np.array([2010] * 150 + [1970] * 60 + [None] * 30, dtype=object)
    clf = GenreClassifier(min_decade_size=100, decade_weight=0.5, n_folds=3).fit(X, Y, dec)
    assert clf.decades_ == [2010]
    out = clf.explain(X[:3], [2011, 1972, None], n_evidence=3)
    assert [p.decade_head for p in out] == [2010, None, None]
    assert not clf.heads_.global_.ok[13] and clf.heads_.global_.ok[6]
    H = clf.predict_proba(X, dec, component="heads")
    assert np.allclose(H[:, 13], 2 / n)
    Yhat = clf.predict(X, dec)
    assert f1_score(Y[:, 6], Yhat[:, 6]) > 0.8 and f1_score(Y[:, 3], Yhat[:, 3]) > 0.8
    assert Yhat[:, 13].sum() == 0 and np.isinf(clf.thresholds_[13])  # too rare to ever predict
    # decades=None at fit: everything unknown, global head only
    clf2 = GenreClassifier(n_folds=3).fit(X, Y)
    assert clf2.decades_ == [] and clf2.explain(X[:1])[0].decade_head is None


def test_explain_evidence(real, fitted):
    X, Y, years, ids = real
    clf, tr, te = fitted
    own = ids[tr[:5]]
    preds = clf.explain(X[tr[:5]], years[tr[:5]], exclude_ids=list(own), n_evidence=7)
    id_to_row = {int(i): r for r, i in enumerate(ids)}
    for p, me in zip(preds, own):
        assert isinstance(p, Prediction)
        assert len(p.evidence) == 7 and all(isinstance(e, Neighbour) for e in p.evidence)
        ev_ids = [e.id for e in p.evidence]
        assert int(me) not in ev_ids and len(set(ev_ids)) == 7
        assert set(ev_ids) <= set(ids[tr].tolist())
        sims = [e.similarity for e in p.evidence]
        assert sims == sorted(sims, reverse=True) and sims[0] < 0.999
        for e in p.evidence:
            r = id_to_row[e.id]
            assert e.genres == [GENRES[j] for j in np.flatnonzero(Y[r])]
            assert e.decade == years[r] // 10 * 10
        assert set(p.probabilities) == set(GENRES) == set(p.heads) == set(p.vote)
        assert p.genres and all(g in GENRES for g in p.genres)
        assert p.alpha == clf.alpha_
        for g in GENRES:
            assert p.probabilities[g] == pytest.approx(p.alpha * p.heads[g] + (1 - p.alpha) * p.vote[g])
        d = p.to_dict()
        assert d["evidence"][0]["id"] == p.evidence[0].id and d["thresholds"]["TV Movie"] is None
    # without exclusion a training poster finds itself first
    p = clf.explain(X[tr[:1]], years[tr[:1]], n_evidence=3)[0]
    assert p.evidence[0].id == ids[tr[0]] and p.evidence[0].similarity == pytest.approx(1.0, abs=1e-4)
    # excluding changes the vote, and predict_proba honours exclude_ids too
    a = clf.predict_proba(X[tr[:5]], years[tr[:5]], component="vote")
    b = clf.predict_proba(X[tr[:5]], years[tr[:5]], exclude_ids=list(own), component="vote")
    assert not np.allclose(a, b)


def test_transductive_centering_and_adapt(real):
    X, Y, years, ids = real
    dec = as_decades(years, len(X))
    m2010 = dec == 2010
    m1970 = dec == 1970
    clf = GenreClassifier(n_folds=3, k_grid=(10,), temperature_grid=(0.05,)).fit(X[m2010], Y[m2010], years[m2010])
    assert 1970 not in clf.centering_.means_ and not clf.transductive_
    before = clf.predict_proba(X[m1970], years[m1970])
    assert clf.adapt(X[m1970], years[m1970]) == [1970]
    after = clf.predict_proba(X[m1970], years[m1970])
    assert not np.allclose(before, after)
    assert clf.adapt(X[m1970], years[m1970]) == []  # known now; no overwrite by default
    c2 = GenreClassifier(n_folds=3, k_grid=(10,), temperature_grid=(0.05,)).fit(
        X[m2010], Y[m2010], years[m2010], X_unlabelled=X[m1970], decades_unlabelled=years[m1970])
    assert c2.transductive_ and np.allclose(c2.centering_.means_[1970], clf.centering_.means_[1970], atol=1e-6)
    cen = DecadeCentering(None).fit(X, dec)
    assert np.allclose(cen.transform(X, dec), X, atol=1e-6)


def test_fit_rejects_bad_input(real):
    X, Y, years, _ = real
    with pytest.raises(ValueError):
        GenreClassifier().fit(X[:50], Y[:50, :18])
    with pytest.raises(ValueError):
        GenreClassifier().fit(X[:50], Y[:49])
    with pytest.raises(ValueError):
        GenreClassifier().fit(X[:50], Y[:50], ids=[1] * 50)
    with pytest.raises(RuntimeError):
        GenreClassifier().predict(X[:2])


# --------------------------------------------------------------------------------------------
# persistence
_SIDE_EFFECTS: list[str] = []


def _side_effect(tag):
    _SIDE_EFFECTS.append(tag)
    return tag


class _Evil:
    def __reduce__(self):
        return (_side_effect, ("unpickled!",))


def test_save_load_verifies_hash(real, fitted, tmp_path):
    X, _, years, _ = real
    clf, tr, te = fitted
    path = tmp_path / "models" / "clf.pkl"
    digest = save_classifier(clf, path)
    assert len(digest) == 64 and path.exists()
    assert [p.name for p in path.parent.iterdir()] == ["clf.pkl"]  # no temp files left behind
    loaded = load_classifier(path, digest)
    assert np.array_equal(loaded.predict(X[te], years[te]), clf.predict(X[te], years[te]))
    assert loaded.summary()["alpha"] == clf.alpha_

    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(StoreError, match="sha256"):
        load_classifier(path, digest)
    with pytest.raises(StoreError):
        load_classifier(path, "")
    with pytest.raises(StoreError):
        load_classifier(tmp_path / "missing.pkl", digest)


def test_load_refuses_before_unpickling(tmp_path):
    good = save_classifier({"ok": 1}, tmp_path / "c.pkl")
    (tmp_path / "c.pkl").write_bytes(pickle.dumps(_Evil()))  # swapped for a hostile pickle
    _SIDE_EFFECTS.clear()
    with pytest.raises(StoreError):
        load_classifier(tmp_path / "c.pkl", good)
    assert _SIDE_EFFECTS == []  # never unpickled
    evil_hash = save_classifier(_Evil(), tmp_path / "d.pkl")
    assert load_classifier(tmp_path / "d.pkl", evil_hash.upper()) == "unpickled!"  # control: hash ok -> loads
    assert _SIDE_EFFECTS == ["unpickled!"]
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]
