"""`posterdb ingest` as stages: plan → decode → embed → commit, then post-commit steps.

    plan.py     what is new: sources + label rows, what the store holds (hashes, labels, names)
    engine.py   decode + embed (`LocalEngine`: threads here; any engine yielding Failed / Known /
                Embedded items can replace it, e.g. a Ray pipeline embedding elsewhere)
    commit.py   image copies + one DuckDB transaction per ≥ `commit_every` posters (or every
                `commit_interval` s), then the post-commit steps (near-duplicates, FAISS add)

File names are kept as the OS gives them (bytes that are not UTF-8 as surrogate escapes) until
the catalogue stores them (`core.text.stored_name`): one odd name never fails a commit.

Idempotent and incremental: bytes already stored with a vector for this model are skipped, so
a crash loses at most the commit in flight and a re-run resumes. The FAISS index is a cache,
saved at the end (and every `save_every` s) and synced from DuckDB on open.
"""
from __future__ import annotations

import time
import uuid
from collections.abc import Callable

import numpy as np

from posterdb.core.records import IngestReport
from posterdb.core.settings import THRESHOLDS
from posterdb.core.text import stored_name
from posterdb.embedders.base import Embedder
from posterdb.ingest.commit import (
    AddToIndex, AutoClassifier, Committer, CommitThread, NearDuplicates)
from posterdb.ingest.engine import (
    Embedded, Engine, Failed, Item, Known, LocalEngine, poster_bytes)
from posterdb.ingest.plan import IngestPlan, collect_sources, plan
from posterdb.media.labels import LabelRow
from posterdb.storage.catalog import Catalog
from posterdb.storage.image_store import ImageStore
from posterdb.vectors.cache import IndexCache

Progress = Callable[[int, int], None]
COMMIT_BYTES = 64 * 1024**2   # file bytes waiting for their commit (one more may be in flight)


def _changed(row: LabelRow, stored: tuple, file_genres: list[str]) -> bool:
    _, title, year = stored
    return (row.title, row.year, list(row.genres)) != (title, year, file_genres)


def relabel(catalog: Catalog, rows: dict[int, LabelRow]) -> None:
    """Apply changed titles, years and file genres of already stored posters."""
    with catalog.write() as con:
        for pid, row in rows.items():
            catalog.update_metadata(con, pid, row.title, row.year)
        catalog.set_labels(con, list(rows), [list(r.genres) for r in rows.values()], "file")


def run_ingest(catalog: Catalog, images: ImageStore, indexes: IndexCache, embedder: Embedder,
               path, labels=None, *, classifier: AutoClassifier | None = None,
               sources: list | None = None,
               engine: Engine | None = None, batch_size: int | None = None,
               workers: int | None = None, progress: Progress | None = None,
               near_duplicate_threshold: float = THRESHOLDS.near_duplicate,
               save_every: float = 60.0,
               commit_every: int = 256, commit_interval: float = 2.0,
               commit_bytes: int = COMMIT_BYTES) -> IngestReport:
    """Ingest the images under `path` (a folder, recursively, or one file). A commit is due
    after `commit_every` posters, `commit_interval` seconds or `commit_bytes` of files waiting
    (their bytes are held until their copies are written)."""
    t0 = time.perf_counter()
    report = IngestReport(run_id=uuid.uuid4().hex[:12], model=embedder.name)
    report.swept_temp_files = images.sweep_temp_files()
    the_plan = plan(catalog, embedder.spec, path, labels, run_id=report.run_id, sources=sources)
    report.failed += the_plan.failed
    report.label_warnings += the_plan.warnings
    report.scanned = len(the_plan.sources)

    index = indexes.index(embedder.name)
    steps = [NearDuplicates(index, report, near_duplicate_threshold),
             AddToIndex(index, indexes.path(embedder.name), save_every)]
    writer = CommitThread(Committer(catalog, images, the_plan, report, classifier=classifier,
                                    steps=steps))
    engine = engine or LocalEngine(embedder, batch_size=batch_size, workers=workers)
    waiting: list[Embedded] = []
    errors: list[tuple[str, str]] = []
    aliases: list[tuple[str, str]] = []
    relabels: dict[int, LabelRow] = {}
    last_commit = time.monotonic()

    def hand_over(force: bool = False) -> None:
        """One transaction per ≥ commit_every posters (or commit_bytes of files), or every
        commit_interval seconds, so a commit's fixed cost is spread over many posters."""
        nonlocal last_commit
        n = sum(len(e.items) for e in waiting)
        due = (n >= commit_every or time.monotonic() - last_commit >= commit_interval
               or sum(poster_bytes(e.items) for e in waiting) >= commit_bytes)
        if not (force or due) or not (waiting or errors or aliases):
            return
        items = [it for e in waiting for it in e.items]
        vectors = (np.concatenate([e.vectors for e in waiting]) if waiting
                   else np.zeros((0, embedder.dim), np.float32))
        writer.submit(items, vectors, list(errors), list(aliases))
        waiting.clear(), errors.clear(), aliases.clear()
        last_commit = time.monotonic()

    try:
        for got in engine.run(the_plan, progress):
            if isinstance(got, Failed):
                report.failed.append({"path": str(got.path), "reason": got.reason})
                errors.append((str(got.path), got.reason))
            elif isinstance(got, Known):
                report.duplicates += got.duplicate
                report.skipped += not got.duplicate
                if stored_name(got.path) not in the_plan.known_paths:
                    aliases.append((got.sha256, str(got.path)))
                stored = the_plan.initial.get(got.sha256)
                if got.row is not None and stored is not None:
                    if _changed(got.row, stored, the_plan.file_labels.get(stored[0], [])):
                        relabels[stored[0]] = got.row
            else:
                waiting.append(got)
                hand_over()
        hand_over(force=True)
    finally:
        writer.close()
    if relabels:
        relabel(catalog, relabels)
        report.relabelled = len(relabels)
    indexes.adopt(embedder.name, index)
    report.seconds = time.perf_counter() - t0
    return report


__all__ = ["AddToIndex", "AutoClassifier", "Committer", "Embedded", "Engine", "Failed", "IngestPlan",
           "IngestReport", "Item", "Known", "LocalEngine", "NearDuplicates", "collect_sources",
           "plan", "relabel", "run_ingest"]
