"""`posterdb ingest`: read → decode (worker threads) → embed (batched) → write (writer thread).

Idempotent and incremental: a file is hashed before it is decoded, and bytes already stored with
a vector for this model are skipped. Each commit (≥ 256 posters, or every 2 s) is one DuckDB
transaction (posters, labels, vectors, errors together), so a crash loses at most the commit in
flight and a re-run resumes.
Image copies are written before the commit that references them; the FAISS index is a cache
saved at the end (and every `save_every` seconds) and synced from DuckDB on open.
"""
from __future__ import annotations

import os
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .catalog import Catalog, PosterRecord
from .errors import ImageError
from .faults import crash_point
from .images import PosterImage, decode, iter_image_files, read_bytes, sha256_bytes
from .labels import LabelRow, read_labels

Progress = Callable[[int, int], None]


@dataclass
class IngestReport:
    """What one ingest run did; `failed` non-empty means exit code 1."""

    run_id: str
    model: str
    scanned: int = 0
    added: int = 0
    embedded_existing: int = 0
    skipped: int = 0
    duplicates: int = 0
    relabelled: int = 0
    predicted: int = 0
    failed: list[dict] = field(default_factory=list)
    label_warnings: list[dict] = field(default_factory=list)
    near_duplicates: list[dict] = field(default_factory=list)
    swept_temp_files: int = 0
    seconds: float = 0.0
    added_ids: list[int] = field(default_factory=list)

    @property
    def posters_per_s(self) -> float:
        return (self.added + self.embedded_existing) / self.seconds if self.seconds else 0.0

    def to_dict(self) -> dict:
        d = dict(self.__dict__)
        d.pop("added_ids")
        d["posters_per_s"] = round(self.posters_per_s, 1)
        return d


@dataclass
class _Loaded:
    path: Path
    row: LabelRow | None
    poster: PosterImage
    array: np.ndarray


@dataclass
class _Known:
    path: Path
    row: LabelRow | None
    sha256: str


@dataclass
class _Failed:
    path: Path
    reason: str


def _resolve(p: Path) -> Path:
    try:
        return p.resolve()
    except (OSError, RuntimeError):  # symlink loops and the like: keep the name, fail on read
        return p.absolute()


Source = tuple[Path, "LabelRow | None"]


def collect_sources(path: Path, labels: Path | None) -> tuple[list[Source], list[dict], list[dict]]:
    """(file, its label row or None) to ingest, failures and warnings from the labels file."""
    rows, problems = read_labels(labels, root=path if path.is_dir() else None) if labels else ([], [])
    by_path = {_resolve(r.path): r for r in rows}
    kept = {r.file for r in rows}
    failed = [{"path": p.file or f"{labels}:{p.row}", "reason": f"labels row {p.row}: {p.reason}"}
              for p in problems if p.file not in kept]
    warnings = [{"row": p.row, "file": p.file, "reason": p.reason}
                for p in problems if p.file in kept]
    files = list(iter_image_files(path)) if path.exists() else []
    if not path.exists():
        failed.append({"path": str(path), "reason": "no such file or folder"})
    sources: list[Source] = []
    for f in files:
        resolved = _resolve(f)
        sources.append((f, by_path.pop(resolved, None)))
    sources += [(r.path, r) for r in by_path.values()]  # labelled files outside the folder
    return sources, failed, warnings


def _load(source: Source, skip: frozenset[str] | set[str], preprocess) -> _Loaded | _Known | _Failed:
    """Worker: hash first (skip stored bytes), then decode and preprocess."""
    path, row = source
    try:
        data = read_bytes(path)
        sha = sha256_bytes(data)
        if sha in skip:
            return _Known(path, row, sha)
        poster = decode(data, str(path))
        return _Loaded(path, row, poster, preprocess(poster.image))
    except ImageError as e:
        return _Failed(path, e.reason)
    except Exception as e:  # never let one file stop the run
        return _Failed(path, f"{type(e).__name__}: {e}")


def _ordered(pool: ThreadPoolExecutor, fn, items: list, window: int) -> Iterator:
    """pool.map with a bounded number of results in flight (bounded memory)."""
    pending: deque[Future] = deque()
    it = iter(items)
    for item in it:
        pending.append(pool.submit(fn, item))
        if len(pending) >= window:
            break
    while pending:
        fut = pending.popleft()
        nxt = next(it, None)
        if nxt is not None:
            pending.append(pool.submit(fn, nxt))
        yield fut.result()


def _write_copy(root: Path, rel: str, data: bytes) -> None:
    dest = root / rel
    if dest.exists() and dest.stat().st_size == len(data):
        return
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    crash_point("image_tmp_written")
    os.replace(tmp, dest)


