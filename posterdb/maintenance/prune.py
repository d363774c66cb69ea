"""`posterdb prune`: remove what nothing in the catalogue refers to, and classifiers that fail
their hash.

    orphan image copies        images/ab/<sha>.<ext> that no poster names (an interrupted ingest,
                               a remove that could not delete, a catalogue restored from a backup)
    orphan classifier files    classifiers/* that no catalogue row names (≈ 14 MB each)
    orphan index files         index/<name>.faiss/.json of a model the catalogue does not have
    stale temporary files      `.*.tmp` older than 10 minutes (younger ones may be a live write)
    tampered classifiers       a row whose file is missing or no longer matches its recorded
                               sha256: the file is deleted (it is never unpickled) and the row
                               forgotten, so the model's previous intact classifier is the latest
                               again (or `posterdb train` makes one)

Kept: every file a catalogue row names that matches its hash, so each model's latest classifier
and the older ones still referenced stay. The removal holds the writer lock (no ingest is between
writing an image copy and committing it) inside one DuckDB write (no training is between saving
its file and recording it), so nothing in flight is taken for an orphan. `dry_run` only lists.
"""
from __future__ import annotations

from pathlib import Path

from posterdb.maintenance.check import (
    CLASSIFIERS,
    classifier_state,
    inside,
    orphan_images,
    orphan_indexes,
    relative,
)
from posterdb.storage.catalog import Catalog
from posterdb.storage.image_store import ImageStore
from posterdb.vectors.cache import IndexCache

TEMP_AGE = 600.0


def _size(paths) -> int:
    total = 0
    for p in paths:
        try:
            total += Path(p).stat().st_size
        except OSError:
            pass
    return total


def _find(catalog: Catalog, images: ImageStore, indexes: IndexCache, con) -> dict:
    root = catalog.path.parent
    rows = catalog.classifier_rows(con)
    referenced = [r[2] for r in catalog.check_facts(con)["images"]]
    clf = classifier_state(root, rows, hashes=True)
    bad_rows = clf["tampered"] + [r for r in clf["missing"] if r not in clf["superseded"]]
    return {
        "images": orphan_images(images, referenced),
        "classifiers": clf["orphans"],
        "indexes": orphan_indexes(indexes, catalog.model_specs(con)),
        "temp_files": images.temp_files(older_than=TEMP_AGE),
        "bad_rows": bad_rows,
        "tampered_files": [root / r.file for r in clf["tampered"]
                           if inside(root / r.file, root / CLASSIFIERS)
                           and not (root / r.file).is_symlink()],
    }


def prune_store(catalog: Catalog, images: ImageStore, indexes: IndexCache, *,
                dry_run: bool = False) -> dict:
    """Remove (or with `dry_run` list) what the module docstring names; returns what was
    removed, the bytes freed and what could not be removed (with the reason)."""
    root = catalog.path.parent
    if dry_run:
        with catalog.read() as con:
            found = _find(catalog, images, indexes, con)
        return _report(root, found, [], dry_run=True)
    failed: list[dict] = []
    freed = 0
    with catalog.exclusive("prune"), catalog.write() as con:
        found = _find(catalog, images, indexes, con)
        for key in FILE_KINDS:
            done = []
            for p in found[key]:
                size = _size([p])
                try:
                    Path(p).unlink()
                except FileNotFoundError:
                    size = 0
                except OSError as e:
                    failed.append({"path": relative(root, [p])[0], "reason": e.strerror or str(e)})
                    continue
                done.append(p)
                freed += size
            found[key] = done
        for r in found["bad_rows"]:
            catalog.delete_classifier(con, r.id)
    return _report(root, found, failed, dry_run=False, freed=freed)


FILE_KINDS = ("images", "classifiers", "indexes", "temp_files", "tampered_files")


def _report(root: Path, found: dict, failed: list[dict], *, dry_run: bool,
            freed: int | None = None) -> dict:
    files = [p for key in FILE_KINDS for p in found[key]]
    return {"dry_run": dry_run,
            "images": relative(root, found["images"]),
            "classifiers": relative(root, found["classifiers"]),
            "indexes": relative(root, found["indexes"]),
            "temp_files": relative(root, found["temp_files"]),
            "tampered_classifiers": [{"id": r.id, "model": r.model, "file": r.file}
                                     for r in found["bad_rows"]],
            "files": len(files), "bytes": _size(files) if freed is None else freed,
            "failed": failed}
