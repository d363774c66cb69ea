"""Identify the film a poster shows from the text read on it (see posterdb.ocr).

text        read lines -> title queries (joins, squashed forms, split run-together words)
catalogues  where films are looked up: a local CSV / IMDb file, or TMDb's search
artwork     the candidate films' own posters, cached and embedded; the reference of them
scoring     features of (poster, film), the calibrated scorer and its acceptance threshold

:func:`identify` ties them together for one poster and never raises for a catalogue that is
down or rate-limited: the outcome is then ``pending`` and the poster is tried again later.
With an :class:`~posterdb.reading.identify.artwork.Artwork` and the scan's vector, the best
candidates' posters are fetched and compared with the scan, and films whose cached posters
look most like it join the candidates (art alone); the artwork scorer decides.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from posterdb.reading.identify.catalogues import (
    CatalogueError,
    CatalogueUnavailable,
    Film,
    LocalCatalogue,
    TMDbCatalogue,
    open_catalogue,
)
from posterdb.reading.identify.scoring import (
    ART_MODEL,
    DEFAULT_MODEL,
    ArtEvidence,
    FilmScorer,
    Match,
    Reading,
    features,
)

__all__ = ["ArtEvidence", "CatalogueError", "CatalogueUnavailable", "Film", "FilmScorer",
           "Identification", "LocalCatalogue", "Match", "Reading", "TMDbCatalogue",
           "art_candidates", "artwork_scorer", "default_scorer", "identify", "open_catalogue"]

IDENTIFIED, UNIDENTIFIED, PENDING = "identified", "unidentified", "pending"


@dataclass(frozen=True)
class Identification:
    """One poster's outcome: `status` is identified / unidentified / pending (catalogue not
    reachable now: retry later); `film` is the best candidate even when refused (evidence)."""

    status: str
    film: Film | None
    score: float
    source: str
    n_candidates: int = 0
    error: str | None = None

    def to_dict(self) -> dict:
        f = self.film
        return {"status": self.status, "score": round(self.score, 4), "source": self.source,
                "film_id": f.film_id if f else None, "title": f.title if f else None,
                "year": f.year if f else None, "genres": list(f.genres) if f else [],
                "candidates": self.n_candidates, "error": self.error}


@lru_cache(maxsize=1)
def default_scorer() -> FilmScorer:
    """The text scorer calibrated on the shared posters (bench/identify_eval.py)."""
    return FilmScorer.load(DEFAULT_MODEL)


@lru_cache(maxsize=1)
def artwork_scorer() -> FilmScorer | None:
    """The scorer with artwork features (bench/identify_day.py), if shipped."""
    return FilmScorer.load(ART_MODEL) if ART_MODEL.is_file() else None


def uses_artwork(catalogue, artwork, reading: Reading) -> bool:
    """Artwork helps only with a scan vector and a catalogue that can name posters."""
    return (artwork is not None and reading.vector is not None
            and getattr(catalogue, "has_posters", False))


def art_candidates(reading: Reading, catalogue, films: list[Film], artwork, *,
                   verify: int = 6, reference: int = 5) -> tuple[list[Film], ArtEvidence]:
    """Fetch (once) the posters of the `verify` best text candidates (by the text scorer),
    look the scan up in the reference, and return the candidates with the films its art
    alone named, and the art evidence. CatalogueUnavailable propagates (pending)."""
    source = catalogue.source
    if films:
        p = default_scorer().scores(features(Reading(reading.lines, reading.year,
                                                     reading.probabilities), films))
        top = [films[j] for j in np.argsort(-p, kind="stable")[:verify]]
        artwork.ensure(catalogue, top)
    near = artwork.nearest(source, reading.vector, reference)
    have = {f.film_id for f in films}
    added_ids = [fid for fid, _ in near if fid not in have]
    added = list(artwork.films(source, added_ids).values())
    all_films = list(films) + added
    sims = artwork.similarities(source, reading.vector, [f.film_id for f in all_films])
    others = tuple(s for fid, s in near if fid not in sims)
    return all_films, ArtEvidence(sims, others, frozenset(f.film_id for f in added))


def identify(reading: Reading, catalogue, scorer: FilmScorer | None = None,
             artwork=None) -> Identification:
    """One poster's identification. `artwork` (artwork.Artwork) with `reading.vector`: the
    artwork scorer, candidates verified by their posters and named by the reference."""
    art = uses_artwork(catalogue, artwork, reading) and (scorer or artwork_scorer())
    scorer = scorer or (artwork_scorer() if art else None) or default_scorer()
    source = getattr(catalogue, "source", "file")
    qs = reading.queries()
    if not qs and not art:
        return Identification(UNIDENTIFIED, None, 0.0, source)
    try:
        films = catalogue.candidates(qs, year=reading.year) if qs else []
        evidence = None
        if art and scorer.uses_art:
            films, evidence = art_candidates(reading, catalogue, films, artwork)
    except CatalogueUnavailable as e:
        return Identification(PENDING, None, 0.0, source, error=str(e))
    m = scorer.match(reading, films, evidence)
    return Identification(IDENTIFIED if m.accepted else UNIDENTIFIED, m.film, m.score, source,
                          m.n_candidates)
