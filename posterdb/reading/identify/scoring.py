"""Score every candidate film against what was read, and accept only above a calibrated threshold.

Features of one (poster, film) pair: how well a read line (or run of lines) matches the title
and how tall it is printed, how much of the title appears anywhere in the read text, the
title's length (short titles match noise), the year's agreement (the poster's known year and
any year printed on it), the image classifier's agreement with the film's genres (its
probabilities are passed in: this module does not know the classifier), and how many other
candidates match as well (remakes, sequels). A logistic regression turns them into the
probability that the film is the poster's; the threshold on the best candidate's probability
is chosen on out-of-fold scores so that accepted posters are the right film ≥ `precision` of
the time with 95% confidence (a Wilson lower bound, not the point estimate). Below it the poster stays unidentified: a wrong film's genres would be published as
facts, so refusing is cheap and guessing is not.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rapidfuzz import fuzz

from posterdb.core.genres import GENRE_INDEX, GENRES
from posterdb.reading.identify.catalogues import Film
from posterdb.reading.identify.text import Query, full_text_key, queries, years_in
from posterdb.reading.ocr import ReadLine

FEATURES = ("sim", "height", "sim_x_height", "coverage", "coverage_x_len", "length",
            "year_exact", "year_close", "year_far", "year_printed", "genre_mean",
            "genre_loglik", "genre_missing", "rivals", "sim_sq")
# with artwork (artwork.py): the best similarity of the scan to the film's own posters, its
# margin over the best other film seen (candidates and reference), whether no poster of the
# film is known, whether it is the most similar film, and whether only its art named it
ART_FEATURES = FEATURES + ("art_sim", "art_margin", "art_missing", "art_best", "from_art")
DEFAULT_MODEL = Path(__file__).with_name("calibration.json")
ART_MODEL = Path(__file__).with_name("calibration_artwork.json")


@dataclass(frozen=True)
class Reading:
    """What identification works from: the read lines, the poster's year if known, and the
    image classifier's genre probabilities (19, GENRES order) if any."""

    lines: Sequence[ReadLine]
    year: int | None = None
    probabilities: Sequence[float] | None = None
    vector: np.ndarray | None = None   # the scan in the artwork space (artwork.py), if any

    def queries(self) -> list[Query]:
        return queries(list(self.lines))


def _pair_features(film: Film, qs: list[Query], text_key: str, year: int | None,
                   printed: set[int], probs: np.ndarray | None) -> list[float]:
    sim, height, best_len = 0.0, 0.0, 0
    for k in film.keys:
        for q in qs:
            s = fuzz.ratio(k, q.key) / 100.0
            if s > sim or (s == sim and q.height > height):
                sim, height, best_len = s, q.height, len(k)
    cov = max((fuzz.partial_ratio(k, text_key) / 100.0 for k in film.keys if len(k) >= 3),
              default=0.0) if text_key else 0.0
    length = min(best_len or min((len(k) for k in film.keys), default=0), 20) / 20.0
    d = None if (year is None or film.year is None) else abs(int(year) - int(film.year))
    if probs is not None and film.genres:
        idx = [GENRE_INDEX[g] for g in film.genres if g in GENRE_INDEX]
        p = np.clip(probs, 1e-3, 1 - 1e-3)
        y = np.zeros(len(GENRES))
        y[idx] = 1
        gmean = float(p[idx].mean()) if idx else 0.0
        gll = float(np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))
        gmiss = 0.0
    else:
        gmean, gll, gmiss = 0.0, 0.0, 1.0
    return [sim, height, sim * height, cov, cov * length, length,
            float(d == 0), float(d == 1), float(d is not None and d > 1),
            float(film.year in printed), gmean, gll, gmiss, 0.0, sim * sim]


@dataclass(frozen=True)
class ArtEvidence:
    """What the artwork says about one poster's candidates: `sims` film id -> best similarity
    to its posters (None: none known); `others` similarities of films seen in the reference
    but not among the candidates; `from_art` ids only the reference named."""

    sims: dict
    others: tuple[float, ...] = ()
    from_art: frozenset = frozenset()


def art_columns(films: Sequence[Film], art: ArtEvidence) -> np.ndarray:
    s = np.array([art.sims.get(f.film_id) if art.sims.get(f.film_id) is not None else np.nan
                  for f in films], float)
    known = ~np.isnan(s)
    out = np.zeros((len(films), 5))
    allv = np.concatenate([s[known], np.asarray(art.others, float)])
    for i in range(len(films)):
        if known[i]:
            rest = np.concatenate([np.delete(s, i)[~np.isnan(np.delete(s, i))],
                                   np.asarray(art.others, float)])
            rival = float(rest.max()) if len(rest) else 0.0
            out[i, :4] = [s[i], np.clip(s[i] - rival, -1, 1), 0.0,
                          float(s[i] >= allv.max() - 1e-9)]
        else:
            out[i, 2] = 1.0
        out[i, 4] = float(films[i].film_id in art.from_art)
    return out


