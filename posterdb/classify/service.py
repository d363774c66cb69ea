"""`GenreService`: train, keep and use the store's genre classifier, and curate with it.

It owns its caches (the loaded classifier and the review queue's probabilities, both keyed by
the stored classifier's row id, so a new training invalidates them) and receives what it uses
explicitly: the catalogue, the image store, the store's models (`StoreModels`: the default
model and the embedders) and its stored posters (`StoredPosters`). Every method takes the model
by name or None (the store's default).
A fitted classifier is saved under `<store>/classifiers/` with its sha256 recorded in DuckDB;
it is only ever loaded from inside the store, after that hash (and its format) are checked.
"""
from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from posterdb import __version__
from posterdb.classify.progress import peak_rss_mib
from posterdb.classify.publish import choose_publishing, publishing_thresholds
from posterdb.classify.report import EvalReport
from posterdb.core.errors import (ClassifierFormatError, NotTrainedError, StoreError, UsageError)
from posterdb.core.genres import GENRES, to_multi_hot
from posterdb.core.records import (Classification, ClassifierRow, Hit, PosterRecord)
from posterdb.core.rules import (
    check_origin, decade_of, validate_genres, validate_genres_in_order)
from posterdb.media.images import PosterImage, open_poster
from posterdb.storage.catalog import Catalog, embedding_table
from posterdb.storage.image_store import ImageStore
from posterdb.storage.posters import StoredPosters
from posterdb.vectors.models import StoreModels

MIN_TRAIN = 20


