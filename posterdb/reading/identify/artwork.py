"""Artwork: compare a scan with its candidate films' own posters (and a reference of posters).

A scan of a vintage one-sheet is usually the same artwork as one of the posters the catalogue
holds for that film (another capture of it: cropped, tilted, faded, re-encoded), while a
same-title remake or a sequel has different art. So, for a poster's candidate films, their
posters are fetched once (TMDb's ``/movie/{id}/images`` through the client's image path, or
the ``poster`` column of a film file), kept in the store content-addressed under
``catalogue/ab/<sha256>.<ext>``, embedded with the store's model and recorded in the
catalogue (catalogue_films / catalogue_posters / catalogue_poster_vectors). The best
similarity of the scan to a film's posters becomes a scoring feature (scoring.py); the same
cached posters are the *reference* in which a scan whose text names no film is looked up.

Similarity is a cosine in an :class:`ArtworkSpace`: the model's vectors centred and
PCA-whitened (fitted on scans, not on catalogue posters), which separates another capture of
the same art from other posters far better than the raw cosine (bench/identify_day.py). The
space shipped (``artwork_space.npz``) is fitted for ``mobilenet-v2``; for another model the
artwork stays unused and identification is by text alone, as before.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from posterdb.core.errors import ImageError
from posterdb.media.images import decode
from posterdb.reading.identify.catalogues import CatalogueError, Film

if TYPE_CHECKING:
    from posterdb.embedders.base import Embedder
    from posterdb.storage.catalog import Catalog
    from posterdb.storage.image_store import ImageStore
    from posterdb.vectors.similarity import Similarity

SPACE_FILE = Path(__file__).with_name("artwork_space.npz")
FOLDER = "catalogue"


class ArtworkSpace:
    """Centre, project on the top `k` principal axes (scaled by 1/(s + reg*s0)), normalise."""

    def __init__(self, model: str, mean: np.ndarray, W: np.ndarray):
        self.model = model
        self.mean = np.asarray(mean, np.float32)
        self.W = np.asarray(W, np.float32)

    @classmethod
    def fit(cls, model: str, X: np.ndarray, k: int = 256, reg: float = 0.05) -> "ArtworkSpace":
        X = np.asarray(X, np.float32)
        mean = X.mean(0)
        _, s, vt = np.linalg.svd(X - mean, full_matrices=False)
        k = min(k, len(s))
        return cls(model, mean, vt[:k].T / (s[:k] + reg * s[0])[None, :])

    def project(self, X: np.ndarray) -> np.ndarray:
        Z = (np.atleast_2d(np.asarray(X, np.float32)) - self.mean) @ self.W
        return Z / np.maximum(np.linalg.norm(Z, axis=1, keepdims=True), 1e-9)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        with open(path, "wb") as f:
            np.savez_compressed(f, model=np.array(self.model), mean=self.mean,
                                W=self.W.astype(np.float16))
        return path

    @classmethod
    def load(cls, path: str | Path = SPACE_FILE) -> "ArtworkSpace":
        z = np.load(path, allow_pickle=False)
        return cls(str(z["model"]), z["mean"], z["W"].astype(np.float32))

    @classmethod
    def for_model(cls, model: str) -> "ArtworkSpace | None":
        """The shipped space when it was fitted for `model`, else None (artwork unused)."""
        if not SPACE_FILE.is_file():
            return None
        space = cls.load(SPACE_FILE)
        return space if space.model == model else None


class Artwork:
    """One store's cached catalogue posters, compared with its scans in one model's space.

    `search` gives the stored vectors of scans (the store's model); `embedder` embeds fetched
    posters with that same model."""

    def __init__(self, catalog: Catalog, images: ImageStore, embedder: Embedder,
                 search: Similarity, space: ArtworkSpace, *, max_posters: int = 3):
        self.catalog, self.images, self.embedder = catalog, images, embedder
        self.search, self.space = search, space
        self.model = embedder.name
        self.max_posters = max_posters
        self._art: dict[tuple[str, str], np.ndarray] = {}
        self._reference: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self.fetched = 0      # posters downloaded by this object
        self.failed = 0       # posters that were not images

    # -- scans --------------------------------------------------------------------------------
    def scans(self, ids: Sequence[int]) -> dict[int, np.ndarray]:
        if not len(ids):
            return {}
        Z = self.space.project(self.search.vectors(list(ids), self.embedder.name))
        return {int(i): z for i, z in zip(ids, Z)}

    # -- catalogue films and their posters ----------------------------------------------------
    def ensure(self, catalogue, films: Sequence[Film]) -> int:
        """Fetch, store and embed the posters of the films whose poster list was never asked
        for (all fetched first, embedded in one batch, recorded in one transaction);
        CatalogueUnavailable propagates (the poster is tried again later: nothing half-done is
        recorded). Returns how many films were checked now."""
        source = catalogue.source
        films = list(dict.fromkeys(films))
        with self.catalog.read() as con:
            known = self.catalog.catalogue_films(con, source, [f.film_id for f in films])
        todo = [f for f in films if not known.get(f.film_id, {}).get("checked")]
        if not todo or not hasattr(catalogue, "film_posters"):
            return 0
        rows: dict[str, list[dict]] = {}
        images: dict[str, object] = {}
        for film in todo:
            rows[film.film_id] = []
            for ref in catalogue.film_posters(film, self.max_posters):
                try:
                    img = decode(ref.fetch(), ref.file_path)
                except (ImageError, CatalogueError):
                    self.failed += 1
                    continue
                rel = f"{FOLDER}/{img.sha256[:2]}/{img.sha256}{img.suffix}"
                self.images.write(rel, img.data)
                self.fetched += 1
                rows[film.film_id].append({
                    "file_path": ref.file_path, "sha256": img.sha256, "image_path": rel,
                    "language": ref.language, "width": img.width, "height": img.height})
                images[img.sha256] = img.image
        with self.catalog.read() as con:
            have = self.catalog.catalogue_vector_shas(con, self.model, list(images))
        new = [sha for sha in images if sha not in have]
        vecs = self.embedder.embed_images([images[s] for s in new]) if new else None
        with self.catalog.write() as con:
            self.catalog.save_catalogue_films(con, source, [f.to_record() for f in films])
            if new:
                self.catalog.save_catalogue_vectors(con, self.model, new, vecs)
            for film in todo:
                self.catalog.save_catalogue_posters(con, source, film.film_id, rows[film.film_id])
        fresh = dict(zip(new, self.space.project(vecs))) if new else {}
        for film in todo:
            self._art.pop((source, film.film_id), None)
        if source in self._reference:   # keep the loaded reference in step, no reload
            ids, Z = self._reference[source]
            add = [(f.film_id, fresh[r["sha256"]]) for f in todo for r in rows[f.film_id]
                   if r["sha256"] in fresh]
            if add:
                self._reference[source] = (np.concatenate([ids, np.array([a for a, _ in add],
                                                                         dtype=object)]),
                                           np.vstack([Z, np.stack([z for _, z in add])]))
        return len(todo)

    def art_of(self, source: str, film_ids: Sequence[str]) -> dict[str, np.ndarray | None]:
        """film id -> its posters' projected vectors ((n, k); n may be 0: no poster), or None
        when its posters were never fetched."""
        want = [f for f in dict.fromkeys(film_ids) if (source, f) not in self._art]
        if want:
            with self.catalog.read() as con:
                known = self.catalog.catalogue_films(con, source, want)
                got_ids, vecs = self.catalog.catalogue_artwork(con, source, self.model, want)
            Z = self.space.project(vecs) if len(got_ids) else None
            rows: dict[str, list[int]] = {}
            for j, fid in enumerate(got_ids):
                rows.setdefault(fid, []).append(j)
            for fid in want:
                if known.get(fid, {}).get("checked"):
                    self._art[(source, fid)] = (Z[rows[fid]] if fid in rows and Z is not None
                                                else np.zeros((0, self.space.W.shape[1]), np.float32))
        return {f: self._art.get((source, f)) for f in film_ids}

    def similarities(self, source: str, scan: np.ndarray, film_ids: Sequence[str],
                     ) -> dict[str, float | None]:
        """film id -> best cosine of the scan to the film's posters (None: no poster known)."""
        out = {}
        for fid, Z in self.art_of(source, film_ids).items():
            out[fid] = float(np.max(Z @ scan)) if Z is not None and len(Z) else None
        return out

    # -- the reference ------------------------------------------------------------------------
    def reference(self, source: str) -> tuple[np.ndarray, np.ndarray]:
        """(film id per row, projected vectors) of every cached poster of the catalogue."""
        if source not in self._reference:
            with self.catalog.read() as con:
                ids, vecs = self.catalog.catalogue_artwork(con, source, self.model)
            Z = self.space.project(vecs) if ids else np.zeros((0, self.space.W.shape[1]))
            self._reference[source] = (np.asarray(ids, dtype=object), Z.astype(np.float32))
        return self._reference[source]

    def nearest(self, source: str, scan: np.ndarray, k: int = 5) -> list[tuple[str, float]]:
        """The `k` films whose cached posters are most like the scan (best poster each)."""
        ids, Z = self.reference(source)
        if not len(ids):
            return []
        sims = Z @ scan
        order = np.argsort(-sims)
        out: dict[str, float] = {}
        for j in order:
            if ids[j] not in out:
                out[ids[j]] = float(sims[j])
                if len(out) >= k:
                    break
        return list(out.items())

    def films(self, source: str, film_ids: Sequence[str]) -> dict[str, Film]:
        with self.catalog.read() as con:
            rows = self.catalog.catalogue_films(con, source, film_ids)
        return {fid: Film(source, fid, r["title"], r["year"], tuple(r["genres"]),
                          r["original_title"]).with_keys() for fid, r in rows.items()}

    def add_reference(self, catalogue, films: Sequence[Film],
                      progress: Callable[[int, int], None] | None = None) -> dict:
        """Cache the posters of `films` (e.g. a decade's films listed by TMDb's discover) so
        that scans whose text names no film can be matched by their art alone."""
        done = 0
        for i in range(0, len(films), 100):
            done += self.ensure(catalogue, films[i:i + 100])
            if progress:
                progress(min(i + 100, len(films)), len(films))
        return {"films": len(films), "checked now": done, "posters fetched": self.fetched}

    def counts(self) -> dict:
        with self.catalog.read() as con:
            return self.catalog.catalogue_artwork_counts(con)
