"""posterdb.classify.experiment on real features of a slice of ../shared/posters (425 posters)."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from posterdb.classify import METHODS, EvalReport, evaluate
from posterdb.core.genres import GENRES, parse_genres, to_multi_hot

AVGS = {"weighted", "macro", "micro", "samples"}


@pytest.fixture(scope="module")
def real(label_rows, posters_dir, model_dir):
    from posterdb.embedders import get_embedder

    rows = label_rows[3::12]
    emb = get_embedder("mobilenet-v2", model_dir=model_dir, allow_download=False)
    X = emb.embed_images([Image.open(posters_dir / r["file"]).convert("RGB") for r in rows])
    Y = to_multi_hot([parse_genres(r["genres"])[0] for r in rows])
    years = np.array([int(r["year"]) for r in rows])
    return X, Y, years


FAST = {"k_grid": (10, 40), "temperature_grid": (0.05, 0.1), "n_folds": 3, "min_decade_size": 100}


@pytest.fixture(scope="module")
def split_report(real):
    X, Y, years = real
    return evaluate(X, Y, years, seed=0, cross_decade=True, cross_decade_min=45,
                    classifier_params=FAST)


def test_split_report_has_all_methods_and_averages(split_report, real):
    rep = split_report
    X, Y, years = real
    assert isinstance(rep, EvalReport)
    assert list(rep.methods) == list(METHODS)
    for name, m in rep.methods.items():
        assert set(m.averages) == AVGS
        assert all(0.0 <= v <= 1.0 for v in m.averages.values())
        assert set(m.per_genre) == set(GENRES)
        assert set(m.per_genre["Drama"]) == {"precision", "recall", "f1", "support"}
        assert m.per_genre["TV Movie"]["support"] == 0
    s = rep.setup
    assert s["mode"] == "split" and s["n_train"] + s["n_test"] == len(X)
    assert abs(s["n_test"] - 0.25 * len(X)) <= 3
    assert "TV Movie" not in s["genres_in_macro"] and "support > 0" in s["macro_note"]
    assert s["transductive"] is True
    assert set(rep.per_decade) == {"blend", "study_svm_balanced"}
    assert sum(v["n"] for v in rep.per_decade["blend"].values()) == s["n_test"]
    cd = rep.cross_decade
    assert cd["decades"] == [1970, 2000, 2010]
    for m in ("blend", "study_svm_balanced"):
        w = np.array(cd["methods"][m]["weighted"], dtype=float)
        assert w.shape == (3, 3) and np.isfinite(w).all()
    assert rep.classifier["alpha"] is not None and "thresholds" in rep.classifier


def test_report_outputs(split_report, tmp_path):
    rep = split_report
    d = json.loads(rep.to_json())
    assert set(d["methods"]) == set(METHODS)
    p = rep.save_json(tmp_path / "out" / "report.json")
    assert json.loads(p.read_text())["setup"]["n_test"] == rep.setup["n_test"]
    png = rep.render_png(tmp_path / "out" / "report.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    md = rep.to_markdown()
    assert "| method | weighted F1 | macro F1 | micro F1 | samples F1 |" in md
    for m in rep.methods.values():
        assert m.label in md
    assert "Cross-decade" in md and "support > 0" in md


def test_cross_decade_no_split(real):
    X, Y, years = real
    rep = evaluate(X, Y, years, train_decades=[2010], test_decades=[1970], cross_decade=False,
                   classifier_params=FAST, transductive=False)
    s = rep.setup
    assert s["mode"] == "cross-decade" and s["train_decades"] == [2010] and s["test_decades"] == [1970]
    dec = years // 10 * 10
    assert s["n_train"] == (dec == 2010).sum() and s["n_test"] == (dec == 1970).sum() - s["n_dropped_duplicates"]
    assert list(rep.methods) == list(METHODS) and rep.cross_decade is None
    assert set(rep.per_decade["blend"]) == {"1970"}
    assert s["transductive"] is False


def test_external_test_set_and_duplicate_drop(real):
    X, Y, years = real
    n = len(X)
    Xte, Yte, yte = X[: n // 5].copy(), Y[: n // 5], years[: n // 5]
    # external set = posters 0..n/5 ; training = the rest plus exact copies of 5 of the test posters
    Xtr = np.concatenate([X[n // 5:], Xte[:5]])
    Ytr = np.concatenate([Y[n // 5:], Yte[:5]])
    ytr = np.concatenate([years[n // 5:], yte[:5]])
    rep = evaluate(Xtr, Ytr, ytr, X_test=Xte, Y_test=Yte, test_years_or_decades=yte,
                   cross_decade=False, classifier_params=FAST, methods=("study_svm_balanced", "blend"))
    assert rep.setup["mode"] == "external"
    assert rep.setup["n_dropped_duplicates"] == 5 and rep.setup["n_test"] == len(Xte) - 5
    assert list(rep.methods) == ["study_svm_balanced", "blend"]
    with pytest.raises(ValueError):
        evaluate(X, Y, years, methods=("nope",))
