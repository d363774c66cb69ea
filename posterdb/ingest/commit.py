"""Stage 4, commit, and the steps after it.

`Committer.commit` writes the image copies, then one DuckDB transaction: new poster rows, their
file labels, the vectors, predictions for unlabelled posters (auto-classification runs *before*
the transaction so its labels land atomically with the posters), other names of stored bytes
and the errors of the batch. After the commit, each `PostCommitStep` sees the batch: the near-
duplicate report, then the FAISS add (in that order: a poster is not its own near-duplicate).
`CommitThread` runs commits in the background so commit n overlaps the embedding of batch n+1.
"""
from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Protocol

import numpy as np

from posterdb.core.records import IngestReport, PosterRecord
from posterdb.ingest.engine import Item
from posterdb.ingest.plan import IngestPlan
from posterdb.storage.catalog import Catalog
from posterdb.storage.image_store import ImageStore
from posterdb.vectors.index import VectorIndex


class AutoClassifier(Protocol):
    """What ingest needs of a trained classifier: predictions for new unlabelled posters, and
    the subset of each prediction confident enough to publish (classify.service.AutoClassify)."""

    def predict(self, vectors: np.ndarray, years: list) -> list: ...

    def published(self, predictions: list) -> list[list[str]]: ...


class PostCommitStep(Protocol):
    def after_commit(self, items: Sequence[Item], ids: np.ndarray, vectors: np.ndarray) -> None: ...


class NearDuplicates:
    """Reports posters of the batch whose nearest stored poster is at or above `threshold`."""

    def __init__(self, index: VectorIndex, report: IngestReport, threshold: float):
        self.index, self.report, self.threshold = index, report, threshold

    def after_commit(self, items, ids, vectors) -> None:
        if not len(self.index) or not len(items):
            return
        res = self.index.search(vectors, 1)
        for i, item in enumerate(items):
            if res.similarities[i, 0] >= self.threshold:
                self.report.near_duplicates.append({
                    "id": int(ids[i]), "path": str(item.path), "similar_to": int(res.ids[i, 0]),
                    "similarity": round(float(res.similarities[i, 0]), 4)})


class AddToIndex:
    """Adds the batch to the model's FAISS index, saving it every `save_every` seconds."""

    def __init__(self, index: VectorIndex, path: Path, save_every: float = 60.0):
        self.index, self.path, self.save_every = index, path, save_every
        self.last_save = time.monotonic()

    def after_commit(self, items, ids, vectors) -> None:
        if len(items):
            self.index.add(ids, vectors)
        if time.monotonic() - self.last_save > self.save_every:
            self.index.save(self.path)
            self.last_save = time.monotonic()


class Committer:
    """Commits embedded batches of one run (see the module docstring)."""

    def __init__(self, catalog: Catalog, images: ImageStore, plan: IngestPlan,
                 report: IngestReport, *, classifier: AutoClassifier | None = None,
                 steps: Sequence[PostCommitStep] = ()):
        self.catalog, self.images, self.plan, self.report = catalog, images, plan, report
        self.classifier, self.steps = classifier, list(steps)
        self.stored = plan.stored            # sha256 -> (id, title, year), grows with each commit
        self.pending_aliases: list[tuple[str, str]] = []

    def _record(self, item: Item) -> PosterRecord:
        p, row = item.poster, item.row
        rel = self.images.relpath(p.sha256, p.suffix)
        self.images.write(rel, p.data)
        return PosterRecord(p.sha256, str(item.path), rel, row.title if row else None,
                            row.year if row else None, p.width, p.height, p.format,
                            str(self.plan.labels) if row and self.plan.labels else str(self.plan.path))

    def commit(self, items: list[Item], vectors: np.ndarray, errors: list[tuple[str, str]],
               aliases: list[tuple[str, str]]) -> None:
        cat, report = self.catalog, self.report
        new = [i for i, it in enumerate(items) if it.poster.sha256 not in self.stored]
        records = [self._record(items[i]) for i in new]
        unlabelled = [k for k, i in enumerate(new) if not (items[i].row and items[i].row.genres)]
        preds = []
        if self.classifier is not None and unlabelled:
            preds = self.classifier.predict(vectors[[new[k] for k in unlabelled]],
                                 [records[k].year for k in unlabelled])
        self.pending_aliases += aliases
        with cat.write() as con:
            new_ids = cat.allocate_ids(con, len(new))
            for rec, pid in zip(records, new_ids):
                self.stored[rec.sha256] = (int(pid), rec.title, rec.year)
            ids = np.asarray([self.stored[it.poster.sha256][0] for it in items], dtype=np.int64)
            if new:
                cat.insert_posters(con, new_ids, records)
                no_label = set(unlabelled)
                labelled = [(int(new_ids[k]), items[i].row.genres)
                            for k, i in enumerate(new) if k not in no_label]
                cat.set_labels(con, [p for p, _ in labelled], [list(g) for _, g in labelled],
                               "file")
            if items:
                cat.insert_vectors(con, self.plan.table, ids, vectors)
            if preds:
                cat.set_labels(con, [int(new_ids[k]) for k in unlabelled],
                               [p.genres for p in preds], "prediction",
                               [[p.probabilities[g] for g in p.genres] for p in preds])
                # the confident subset, in the same transaction
                published = self.classifier.published(preds)
                cat.set_labels(con, [int(new_ids[k]) for k in unlabelled], published,
                               "published", [[p.probabilities[g] for g in gs]
                                             for p, gs in zip(preds, published)])
            cat.add_paths(con, [(self.stored[sha][0], p) for sha, p in self.pending_aliases
                                if sha in self.stored])
            cat.record_errors(con, report.run_id, errors)
        self.pending_aliases = [(sha, p) for sha, p in self.pending_aliases
                                if sha not in self.stored]
        for step in self.steps:
            step.after_commit(items, ids, vectors)
        report.added += len(new)
        report.added_ids += [int(i) for i in new_ids]
        report.embedded_existing += len(items) - len(new)
        report.predicted += len(preds)


class CommitThread:
    """A one-slot hand-off to a `Committer` in a background thread; errors re-raise here."""

    def __init__(self, committer: Committer):
        self.committer = committer
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="posterdb-write")
        self.inflight: Future | None = None

    def submit(self, *args) -> None:
        self.wait()
        self.inflight = self.pool.submit(self.committer.commit, *args)

    def wait(self) -> None:
        if self.inflight is not None:
            fut, self.inflight = self.inflight, None
            fut.result()

    def close(self) -> None:
        try:
            self.wait()
        finally:
            self.pool.shutdown(wait=True)
