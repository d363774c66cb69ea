"""`posterdb check`: compare DuckDB, the FAISS files on disk, the image copies and the stored
classifiers; with `deep`, read every byte that can be verified.

    always   ids (posters, vectors, labels, file names, id counter), index files against DuckDB's
             ids (and their recorded checksum), image copies present, classifier files present,
             orphans: image copies, classifier files and index files nothing refers to
    deep     + every image copy re-hashed, every classifier file re-hashed against the hash the
             catalogue recorded, every index vector compared with DuckDB's, every block of the
             catalogue file checked against its checksum (storage/catalog/blocks.py)

Problems make `ok` False (something a reader would get wrong, or a file that is damaged);
warnings are what is only behind or wasted (a vector not yet computed, an orphan left by an
interrupted write). `prunable` lists what `prune` (maintenance/prune.py) would remove.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from posterdb.storage.catalog import Catalog, embedding_table
from posterdb.storage.catalog.blocks import verify_blocks
from posterdb.storage.image_store import ImageStore
from posterdb.vectors.cache import IndexCache
from posterdb.vectors.index import IndexFileError, VectorIndex

CHUNK = 50_000          # vectors compared at a time by the deep check
CLASSIFIERS = "classifiers"


def _index_problems(spec, ids: np.ndarray, path) -> tuple[dict | str, list[str], VectorIndex | None]:
    """(the index entry for the report, problems, the index) of one model's file, as it is."""
    if not path.exists():
        return "missing", [f"{spec.name}: index file {path} is missing (posterdb reindex)"], None
    try:
        index = VectorIndex.load(path)
    except IndexFileError as e:
        return "unreadable", [f"{spec.name}: {e} (posterdb reindex rebuilds it)"], None
    have = index.ids()
    entry = {"ntotal": len(index), "factory": index.factory}
    if index.spec != spec:
        return entry, [f"{spec.name}: index file was made by another model"], None
    if len(have) != len(np.unique(have)):
        return entry, [f"{spec.name}: index holds an id twice"], None
    if not np.array_equal(have, ids):
        miss, extra = len(np.setdiff1d(ids, have)), len(np.setdiff1d(have, ids))
        return entry, [f"{spec.name}: index differs from DuckDB ({miss} missing, {extra} extra)"], None
    return entry, [], index


def _compare_vectors(catalog: Catalog, spec, ids: np.ndarray, index: VectorIndex,
                     entry: dict) -> list[str]:
    """Deep: every DuckDB vector against the index file's copy."""
    table, bad = embedding_table(spec.name), 0
    for start in range(0, len(ids), CHUNK):
        part = ids[start:start + CHUNK]
        with catalog.read() as con:
            got, vectors = catalog.vectors_between(con, table, int(part[0]), int(part[-1]))
        n = index.mismatches(got, vectors)
        if n is None:
            entry["vectors_verified"] = False
            return []
        bad += n
    entry["vectors_verified"] = True
    entry["vectors_differing"] = bad
    if bad:
        return [(f"{spec.name}: index file {index_path_hint(spec)} holds {bad} of {len(ids)} "
                 "vectors that differ from DuckDB (damaged or changed; posterdb reindex rebuilds "
                 "it, and any command that loads it rebuilds it)")]
    return []


def index_path_hint(spec) -> str:
    return f"index/{embedding_table(spec.name).removeprefix('embeddings_')}.faiss"


def inside(path: Path, folder: Path) -> bool:
    """Whether `path`, links resolved, lies inside `folder` (a link out of the store is never
    read, hashed or deleted as if it were the store's)."""
    try:
        return path.resolve().is_relative_to(folder.resolve())
    except (OSError, RuntimeError):
        return False


def stored_files(folder: Path, depth: int = 1) -> list[Path]:
    """Regular, non-hidden files directly in `folder` (depth 1) or in its sub-folders (depth
    2), never through a link: a link out of the store is not the store's to hash or delete.
    Temp files are dot-files, so they are left to the temp-file sweep."""
    if not folder.is_dir() or folder.is_symlink():
        return []
    found = []
    try:
        with os.scandir(folder) as entries:
            for e in entries:
                if e.name.startswith("."):
                    continue
                if depth > 1 and e.is_dir(follow_symlinks=False):
                    found += stored_files(Path(e.path), depth - 1)
                elif depth == 1 and e.is_file(follow_symlinks=False):
                    found.append(Path(e.path))
    except OSError:
        return found
    return sorted(found)


def _sha256(path: Path) -> str | None:
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    except OSError:
        return None
    return h.hexdigest()


def classifier_state(root: Path, rows, *, hashes: bool) -> dict:
    """Stored classifiers against their files: {"missing": rows, "tampered": rows whose file
    fails its hash (deep only) or lies outside classifiers/, "orphans": files no row names,
    "superseded": rows not their model's latest}."""
    latest = {}
    for r in rows:                      # rows come ordered by id
        latest[r.model] = r.id
    named = set()
    out = {"missing": [], "tampered": [], "orphans": [], "superseded": []}
    folder = root / CLASSIFIERS
    for r in rows:
        path = root / r.file
        if r.id != latest[r.model]:
            out["superseded"].append(r)
        if not inside(path, folder):     # a row naming a file elsewhere: never read or deleted
            out["tampered"].append(r)
            continue
        named.add(path.resolve())
        if path.is_symlink() or not path.is_file():
            out["missing"].append(r)
        elif hashes and _sha256(path) != (r.sha256 or "").lower():
            out["tampered"].append(r)
    out["orphans"] = [p for p in stored_files(root / CLASSIFIERS) if p.resolve() not in named]
    return out