class _Writer:
    """Commits embedded batches: image copies, then one DuckDB transaction, then the FAISS index.

    Runs in its own thread so that the commit of batch n overlaps the embedding of batch n+1.
    """

    def __init__(self, db, model: str, table: str, index, stored: dict, labels: Path | None, path: Path, report: IngestReport, classifier,
                 near_duplicate_threshold: float, save_every: float):
        self.db, self.model, self.table, self.index = db, model, table, index
        self.stored, self.labels, self.path = stored, labels, path
        self.report, self.classifier = report, classifier
        self.threshold, self.save_every = near_duplicate_threshold, save_every
        self.pending_aliases: list[tuple[str, str]] = []
        self.last_save = time.monotonic()

    def write(self, batch: list[_Loaded], vectors: np.ndarray, errors: list[tuple[str, str]],
              aliases: list[tuple[str, str]]) -> None:
        cat, report = self.db.catalog, self.report
        new = [i for i, b in enumerate(batch) if b.poster.sha256 not in self.stored]
        records = []
        for i in new:
            p, row = batch[i].poster, batch[i].row
            rel = self.db.image_relpath(p.sha256, p.suffix)
            _write_copy(self.db.root, rel, p.data)
            records.append(PosterRecord(
                p.sha256, str(batch[i].path), rel, row.title if row else None,
                row.year if row else None, p.width, p.height, p.format,
                str(self.labels) if row else str(self.path)))
        unlabelled = [k for k, i in enumerate(new) if not (batch[i].row and batch[i].row.genres)]
        preds = []
        if self.classifier is not None and unlabelled:
            preds = self.db.predict_vectors(vectors[[new[k] for k in unlabelled]],
                                            [records[k].year for k in unlabelled], self.model)
        self.pending_aliases += aliases
        with cat.write() as con:
            new_ids = cat.allocate_ids(con, len(new))
            for rec, pid in zip(records, new_ids):
                self.stored[rec.sha256] = (int(pid), rec.title, rec.year)
            ids = np.asarray([self.stored[b.poster.sha256][0] for b in batch], dtype=np.int64)
            if new:
                cat.insert_posters(con, new_ids, records)
                labelled = [(int(new_ids[k]), batch[i].row.genres)
                            for k, i in enumerate(new) if k not in set(unlabelled)]
                cat.set_labels(con, [p for p, _ in labelled], [list(g) for _, g in labelled],
                               "file")
            if batch:
                cat.insert_vectors(con, self.table, ids, vectors)
            if preds:
                cat.set_labels(con, [int(new_ids[k]) for k in unlabelled],
                               [p.genres for p in preds], "prediction",
                               [[p.probabilities[g] for g in p.genres] for p in preds])
            cat.add_paths(con, [(self.stored[sha][0], p) for sha, p in self.pending_aliases
                                if sha in self.stored])
            cat.record_errors(con, report.run_id, errors)
        self.pending_aliases = [(sha, p) for sha, p in self.pending_aliases
                                if sha not in self.stored]
        if batch:
            self._near_duplicates(batch, ids, vectors)
            self.index.add(ids, vectors)
        report.added += len(new)
        report.added_ids += [int(i) for i in new_ids]
        report.embedded_existing += len(batch) - len(new)
        report.predicted += len(preds)
        if time.monotonic() - self.last_save > self.save_every:
            self.index.save(self.db.index_path(self.model))
            self.last_save = time.monotonic()

    def _near_duplicates(self, batch: list[_Loaded], ids: np.ndarray, vectors: np.ndarray) -> None:
        if not len(self.index):
            return
        res = self.index.search(vectors, 1)
        for i, b in enumerate(batch):
            if res.similarities[i, 0] >= self.threshold:
                self.report.near_duplicates.append({
                    "id": int(ids[i]), "path": str(b.path), "similar_to": int(res.ids[i, 0]),
                    "similarity": round(float(res.similarities[i, 0]), 4)})


class _WriterThread:
    """A one-slot hand-off to a `_Writer` in a background thread; errors re-raise in the caller."""

    def __init__(self, writer: _Writer):
        self.writer = writer
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="posterdb-write")
        self.inflight: Future | None = None

    def submit(self, *args) -> None:
        self.wait()
        self.inflight = self.pool.submit(self.writer.write, *args)

    def wait(self) -> None:
        if self.inflight is not None:
            fut, self.inflight = self.inflight, None
            fut.result()

    def close(self) -> None:
        try:
            self.wait()
        finally:
            self.pool.shutdown(wait=True)


def _changed(row: LabelRow, stored: tuple, file_genres: list[str]) -> bool:
    _, title, year = stored
    return (row.title, row.year, list(row.genres)) != (title, year, file_genres)


