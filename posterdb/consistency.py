"""`posterdb check`: compare DuckDB, the FAISS files on disk and the image copies."""
from __future__ import annotations

import hashlib

import numpy as np

from .catalog import embedding_table
from .genres import GENRES
from .index import VectorIndex


def check_store(db, deep: bool = False) -> dict:
    """Problems (inconsistencies) and warnings; reads the index files as they are, without syncing."""
    problems: list[str] = []
    warnings: list[str] = []
    cat = db.catalog
    with cat.read() as con:
        poster_ids = np.asarray([r[0] for r in con.execute("SELECT id FROM posters ORDER BY id")
                                 .fetchall()], dtype=np.int64)
        images = con.execute("SELECT id, sha256, image_path FROM posters").fetchall()
        dup_sha = con.execute("SELECT count(*) - count(DISTINCT sha256) FROM posters").fetchall()[0][0]
        bad_genres = con.execute(
            f"SELECT DISTINCT genre FROM genre_labels WHERE genre NOT IN "
            f"({','.join('?' * len(GENRES))})", list(GENRES)).fetchall()
        orphan_labels = con.execute("SELECT count(*) FROM genre_labels WHERE poster_id NOT IN "
                                    "(SELECT id FROM posters)").fetchall()[0][0]
        bad_decades = con.execute("SELECT count(*) FROM posters WHERE year IS NOT NULL AND "
                                  "decade <> year // 10 * 10").fetchall()[0][0]
        next_id = int(con.execute("SELECT value FROM meta WHERE key = 'next_poster_id'").fetchall()[0][0])
        specs = cat.model_specs(con)
        vector_ids = {s.name: cat.vector_ids(con, embedding_table(s.name)) for s in specs}
    if dup_sha:
        problems.append(f"{dup_sha} posters stored twice (same sha256)")
    if bad_genres:
        problems.append(f"labels outside the 19 TMDb genres: {[g for (g,) in bad_genres]}")
    if orphan_labels:
        problems.append(f"{orphan_labels} genre labels point at no poster")
    if bad_decades:
        problems.append(f"{bad_decades} posters whose decade does not match their year")
    if len(poster_ids) and poster_ids.max() >= next_id:
        problems.append("poster ids at or above the id counter")
    models = []
    for spec in specs:
        ids = vector_ids[spec.name]
        orphans = np.setdiff1d(ids, poster_ids)
        lacking = np.setdiff1d(poster_ids, ids)
        if len(orphans):
            problems.append(f"{spec.name}: {len(orphans)} vectors of removed posters")
        if len(lacking):
            warnings.append(f"{spec.name}: {len(lacking)} posters have no vector yet "
                            f"(ingest them with --model {spec.name})")
        path = db.index_path(spec.name)
        entry = {"name": spec.name, "vectors": int(len(ids)), "index_file": str(path)}
        if not path.exists():
            problems.append(f"{spec.name}: index file {path} is missing (posterdb reindex)")
            entry["index"] = "missing"
        else:
            try:
                index = VectorIndex.load(path)
            except Exception as e:
                problems.append(f"{spec.name}: index file unreadable: {e}")
                entry["index"] = "unreadable"
            else:
                have = index.ids()
                entry["index"] = {"ntotal": len(index), "factory": index.factory}
                if index.spec != spec:
                    problems.append(f"{spec.name}: index file was made by another model")
                elif len(have) != len(np.unique(have)):
                    problems.append(f"{spec.name}: index holds an id twice")
                elif not np.array_equal(have, ids):
                    miss = len(np.setdiff1d(ids, have))
                    extra = len(np.setdiff1d(have, ids))
                    problems.append(f"{spec.name}: index differs from DuckDB "
                                    f"({miss} missing, {extra} extra)")
        models.append(entry)
    missing_images, corrupt_images = 0, 0
    for pid, sha, rel in images:
        f = db.image_file(rel)
        if not f.exists():
            missing_images += 1
        elif deep and hashlib.sha256(f.read_bytes()).hexdigest() != sha:
            corrupt_images += 1
    if missing_images:
        problems.append(f"{missing_images} stored image copies are missing")
    if corrupt_images:
        problems.append(f"{corrupt_images} stored image copies do not match their sha256")
    stale = db.temp_files(older_than=600)
    if stale:
        warnings.append(f"{len(stale)} temporary files left by interrupted writes "
                        f"(removed by the next ingest)")
    return {"ok": not problems, "posters": int(len(poster_ids)), "models": models,
            "problems": problems, "warnings": warnings, "deep": deep}