class GenreService:
    """The genre classifier of one store (see the module docstring for its collaborators)."""

    def __init__(self, catalog: Catalog, root: Path, images: ImageStore, models: StoreModels,
                 posters: StoredPosters):
        self.catalog, self.root, self.images = catalog, Path(root), images
        self.models, self.posters = models, posters
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

    def train(self, model: str | None = None, publish_precision: float | None = None, *,
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

        model = self.models.require(model)
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
        (self.root / "classifiers").mkdir(parents=True, exist_ok=True)
        sha = save_classifier(clf, self.root / rel)
        scores = {"validation": getattr(clf, "validation_scores_", {}), "seconds": round(seconds, 2),
                  "publishing": publishing, "n_train": int(len(ids))}
        with self.catalog.write() as con:
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

    def latest_scores(self, model: str | None = None) -> dict | None:
        """The recorded figures of the newest classifier (validation, publishing), or None."""
        row = self.latest_row(model)
        if row is None:
            return None
        with self.catalog.read() as con:
            raw = self.catalog.classifier_scores(con, row.id)
        out = json.loads(raw) if raw else {}
        return out | {"n_train": out.get("n_train", row.n_train), "trained_at": row.trained_at}

    def publish_thresholds(self, model: str | None = None) -> np.ndarray:
        """Per-genre publishing thresholds of the newest classifier (inf: never published)."""
        return publishing_thresholds(self.require(model))

    def auto_classifier(self, model: str | None = None) -> AutoClassify | None:
        """What ingest uses to classify new unlabelled posters, or None before training."""
        clf = self.load_latest(model)
        if clf is None:
            return None
        return AutoClassify(clf, dict(zip(GENRES, map(float, publishing_thresholds(clf)))))

    def classifier(self, model: str | None = None):
        """The latest trained classifier for the model (hash-checked), or None."""
        return self.load_latest(model)

    def latest_row(self, model: str | None = None) -> ClassifierRow | None:
        model = self.models.resolve(model)
        gen = self.catalog.current_generation()
        cached = self._rows.get(model)
        if cached is None or cached[0] != gen:
            with self.catalog.read() as con:
                cached = (gen, self.catalog.latest_classifier(con, model))
            self._rows[model] = cached
        return cached[1]

    def load_latest(self, model: str | None = None):
        """The newest classifier recorded for `model` (cached by its row id), or None."""
        from posterdb.classify.persist import load_classifier

        model = self.models.resolve(model)
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

    def require(self, model: str | None = None):
        model = self.models.resolve(model)
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

    def classify(self, images, years=None, *, model: str | None = None, n_evidence: int = 10,
                 ) -> list[Classification]:
        """Genres + evidence for PosterImage objects or image paths (validated like ingest)."""
        model = self.models.resolve(model)
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
        vectors = self.models.embedder(model).embed_images([p.image for p in posters])
        preds = clf.explain(vectors, decades=[decade_of(y) for y in years], exclude_ids=in_store,
                            n_evidence=n_evidence)
        meta = {p.id: p for p in self.posters.get(sorted({n.id for p in preds for n in p.evidence}))}
        out = []
        for poster, year, pid, pred in zip(posters, years, in_store, preds):
            hits = [Hit.from_voter(m, n) for n in pred.evidence
                    if (m := meta.get(n.id)) is not None]
            out.append(Classification(
                name=poster.path, year=year, in_store=pid, genres=pred.genres,
                probabilities=pred.probabilities, heads=pred.heads, vote=pred.vote,
                alpha=float(pred.alpha), decade_head=pred.decade_head, evidence=hits,
                thresholds=pred.thresholds))
        return out

    def predict_vectors(self, vectors: np.ndarray, years, model: str | None = None):
        """Predictions (no evidence lookup) for vectors already computed, e.g. during ingest."""
        return self.require(model).explain(vectors, decades=[decade_of(y) for y in years],
                                           n_evidence=0)

    # -- probabilities of stored posters -------------------------------------------------

    def probabilities(self, model: str | None, ids) -> np.ndarray:
        """(n, 19) probabilities of stored posters: out-of-fold for those the classifier was
        trained on, predicted (itself excluded from the vote) for the others."""
        model = self.models.resolve(model)
        clf = self.require(model)
        ids = np.asarray(ids, dtype=np.int64)
        if not len(ids):
            return np.zeros((0, len(GENRES)))
        return self._probabilities(model, self.latest_row(model).id, clf, ids)

    def image_probabilities(self, model: str | None, ids: Sequence[int]) -> dict[int, np.ndarray] | None:
        """{poster id: the classifier's 19 probabilities}, predicted in sample (a reader's prior
        for identifying the film, not a review score); None without a usable classifier."""
        model = self.models.resolve(model)
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
                   year: int | None = None, model: str | None = None, origin: str = "review",
                   scores: list[float] | None = None) -> int:
        """Store one validated image with genres: a person's (review) or the classifier's."""
        canon = validate_genres(genres)
        if scores is not None:  # keep each score with its genre
            by_genre = dict(zip(validate_genres_in_order(genres), scores))
            scores = [by_genre[g] for g in canon]
        genres = canon
        check_origin(origin)
        model = self.models.resolve(model)
        emb = self.models.embedder(model)
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

    # -- evaluation (classify/evaluation.py) -----------------------------------------------------

    def evaluate(self, model: str | None = None, **options):
        """The study-vs-posterdb evaluation on the store's labelled posters; saves JSON + PNG
        under eval/ (options: see `posterdb.classify.evaluation.evaluate_store`)."""
        from posterdb.classify.evaluation import evaluate_store

        return evaluate_store(self, self.models.require(model), **options)

    def compare_models(self, models, **options) -> dict:
        """Several embedders side by side on the same posters and split (classify/compare.py)."""
        from posterdb.classify.compare import compare_models

        return compare_models({m: self.training_data(m) for m in models}, **options)

    def latest_eval(self) -> EvalReport | None:
        """The last `posterdb eval` report (an EvalReport, with its chart's path), or None."""
        from posterdb.classify.evaluation import latest_report

        return latest_report(self.root)


@dataclass(frozen=True)
class AutoClassify:
    """A trained classifier as ingest uses it (`posterdb.ingest.AutoClassifier`)."""

    classifier: object
    publish: dict[str, float]          # genre -> publishing threshold (inf: never published)

    def predict(self, vectors: np.ndarray, years) -> list:
        return self.classifier.explain(vectors, decades=[decade_of(y) for y in years],
                                       n_evidence=0)

    def published(self, predictions) -> list[list[str]]:
        return [[g for g in p.genres if p.probabilities[g] >= self.publish[g]]
                for p in predictions]


__all__ = ["AutoClassify", "GenreService", "GENRES"]