def orphan_images(images: ImageStore, referenced) -> list[Path]:
    """Image copies (images/<ab>/<file>) no poster names; compared by name, no file resolved."""
    keep = {Path(rel).as_posix() for rel in referenced}
    return [p for p in stored_files(images.folder, depth=2)
            if p.relative_to(images.root).as_posix() not in keep]


def orphan_indexes(indexes: IndexCache, specs) -> list[Path]:
    keep = {indexes.path(s.name).name for s in specs}
    keep |= {Path(n).with_suffix(".json").name for n in keep}
    return [p for p in stored_files(indexes.root / "index")
            if p.suffix in (".faiss", ".json") and p.name not in keep]


def relative(root: Path, paths) -> list[str]:
    out = []
    for p in paths:
        try:
            out.append(str(Path(p).relative_to(root)))
        except ValueError:
            out.append(str(p))
    return out


def check_store(catalog: Catalog, images: ImageStore, indexes: IndexCache,
                deep: bool = False) -> dict:
    """Problems (inconsistencies) and warnings; reads the index files as they are, without syncing."""
    problems: list[str] = []
    warnings: list[str] = []
    root = catalog.path.parent
    with catalog.read() as con:
        f = catalog.check_facts(con)
        rows = catalog.classifier_rows(con)
        layout = catalog.file_layout(con) if deep else None
    poster_ids = f["poster_ids"]
    if f["dup_sha"]:
        problems.append(f"{f['dup_sha']} posters stored twice (same sha256)")
    if f["bad_genres"]:
        problems.append(f"labels outside the 19 TMDb genres: {f['bad_genres']}")
    if f["orphan_labels"]:
        problems.append(f"{f['orphan_labels']} genre labels point at no poster")
    if f["orphan_paths"]:
        problems.append(f"{f['orphan_paths']} file names point at no poster")
    if f["bad_decades"]:
        problems.append(f"{f['bad_decades']} posters whose decade does not match their year")
    if len(poster_ids) and poster_ids.max() >= f["next_id"]:
        problems.append("poster ids at or above the id counter")
    models = []
    for spec in f["specs"]:
        ids = f["vector_ids"][spec.name]
        if len(orphans := np.setdiff1d(ids, poster_ids)):
            problems.append(f"{spec.name}: {len(orphans)} vectors of removed posters")
        if len(lacking := np.setdiff1d(poster_ids, ids)):
            warnings.append(f"{spec.name}: {len(lacking)} posters have no vector yet "
                            f"(ingest them with --model {spec.name})")
        path = indexes.path(spec.name)
        entry, found, index = _index_problems(spec, ids, path)
        problems += found
        if deep and index is not None:
            problems += _compare_vectors(catalog, spec, ids, index, entry)
        models.append({"name": spec.name, "vectors": len(ids), "index_file": str(path),
                       "index": entry})
    missing_images, corrupt_images = 0, 0
    for _, sha, rel in f["images"]:
        file = images.file(rel)
        if not file.is_file():
            missing_images += 1
        elif deep and _sha256(file) != sha:
            corrupt_images += 1
    if missing_images:
        problems.append(f"{missing_images} stored image copies are missing")
    if corrupt_images:
        problems.append(f"{corrupt_images} stored image copies do not match their sha256")
    clf = classifier_state(root, rows, hashes=deep)
    for r in clf["missing"]:
        (warnings if r in clf["superseded"] else problems).append(
            f"classifier {r.id} ({r.model}): its file {r.file} is missing" +
            ("" if r in clf["superseded"] else " (posterdb train, or prune to fall back)"))
    for r in clf["tampered"]:
        problems.append(f"classifier {r.id} ({r.model}): {r.file} does not match the sha256 the "
                        "catalogue recorded (modified or replaced): it will not be loaded; "
                        "`posterdb prune` removes it, `posterdb train` makes a new one")
    stray_images = orphan_images(images, [rel for _, _, rel in f["images"]])
    stray_indexes = orphan_indexes(indexes, f["specs"])
    for what, found_files in (("image copies", stray_images),
                              ("classifier files", clf["orphans"]),
                              ("index files of no stored model", stray_indexes)):
        if found_files:
            size = sum(p.stat().st_size for p in found_files if p.exists()) / 1e6
            warnings.append(f"{len(found_files)} orphan {what} ({size:.1f} MB) nothing in the "
                            "catalogue refers to (`posterdb prune` removes them)")
    stale = images.temp_files(older_than=600)
    if stale:
        warnings.append(f"{len(stale)} temporary files left by interrupted writes "
                        f"(removed by the next ingest, or `posterdb prune`)")
    catalogue = {"file": str(catalog.path)}
    if deep and layout is not None:
        blocks = verify_blocks(catalog.path, *layout)
        catalogue |= {"blocks": blocks.blocks, "bad_blocks": blocks.bad,
                      "verified": blocks.verifiable}
        if blocks.verifiable:
            problems += blocks.problems(catalog.path)
        else:
            warnings.append(f"catalogue blocks not verified: {blocks.reason}")
    prunable = {"images": relative(root, stray_images), "classifiers": relative(root, clf["orphans"]),
                "indexes": relative(root, stray_indexes), "temp_files": relative(root, stale),
                "tampered_classifiers": [r.id for r in clf["tampered"]],
                "missing_classifiers": [r.id for r in clf["missing"]
                                        if r not in clf["superseded"]]}
    return {"ok": not problems, "posters": len(poster_ids), "models": models,
            "problems": problems, "warnings": warnings, "deep": deep, "catalogue": catalogue,
            "classifiers": {"stored": len(rows), "superseded": len(clf["superseded"])},
            "prunable": prunable}

