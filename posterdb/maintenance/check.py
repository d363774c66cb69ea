"""`posterdb check`: compare DuckDB, the FAISS files on disk and the image copies."""
from __future__ import annotations

import hashlib

import numpy as np

from posterdb.storage.catalog import Catalog
from posterdb.storage.image_store import ImageStore
from posterdb.vectors.cache import IndexCache
from posterdb.vectors.index import VectorIndex


def _index_problems(spec, ids: np.ndarray, path) -> tuple[dict | str, list[str]]:
    """(the index entry for the report, problems) of one model's index file, read as it is."""
    if not path.exists():
        return "missing", [f"{spec.name}: index file {path} is missing (posterdb reindex)"]
    try:
        index = VectorIndex.load(path)
    except Exception as e:
        return "unreadable", [f"{spec.name}: index file unreadable: {e}"]
    have = index.ids()
    entry = {"ntotal": len(index), "factory": index.factory}
    if index.spec != spec:
        return entry, [f"{spec.name}: index file was made by another model"]
    if len(have) != len(np.unique(have)):
        return entry, [f"{spec.name}: index holds an id twice"]
    if not np.array_equal(have, ids):
        miss, extra = len(np.setdiff1d(ids, have)), len(np.setdiff1d(have, ids))
        return entry, [f"{spec.name}: index differs from DuckDB ({miss} missing, {extra} extra)"]
    return entry, []


def check_store(catalog: Catalog, images: ImageStore, indexes: IndexCache,
                deep: bool = False) -> dict:
    """Problems (inconsistencies) and warnings; reads the index files as they are, without syncing."""
    problems: list[str] = []
    warnings: list[str] = []
    with catalog.read() as con:
        f = catalog.check_facts(con)
    poster_ids = f["poster_ids"]
    if f["dup_sha"]:
        problems.append(f"{f['dup_sha']} posters stored twice (same sha256)")
    if f["bad_genres"]:
        problems.append(f"labels outside the 19 TMDb genres: {f['bad_genres']}")
    if f["orphan_labels"]:
        problems.append(f"{f['orphan_labels']} genre labels point at no poster")
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
        entry, found = _index_problems(spec, ids, path)
        problems += found
        models.append({"name": spec.name, "vectors": int(len(ids)), "index_file": str(path),
                       "index": entry})
    missing_images, corrupt_images = 0, 0
    for _, sha, rel in f["images"]:
        file = images.file(rel)
        if not file.exists():
            missing_images += 1
        elif deep and hashlib.sha256(file.read_bytes()).hexdigest() != sha:
            corrupt_images += 1
    if missing_images:
        problems.append(f"{missing_images} stored image copies are missing")
    if corrupt_images:
        problems.append(f"{corrupt_images} stored image copies do not match their sha256")
    if stale := images.temp_files(older_than=600):
        warnings.append(f"{len(stale)} temporary files left by interrupted writes "
                        f"(removed by the next ingest)")
    return {"ok": not problems, "posters": int(len(poster_ids)), "models": models,
            "problems": problems, "warnings": warnings, "deep": deep}
