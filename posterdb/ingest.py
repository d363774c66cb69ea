"""`posterdb ingest`: read → decode (worker threads) → embed (batched) → write (one commit a batch).

Idempotent and incremental: a file is hashed before it is decoded, and bytes already stored with
a vector for this model are skipped. Each batch is one DuckDB transaction (posters, labels,
vectors, errors together), so a crash loses at most the batch in flight and a re-run resumes.
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

from .catalog import Catalog, PosterRecord, embedding_table
from .errors import ImageError
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
    poster: PosterImage
    array: np.ndarray


@dataclass
class _Known:
    path: Path
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


def collect_sources(path: Path, labels: Path | None) -> tuple[list[Path], dict[Path, LabelRow],
                                                              list[dict], list[dict]]:
    """Files to ingest, label rows by resolved path, failures and warnings from the labels."""
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
    seen = {_resolve(f) for f in files}
    files += [r.path for p, r in by_path.items() if p not in seen]
    return files, by_path, failed, warnings


def _load(path: Path, skip: frozenset[str] | set[str], preprocess) -> _Loaded | _Known | _Failed:
    """Worker: hash first (skip stored bytes), then decode and preprocess."""
    try:
        data = read_bytes(path)
        sha = sha256_bytes(data)
        if sha in skip:
            return _Known(path, sha)
        poster = decode(data, str(path))
        return _Loaded(path, poster, preprocess(poster.image))
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
    os.replace(tmp, dest)


def ingest(db, path, labels=None, *, model: str = "mobilenet-v2", batch_size: int | None = None,
           workers: int | None = None, progress: Progress | None = None,
           near_duplicate_threshold: float = 0.97, save_every: float = 60.0,
           auto_classify: bool = True) -> IngestReport:
    """Ingest the images under `path` (a folder, recursively, or one file) into the store `db`."""
    t0 = time.perf_counter()
    path = Path(path)
    labels = Path(labels) if labels else None
    report = IngestReport(run_id=uuid.uuid4().hex[:12], model=model)
    embedder = db.embedder(model)
    files, rows, failed, warnings = collect_sources(path, labels)
    report.failed += failed
    report.label_warnings += warnings
    report.scanned = len(files)

    cat: Catalog = db.catalog
    with cat.write() as con:
        table = cat.register_model(con, embedder.spec)
        stored = {sha: (pid, title, year) for pid, sha, title, year in con.execute(
            "SELECT id, sha256, title, year FROM posters").fetchall()}
        with_vector = set(cat.vector_ids(con, table).tolist())
        file_labels = cat.labels(con, origin="file")
        cat.record_errors(con, report.run_id, [(f["path"], f["reason"]) for f in failed])
    done_shas = frozenset(sha for sha, (pid, _, _) in stored.items() if pid in with_vector)
    index = db.index(model)
    classifier = db.classifier(model) if auto_classify else None

    batch: list[_Loaded] = []
    in_run: set[str] = set()
    aliases: list[tuple[str, str]] = []
    relabel: dict[int, LabelRow] = {}
    errors: list[tuple[str, str]] = []
    last_save = time.monotonic()
    done = 0

    def flush() -> None:
        nonlocal last_save
        if not batch and not errors and not aliases:
            return
        vectors = (embedder.embed_batch(np.stack([b.array for b in batch])) if batch
                   else np.zeros((0, embedder.dim), np.float32))
        new = [i for i, b in enumerate(batch) if b.poster.sha256 not in stored]
        records = []
        for i in new:
            p, row = batch[i].poster, rows.get(_resolve(batch[i].path))
            rel = db.image_relpath(p.sha256, p.suffix)
            _write_copy(db.root, rel, p.data)
            records.append(PosterRecord(
                p.sha256, str(batch[i].path), rel, row.title if row else None,
                row.year if row else None, p.width, p.height, p.format,
                str(labels) if row else str(path)))
        with cat.write() as con:
            new_ids = cat.allocate_ids(con, len(new))
            ids = np.empty(len(batch), dtype=np.int64)
            for rec, pid in zip(records, new_ids):
                stored[rec.sha256] = (int(pid), rec.title, rec.year)
            for i, b in enumerate(batch):
                ids[i] = stored[b.poster.sha256][0]
            if new:
                cat.insert_posters(con, new_ids, records)
                labelled = [(int(ids[i]), rows[_resolve(batch[i].path)].genres) for i in new
                            if _resolve(batch[i].path) in rows
                            and rows[_resolve(batch[i].path)].genres]
                cat.set_labels(con, [p for p, _ in labelled], [list(g) for _, g in labelled], "file")
            if len(batch):
                cat.insert_vectors(con, table, ids, vectors)
            resolved = [(stored[sha][0], p) for sha, p in aliases if sha in stored]
            cat.add_paths(con, resolved)
            cat.record_errors(con, report.run_id, errors)
            if classifier is not None and new:
                unl = [i for i in new if not (_resolve(batch[i].path) in rows
                                              and rows[_resolve(batch[i].path)].genres)]
                if unl:
                    preds = db.predict_vectors(vectors[unl],
                                               [records[new.index(i)].year for i in unl], model)
                    cat.set_labels(con, [int(ids[i]) for i in unl],
                                   [p.genres for p in preds], "prediction",
                                   [[p.probabilities[g] for g in p.genres] for p in preds])
                    report.predicted += len(unl)
        if len(batch):
            res = index.search(vectors, 1) if len(index) else None
            for i, b in enumerate(batch):
                if res is not None and res.similarities[i, 0] >= near_duplicate_threshold:
                    report.near_duplicates.append({
                        "id": int(ids[i]), "path": str(b.path), "similar_to": int(res.ids[i, 0]),
                        "similarity": round(float(res.similarities[i, 0]), 4)})
            index.add(ids, vectors)
        report.added += len(new)
        report.added_ids += [int(i) for i in new_ids]
        report.embedded_existing += len(batch) - len(new)
        batch.clear()
        aliases[:] = [(sha, p) for sha, p in aliases if sha not in stored]
        errors.clear()
        if time.monotonic() - last_save > save_every:
            index.save(db.index_path(model))
            last_save = time.monotonic()

    n_workers = workers or min(4, (os.cpu_count() or 2) + 1)
    bs = batch_size or embedder.batch_size
    with ThreadPoolExecutor(n_workers, thread_name_prefix="posterdb-decode") as pool:
        load = lambda p: _load(p, done_shas, embedder.preprocess)  # noqa: E731
        for item in _ordered(pool, load, files, window=max(4 * bs, 64)):
            done += 1
            if isinstance(item, _Failed):
                report.failed.append({"path": str(item.path), "reason": item.reason})
                errors.append((str(item.path), item.reason))
            elif isinstance(item, _Known) or item.poster.sha256 in in_run:
                sha = item.sha256 if isinstance(item, _Known) else item.poster.sha256
                if isinstance(item, _Known):
                    report.skipped += 1
                else:
                    report.duplicates += 1
                aliases.append((sha, str(item.path)))
                row = rows.get(_resolve(item.path))
                if row is not None and sha in stored:
                    pid, title, year = stored[sha]
                    if (row.title, row.year, list(row.genres)) != (title, year,
                                                                   file_labels.get(pid, [])):
                        relabel[pid] = row
            else:
                in_run.add(item.poster.sha256)
                batch.append(item)
            if len(batch) >= bs:
                flush()
            if progress:
                progress(done, len(files))
        flush()
    if relabel:
        with cat.write() as con:
            for pid, row in relabel.items():
                con.execute("UPDATE posters SET title = ?, year = ?, decade = ? WHERE id = ?",
                            [row.title, row.year, None if row.year is None else row.year // 10 * 10,
                             pid])
            cat.set_labels(con, list(relabel), [list(r.genres) for r in relabel.values()], "file")
        report.relabelled = len(relabel)
    db.adopt_index(model, index)
    report.seconds = time.perf_counter() - t0
    return report


__all__ = ["IngestReport", "ingest", "collect_sources", "embedding_table"]
