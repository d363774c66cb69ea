"""The dealer's daily intake on one store: inbox batches in, the shop feed and the review out.

* `process(batch)` is the watcher's processor (posterdb.watch): one store ingest of exactly the
  batch's files (titles/years from the inbox hints), the same transactions and crash safety as
  `posterdb ingest`, predictions and their published subset committed with the posters; then one
  Outcome per file, from what DuckDB holds (so a re-run after a kill reports the same).
* `feed()` is the shop's view: per poster, its labels (a person's or the dealer's file) or else
  its *published* predictions.
* `queue()` ranks what a person should look at: new posters by uncertainty (margin to the
  predict / publish thresholds), labelled ones by mistakenness (out-of-fold probability against
  the label, heads against vote); `accept()` / `set_genres()` / `apply()` record the decisions
  as review labels; `duplicates()` sorts a poster's look-alikes into tiers.

This is the one review queue: the page's Browse & curate, its Inbox and `posterdb review list`
all show `queue()`. Collaborators are passed in, typed (ingestion, similarity search, stored
posters, the genre service, the store's models), so nothing here imports the facade.
"""
from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import numpy as np

from posterdb.classify.service import GenreService
from posterdb.core.errors import ImageError, UsageError
from posterdb.core.genres import GENRES, to_multi_hot
from posterdb.core.records import StoredPoster
from posterdb.core.rules import LABEL_ORIGINS, check_poster_id, strongest, validate_genres
from posterdb.curation.feed import GENRES_FROM, FeedRow
from posterdb.curation.inbox import Hint, Inbox
from posterdb.curation.queue import (
    LOOK_ALIKE, NEAR_DUPLICATE, duplicate_tier, mistakenness, uncertainty)
from posterdb.curation.watch import Outcome, Watcher
from posterdb.ingest.service import Ingestion
from posterdb.maintenance.service import Maintenance
from posterdb.media.images import SUPPORTED_SUFFIXES, read_bytes, sha256_bytes
from posterdb.media.labels import LabelRow
from posterdb.storage.catalog import Catalog, embedding_table
from posterdb.storage.posters import StoredPosters
from posterdb.vectors.models import StoreModels
from posterdb.vectors.similarity import Similarity

KINDS = ("new", "labelled", "all")