def features(reading: Reading, films: Sequence[Film], art: ArtEvidence | None = None,
             ) -> np.ndarray:
    """(len(films), len(FEATURES)) matrix for one poster's candidates; with `art`, the
    :data:`ART_FEATURES` columns follow."""
    qs = reading.queries()
    text_key = full_text_key(list(reading.lines))
    printed = years_in(list(reading.lines))
    probs = None if reading.probabilities is None else np.asarray(reading.probabilities, float)
    X = np.array([_pair_features(f, qs, text_key, reading.year, printed, probs) for f in films],
                 dtype=float).reshape(len(films), len(FEATURES))
    if len(films) > 1:  # rivals: other films whose title matches about as well (remakes, sequels)
        sim = X[:, 0]
        for i in range(len(films)):
            X[i, FEATURES.index("rivals")] = min(3, int(np.sum(sim >= sim[i] - 0.02)) - 1) / 3
    return X if art is None else np.hstack([X, art_columns(films, art)])


@dataclass(frozen=True)
class Match:
    """The outcome for one poster: the best film (or None), its probability, and whether it
    cleared the threshold."""

    film: Film | None
    score: float
    accepted: bool
    n_candidates: int

    @property
    def status(self) -> str:
        return "identified" if self.accepted else "unidentified"


class FilmScorer:
    """Logistic regression over :data:`FEATURES` plus an acceptance threshold (sklearn style)."""

    def __init__(self, precision: float = 0.95, C: float = 1.0, seed: int = 0,
                 features: Sequence[str] = FEATURES):
        self.precision = precision
        self.C = C
        self.seed = seed
        self.features = tuple(features)

    @property
    def uses_art(self) -> bool:
        return "from_art" in self.features

    def mode_of(self, year_known: bool, row: np.ndarray | None = None) -> str:
        """Which threshold applies: year known / unknown, or "art only" when the best film
        was named by its art alone (no title read matched it; one threshold for both, the
        year being a feature: there are few such posters to calibrate on)."""
        if row is not None and self.uses_art and row[self.features.index("from_art")] > 0.5:
            return "art only"
        return "year known" if year_known else "year unknown"

    # -- fitting ------------------------------------------------------------------------------
    def _fit_lr(self, X: np.ndarray, y: np.ndarray):
        from sklearn.linear_model import LogisticRegression
        mean, scale = X.mean(0), X.std(0) + 1e-9
        lr = LogisticRegression(C=self.C, max_iter=2000).fit((X - mean) / scale, y)
        return lr.coef_[0], float(lr.intercept_[0]), mean, scale

    def fit(self, groups: Sequence[np.ndarray], truth: Sequence[int | None],
            year_known: Sequence[bool] | None = None) -> "FilmScorer":
        """`groups[i]`: feature rows of poster i's candidates; `truth[i]`: the index of the right
        film among them, or None when the right film is not a candidate; `year_known[i]`:
        whether the poster's year was given (each case gets its own threshold: a known year
        rules out remakes, an unknown one does not)."""
        rng = np.random.default_rng(self.seed)
        fold = rng.integers(0, 2, len(groups))
        top = np.zeros(len(groups))
        right = np.zeros(len(groups), dtype=bool)
        best = np.zeros(len(groups), dtype=int)
        for k in (0, 1):  # out-of-fold top scores, for an honest threshold
            tr = [i for i in range(len(groups)) if fold[i] != k and len(groups[i])]
            X, y = self._stack(groups, truth, tr)
            self.coef_, self.intercept_, self.mean_, self.scale_ = self._fit_lr(X, y)
            for i in range(len(groups)):
                if fold[i] == k and len(groups[i]):
                    p = self.scores(groups[i])
                    j = int(np.argmax(p))
                    top[i], right[i], best[i] = p[j], truth[i] == j, j
        known = np.ones(len(groups), bool) if year_known is None else np.asarray(year_known, bool)
        self.thresholds_ = {
            "year known": choose_threshold(top[known], right[known], self.precision),
            "year unknown": choose_threshold(top[~known], right[~known], self.precision)
            if (~known).any() else choose_threshold(top, right, self.precision)}
        if self.uses_art:  # each mode its own threshold, on the posters of that mode
            modes = np.array([self.mode_of(bool(known[i]), groups[i][best[i]])
                              if len(groups[i]) else "" for i in range(len(groups))])
            for mode in ("year known", "year unknown", "art only"):
                sel = modes == mode
                self.thresholds_[mode] = choose_threshold(top[sel], right[sel], self.precision)
        else:
            modes = np.array(["year known" if k else "year unknown" for k in known])
        self.oof_ = {"top": top, "right": right, "year_known": known, "mode": modes}
        X, y = self._stack(groups, truth, [i for i in range(len(groups)) if len(groups[i])])
        self.coef_, self.intercept_, self.mean_, self.scale_ = self._fit_lr(X, y)
        return self

    @staticmethod
    def _stack(groups, truth, idx):
        X = np.vstack([groups[i] for i in idx])
        y = np.concatenate([np.arange(len(groups[i])) == (-1 if truth[i] is None else truth[i])
                            for i in idx]).astype(int)
        return X, y

    def _proba(self, X: np.ndarray) -> np.ndarray:
        """Each candidate's probability of being the poster's film, on its own."""
        z = ((X - self.mean_) / self.scale_) @ self.coef_ + self.intercept_
        return 1.0 / (1.0 + np.exp(-z))

    def scores(self, X: np.ndarray) -> np.ndarray:
        """Probabilities shared out among the candidates (at most one is the poster's film):
        two equally good candidates (a remake, year unknown) get at most 0.5 each."""
        p = self._proba(X)
        return p / max(1.0, float(p.sum()))

    # -- use ----------------------------------------------------------------------------------
    def match(self, reading: Reading, films: Sequence[Film], art: ArtEvidence | None = None,
              ) -> Match:
        if not films:
            return Match(None, 0.0, False, 0)
        if self.uses_art:   # calibrated without the image classifier's genre probabilities
            reading = Reading(reading.lines, reading.year, None, reading.vector)
        X = features(reading, films, art if self.uses_art else None)
        p = self.scores(X)
        j = int(np.argmax(p))
        mode = self.mode_of(reading.year is not None, X[j])
        return Match(films[j], float(p[j]),
                     bool(p[j] >= self.threshold(reading.year, films[j].source, mode)),
                     len(films))

    def threshold(self, year: int | None, source: str | None = None,
                  mode: str | None = None) -> float:
        """The acceptance threshold for a poster with / without a known year (or `mode`); a
        catalogue whose candidates differ in kind (TMDb's word search) may have its own,
        calibrated on its own answers (`"tmdb year known"`). A mode never calibrated refuses."""
        mode = mode or ("year unknown" if year is None else "year known")
        return self.thresholds_.get(f"{source} {mode}", self.thresholds_.get(mode, 1.0))

    def to_dict(self) -> dict:
        return {"features": list(self.features), "coef": self.coef_.tolist(),
                "intercept": self.intercept_, "mean": self.mean_.tolist(),
                "scale": self.scale_.tolist(), "thresholds": self.thresholds_,
                "precision": self.precision}

    def save(self, path: str | Path, notes: dict | None = None) -> Path:
        path = Path(path)
        path.write_text(json.dumps(self.to_dict() | ({"notes": notes} if notes else {}),
                                   indent=1) + "\n")
        return path

    @classmethod
    def load(cls, path: str | Path = DEFAULT_MODEL) -> "FilmScorer":
        d = json.loads(Path(path).read_text())
        if tuple(d["features"]) not in (FEATURES, ART_FEATURES):
            raise ValueError(f"{path}: calibrated for other features; recalibrate")
        s = cls(precision=d.get("precision", 0.95), features=d["features"])
        s.coef_, s.intercept_ = np.array(d["coef"]), float(d["intercept"])
        s.mean_, s.scale_ = np.array(d["mean"]), np.array(d["scale"])
        s.thresholds_ = {k: float(v) for k, v in d["thresholds"].items()}
        return s