def ingest(db, path, labels=None, *, model: str = "mobilenet-v2", batch_size: int | None = None,
           workers: int | None = None, progress: Progress | None = None,
           near_duplicate_threshold: float = 0.97, save_every: float = 60.0,
           auto_classify: bool = True, commit_every: int = 256,
           commit_interval: float = 2.0) -> IngestReport:
    """Ingest the images under `path` (a folder, recursively, or one file) into the store `db`."""
    t0 = time.perf_counter()
    path = Path(path)
    labels = Path(labels) if labels else None
    report = IngestReport(run_id=uuid.uuid4().hex[:12], model=model)
    report.swept_temp_files = db.sweep_temp_files()
    embedder = db.embedder(model)
    sources, failed, warnings = collect_sources(path, labels)
    report.failed += failed
    report.label_warnings += warnings
    report.scanned = len(sources)

    cat: Catalog = db.catalog
    with cat.write() as con:
        table = cat.register_model(con, embedder.spec)
        stored = {sha: (pid, title, year) for pid, sha, title, year in con.execute(
            "SELECT id, sha256, title, year FROM posters").fetchall()}
        with_vector = set(cat.vector_ids(con, table).tolist())
        file_labels = cat.labels(con, origin="file")
        known_paths = {r[0] for r in con.execute("SELECT path FROM poster_paths").fetchall()}
        cat.record_errors(con, report.run_id, [(f["path"], f["reason"]) for f in failed])
    done_shas = frozenset(sha for sha, (pid, _, _) in stored.items() if pid in with_vector)
    initial = dict(stored)
    writer = _WriterThread(_Writer(
        db, model, table, db.index(model), stored, labels, path, report,
        db.classifier(model) if auto_classify else None, near_duplicate_threshold, save_every))

    batch: list[_Loaded] = []
    in_run: set[str] = set()
    aliases: list[tuple[str, str]] = []
    errors: list[tuple[str, str]] = []
    relabel: dict[int, LabelRow] = {}

    embedded: list[tuple[list[_Loaded], np.ndarray]] = []  # waiting for the next commit
    last_commit = time.monotonic()

    def embed() -> None:
        if batch:
            embedded.append((list(batch), embedder.embed_batch(np.stack([b.array for b in batch]))))
            batch.clear()

    def commit(force: bool = False) -> None:
        """Hand what is embedded to the writer: one transaction per ≥ commit_every posters, or
        every commit_interval seconds, so a commit's fixed cost is spread over many posters."""
        nonlocal last_commit
        waiting = sum(len(b) for b, _ in embedded)
        due = waiting >= commit_every or time.monotonic() - last_commit >= commit_interval
        if not (force or due) or not (embedded or errors or aliases):
            return
        items = [b for bs_, _ in embedded for b in bs_]
        vectors = (np.concatenate([v for _, v in embedded]) if embedded
                   else np.zeros((0, embedder.dim), np.float32))
        writer.submit(items, vectors, list(errors), list(aliases))
        embedded.clear(), errors.clear(), aliases.clear()
        last_commit = time.monotonic()

    n_workers = workers or min(4, (os.cpu_count() or 2) + 1)
    bs = batch_size or embedder.batch_size
    load = lambda p: _load(p, done_shas, embedder.preprocess)  # noqa: E731
    try:
        with ThreadPoolExecutor(n_workers, thread_name_prefix="posterdb-decode") as pool:
            for done, item in enumerate(_ordered(pool, load, sources, max(4 * bs, 64)), start=1):
                if isinstance(item, _Failed):
                    report.failed.append({"path": str(item.path), "reason": item.reason})
                    errors.append((str(item.path), item.reason))
                elif isinstance(item, _Known) or item.poster.sha256 in in_run:
                    sha = item.sha256 if isinstance(item, _Known) else item.poster.sha256
                    report.skipped += isinstance(item, _Known)
                    report.duplicates += not isinstance(item, _Known)
                    if str(item.path) not in known_paths:
                        aliases.append((sha, str(item.path)))
                    row = item.row
                    if row is not None and sha in initial:
                        pid = initial[sha][0]
                        if _changed(row, initial[sha], file_labels.get(pid, [])):
                            relabel[pid] = row
                else:
                    in_run.add(item.poster.sha256)
                    batch.append(item)
                if len(batch) >= bs:
                    embed()
                    commit()
                if progress:
                    progress(done, len(sources))
            embed()
            commit(force=True)
    finally:
        writer.close()
    if relabel:
        _relabel(cat, relabel)
        report.relabelled = len(relabel)
    db.adopt_index(model, writer.writer.index)
    report.seconds = time.perf_counter() - t0
    return report


def _relabel(cat: Catalog, relabel: dict[int, LabelRow]) -> None:
    """Apply changed titles, years and file genres of already stored posters."""
    with cat.write() as con:
        for pid, row in relabel.items():
            con.execute("UPDATE posters SET title = ?, year = ?, decade = ? WHERE id = ?",
                        [row.title, row.year, None if row.year is None else row.year // 10 * 10,
                         pid])
        cat.set_labels(con, list(relabel), [list(r.genres) for r in relabel.values()], "file")


__all__ = ["IngestReport", "ingest", "collect_sources"]