class Curation:
    """Inbox processing, shop feed and the review queue of one store."""

    def __init__(self, catalog: Catalog, genres: GenreService, ingestion: Ingestion,
                 search: Similarity, posters: StoredPosters, models: StoreModels,
                 maintenance: Maintenance):
        self.catalog, self.genres, self.ingestion = catalog, genres, ingestion
        self.search, self.posters, self.models = search, posters, models
        self.maintenance = maintenance

    # -- the watcher's processor ---------------------------------------------------------------

    def process(self, batch: Sequence[tuple[Path, Hint]], *, model: str | None = None,
                root: Path | None = None) -> list[Outcome]:
        """Ingest exactly these files; one Outcome each (stored: its poster is committed)."""
        model = self.models.resolve(model)
        outcomes: dict[Path, Outcome] = {}
        shas: dict[Path, str] = {}
        for path, _ in batch:
            if path.suffix.lower() not in SUPPORTED_SUFFIXES:
                outcomes[path] = Outcome(path, False, reason=(
                    f"not an image file ({path.suffix or 'no suffix'}); posterdb reads "
                    + ", ".join(sorted(SUPPORTED_SUFFIXES))))
                continue
            try:
                shas[path] = sha256_bytes(read_bytes(path))
            except ImageError as e:
                outcomes[path] = Outcome(path, False, reason=e.reason)
        with self.catalog.read() as con:
            before = self.catalog.sha_to_id(con)
        sources = []
        for i, (path, hint) in enumerate(batch, 1):
            if path not in shas:
                continue
            row = None   # stored bytes keep their metadata: an inbox name never relabels them
            if shas[path] not in before and (hint.title or hint.year or hint.genres):
                row = LabelRow(i, path.name, path, hint.title, hint.year, tuple(hint.genres))
            sources.append((path, row))
        failed: dict[str, str] = {}
        if sources:
            report = self.ingestion.run(root or sources[0][0].parent, sources=sources, model=model)
            failed = {f["path"]: f["reason"] for f in report.failed}
        with self.catalog.read() as con:
            after = self.catalog.sha_to_id(con)
            ids = [after[s] for s in shas.values() if s in after]
            labels = self.catalog.labels_of(con, ids)
        made: dict[str, list[tuple[int, str]]] = {}   # posters this batch added, by file name
        added = {after[sha]: sha for sha in set(after) - set(before)}
        for p in self.posters.get(sorted(added)):
            made.setdefault(p.path, []).append((p.id, p.sha256))
        counted: set[str] = set()    # the same bytes twice in one batch: one new poster
        for path, sha in shas.items():
            pid = after.get(sha)
            if pid is None:
                outcomes[path] = Outcome(path, False, reason=failed.get(str(path), "not stored"),
                                         created=tuple(made.get(str(path), ())))
                continue
            own = labels["effective"].get(pid, [])
            published = own or labels["by_origin"].get("published", {}).get(pid, [])
            predicted = labels["prediction"].get(pid, [])
            suggested = [] if own else [g for g in predicted if g not in published]
            outcomes[path] = Outcome(path, True, pid, sha not in before and sha not in counted,
                                     published=tuple(published), suggested=tuple(suggested),
                                     sha256=sha, created=tuple(made.get(str(path), ())))
            counted.add(sha)
        return [outcomes[p] for p, _ in batch]

    def watcher(self, box: Inbox, model: str | None = None, **options) -> Watcher:
        """The watch loop on this store's inbox `box`: batches through `process` (each outcome
        says which bytes were committed for a file and which posters its name made, so the
        watcher files a scan away only if its bytes, read again without following links, are
        those), and posters of bytes no plain inbox file held taken back (`discard`)."""
        return Watcher(box, lambda files: self.process(files, model=model, root=box.root),
                       discard=self.maintenance.remove, **options)

    # -- the shop feed ------------------------------------------------------------------------

    def feed(self) -> list[FeedRow]:
        """Every poster with the genres the shop may show and where they come from: labels (a
        person's review, the dealer's file, or the identified film's genres from the catalogue,
        with its source and film id), else the published predictions."""
        with self.catalog.read() as con:
            by_origin = self.catalog.labels_of(con, None)["by_origin"]
            films = {pid: f for pid, f in self.catalog.identifications(con).items()
                     if f["status"] == "identified"}
        rows = []
        for p in self.posters.get():
            origin, genres = strongest(by_origin, LABEL_ORIGINS, p.id)
            if not genres and p.published:
                origin, genres = "published", list(p.published)
            f = films.get(p.id) or {}
            rows.append(FeedRow(p.id, p.title, p.year, str(Path(p.image).absolute()),
                                tuple(genres), GENRES_FROM.get(origin or "", ""),
                                f.get("source"), f.get("film_id"), f.get("title"),
                                f.get("year")))
        return rows

    # -- review -------------------------------------------------------------------------------

    def _thresholds(self, model: str) -> tuple[np.ndarray, np.ndarray]:
        clf = self.genres.require(model)
        return np.asarray(clf.thresholds_, dtype=np.float64), self.genres.publish_thresholds(model)

    def queue(self, kind: str = "all", *, limit: int = 50, offset: int = 0,
              model: str | None = None, duplicates: bool = False) -> list[dict]:
        """Posters waiting for a person, most useful first (see the module docstring)."""
        if kind not in KINDS:
            raise UsageError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
        model = self.models.require(model)
        posters = [p for p in self.posters.get() if not p.reviewed]
        items = []
        if kind in ("new", "all"):
            items += self._new_items(posters, model)
        if kind in ("labelled", "all"):
            items += self._labelled_items(posters, model)
        items = items[offset:offset + limit]
        if duplicates:
            for it in items:
                it["duplicates"] = self.duplicates(it["id"], model=model)
        return items

    def _with_vectors(self, posters: list[StoredPoster], model: str) -> list[StoredPoster]:
        with self.catalog.read() as con:
            have = set(self.catalog.vector_ids(con, embedding_table(model)).tolist())
        return [p for p in posters if p.id in have]

    def _new_items(self, posters: list[StoredPoster], model: str) -> list[dict]:
        """Unlabelled posters whose genres are not all published, most uncertain first: the
        smallest margin of any genre's probability to its predict or publish threshold."""
        todo = self._with_vectors([p for p in posters if not p.genres and (
            not p.published or set(p.predicted) - set(p.published))], model)
        if not todo:
            return []
        t_pred, t_pub = self._thresholds(model)
        P = self.genres.probabilities(model, [p.id for p in todo])
        u = uncertainty(P, t_pred, t_pub)
        out = []
        for i in np.argsort(u, kind="stable"):
            p, row = todo[int(i)], P[int(i)]
            predicted = list(p.predicted) or [g for g, x, t in zip(GENRES, row, t_pred) if x >= t]
            suggested = [g for g in predicted if g not in p.published]
            out.append(_item(p, "new", float(u[i]), "unlabelled; margin to the nearest "
                             f"threshold {u[i]:.3f}", suggested, row))
        return out

    def _labelled_items(self, posters: list[StoredPoster], model: str) -> list[dict]:
        """Labelled posters, the label most at odds with the out-of-fold probabilities first."""
        todo = self._with_vectors([p for p in posters if p.genres], model)
        if not todo:
            return []
        clf = self.genres.require(model)
        ids = [p.id for p in todo]
        P = self.genres.probabilities(model, ids)
        H = V = None
        heads = getattr(getattr(clf, "heads_", None), "oof_proba_", None)
        alpha = float(getattr(clf, "alpha_", 1.0))
        if heads is not None and alpha < 1.0:       # the vote's part: P = a·H + (1 - a)·V
            row = {int(t): r for r, t in enumerate(np.asarray(clf.ids_).tolist())}
            H = np.asarray([heads[row[i]] if i in row else P[k] for k, i in enumerate(ids)])
            V = np.clip((P - alpha * H) / (1 - alpha), 0.0, 1.0)
        Y = to_multi_hot([p.genres for p in todo])
        scored = []
        for k, p in enumerate(todo):
            s = mistakenness(P[k], Y[k], list(GENRES), None if H is None else H[k],
                             None if V is None else V[k])
            scored.append((s.score, k, s.reason))
        scored.sort(key=lambda t: (-t[0], t[1]))
        return [_item(todo[k], "labelled", score, reason, [], P[k]) for score, k, reason in scored]

    def duplicates(self, poster_id: int, *, k: int = 8, model: str | None = None) -> list[dict]:
        """Exact copies (other names of the same bytes), near-duplicates (rescans, cosine ≥
        NEAR_DUPLICATE) and look-alikes (cosine ≥ LOOK_ALIKE), strongest tier first."""
        with self.catalog.read() as con:
            names = self.catalog.paths_of(con, [poster_id]).get(int(poster_id), [])
        out = [{"tier": "exact copy", "id": int(poster_id), "path": n, "similarity": 1.0}
               for n in names[1:]]
        for h in self.search.similar(int(poster_id), k, model=model):
            tier = duplicate_tier(h.similarity)
            if tier is not None:
                out.append({"tier": tier, "id": h.id, "title": h.title, "year": h.year,
                            "similarity": round(float(h.similarity), 4), "image": h.image})
        return out

    def accept(self, ids: Sequence[int]) -> list[dict]:
        """Accept what these posters show as a person's genres: a new poster's predictions
        (published + suggested), a labelled poster's labels (confirmed)."""
        ids = [int(i) for i in ids]
        found = {p.id: p for p in self.posters.get(ids)}
        missing = sorted(set(ids) - set(found))
        if missing:
            raise UsageError(f"no such poster(s): {missing}")
        decisions = []
        for i in dict.fromkeys(ids):
            shown = found[i].shown
            if not shown:
                raise UsageError(f"poster {i} has neither labels nor a prediction to accept")
            decisions.append({"id": i, "genres": shown})
        return self._write(decisions)

    def set_genres(self, poster_id: int, genres: Sequence[str]) -> list[dict]:
        if not self.posters.get([int(poster_id)]):
            raise UsageError(f"no such poster: {poster_id}")
        return self._write([{"id": int(poster_id), "genres": validate_genres(genres)}])

    def apply(self, decisions: Sequence[dict]) -> list[dict]:
        """Decisions in the shape `queue()` lists them, so an edited `posterdb review list --json`
        goes straight back in: "accept": true takes the entry's "genres" (or what the poster
        shows); an entry whose "genres" were edited sets them; an unchanged entry is skipped."""
        if not isinstance(decisions, (list, tuple)):
            raise UsageError("decisions must be a JSON list of objects with an 'id'")
        ids = []
        for n, d in enumerate(decisions):
            if not isinstance(d, dict) or not isinstance(d.get("id"), int) or isinstance(d.get("id"), bool):
                raise UsageError(f"decision {n}: needs an integer 'id'")
            check_poster_id(d["id"], f"decision {n}: poster id")
            if "genres" in d and not isinstance(d["genres"], list):
                raise UsageError(f"decision {n} (poster {d['id']}): 'genres' must be a list")
            ids.append(d["id"])
        found = {p.id: p for p in self.posters.get(ids)}
        missing = sorted(set(ids) - set(found))
        if missing:
            raise UsageError(f"no such poster(s): {missing}")
        out = []
        for d in decisions:
            p = found[d["id"]]
            shown = p.shown
            genres = validate_genres(d["genres"]) if d.get("genres") else None
            if d.get("accept") is True:
                genres = genres or shown
                if not genres:
                    raise UsageError(f"poster {d['id']} has no genres to accept")
            elif genres is None or genres == validate_genres(shown, at_least_one=False):
                continue
            out.append({"id": d["id"], "genres": genres})
        return self._write(out)

    def _write(self, decisions: list[dict]) -> list[dict]:
        if decisions:
            with self.catalog.write() as con:
                for d in decisions:
                    self.catalog.set_labels(con, [d["id"]], [d["genres"]], "review")
        return decisions

    def arrivals(self, since: datetime | str) -> list[StoredPoster]:
        """Posters stored since then (the page's "today's arrivals"), newest first."""
        stamp = since.isoformat(sep=" ") if isinstance(since, datetime) else str(since)
        with self.catalog.read() as con:
            ids = self.catalog.arrivals(con, stamp)
        return self.posters.get(ids)


def _item(p: StoredPoster, kind: str, score: float, reason: str, suggested: list[str],
          probabilities: np.ndarray) -> dict:
    return {"id": p.id, "kind": kind, "score": round(score, 4), "reason": reason,
            "title": p.title, "year": p.year, "image": p.image, "path": p.path,
            "labels": list(p.genres), "predicted": list(p.predicted),
            "published": list(p.published), "suggested": suggested,
            "genres": p.shown or list(suggested), "accept": False,
            "predicted_probabilities": {g: round(float(x), 4)
                                        for g, x in zip(GENRES, probabilities)}}


__all__ = ["Curation", "KINDS", "NEAR_DUPLICATE", "LOOK_ALIKE"]
