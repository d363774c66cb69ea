"""`GenreService`: train, keep and use the store's genre classifier, and curate with it.

It owns its caches (the loaded classifier and the review queue's probabilities, both keyed by
the stored classifier's row id, so a new training invalidates them) and receives what it uses
explicitly: the catalogue, the image store, an `embedder(model)` and a `posters(ids)` lookup.
A fitted classifier is saved under `<store>/classifiers/` with its sha256 recorded in DuckDB;
it is only ever loaded from inside the store, after that hash (and its format) are checked.
"""
from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from posterdb import __version__
from posterdb.classify.progress import peak_rss_mib
from posterdb.classify.publish import choose_publishing, publishing_thresholds
from posterdb.classify.report import EvalReport
from posterdb.core.errors import ClassifierFormatError, NotTrainedError, StoreError, UsageError
from posterdb.core.genres import GENRES, to_multi_hot
from posterdb.core.records import Classification, ClassifierRow, Hit, PosterRecord, StoredPoster
from posterdb.core.rules import check_origin, decade_of, validate_genres, validate_genres_in_order
from posterdb.curation.suspicion import score_queue
from posterdb.embedders.base import Embedder
from posterdb.media.images import PosterImage, open_poster
from posterdb.storage.catalog import Catalog, embedding_table
from posterdb.storage.image_store import ImageStore

MIN_TRAIN = 20


