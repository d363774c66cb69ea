"""Curation: the review queue (suspicious labels first) and adding one poster from the page."""
from __future__ import annotations

import numpy as np

from .catalog import PosterRecord, embedding_table
from .genres import GENRES
from .images import PosterImage


def review_queue(db, model: str, limit: int = 50) -> list[dict]:
    """Posters whose labels disagree with the classifier (or whose prediction is unsure), worst first.

    Labelled: suspicion = mean over its genres of (1 − p) averaged with the top probability among
    genres it lacks. Unlabelled: 1 − the top probability. Reviewed posters are left out.
    """
    from .classifiers import require

    clf = require(db, model)
    with db.catalog.read() as con:
        labels = db.catalog.labels(con)
        reviewed = set(db.catalog.labels(con, origin="review"))
        ids = db.catalog.vector_ids(con, embedding_table(model))
    ids = np.asarray([i for i in ids.tolist() if i not in reviewed], dtype=np.int64)
    if not len(ids):
        return []
    proba = _probabilities(db, model, clf, ids)
    scored = []
    for pid, p in zip(ids.tolist(), proba):
        probs = dict(zip(GENRES, map(float, p)))
        gs = labels.get(pid)
        if gs:
            miss = float(np.mean([1 - probs[g] for g in gs]))
            extra_g = max((g for g in GENRES if g not in gs), key=probs.__getitem__)
            s = 0.5 * miss + 0.5 * probs[extra_g]
            weakest = min(gs, key=probs.__getitem__)
            reason = (f"labelled {weakest} but p={probs[weakest]:.2f}; "
                      f"{extra_g} p={probs[extra_g]:.2f} is not labelled")
        else:
            top = max(GENRES, key=probs.__getitem__)
            s = 1 - probs[top]
            reason = f"unlabelled; most likely {top} at only p={probs[top]:.2f}"
        scored.append((s, pid, reason, probs))
    scored.sort(key=lambda t: -t[0])
    top = scored[:limit]
    meta = {p["id"]: p for p in db.posters([pid for _, pid, _, _ in top])}
    return [meta[pid] | {"suspicion": round(s, 4), "reason": reason,
                         "predicted_probabilities": probs}
            for s, pid, reason, probs in top if pid in meta]


def _probabilities(db, model: str, clf, ids: np.ndarray) -> np.ndarray:
    """Blend probabilities of stored posters (self excluded from the vote), cached per classifier:
    labels and reviews do not change them, so only posters new since the last call are scored."""
    key = (model, id(clf))
    cache: dict[int, np.ndarray] = db._proba_cache.setdefault(key, {})
    for other in [k for k in db._proba_cache if k[0] == model and k != key]:
        del db._proba_cache[other]
    todo = np.asarray([i for i in ids.tolist() if i not in cache], dtype=np.int64)
    if len(todo):
        with db.catalog.read() as con:
            got, X = db.catalog.vectors(con, embedding_table(model), todo)
            decades = dict(con.execute("SELECT id, decade FROM posters").fetchall())
        proba = clf.predict_proba(X, decades=[decades.get(int(i)) for i in got], exclude_ids=got)
        cache.update(zip(got.tolist(), proba))
    return np.stack([cache[int(i)] for i in ids])


def add_poster(db, poster: PosterImage, genres: list[str], *, title: str | None = None,
               year: int | None = None, model: str, origin: str = "review",
               scores: list[float] | None = None) -> int:
    """Store one validated image with genres: a person's (review) or the classifier's (prediction)."""
    from .ingest import _write_copy

    bad = [g for g in genres if g not in GENRES]
    if bad or not genres:
        raise ValueError(f"genres must be ≥1 of the 19 TMDb genres; got {genres}")
    emb = db.embedder(model)
    vector = emb.embed_images([poster.image])
    rel = db.image_relpath(poster.sha256, poster.suffix)
    with db.catalog.write() as con:
        table = db.catalog.register_model(con, emb.spec)
        found = con.execute("SELECT id FROM posters WHERE sha256 = ?", [poster.sha256]).fetchall()
        if found:
            pid = int(found[0][0])
        else:
            _write_copy(db.root, rel, poster.data)
            pid = int(db.catalog.allocate_ids(con, 1)[0])
            db.catalog.insert_posters(con, np.asarray([pid]), [PosterRecord(
                poster.sha256, poster.path, rel, title, year, poster.width, poster.height,
                poster.format, origin == "review" and "page" or "classify")])
            db.catalog.insert_vectors(con, table, np.asarray([pid]), vector)
        db.catalog.set_labels(con, [pid], [list(genres)], origin,
                              None if scores is None else [scores])
    return pid
