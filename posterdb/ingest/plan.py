"""Stage 1, plan: which files to read, with which label rows, and what the store already holds.

Files are hashed before decoding, so the plan carries the hashes already stored with a vector
for this model (skipped by the engine) and what each stored poster's labels say (for relabelling).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from posterdb.embedders.base import ModelSpec
from posterdb.media.images import iter_image_files
from posterdb.media.labels import LabelRow, read_labels
from posterdb.storage.catalog import Catalog

Source = tuple[Path, "LabelRow | None"]


def _resolve(p: Path) -> Path:
    try:
        return p.resolve()
    except (OSError, RuntimeError):  # symlink loops and the like: keep the name, fail on read
        return p.absolute()


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
    sources: list[Source] = [(f, by_path.pop(_resolve(f), None)) for f in files]
    sources += [(r.path, r) for r in by_path.values()]  # labelled files outside the folder
    return sources, failed, warnings


@dataclass
class IngestPlan:
    """Everything the later stages need to know about the store before reading any file."""

    path: Path
    labels: Path | None
    model: str
    table: str
    sources: list[Source]
    failed: list[dict]
    warnings: list[dict]
    stored: dict[str, tuple[int, str | None, int | None]]   # sha256 -> (id, title, year)
    done_shas: frozenset[str]                              # stored with a vector for this model
    file_labels: dict[int, list[str]]
    known_paths: set[str]
    initial: dict = field(default_factory=dict)            # `stored` before this run


def plan(catalog: Catalog, spec: ModelSpec, path, labels=None, *, run_id: str,
         sources: list[Source] | None = None) -> IngestPlan:
    """Collect the sources, register the model and read what is stored (one write transaction:
    the model's table is created and the labels file's failures are recorded). `sources`: the
    exact files (and label rows) to read instead of scanning `path` (the inbox watcher's batch)."""
    path = Path(path)
    labels = Path(labels) if labels else None
    if sources is None:
        sources, failed, warnings = collect_sources(path, labels)
    else:
        sources, failed, warnings = list(sources), [], []
    with catalog.write() as con:
        table = catalog.register_model(con, spec)
        stored = catalog.stored_metadata(con)
        with_vector = set(catalog.vector_ids(con, table).tolist())
        file_labels = catalog.labels(con, origin="file")
        known_paths = catalog.known_paths(con)
        catalog.record_errors(con, run_id, [(f["path"], f["reason"]) for f in failed])
    done = frozenset(sha for sha, (pid, _, _) in stored.items() if pid in with_vector)
    return IngestPlan(path, labels, spec.name, table, sources, failed, warnings, stored, done,
                      file_labels, known_paths, dict(stored))
