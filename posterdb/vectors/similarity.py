"""`Similarity`: nearest stored posters to a poster, an image or vectors, and near-duplicates.

It receives its collaborators explicitly: the catalogue (stored vectors, filters), the index
cache (each model's FAISS index, in line with DuckDB), the stored posters (`StoredPosters`,
giving `StoredPoster` records) and the store's models (`StoreModels`: the default model and the
embedders). Every method takes the model by name or None (the store's default). A query image
is embedded before DuckDB is opened, so no read session is held while a model runs.
Similarities are cosines of the stored (L2-normalised) vectors.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from posterdb.core.errors import StoreError
from posterdb.core.records import Hit
from posterdb.core.settings import THRESHOLDS
from posterdb.storage.catalog import Catalog, embedding_table
from posterdb.storage.posters import StoredPosters
from posterdb.vectors.cache import IndexCache
from posterdb.vectors.models import StoreModels


class Similarity:
    """Similarity searches over one store's vectors."""

    def __init__(self, catalog: Catalog, indexes: IndexCache, posters: StoredPosters,
                 models: StoreModels):
        self.catalog, self.indexes = catalog, indexes
        self.posters, self.models = posters, models

    def vectors(self, ids: Sequence[int], model: str | None = None) -> np.ndarray:
        """Stored vectors of these posters, in the given order."""
        model = self.models.require(model)
        with self.catalog.read() as con:
            got_ids, vecs = self.catalog.vectors(con, embedding_table(model), ids)
        pos = {int(i): j for j, i in enumerate(got_ids)}
        missing = [int(i) for i in ids if int(i) not in pos]
        if missing:
            raise StoreError(f"no {model} vector for poster(s) {missing[:10]}")
        return vecs[[pos[int(i)] for i in ids]]

    def similar(self, query, k: int = 10, *, model: str | None = None, decades: Sequence[int] | None = None,
                genres: Sequence[str] | None = None, exclude: Sequence[int] = ()) -> list[Hit]:
        """Nearest stored posters to a poster id, an image (path or PosterImage) or a vector."""
        model = self.models.require(model)
        exclude = {int(e) for e in exclude}
        if isinstance(query, (int, np.integer)):
            vec = self.vectors([int(query)], model)
            exclude.add(int(query))
        elif isinstance(query, np.ndarray):
            vec = np.atleast_2d(query).astype(np.float32)
        else:
            vec = self.models.embed([query], model)
        return self.similar_to_vectors(vec, k, decades=decades, genres=genres, model=model,
                                       exclude=exclude)[0]

    def similar_to_vectors(self, vectors: np.ndarray, k: int = 10, *, model: str | None = None,
                           decades: Sequence[int] | None = None,
                           genres: Sequence[str] | None = None,
                           exclude: set[int] | Sequence[int] = ()) -> list[list[Hit]]:
        index = self.indexes.index(self.models.require(model))
        allowed = None
        if decades or genres:
            with self.catalog.read() as con:
                allowed = self.catalog.filter_ids(con, decades=decades, genres=genres)
            if not len(allowed):
                return [[] for _ in range(len(vectors))]
        exclude = set(exclude)
        res = index.search(vectors, k + len(exclude), allowed)
        wanted = sorted({int(i) for i in res.ids.ravel() if i >= 0} - exclude)
        meta = {p.id: p for p in self.posters.get(wanted)}
        return [[Hit.from_poster(meta[int(pid)], sim)
                 for pid, sim in zip(ids, sims) if int(pid) in meta][:k]
                for ids, sims in zip(res.ids, res.similarities)]

    def near_duplicates(self, threshold: float = THRESHOLDS.near_duplicate, *,
                        model: str | None = None, k: int = 5) -> list[tuple[int, int, float]]:
        """Pairs (a, b, cosine) of stored posters at or above the threshold, a < b, most
        similar first."""
        model = self.models.require(model)
        index = self.indexes.index(model)
        ids = index.ids()
        pairs: dict[tuple[int, int], float] = {}
        for i in range(0, len(ids), 4096):
            chunk = ids[i:i + 4096]
            res = index.search(self.vectors(chunk, model), k + 1)
            for a, nbrs, sims in zip(chunk, res.ids, res.similarities):
                for b, s in zip(nbrs, sims):
                    if b >= 0 and b != a and s >= threshold:
                        pairs[(int(min(a, b)), int(max(a, b)))] = float(s)
        return sorted(((a, b, s) for (a, b), s in pairs.items()), key=lambda t: -t[2])