class GenreService:
    """The genre classifier of one store (see the module docstring for its collaborators)."""

    def __init__(self, catalog: Catalog, root: Path, images: ImageStore,
                 embedder: Callable[[str], Embedder], posters: Callable[..., list[StoredPoster]]):
        self.catalog, self.root, self.images = catalog, Path(root), images
        self.embedder, self.posters = embedder, posters
        self._rows: dict[str, tuple[int, ClassifierRow | None]] = {}   # model -> (generation, row)
        self._loaded: dict[str, tuple[int, object]] = {}               # model -> (row id, clf)
        self._proba: dict[tuple[str, int], dict[int, np.ndarray]] = {}  # (model, row id) -> probas
        self._sha_to_id: tuple[int, dict[str, int]] = (-1, {})

    # -- data ---------------------------------------------------------------------------------

    def training_data(self, model: str):
        """(ids, X, Y, decades) of every labelled poster with a vector (-1: decade unknown)."""
        with self.catalog.read() as con:
            labels = self.catalog.labels(con)
            ids, X = self.catalog.vectors(con, embedding_table(model), sorted(labels))
            decades = self.catalog.decades(con)
        Y = to_multi_hot([labels[int(i)] for i in ids])
        dec = np.asarray([decades.get(int(i)) if decades.get(int(i)) is not None else -1
                          for i in ids], dtype=np.int64)
        return ids, X, Y, dec

    def unlabelled_data(self, model: str):
        """Vectors and decades of posters without labels: the classifier centres each decade's
        features with them too (features only, never labels), so a decade without labels adapts."""
        with self.catalog.read() as con:
            unl = self.catalog.filter_ids(con, labelled=False)
            if not len(unl):
                return None, None
            ids, X = self.catalog.vectors(con, embedding_table(model), unl)
            decades = self.catalog.decades(con)
        return X, [decades.get(int(i)) for i in ids]

    # -- training and loading -----------------------------------------------------------------

    def train(self, model: str, publish_precision: float | None = None, *,
              max_train: int | None = None, progress=None, **params) -> dict:
        """Fit a GenreClassifier on the store's labelled posters and record it (file + hash).
        Also chooses, per genre, the threshold whose out-of-fold precision reaches
        `publish_precision` (classify/publish.py); the result carries the previous classifier's
        validation figures as `before`. `max_train`: fit on a seeded random sample of at most
        that many labelled posters (a quick model). `progress`: callable(stage, done, total).
        The result reports the fit's time per stage and the process's peak memory."""
        from posterdb.classify.blend import GenreClassifier
        from posterdb.classify.persist import FORMAT_VERSION, save_classifier
        from posterdb.classify.publish import DEFAULT_PRECISION

        publish_precision = DEFAULT_PRECISION if publish_precision is None else publish_precision
        if not 0.0 < publish_precision <= 1.0:
            raise UsageError(f"--publish-precision must be in (0, 1], got {publish_precision}")
        before = self.latest_scores(model)

        if max_train is not None and max_train < MIN_TRAIN:
            raise UsageError(f"--max-train must be at least {MIN_TRAIN}, got {max_train}")
        ids, X, Y, decades = self.training_data(model)
        n_labelled = len(ids)
        if max_train is not None and n_labelled > max_train:
            keep = np.sort(np.random.default_rng(0).choice(n_labelled, max_train, replace=False))
            ids, X, Y, decades = ids[keep], X[keep], Y[keep], decades[keep]
        if len(ids) < MIN_TRAIN:
            raise StoreError(f"only {len(ids)} labelled posters with {model} vectors: "
                             f"need ≥ {MIN_TRAIN} to train")
        X_unl, dec_unl = self.unlabelled_data(model)
        t0 = time.perf_counter()
        clf = GenreClassifier(**params).fit(
            X, Y, decades=[None if d < 0 else int(d) for d in decades], ids=ids,
            X_unlabelled=X_unl, decades_unlabelled=dec_unl, progress=progress)
        seconds = time.perf_counter() - t0
        publishing = choose_publishing(clf, publish_precision)
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%f")
        rel = f"classifiers/{embedding_table(model).removeprefix('embeddings_')}-{stamp}.joblib"
        scores = {"validation": getattr(clf, "validation_scores_", {}), "seconds": round(seconds, 2),
                  "publishing": publishing, "n_train": int(len(ids))}
        with self.catalog.write() as con:   # file and row together: `prune` never sees one alone
            sha = save_classifier(clf, self.root / rel)
            self.catalog.insert_classifier(con, model, rel, sha, len(ids),
                                           json.dumps(scores, default=float), FORMAT_VERSION,
                                           __version__)
        self._rows.pop(model, None)
        return {"model": model, "n_train": int(len(ids)), "n_labelled": int(n_labelled),
                "seconds": round(seconds, 2), "file": rel, "sha256": sha,
                "validation": scores["validation"], "publishing": publishing, "before": before,
                "heads": clf.heads_kind_,
                "stage_seconds": {k: round(v, 2) for k, v in clf.fit_seconds_.items()},
                "peak_rss_mib": round(peak_rss_mib(), 1)}

    def latest_scores(self, model: str) -> dict | None:
        """The recorded figures of the newest classifier (validation, publishing), or None."""
        row = self.latest_row(model)
        if row is None:
            return None
        with self.catalog.read() as con:
            raw = self.catalog.classifier_scores(con, row.id)
        out = json.loads(raw) if raw else {}
        return out | {"n_train": out.get("n_train", row.n_train), "trained_at": row.trained_at}

    def publish_thresholds(self, model: str) -> np.ndarray:
        """Per-genre publishing thresholds of the newest classifier (inf: never published)."""
        return publishing_thresholds(self.require(model))

    def published_of(self, model: str):
        """predictions -> for each, its genres at or above their publishing threshold."""
        t = dict(zip(GENRES, self.publish_thresholds(model)))
        return lambda preds: [[g for g in p.genres if p.probabilities[g] >= t[g]] for p in preds]

    def latest_row(self, model: str) -> ClassifierRow | None:
        gen = self.catalog.current_generation()
        cached = self._rows.get(model)
        if cached is None or cached[0] != gen:
            with self.catalog.read() as con:
                cached = (gen, self.catalog.latest_classifier(con, model))
            self._rows[model] = cached
        return cached[1]

    def load_latest(self, model: str):
        """The newest classifier recorded for `model` (cached by its row id), or None."""
        from posterdb.classify.persist import load_classifier

        row = self.latest_row(model)
        if row is None:
            return None
        cached = self._loaded.get(model)
        if cached and cached[0] == row.id:
            return cached[1]
        path = (self.root / row.file).resolve()
        if self.root.resolve() not in path.parents:
            raise StoreError(f"classifier file {row.file!r} lies outside the store: "
                             "refusing to load it")
        clf = load_classifier(path, row.sha256)
        self._loaded[model] = (row.id, clf)
        return clf

    def require(self, model: str):
        clf = self.load_latest(model)
        if clf is None:
            raise NotTrainedError(f"no classifier trained for {model!r} in {self.root}: "
                                  f"run `posterdb train` first")
        return clf

    # -- predicting ---------------------------------------------------------------------------

    def _stored_ids(self) -> dict[str, int]:
        gen = self.catalog.current_generation()
        if self._sha_to_id[0] != gen:
            with self.catalog.read() as con:
                self._sha_to_id = (gen, self.catalog.sha_to_id(con))
        return self._sha_to_id[1]

    def classify(self, images, years=None, *, model: str, n_evidence: int = 10,
                 ) -> list[Classification]:
        """Genres + evidence for PosterImage objects or image paths (validated like ingest)."""
        posters = [im if isinstance(im, PosterImage) else open_poster(im) for im in images]
        years = list(years) if years is not None else [None] * len(posters)
        if len(years) != len(posters):
            raise UsageError("one year (or None) per image")
        if not posters:
            return []
        # In steady state nothing here opens DuckDB: the classifier, the stored hashes and the
        # evidence posters' metadata are cached until the store's generation moves.
        clf = self.require(model)
        stored = self._stored_ids()
        in_store = [stored.get(p.sha256) for p in posters]
        vectors = self.embedder(model).embed_images([p.image for p in posters])
        preds = clf.explain(vectors, decades=[decade_of(y) for y in years], exclude_ids=in_store,
                            n_evidence=n_evidence)
        meta = {p.id: p for p in self.posters(sorted({n.id for p in preds for n in p.evidence}))}
        out = []
        for poster, year, pid, pred in zip(posters, years, in_store, preds):
            hits = [Hit.from_poster(m, n.similarity) for n in pred.evidence
                    if (m := meta.get(n.id)) is not None]
            out.append(Classification(poster.path, year, pred.genres, pred.probabilities,
                                      pred.heads, pred.vote, float(pred.alpha), pred.decade_head,
                                      hits, pid))
        return out

    def predict_vectors(self, vectors: np.ndarray, years, model: str):
        """Predictions (no evidence lookup) for vectors already computed, e.g. during ingest."""
        return self.require(model).explain(vectors, decades=[decade_of(y) for y in years],
                                           n_evidence=0)

    # -- curation -----------------------------------------------------------------------------

    def review_queue(self, model: str, limit: int = 50) -> list[dict]:
        """Posters whose labels disagree with the classifier (or whose prediction is unsure),
        worst first; labelled posters are judged by their out-of-fold probabilities."""
        clf = self.require(model)
        row = self.latest_row(model)
        with self.catalog.read() as con:
            labels = self.catalog.labels(con)
            reviewed = set(self.catalog.labels(con, origin="review"))
            ids = self.catalog.vector_ids(con, embedding_table(model))
        ids = np.asarray([i for i in ids.tolist() if i not in reviewed], dtype=np.int64)
        if not len(ids):
            return []
        top = score_queue(ids, self._probabilities(model, row.id, clf, ids), labels, limit)
        meta = {p.id: p for p in self.posters([pid for _, pid, _, _ in top])}
        return [meta[pid].to_dict() | {"suspicion": round(s, 4), "reason": reason,
                             "predicted_probabilities": probs}
                for s, pid, reason, probs in top if pid in meta]

    def probabilities(self, model: str, ids) -> np.ndarray:
        """(n, 19) probabilities of stored posters: out-of-fold for those the classifier was
        trained on, predicted (itself excluded from the vote) for the others."""
        clf = self.require(model)
        ids = np.asarray(ids, dtype=np.int64)
        if not len(ids):
            return np.zeros((0, len(GENRES)))
        return self._probabilities(model, self.latest_row(model).id, clf, ids)

    def image_probabilities(self, model: str, ids: Sequence[int]) -> dict[int, np.ndarray] | None:
        """{poster id: the classifier's 19 probabilities}, predicted in sample (a reader's prior
        for identifying the film, not a review score); None without a usable classifier."""
        try:
            clf = self.load_latest(model)
        except (ClassifierFormatError, StoreError):
            return None
        if clf is None or not len(ids):
            return None
        with self.catalog.read() as con:
            got, X = self.catalog.vectors(con, embedding_table(model), list(ids))
            decades = self.catalog.decades(con)
        P = clf.predict_proba(X, [decades.get(int(i)) for i in got])
        return {int(i): P[j] for j, i in enumerate(got)}

    def _probabilities(self, model: str, row_id: int, clf, ids: np.ndarray) -> np.ndarray:
        """Probabilities of stored posters, cached per classifier: a poster the classifier was
        trained on gets its out-of-fold probabilities (kept at training: in-sample ones would
        hide its mislabels); any other is predicted with itself excluded from the vote."""
        key = (model, row_id)
        for other in [k for k in self._proba if k != key]:
            del self._proba[other]
        cache = self._proba.get(key)
        if cache is None:
            cache = self._proba[key] = {}
            oof, train_ids = getattr(clf, "oof_proba_", None), getattr(clf, "ids_", None)
            if oof is not None and train_ids is not None and len(oof) == len(train_ids):
                cache.update(zip(np.asarray(train_ids).tolist(), np.asarray(oof)))
        todo = np.asarray([i for i in ids.tolist() if i not in cache], dtype=np.int64)
        if len(todo):
            with self.catalog.read() as con:
                got, X = self.catalog.vectors(con, embedding_table(model), todo)
                decades = self.catalog.decades(con)
            proba = clf.predict_proba(X, decades=[decades.get(int(i)) for i in got],
                                      exclude_ids=got)
            cache.update(zip(got.tolist(), proba))
        return np.stack([cache[int(i)] for i in ids])

    def add_poster(self, poster: PosterImage, genres: Sequence[str], *, title: str | None = None,
                   year: int | None = None, model: str, origin: str = "review",
                   scores: list[float] | None = None) -> int:
        """Store one validated image with genres: a person's (review) or the classifier's."""
        canon = validate_genres(genres)
        if scores is not None:  # keep each score with its genre
            by_genre = dict(zip(validate_genres_in_order(genres), scores))
            scores = [by_genre[g] for g in canon]
        genres = canon
        check_origin(origin)
        emb = self.embedder(model)
        vector = emb.embed_images([poster.image])
        rel = self.images.relpath(poster.sha256, poster.suffix)
        publish = (dict(zip(GENRES, self.publish_thresholds(model)))
                   if origin == "prediction" and scores is not None else None)
        with self.catalog.write() as con:
            table = self.catalog.register_model(con, emb.spec)
            pid = self.catalog.id_of_sha(con, poster.sha256)
            if pid is None:
                self.images.write(rel, poster.data)
                pid = int(self.catalog.allocate_ids(con, 1)[0])
                self.catalog.insert_posters(con, np.asarray([pid]), [PosterRecord(
                    poster.sha256, poster.path, rel, title, year, poster.width, poster.height,
                    poster.format, "page" if origin == "review" else "classify")])
                self.catalog.insert_vectors(con, table, np.asarray([pid]), vector)
            self.catalog.set_labels(con, [pid], [genres], origin,
                                    None if scores is None else [scores])
            if publish is not None:   # a prediction's published subset, in the same commit
                sure = [(g, s) for g, s in zip(genres, scores) if s >= publish[g]]
                self.catalog.set_labels(con, [pid], [[g for g, _ in sure]], "published",
                                        [[s for _, s in sure]])
        return pid

    # -- evaluation ---------------------------------------------------------------------------

    def evaluate(self, model: str, *, train_decades=None, test_decades=None, test_labels=None,
                 seed: int = 0, cross_decade: bool = True, transductive: bool = True,
                 heads: str = "auto", compare_heads: str | None = None):
        """The study-vs-posterdb evaluation on the store's labelled posters; saves JSON + PNG.
        heads: the classifier's heads ("auto", "exact", "nystroem"); compare_heads: also report
        the heads and blend of a classifier with those heads, on the same split."""
        from posterdb.classify.blend import HEADS

        for name, value in (("--heads", heads), ("--compare-heads", compare_heads)):
            if value is not None and value not in HEADS:
                raise UsageError(f"{name} must be one of {', '.join(HEADS)}, not {value!r}")
        from posterdb.classify.evaluate import evaluate as run_eval

        ids, X, Y, decades = self.training_data(model)
        kwargs = {}
        if test_labels is not None:
            X_test, Y_test, dec_test = self._external_test_set(model, Path(test_labels))
            kwargs.update(X_test=X_test, Y_test=Y_test, test_years_or_decades=dec_test)
        report = run_eval(X, Y, decades, train_decades=train_decades, test_decades=test_decades,
                          seed=seed, cross_decade=cross_decade, transductive=transductive,
                          classifier_params={"heads": heads}, compare_heads=compare_heads,
                          **kwargs)
        out = self.root / "eval"
        out.mkdir(parents=True, exist_ok=True)
        report.save_json(out / "latest.json")
        report.render_png(out / "latest.png")
        return report

    def compare_models(self, models, **options) -> dict:
        """Several embedders side by side on the same posters and split (classify/compare.py)."""
        from posterdb.classify.compare import compare_models

        return compare_models({m: self.training_data(m) for m in models}, **options)

    def _external_test_set(self, model: str, labels: Path):
        """Embed (without storing) the posters named in an external labels file."""
        from posterdb.media.labels import read_labels

        rows, problems = read_labels(labels)
        if not rows:
            raise UsageError(f"{labels}: no usable labelled rows ({len(problems)} problems)")
        kept = [r for r in rows if r.genres]
        X = self.embedder(model).embed_images([open_poster(r.path).image for r in kept])
        Y = to_multi_hot([r.genres for r in kept])
        dec = np.asarray([decade_of(r.year) if r.year else -1 for r in kept], dtype=np.int64)
        return X, Y, dec

    def latest_eval(self) -> EvalReport | None:
        """The last `posterdb eval` report (an EvalReport, with its chart's path), or None."""
        path = self.root / "eval" / "latest.json"
        if not path.exists():
            return None
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise StoreError(f"{path}: unreadable evaluation report ({e}); run `posterdb eval` "
                             f"again") from e
        png = path.with_suffix(".png")
        return EvalReport.from_dict(data, str(png) if png.exists() else None)


__all__ = ["GenreService", "GENRES"]
