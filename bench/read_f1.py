"""Genre F1: image classifier alone vs with identification vs with the read text as a feature.

Two set-ups, as in the README's classifier tables: (a) the seeded split by poster (seed 0, 25%
test, near-duplicates kept on one side, test near-duplicates of training posters dropped) and
(b) train on the 2010s, test on the 1970s. The image classifier is posterdb's GenreClassifier
(blend) on MobileNetV2 int8 features, transductive decade centring as `posterdb eval` does.

* **with identification**: a test poster identified in the catalogue (year known, the image
  probabilities as the genre feature) takes the film's genres; every other poster keeps the
  image prediction. The scorer is calibrated on every read poster outside the test set (its
  genre feature: the classifier's out-of-fold probabilities on its training posters, its
  predictions on the rest); the identifier is not a genre model, so in the 2010s -> 1970s
  set-up it may learn from the 1920s-60s and 80s-2000s posters too, never from the 1970s. This uses an outside catalogue: it is not a
  better image classifier, it is looking the answer up.
* **with text feature**: character n-gram TF-IDF of the read text → class-balanced logistic
  regression per genre, blended with the image probabilities; the weight and the per-genre
  thresholds are chosen on out-of-fold predictions of the training side.

Only posters the OCR pass has read are scored (all three methods on the same posters).

    python -m bench.read_f1 --features FEATS.npy --files FILES.json --cache OCR.jsonl \
        --catalogue CATALOGUE.csv [--memo CANDS.pkl] [--json OUT.json]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from bench.identify_eval import LABELS, candidates, load_truth
from posterdb.classify.blend import GenreClassifier
from posterdb.classify.heads import f1_objective
from posterdb.classify.report import scores
from posterdb.classify.splits import (
    drop_near_duplicates_of,
    group_kfold,
    grouped_train_test_split,
    near_duplicate_groups,
)
from posterdb.classify.thresholds import apply_thresholds, tune_thresholds
from posterdb.core.genres import GENRES, to_multi_hot
from posterdb.reading import cache as read_cache
from posterdb.reading.identify.scoring import FilmScorer, Reading, features
from posterdb.reading.ocr import text_of


class TextGenres:
    """Char n-gram TF-IDF of the read text → one balanced logistic regression per genre."""

    def __init__(self, C: float = 1.0):
        self.C = C

    def fit(self, texts, Y) -> "TextGenres":
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
        self.vec_ = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 4), min_df=2,
                                    sublinear_tf=True, lowercase=True, max_features=50_000)
        Z = self.vec_.fit_transform(texts)
        self.models_ = []
        for j in range(Y.shape[1]):
            y = Y[:, j]
            if y.sum() < 3 or y.sum() == len(y):
                self.models_.append(float(y.mean()))
            else:
                self.models_.append(LogisticRegression(C=self.C, class_weight="balanced",
                                                       max_iter=1000).fit(Z, y))
        return self

    def predict_proba(self, texts) -> np.ndarray:
        Z = self.vec_.transform(texts)
        return np.column_stack([np.full(Z.shape[0], m) if isinstance(m, float)
                                else m.predict_proba(Z)[:, 1] for m in self.models_])


def oof_text(texts, Y, groups, k=5):
    P = np.zeros(Y.shape, float)
    for tr, te in group_kfold(groups, k, seed=0):
        P[te] = TextGenres().fit([texts[i] for i in tr], Y[tr]).predict_proba(
            [texts[i] for i in te])
    return P


def identify_rows(names, cands, truth, probs, scorer=None, fit_truth=False):
    """Feature groups (+ truth indices) for posters `names` with their years known."""
    G, T = [], []
    for n, p in zip(names, probs):
        lines, films = cands.get(n, ([], []))
        r = Reading(lines, truth[n]["year"], p)
        G.append(features(r, films) if films else np.zeros((0, 15)))
        T.append(next((j for j, f in enumerate(films) if f.film_id == truth[n]["id"]), None))
    return G, T


def run_setup(name, X, Y, dec, files, tr, te, texts, cands, truth, read_mask, say):
    t0 = time.perf_counter()
    Xtr, Ytr, dtr = X[tr], Y[tr], dec[tr]
    Xte, Yte, dte = X[te], Y[te], dec[te]
    say(f"[{name}] fitting the image classifier on {len(tr)} posters")
    clf = GenreClassifier().fit(Xtr, Ytr, dtr, X_unlabelled=Xte, decades_unlabelled=dte)
    P_oof, P_te = clf.oof_proba_, clf.predict_proba(Xte, dte)
    img = clf.predict(Xte, dte)

    say(f"[{name}] identification: scorer calibrated on every read poster outside the test set")
    ntr, nte = [files[i] for i in tr], [files[i] for i in te]
    other = np.setdiff1d(np.arange(len(files)), np.concatenate([tr, te]))
    P_other = clf.predict_proba(X[other], dec[other]) if len(other) else np.zeros((0, Y.shape[1]))
    prob_of = dict(zip(ntr, P_oof)) | dict(zip([files[i] for i in other], P_other))
    calib = [n for n in prob_of if n in cands]
    Gc, Tc = identify_rows(calib, cands, truth, [prob_of[n] for n in calib])
    scorer = FilmScorer().fit(Gc, Tc)
    Gte, _ = identify_rows(nte, cands, truth, P_te)
    ident = img.copy()
    n_ident = n_right = 0
    for i, (n, G) in enumerate(zip(nte, Gte)):
        if not len(G):
            continue
        s = scorer.scores(G)
        j = int(np.argmax(s))
        if s[j] >= scorer.threshold(1):
            film = cands[n][1][j]
            if film.genres:
                ident[i] = to_multi_hot([film.genres])[0]
                n_ident += 1
                n_right += film.film_id == truth[n]["id"]

    say(f"[{name}] text feature")
    g = near_duplicate_groups(Xtr)
    T_oof = oof_text([texts[i] for i in tr], Ytr, g)
    T_te = TextGenres().fit([texts[i] for i in tr], Ytr).predict_proba([texts[i] for i in te])
    best = None
    for w in (0.0, 0.1, 0.2, 0.3, 0.4, 0.5):
        Pb = (1 - w) * P_oof + w * T_oof
        obj = sum(f1_objective(Pb, Ytr))
        if best is None or obj > best[0]:
            best = (obj, w)
    w = best[1]
    thr = tune_thresholds((1 - w) * P_oof + w * T_oof, Ytr)
    thr[Ytr.sum(0) < 3] = np.inf
    text = apply_thresholds((1 - w) * P_te + w * T_te, thr, 1)

    m = read_mask[te]
    out = {"train posters": int(len(tr)), "test posters (read)": int(m.sum()),
           "test posters (all)": int(len(te)),
           "identified (test, read)": int(n_ident), "identified right film": int(n_right),
           "text weight chosen": w, "seconds": round(time.perf_counter() - t0, 1)}
    for label, pred in (("image classifier alone", img), ("with identification", ident),
                        ("with read-text feature", text)):
        out[label] = {k: round(v, 4) for k, v in scores(Yte[m], pred[m]).items()}
    return out


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--features", type=Path, required=True)
    ap.add_argument("--files", type=Path, required=True)
    ap.add_argument("--cache", type=Path, required=True)
    ap.add_argument("--catalogue", type=Path, required=True)
    ap.add_argument("--labels", type=Path, default=LABELS)
    ap.add_argument("--memo", type=Path)
    ap.add_argument("--json", type=Path)
    a = ap.parse_args(argv)

    def say(msg):
        print(msg, file=sys.stderr, flush=True)

    X = np.load(a.features).astype(np.float32)
    files = [str(f) for f in json.loads(a.files.read_text())]
    truth = load_truth(a.labels)
    Y = to_multi_hot([truth[f]["genres"] for f in files])
    dec = np.array([truth[f]["year"] // 10 * 10 for f in files])
    reads = read_cache.by_name(a.cache)
    texts = [text_of(reads.get(f, [])) for f in files]
    read_mask = np.array([f in reads for f in files])
    cands = candidates(a.cache, a.catalogue, truth, a.memo)
    say(f"{int(read_mask.sum())} of {len(files)} posters read; {len(GENRES)} genres")

    groups = near_duplicate_groups(X)
    tr, te = grouped_train_test_split(X, 0.25, 0, groups=groups)
    te = te[drop_near_duplicates_of(X[tr], X[te])]
    report = {"seeded split": run_setup("seeded", X, Y, dec, files, tr, te, texts, cands, truth,
                                        read_mask, say)}
    tr = np.flatnonzero(dec == 2010)
    te = np.flatnonzero(dec == 1970)
    te = te[drop_near_duplicates_of(X[tr], X[te])]
    report["2010s -> 1970s"] = run_setup("2010s->1970s", X, Y, dec, files, tr, te, texts, cands,
                                         truth, read_mask, say)
    print(json.dumps(report, indent=1))
    if a.json:
        a.json.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