def wilson_lower(hits: np.ndarray, n: np.ndarray, z: float = 1.645) -> np.ndarray:
    """One-sided 95% lower confidence bound of a proportion (Wilson score interval)."""
    p = hits / n
    centre = p + z * z / (2 * n)
    spread = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (centre - spread) / (1 + z * z / n)


def choose_threshold(top: np.ndarray, right: np.ndarray, precision: float,
                     min_accepted: int = 20, local: float = 0.75, window: int = 50) -> float:
    """Lowest threshold at which the accepted posters (top score ≥ it) are right ≥ `precision`
    of the time with 95% confidence (Wilson lower bound, so a small or lucky sample does not
    pass), counting at least `min_accepted` posters, and at which the last `window` posters
    accepted are still right ≥ `local` of the time (no long tail of likely-wrong films riding
    on the good ones); 1.0 (accept nothing) when no threshold qualifies."""
    if len(top) < min_accepted:
        return 1.0
    order = np.argsort(-top, kind="stable")
    hits = np.cumsum(right[order])
    n = np.arange(1, len(order) + 1)
    lower = wilson_lower(hits, n)
    before = np.concatenate([np.zeros(window), hits])[n - 1]   # hits up to window posters ago
    recent = (hits - before) / np.minimum(n, window)
    ok = (lower >= precision) & (recent >= local) & (n >= min_accepted)
    good = np.flatnonzero(ok)
    if not len(good):
        return 1.0
    return float(top[order[good[-1]]])
