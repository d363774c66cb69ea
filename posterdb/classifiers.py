"""Train, keep and use the store's genre classifiers.

A fitted classifier is saved under `<store>/classifiers/` and its sha256 is recorded in DuckDB;
it is only ever loaded from inside the store, after that hash has been checked.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from .catalog import embedding_table
from .errors import NotTrainedError, StoreError
from .genres import GENRES, decade_of, to_multi_hot


@dataclass
class Classification:
    """Genres for one image, with each part's share and the stored posters that justify them."""

    name: str
    year: int | None
    genres: list[str]
    probabilities: dict[str, float]
    heads: dict[str, float]
    vote: dict[str, float]
    alpha: float
    decade_head: int | None
    evidence: list  # list[Hit]
    in_store: int | None = None  # the poster's id when the same bytes are already stored

    def to_dict(self) -> dict:
        d = dict(self.__dict__)
        d["evidence"] = [h.to_dict() | {"shared": sorted(set(h.genres) & set(self.genres))}
                         for h in self.evidence]
        return d


def training_data(db, model: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(ids, X, Y, decades) of every labelled poster with a vector (review labels win)."""
    with db.catalog.read() as con:
        labels = db.catalog.labels(con)
        ids, X = db.catalog.vectors(con, embedding_table(model), sorted(labels))
        decades = dict(con.execute("SELECT id, decade FROM posters").fetchall())
    Y = to_multi_hot([labels[int(i)] for i in ids])
    dec = np.asarray([decades.get(int(i)) if decades.get(int(i)) is not None else -1
                      for i in ids], dtype=np.int64)
    return ids, X, Y, dec


def unlabelled_data(db, model: str) -> tuple[np.ndarray | None, list[int | None] | None]:
    """Vectors and decades of posters without labels: the classifier uses them (features only,
    never labels) to centre each decade's features, so a decade without labels adapts too."""
    with db.catalog.read() as con:
        unl = db.catalog.filter_ids(con, labelled=False)
        if not len(unl):
            return None, None
        ids, X = db.catalog.vectors(con, embedding_table(model), unl)
        decades = dict(con.execute("SELECT id, decade FROM posters").fetchall())
    return X, [decades.get(int(i)) for i in ids]


def _decades_arg(decades: np.ndarray) -> list[int | None]:
    return [None if d < 0 else int(d) for d in decades]


def train(db, model: str, **params) -> dict:
    """Fit a GenreClassifier on the store's labelled posters and record it (file + hash)."""
    from .classify.blend import GenreClassifier
    from .classify.persist import save_classifier

    ids, X, Y, decades = training_data(db, model)
    if len(ids) < 20:
        raise StoreError(f"only {len(ids)} labelled posters with {model} vectors: need ≥ 20 to train")
    X_unl, dec_unl = unlabelled_data(db, model)
    t0 = time.perf_counter()
    clf = GenreClassifier(**params).fit(X, Y, decades=_decades_arg(decades), ids=ids,
                                        X_unlabelled=X_unl, decades_unlabelled=dec_unl)
    seconds = time.perf_counter() - t0
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%f")
    rel = f"classifiers/{embedding_table(model).removeprefix('embeddings_')}-{stamp}.joblib"
    (db.root / "classifiers").mkdir(parents=True, exist_ok=True)
    sha = save_classifier(clf, db.root / rel)
    scores = {"validation": getattr(clf, "validation_scores_", {}), "seconds": round(seconds, 2)}
    with db.catalog.write() as con:
        next_id = con.execute("SELECT coalesce(max(id), 0) + 1 FROM classifiers").fetchall()[0][0]
        con.execute("INSERT INTO classifiers (id, model_name, file, sha256, n_train, scores) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    [next_id, model, rel, sha, len(ids), json.dumps(scores, default=float)])
    db._classifiers.pop(model, None)
    return {"model": model, "n_train": int(len(ids)), "seconds": round(seconds, 2), "file": rel,
            "sha256": sha, "validation": scores["validation"]}


def load_latest(db, model: str):
    """The newest classifier recorded for `model` (cached by its row), or None."""
    rows = db._cached(f"classifier-row:{model}", lambda con: con.execute(
        "SELECT id, file, sha256 FROM classifiers WHERE model_name = ? ORDER BY id DESC LIMIT 1",
        [model]).fetchall())
    if not rows:
        return None
    row_id, rel, sha = rows[0]
    cached = db._classifiers.get(model)
    if cached and cached[0] == row_id:
        return cached[1]
    path = (db.root / rel).resolve()
    if db.root.resolve() not in path.parents:
        raise StoreError(f"classifier file {rel!r} lies outside the store: refusing to load it")
    from .classify.persist import load_classifier

    clf = load_classifier(path, sha)
    db._classifiers[model] = (row_id, clf)
    return clf


def require(db, model: str):
    clf = load_latest(db, model)
    if clf is None:
        raise NotTrainedError(f"no classifier trained for {model!r} in {db.root}: "
                              f"run `posterdb train` first")
    return clf


def classify(db, images, years=None, *, model: str, n_evidence: int = 10) -> list[Classification]:
    """Genres + evidence for PosterImage objects or image paths (validated like ingest)."""
    from .images import PosterImage, open_poster

    from .store import Hit

    posters = [im if isinstance(im, PosterImage) else open_poster(im) for im in images]
    years = list(years) if years is not None else [None] * len(posters)
    if len(years) != len(posters):
        raise ValueError("one year (or None) per image")
    if not posters:
        return []
    # In steady state nothing here opens DuckDB: the classifier, the stored hashes and the
    # evidence posters' metadata are cached until the store's generation moves.
    clf = require(db, model)
    stored = db._cached("sha-to-id", lambda con: dict(
        con.execute("SELECT sha256, id FROM posters").fetchall()))
    in_store = [stored.get(p.sha256) for p in posters]
    vectors = db.embedder(model).embed_images([p.image for p in posters])
    preds = clf.explain(vectors, decades=[decade_of(y) for y in years], exclude_ids=in_store,
                        n_evidence=n_evidence)
    meta = {p["id"]: p for p in db.posters(sorted({n.id for p in preds for n in p.evidence}))}

    out = []
    for poster, year, pid, pred in zip(posters, years, in_store, preds):
        hits = [Hit(n.id, float(n.similarity), m["title"], m["year"], m["decade"],
                    m["genres"] or m["predicted"] or n.genres, m["image"], m["path"],
                    bool(m["genres"]))
                for n in pred.evidence if (m := meta.get(n.id)) is not None]
        out.append(Classification(poster.path, year, pred.genres, pred.probabilities, pred.heads,
                                  pred.vote, float(pred.alpha), pred.decade_head, hits, pid))
    return out


def predict_vectors(db, vectors: np.ndarray, years, model: str):
    """Predictions (no evidence lookup) for vectors already computed, e.g. during ingest."""
    clf = require(db, model)
    return clf.explain(vectors, decades=[decade_of(y) for y in years], n_evidence=0)


def evaluate(db, model: str, *, train_decades=None, test_decades=None, test_labels=None,
             seed: int = 0, cross_decade: bool = True, transductive: bool = True):
    """Run the study-vs-posterdb evaluation on the store's labelled posters; saves JSON + PNG."""
    from .classify.evaluate import evaluate as run_eval

    ids, X, Y, decades = training_data(db, model)
    kwargs = {}
    if test_labels is not None:
        X_test, Y_test, dec_test = _external_test_set(db, model, Path(test_labels))
        kwargs.update(X_test=X_test, Y_test=Y_test, test_years_or_decades=dec_test)
    report = run_eval(X, Y, decades, train_decades=train_decades, test_decades=test_decades,
                      seed=seed, cross_decade=cross_decade, transductive=transductive, **kwargs)
    out = db.root / "eval"
    out.mkdir(parents=True, exist_ok=True)
    report.save_json(out / "latest.json")
    report.render_png(out / "latest.png")
    return report


def _external_test_set(db, model: str, labels: Path):
    """Embed (without storing) the posters named in an external labels file."""
    from .images import open_poster
    from .labels import read_labels

    rows, problems = read_labels(labels)
    if not rows:
        raise StoreError(f"{labels}: no usable labelled rows ({len(problems)} problems)")
    emb = db.embedder(model)
    images, kept = [], []
    for r in rows:
        if r.genres:
            images.append(open_poster(r.path).image)
            kept.append(r)
    X = emb.embed_images(images)
    Y = to_multi_hot([r.genres for r in kept])
    dec = np.asarray([decade_of(r.year) if r.year else -1 for r in kept], dtype=np.int64)
    return X, Y, dec


def latest_eval(db) -> dict | None:
    path = db.root / "eval" / "latest.json"
    if not path.exists():
        return None
    report = json.loads(path.read_text())
    png = path.with_suffix(".png")
    report["png"] = str(png) if png.exists() else None
    return report


__all__ = ["Classification", "train", "load_latest", "classify", "evaluate", "latest_eval",
           "predict_vectors", "training_data", "GENRES"]
