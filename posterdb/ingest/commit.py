"""Stage 4, commit, and the steps after it.

`Committer.commit` writes the image copies, then one DuckDB transaction: new poster rows, their
file labels, the vectors, predictions for unlabelled posters (auto-classification runs *before*
the transaction so its labels land atomically with the posters), other names of stored bytes
and the errors of the batch. After the commit, each `PostCommitStep` sees the batch: the near-
duplicate report, then the FAISS add (in that order: a poster is not its own near-duplicate).
`CommitThread` runs commits in the background so commit n overlaps the embedding of batch n+1.

Another writer may have committed since the plan was made (the page adding a poster, a second
ingest that did not wait for the writer lock): inside the transaction the batch's hashes are
looked up again, so a poster stored meanwhile is not inserted twice (its labels row still
applies, as on a re-run), one removed meanwhile is stored anew, and vectors go in only where
none is stored (`INSERT OR IGNORE`, posters that exist). Nothing here relies on the plan's
snapshot for what it writes.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence
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
    """Adds the batch to the model's FAISS index, saving it every `save_every` seconds (with
    `save`, e.g. `IndexCache.save_synced`, else to `path` as it is)."""

    def __init__(self, index: VectorIndex, path: Path, save_every: float = 60.0,
                 save: Callable[[], None] | None = None):
        self.index, self.path, self.save_every = index, path, save_every
        self.save = save or (lambda: self.index.save(self.path))
        self.last_save = time.monotonic()

    def after_commit(self, items, ids, vectors) -> None:
        if len(items):
            present = np.isin(ids, self.index.ids())
            keep = ~present & _first_of_each(ids)
            self.index.add(ids[keep], vectors[keep])
        if time.monotonic() - self.last_save > self.save_every:
            self.save()
            self.last_save = time.monotonic()


def _first_of_each(ids: np.ndarray) -> np.ndarray:
    """A mask keeping the first occurrence of each id."""
    keep = np.zeros(len(ids), bool)
    keep[np.unique(ids, return_index=True)[1]] = True
    return keep


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
        # image copies and predictions for what was new at plan time, before the transaction;
        # the transaction decides what is new now
        maybe = [i for i, it in enumerate(items) if it.poster.sha256 not in self.stored]
        records = {i: self._record(items[i]) for i in maybe}
        unlabelled = [i for i in maybe if not (items[i].row and items[i].row.genres)]
        preds = {}
        if self.classifier is not None and unlabelled:
            preds = dict(zip(unlabelled, self.classifier.predict(
                vectors[unlabelled], [records[i].year for i in unlabelled])))
        self.pending_aliases += aliases
        with cat.write() as con:
            now = cat.ids_of_shas(con, [it.poster.sha256 for it in items])
            new, seen = [], set()
            for i, it in enumerate(items):
                sha = it.poster.sha256
                if sha not in now and sha not in seen:
                    new.append(i)
                    seen.add(sha)
            for i in new:       # stored at plan time, removed by another writer since
                if i not in records:
                    records[i] = self._record(items[i])
            raced = [i for i in maybe if items[i].poster.sha256 in now]
            had_vector = cat.ids_with_vectors(con, self.plan.table,
                                              [now[items[i].poster.sha256] for i in raced])
            new_ids = cat.allocate_ids(con, len(new))
            for sha, pid in now.items():
                if sha not in self.stored or self.stored[sha][0] != pid:
                    self.stored[sha] = (pid, None, None)
            for i, pid in zip(new, new_ids):
                rec = records[i]
                self.stored[rec.sha256] = (int(pid), rec.title, rec.year)
            ids = np.asarray([self.stored[it.poster.sha256][0] for it in items], dtype=np.int64)
            if new:
                cat.insert_posters(con, new_ids, [records[i] for i in new])
                labelled = [i for i in new if items[i].row and items[i].row.genres]
                cat.set_labels(con, [self.stored[items[i].poster.sha256][0] for i in labelled],
                               [list(items[i].row.genres) for i in labelled], "file")
            self._relabel_raced(con, [i for i in raced if items[i].row is not None], items)
            if items:
                keep = _first_of_each(ids)
                cat.insert_vectors(con, self.plan.table, ids[keep], vectors[keep],
                                   skip_existing=True)
            predicted = [i for i in new if i in preds]
            if predicted:
                pids = [self.stored[items[i].poster.sha256][0] for i in predicted]
                got = [preds[i] for i in predicted]
                cat.set_labels(con, pids, [p.genres for p in got], "prediction",
                               [[p.probabilities[g] for g in p.genres] for p in got])
                # the confident subset, in the same transaction
                published = self.classifier.published(got)
                cat.set_labels(con, pids, published, "published",
                               [[p.probabilities[g] for g in gs]
                                for p, gs in zip(got, published)])
            cat.add_paths(con, [(self.stored[sha][0], p) for sha, p in self.pending_aliases
                                if sha in self.stored])
            cat.record_errors(con, report.run_id, errors)
        self.pending_aliases = [(sha, p) for sha, p in self.pending_aliases
                                if sha not in self.stored]
        for step in self.steps:
            step.after_commit(items, ids, vectors)
        skipped = sum(now[items[i].poster.sha256] in had_vector for i in raced)
        report.added += len(new)
        report.added_ids += [int(i) for i in new_ids]
        report.skipped += skipped
        report.embedded_existing += len(items) - len(new) - skipped
        report.predicted += len(predicted)

    def _relabel_raced(self, con, raced: list[int], items: list[Item]) -> None:
        """Posters another writer stored since the plan: their labels row applies, as it would
        on a re-run (title, year and file genres of the row)."""
        cat = self.catalog
        for i in raced:
            row, pid = items[i].row, self.stored[items[i].poster.sha256][0]
            cat.update_metadata(con, pid, row.title, row.year)
        with_genres = [i for i in raced if items[i].row.genres]
        cat.set_labels(con, [self.stored[items[i].poster.sha256][0] for i in with_genres],
                       [list(items[i].row.genres) for i in with_genres], "file")


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
