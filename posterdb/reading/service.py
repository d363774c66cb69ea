"""ReadingService: read the text on stored posters, identify their films, search what was read.

Both stages are resumable and run at their own pace, apart from ingest: `read` picks the
posters with no stored reading, `identify` those read but not identified yet (or left
*pending* because the catalogue was down or rate-limited). Each batch is one transaction.
An identified poster gets its film's genres as labels of origin ``catalogue`` (see
`posterdb.rules`: a review beats them, they beat predictions) and the film's title and year
where the poster had none.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np

from posterdb.classify.service import GenreService
from posterdb.core.errors import ImageError, RefusedError, StoreError
from posterdb.reading.identify import (
    IDENTIFIED,
    PENDING,
    Identification,
    Reading,
    identify,
)
from posterdb.reading.identify.text import squash
from posterdb.reading.ocr import ENGINE, PosterReader, ReadLine, shared_reader
from posterdb.storage.catalog import Catalog
from posterdb.storage.image_store import ImageStore
from posterdb.storage.posters import StoredPosters
from posterdb.vectors.models import StoreModels
from posterdb.vectors.similarity import Similarity

Progress = Callable[[int, int], None]
CATALOGUE_ORIGIN = "catalogue"


class ReadingService:
    """Wired by PosterDB: the stored posters (title, year, image path) and the genre service
    (the image classifier's probabilities, a prior for the film's genres; None untrained)."""

    def __init__(self, catalog: Catalog, images: ImageStore, posters: StoredPosters,
                 genres: GenreService, models: StoreModels, search: Similarity):
        self.catalog = catalog
        self.images = images
        self.posters = posters
        self.genres = genres
        self.models, self.similarity = models, search

    def probabilities(self, ids: Sequence[int]) -> dict[int, np.ndarray] | None:
        """The image classifier's 19 probabilities of these posters (None: no classifier)."""
        return self.genres.image_probabilities(None, ids)

    def artwork(self):
        """Catalogue posters cached in this store, compared with its scans in the store's model's
        artwork space (reading/identify/artwork.py); None when that model has none (text only)."""
        from posterdb.reading.identify.artwork import Artwork, ArtworkSpace

        model = self.models.default()
        space = ArtworkSpace.for_model(model)
        if space is None:
            return None
        return Artwork(self.catalog, self.images, self.models.embedder(model), self.similarity,
                       space)

    @staticmethod
    def reader(threads: int = 2) -> PosterReader:
        return shared_reader(threads)

    # -- read ---------------------------------------------------------------------------------
    def read(self, ids: Sequence[int] | None = None, *, redo: bool = False, threads: int = 2,
             batch: int = 16, progress: Progress | None = None) -> dict:
        """Read the posters not read yet (of `ids` in the order given, or all by id); `redo`
        reads `ids` again. A poster already read is never read again unless `redo`.

        `threads` posters are read at once (one OCR engine each); every `batch` posters are
        one transaction, so a kill loses at most one batch."""
        wanted = None if ids is None else list(dict.fromkeys(int(i) for i in ids))
        with self.catalog.read() as con:
            if redo and wanted is not None:
                todo = wanted
            else:
                unread = set(self.catalog.unread_ids(con, wanted))
                todo = ([i for i in wanted if i in unread] if wanted is not None
                        else sorted(unread))
        meta = {p.id: p for p in self.posters.get(todo)}
        known = {p.id for p in self.posters.get(wanted)} if wanted is not None else set()
        missing = [i for i in wanted or [] if i not in known]
        todo = [i for i in todo if i in meta]
        reader = self.reader(threads) if todo else None
        done = lines_total = 0
        failed: list[dict] = []
        t0, c0 = time.perf_counter(), time.process_time()
        files = (self.images.file(meta[pid].image_path) for pid in todo)
        got = reader.read_many(files) if reader else iter(())
        for start in range(0, len(todo), batch):
            got_ids, reads = [], []
            for pid in todo[start:start + batch]:
                lines = next(got)
                if isinstance(lines, ImageError):
                    failed.append({"id": pid, "reason": lines.reason})
                    continue
                got_ids.append(pid)
                reads.append(lines)
            if got_ids:
                self.save_reads(got_ids, reads)
            done += len(got_ids)
            lines_total += sum(len(r) for r in reads)
            if progress:
                progress(min(start + batch, len(todo)), len(todo))
        secs, cpu = time.perf_counter() - t0, time.process_time() - c0
        return {"read": done, "lines": lines_total, "failed": failed,
                "not_found": missing, "seconds": round(secs, 2),
                "posters_per_s": round(done / secs, 3) if done and secs > 0 else None,
                "cpu_s_per_poster": round(cpu / done, 3) if done else None,
                "device": reader.device if reader else None}

    def save_reads(self, ids: Sequence[int], reads: Sequence[Sequence[ReadLine]]) -> None:
        """Store what was read on these posters (one transaction), e.g. an upload read by the
        page before it was added."""
        with self.catalog.write() as con:
            self.catalog.save_reads(
                con, [int(i) for i in ids], [[ln.to_json() for ln in r] for r in reads], ENGINE,
                [text_of(r) for r in reads], [squash(text_of(r)) for r in reads])

    # -- identify -----------------------------------------------------------------------------
    def identify(self, catalogue, ids: Sequence[int] | None = None, *, redo: bool = False,
                 scorer=None, batch: int = 32, max_pending_in_a_row: int = 3,
                 artwork: bool = True, progress: Progress | None = None) -> dict:
        """Identify read posters not identified yet (or pending); `redo`: all of them again.

        With `artwork` (the default) and a catalogue that names posters (TMDb; a film file
        with a poster column), the candidates' own posters are fetched once into the store and
        compared with the scan, and the posters already cached are searched for the scan's
        art (docs/identify.md); else identification is by the text alone.
        A catalogue that stays unavailable for `max_pending_in_a_row` posters ends the run
        early: the rest stay to be identified (nothing fails; re-run later)."""
        art = self.artwork() if artwork else None
        with self.catalog.read() as con:
            todo = self.catalog.to_identify(con, ids, redo)
        counts = {"identified": 0, "unidentified": 0, "pending": 0, "not_tried": 0}
        requests0 = getattr(catalogue, "requests", 0)
        in_a_row = 0
        stopped = None
        for start in range(0, len(todo), batch):
            chunk = todo[start:start + batch]
            with self.catalog.read() as con:
                lines = self.catalog.read_lines(con, chunk)
            meta = {p.id: p for p in self.posters.get(chunk)}
            probs = self.probabilities(chunk) or {}
            scans = self._scans(art, [pid for pid in chunk if pid in meta])
            results: list[tuple[int, Identification]] = []
            for pid in chunk:
                if pid not in meta:
                    continue
                reading = Reading([ReadLine.from_json(d) for d in lines.get(pid, [])],
                                  meta[pid].year, probs.get(pid), scans.get(pid))
                got = identify(reading, catalogue, scorer, artwork=art)
                results.append((pid, got))
                counts[got.status] += 1
                in_a_row = in_a_row + 1 if got.status == PENDING else 0
                if in_a_row >= max_pending_in_a_row:
                    stopped = got.error
                    break
            self._store(results, meta)
            if progress:
                progress(min(start + len(results), len(todo)), len(todo))
            if stopped:
                counts["not_tried"] = len(todo) - start - len(results)
                break
        return counts | {"to_identify": len(todo), "catalogue": getattr(catalogue, "name", "?"),
                         "requests": getattr(catalogue, "requests", 0) - requests0,
                         "stopped": stopped,
                         "artwork": None if art is None else {
                             "posters fetched": art.fetched, "not images": art.failed}}

    @staticmethod
    def _scans(art, ids: list[int]) -> dict[int, np.ndarray]:
        """The scans' vectors in the artwork space; a poster without one is matched by text."""
        if art is None or not ids:
            return {}
        try:
            return art.scans(ids)
        except StoreError:
            out = {}
            for pid in ids:
                try:
                    out |= art.scans([pid])
                except StoreError:
                    pass
            return out

    def add_reference(self, catalogue, films, progress: Progress | None = None) -> dict:
        """Cache the posters of `films` (e.g. `reference_films(client, decades)`) so that a scan
        whose text names no film can be identified by its art alone."""
        art = self.artwork()
        if art is None:
            raise RefusedError("artwork matching is calibrated for the mobilenet-v2 model only; "
                               "this store's model has no artwork space")
        return art.add_reference(catalogue, list(films), progress) | {"store": art.counts()}

    def _store(self, results: list[tuple[int, Identification]],
               meta: dict) -> None:
        if not results:
            return
        done = [(pid, r) for pid, r in results if r.status != PENDING]
        with self.catalog.write() as con:
            self.catalog.save_identifications(con, [r.to_dict() | {"poster_id": pid}
                                                    for pid, r in results])
            if done:  # identified: the film's genres; refused: no catalogue labels
                self.catalog.set_labels(
                    con, [pid for pid, _ in done],
                    [list(r.film.genres) if r.status == IDENTIFIED else [] for _, r in done],
                    CATALOGUE_ORIGIN)
            for pid, r in done:
                p = meta[pid]
                if r.status == IDENTIFIED and (p.title is None or p.year is None):
                    self.catalog.update_metadata(con, pid, p.title or r.film.title,
                                                 p.year or r.film.year)

    # -- look-ups -----------------------------------------------------------------------------
    def search(self, query: str, limit: int = 50) -> list[dict]:
        """Posters whose read text contains `query` (case and spaces ignored): each one's
        `StoredPoster.to_dict()` with its text as "read_text"."""
        with self.catalog.read() as con:
            found = self.catalog.search_text(con, query.strip(), squash(query), limit)
        meta = {p.id: p for p in self.posters.get([pid for pid, _ in found])}
        return [meta[pid].to_dict() | {"read_text": text} for pid, text in found if pid in meta]

    def of(self, ids: Sequence[int]) -> dict[int, dict]:
        """poster id -> {"lines": [...] or None (unread), "identified": {...} or None}."""
        with self.catalog.read() as con:
            lines = self.catalog.read_lines(con, ids)
            idents = self.catalog.identifications(con, ids)
        return {int(i): {"lines": lines.get(int(i)), "identified": idents.get(int(i))}
                for i in ids}

    def counts(self) -> dict:
        with self.catalog.read() as con:
            return {"read": self.catalog.read_count(con)} | self.catalog.identification_counts(con)


def text_of(lines: Sequence[ReadLine]) -> str:
    return "\n".join(ln.text for ln in lines)
