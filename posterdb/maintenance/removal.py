"""Removing posters: the catalogue first (the truth), then the caches and copies after it.

    1. one DuckDB transaction deletes the rows (posters, vectors, labels, names, text); if it
       fails (a full disk, a read-only store) nothing was removed and the error says so
    2. each model's FAISS file drops the ids (a full disk: the old file is deleted to make room
       and the new one written; a file that still cannot be written is synced from DuckDB on
       its next load)
    3. the image copies are deleted (one that cannot be is an orphan `posterdb prune` removes)

The report says which happened: `removed`, `not_found`, `index_failed` {model: reason},
`images_removed`, `images_failed` [{path, reason}]. The whole removal holds the writer lock,
so no ingest sees half of it.
"""
from __future__ import annotations

from collections.abc import Sequence

from posterdb.core.errors import StoreWriteError
from posterdb.maintenance.check import inside
from posterdb.storage.catalog import Catalog
from posterdb.storage.image_store import ImageStore
from posterdb.vectors.cache import IndexCache


def remove_posters(catalog: Catalog, images: ImageStore, indexes: IndexCache,
                   ids: Sequence[int]) -> dict:
    asked = sorted({int(i) for i in ids})
    with catalog.exclusive("remove"):
        try:
            with catalog.write() as con:
                present, files = catalog.delete_posters(con, asked)
                models = [m.name for m in catalog.model_specs(con)]
        except StoreWriteError as e:
            raise type(e)(f"nothing was removed: {e}", e.errno, e.filename) from None
        index_failed = indexes.remove_ids(models, present)
        removed_files, failed_files = 0, []
        for rel in files:
            if not inside(images.file(rel), images.folder):   # a row naming a file elsewhere
                failed_files.append({"path": rel, "reason": "outside the image folder: left"})
                continue
            try:
                images.file(rel).unlink()
                removed_files += 1
            except FileNotFoundError:
                pass
            except OSError as e:
                failed_files.append({"path": rel, "reason": e.strerror or str(e)})
    return {"removed": present, "not_found": sorted(set(asked) - set(present)),
            "index_failed": index_failed, "images_removed": removed_files,
            "images_failed": failed_files}
