"""The film a poster shows, on the page: the store's configured catalogue (one per server
process), an upload's identification, a stored poster's, and each genre's threshold."""
from __future__ import annotations

import math
from collections.abc import Mapping

import streamlit as st

from posterdb.core.errors import PosterDBError
from posterdb.store import PosterDB
from posterdb.ui import helpers as ui

NO_CATALOGUE = ("No film catalogue is configured for this store, so films are not identified: "
                "`posterdb config set catalogue tmdb` (or a film file).")


@st.cache_resource(show_spinner=False)
def _flow(_db: PosterDB, store: str, spec: str):
    return _db.daily.flow(spec)


def flow_of(db: PosterDB, store: str):
    """The store's DailyFlow with its catalogue (None: no catalogue configured)."""
    spec = db.daily.settings().catalogue
    return _flow(db, store, spec) if spec else None


def preview(flow, poster, year: int | None, probabilities: Mapping[str, float] | None) -> dict:
    """An upload read and identified (not stored), cached per (image, year, catalogue) for the
    session: {"lines", "identification", "error"}."""
    box = st.session_state.setdefault("film-previews", {})
    key = (poster.sha256, year, flow.choice.spec if flow.choice else None)
    if key not in box:
        try:
            with st.spinner("Reading the poster and looking its film up…"):
                box[key] = flow.preview(poster.image, year, dict(probabilities or {}))
        except PosterDBError as e:         # the OCR extra missing, a catalogue file unreadable
            box[key] = {"lines": [], "identification": None, "error": str(e)}
    return box[key]


def found_md(found: dict) -> str:
    """One line of markdown about an upload's identification."""
    got = found.get("identification")
    if got is None:
        return f":orange-badge[not identified] {found.get('error') or 'no catalogue answer'}"
    d = got.to_dict()
    return identification_md(d)


def identification_md(d: Mapping | None) -> str:
    """A stored or previewed identification (`Identification.to_dict()` / the store's row)."""
    if not d:
        return ":gray-badge[not read yet]"
    if d["status"] == "identified":
        return (f":green-badge[identified] **{d['title']}** ({d['year'] or '?'}) · "
                f"{d['source']} film {d['film_id']} · score {d['score']:.2f}")
    if d["status"] == "pending":
        return (f":orange-badge[pending] the catalogue could not answer "
                f"({d.get('error') or 'down or busy'}); tried again on the next pass")
    if d.get("title"):
        return (f":gray-badge[not identified] best candidate **{d['title']}** "
                f"({d['year'] or '?'}), score {d['score']:.2f}: below the threshold")
    return ":gray-badge[not identified] no catalogue film matched what was read"


def film_genres(found_or_row: Mapping | None) -> list[str]:
    """The genres of an identified film (facts from the catalogue), else []."""
    if not found_or_row:
        return []
    got = found_or_row.get("identification") if "lines" in found_or_row else found_or_row
    if got is None:
        return []
    d = got if isinstance(got, Mapping) else got.to_dict()
    return list(d.get("genres") or []) if d.get("status") == "identified" else []


def thresholds(db: PosterDB) -> tuple[dict[str, float], dict[str, float]]:
    """Each genre's prediction and publishing threshold of the store's classifier."""
    clf = db.genres.classifier()
    if clf is None:
        return {}, {}
    genres = list(clf.genres_)
    pred = {g: float(t) for g, t in zip(genres, clf.thresholds_)}
    pub_t = getattr(clf, "publish_thresholds_", None)
    pub = ({g: float(t) for g, t in zip(genres, pub_t)} if pub_t is not None else {})
    return pred, pub


def genre_row(genre: str, p: float, predicted: bool, t: float | None,
              pub: float | None) -> str:
    """'**Drama** — 45 % · threshold 30 % · predicted, published (≥ 40 %)', saying why."""
    finite = t is not None and math.isfinite(t)
    text = (f"**{genre}**" if predicted else genre) + f" — {ui.pct(p)}"
    if not finite:
        return text + " · never predicted (too few examples to set a threshold)"
    text += f" · threshold {ui.pct(t)}"
    if predicted and p >= t:
        why = "predicted"
        if pub is not None and math.isfinite(pub):
            why += (f", published (≥ {ui.pct(pub)})" if p >= pub else
                    f", suggested (published from {ui.pct(pub)})")
    elif predicted:
        why = "predicted: no genre reached its threshold, this one came closest"
    else:
        why = "below its threshold"
    return f"{text} · {why}"
