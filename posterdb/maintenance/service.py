"""`Maintenance`: the store's upkeep verbs over its storage: check, prune, and remove with a
truthful report (check.py, prune.py, removal.py)."""
from __future__ import annotations

from collections.abc import Sequence

from posterdb.storage.catalog import Catalog
from posterdb.storage.image_store import ImageStore
from posterdb.vectors.cache import IndexCache


class Maintenance:
    """Keeps one store sound; `PosterDB.maintenance`."""

    def __init__(self, catalog: Catalog, images: ImageStore, indexes: IndexCache):
        self.catalog, self.images, self.indexes = catalog, images, indexes

    def check(self, deep: bool = False) -> dict:
        """Consistency report; `ok` is False when DuckDB, FAISS files, images and classifiers
        disagree (maintenance/check.py)."""
        from posterdb.maintenance.check import check_store

        return check_store(self.catalog, self.images, self.indexes, deep=deep)

    def prune(self, dry_run: bool = False) -> dict:
        """Remove orphan image copies / classifier / index files, stale temp files and
        classifiers failing their hash (maintenance/prune.py); `dry_run` only lists them."""
        from posterdb.maintenance.prune import prune_store

        return prune_store(self.catalog, self.images, self.indexes, dry_run=dry_run)

    def remove(self, ids: Sequence[int]) -> dict:
        """Remove posters: removed / not_found ids, and what of the index files and image
        copies could not be updated (maintenance/removal.py)."""
        from posterdb.maintenance.removal import remove_posters

        return remove_posters(self.catalog, self.images, self.indexes, ids)
