"""Identify the film a poster shows from the text read on it (see posterdb.ocr).

text        read lines -> title queries (joins, squashed forms, split run-together words)
catalogues  where films are looked up: a local CSV / IMDb file, or TMDb's search
scoring     features of (poster, film), the calibrated scorer and its acceptance threshold

:func:`identify` ties them together for one poster and never raises for a catalogue that is
down or rate-limited: the outcome is then ``pending`` and the poster is tried again later.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from posterdb.reading.identify.catalogues import (
    CatalogueError, CatalogueUnavailable, Film, LocalCatalogue, TMDbCatalogue, open_catalogue)
from posterdb.reading.identify.scoring import DEFAULT_MODEL, FilmScorer, Match, Reading

__all__ = ["CatalogueError", "CatalogueUnavailable", "Film", "FilmScorer", "Identification",
           "LocalCatalogue", "Match", "Reading", "TMDbCatalogue", "default_scorer", "identify",
           "open_catalogue"]

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
    """The scorer calibrated on the shared posters (bench/identify_eval.py)."""
    return FilmScorer.load(DEFAULT_MODEL)


def identify(reading: Reading, catalogue, scorer: FilmScorer | None = None) -> Identification:
    scorer = scorer or default_scorer()
    source = getattr(catalogue, "source", "file")
    qs = reading.queries()
    if not qs:
        return Identification(UNIDENTIFIED, None, 0.0, source)
    try:
        films = catalogue.candidates(qs, year=reading.year)
    except CatalogueUnavailable as e:
        return Identification(PENDING, None, 0.0, source, error=str(e))
    m = scorer.match(reading, films)
    return Identification(IDENTIFIED if m.accepted else UNIDENTIFIED, m.film, m.score, source,
                          m.n_candidates)
