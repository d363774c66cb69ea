"""`StoredPosters`: the stored posters' metadata as `StoredPoster` records, for one store.

It reads the catalogue (rows and labels) and the image store (where each copy lies), and keeps
the posters asked for by id in memory until the store's generation moves: a small store (up to
PRELOAD_MAX posters) is loaded whole on the first look-up, so the page's grids, the evidence of
a classification and the review queue stay in memory. Records are frozen: what a caller holds
cannot change what the next caller gets.
"""
from __future__ import annotations

from collections.abc import Sequence

from posterdb.core.errors import StoreError
from posterdb.core.records import POSTER_COLUMNS, ExportedPoster, StoredPoster
from posterdb.core.rules import check_poster_ids
from posterdb.storage.catalog import Catalog
from posterdb.storage.image_store import ImageStore

PRELOAD_MAX = 200_000  # stores up to this size keep every poster's metadata in memory
IDENTIFIED_KEYS = ("source", "film_id", "title", "year", "score")


class StoredPosters:
    """Look-ups of stored posters: by id (cached per generation), by filter, by title."""

    def __init__(self, catalog: Catalog, images: ImageStore):
        self.catalog, self.images = catalog, images
        self._cache: tuple[int, dict[int, StoredPoster]] = (-1, {})
        self._count: tuple[int, int] = (-1, 0)

    def count(self) -> int:
        """How many posters the store holds (cached until the store's generation moves)."""
        gen = self.catalog.current_generation()
        if self._count[0] != gen:
            with self.catalog.read() as con:
                self._count = (gen, self.catalog.count(con))
        return self._count[1]

    def get(self, ids: Sequence[int] | None = None) -> list[StoredPoster]:
        """Metadata + labels (+ predictions) of the given posters, in the given order (all of
        them, by id, when None). Unknown ids are left out."""
        if ids is None:
            with self.catalog.read() as con:
                return self._load(con, None)
        ids = check_poster_ids(ids)   # an id out of the catalogue's range: UsageError
        gen = self.catalog.current_generation()
        if self._cache[0] != gen:
            self._cache = (gen, {})
        cache = self._cache[1]
        missing = [int(i) for i in ids if int(i) not in cache]
        if missing:  # small stores: all rows at once, so later lookups stay in memory
            with self.catalog.read() as con:
                whole = not cache and self.catalog.count(con) <= PRELOAD_MAX
                cache.update((p.id, p) for p in self._load(con, None if whole else missing))
        return [cache[int(i)] for i in ids if int(i) in cache]

    def _load(self, con, ids: Sequence[int] | None) -> list[StoredPoster]:
        rows = self.catalog.poster_rows(con, ids)
        labels = self.catalog.labels_of(con, None if ids is None else [r["id"] for r in rows])
        published = labels["by_origin"].get("published", {})
        out = [StoredPoster(*(r[c] for c in POSTER_COLUMNS),
                            genres=tuple(labels["effective"].get(r["id"], ())),
                            predicted=tuple(labels["prediction"].get(r["id"], ())),
                            published=tuple(published.get(r["id"], ())),
                            reviewed=r["id"] in labels["review"],
                            image=str(self.images.file(r["image_path"])))
               for r in rows]
        if ids is not None:
            by_id = {p.id: p for p in out}
            out = [by_id[int(i)] for i in ids if int(i) in by_id]
        return out

    def one(self, poster_id: int) -> StoredPoster:
        found = self.get([poster_id])
        if not found:
            raise StoreError(f"no poster with id {poster_id}")
        return found[0]

    def browse(self, *, genres: Sequence[str] | None = None, decades: Sequence[int] | None = None,
               offset: int = 0, limit: int = 24) -> tuple[int, list[StoredPoster]]:
        """The shop's view: (total, one page of posters) with any of the genres, in the decades."""
        with self.catalog.read() as con:
            ids = self.catalog.filter_ids(con, decades=decades, genres=genres)
        return len(ids), self.get(ids[offset:offset + limit].tolist())

    def find(self, text: str, limit: int = 20) -> list[StoredPoster]:
        """Posters whose title contains `text` (case-insensitive), or the poster with that id."""
        with self.catalog.read() as con:
            ids = self.catalog.find_ids(con, text, limit)
        return self.get(ids)

    def export(self) -> list[ExportedPoster]:
        """Every poster, with the film it was identified as (see `ExportedPoster`)."""
        with self.catalog.read() as con:
            rows = self._load(con, None)
            idents = self.catalog.identifications(con)
        return [p.identified_as({k: i[k] for k in IDENTIFIED_KEYS}
                                if (i := idents.get(p.id)) and i["status"] == "identified"
                                else None)
                for p in rows]
