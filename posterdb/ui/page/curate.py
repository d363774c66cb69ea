"""The Browse & curate section: the shop view, the review queue, near-duplicates."""
from __future__ import annotations

import streamlit as st

from posterdb.core.errors import NotTrainedError
from posterdb.core.genres import GENRES
from posterdb.core.rules import shown_genres
from posterdb.core.settings import THRESHOLDS
from posterdb.store import PosterDB
from posterdb.ui import helpers as ui
from posterdb.ui.page import access
from posterdb.ui.page.common import (
    GRID_COLUMNS, load_near_duplicates, load_review_queue, poster_card, poster_grid)


def render(db: PosterDB, store: str, generation: int, info: dict) -> None:
    st.header("Browse & curate")
    view = st.radio("View", ["Browse", "Review queue", "Near-duplicates"], horizontal=True,
                    key="curate-view", label_visibility="collapsed")
    if view == "Browse":
        browse(db, store, generation, info)
    elif view == "Review queue":
        review_queue(db, store, generation, info)
    else:
        near_duplicates(db, store, generation)


def browse(db: PosterDB, store: str, generation: int, info: dict) -> None:
    st.caption("The shop's view: every stored poster by genre and decade.")
    c1, c2, c3 = st.columns([2, 2, 1])
    genre = c1.selectbox("Genre", [None, *GENRES], key="browse-genre",
                         format_func=lambda g: "All genres" if g is None else g)
    decade = c2.selectbox("Decade", [None, *ui.decades_of(info)], key="browse-decade",
                          format_func=lambda d: "All decades" if d is None else ui.decade_label(d))
    per_page = c3.selectbox("Per page", [24, 48, 96], key="browse-per-page")
    total, _ = db.posters.browse(genres=[genre] if genre else None, decades=[decade] if decade else None,
                         limit=0)
    pages = ui.page_count(total, per_page)
    page = st.number_input(f"Page (of {pages})", min_value=1, max_value=pages, value=1, step=1,
                           key="browse-page")
    page = min(int(page), pages)
    _, posters = db.posters.browse(genres=[genre] if genre else None,
                           decades=[decade] if decade else None,
                           offset=(page - 1) * per_page, limit=per_page)
    st.caption(f"{total:,} posters · page {page} of {pages}")
    poster_grid(posters, columns=GRID_COLUMNS, key="browse-grid")


def _review(db: PosterDB, poster_id: int, pick_key: str, title: str) -> None:
    """Button callback: store the reviewed genres (runs before the rerun draws the queue)."""
    if not access.may_write(db, "set labels"):
        return
    chosen = st.session_state.get(pick_key) or []
    try:
        db.curation.set_genres(poster_id, chosen)
        st.session_state["flash"] = f"Reviewed **{title}** (#{poster_id}): {', '.join(chosen)}."
    except Exception as e:  # noqa: BLE001 - shown on the page, never as a traceback
        st.session_state["flash_error"] = ui.friendly_error(e)


def review_queue(db: PosterDB, store: str, generation: int, info: dict) -> None:
    st.caption("The same queue as `posterdb review list` and the Inbox: new posters the "
               "classifier is least sure of, then the labels it doubts most. Keep the genres "
               "shown to accept them, or change them and save: reviewed genres win over file "
               "labels in training.")
    try:
        queue = load_review_queue(db, 60)
    except NotTrainedError:
        st.info("The review queue needs a trained classifier: run `posterdb train`.")
        return
    if not queue:
        st.success("Nothing left to review.")
        return
    shown = st.select_slider("Show", [5, 10, 20, 60], value=10, key="review-show", width=320)
    st.caption(f"{len(queue)} posters waiting (the first 60 of the queue).")
    access.read_only_note("set labels")
    writable = access.can_write()
    for p in queue[:shown]:
        pid, probs = p["id"], p.get("predicted_probabilities") or {}
        current = shown_genres(p["genres"], p["predicted"])[0]
        with st.container(border=True, key=f"review-{pid}"):
            c1, c2 = st.columns([1, 5])
            c1.image(p["image"], width=110)
            with c2:
                score = "margin" if p["kind"] == "new" else "doubt"
                st.markdown(ui.poster_heading(p["title"], p["year"], pid, p["path"])
                            + f" · {score} **{p['score']:.2f}**")
                st.caption(p["reason"])
                likely = [g for g, _, _ in ui.probability_rows(probs, [], top=4)]
                st.markdown("labels " + ui.badges(current) + " · classifier "
                            + " ".join(f":blue-badge[{g} {ui.pct(probs[g])}]" for g in likely))
                pick_key = f"review-pick-{pid}"
                a, b = st.columns([4, 1], vertical_alignment="bottom")
                a.multiselect("Genres", list(GENRES), default=current, key=pick_key,
                              label_visibility="collapsed",
                              format_func=lambda g, probs=probs: (
                                  f"{g} · {ui.pct(probs[g])}" if g in probs else g))
                b.button("✓ Accept", key=f"review-accept-{pid}", type="primary",
                         disabled=not writable, on_click=_review,
                         args=(db, pid, pick_key, p["title"] or f"#{pid}"))


def near_duplicates(db: PosterDB, store: str, generation: int) -> None:
    st.caption("Pairs of stored posters whose embeddings are almost identical: reprints, crops, "
               "the same artwork stored twice.")
    threshold = st.slider("Cosine similarity at least", THRESHOLDS.look_alike, 1.0,
                          THRESHOLDS.near_duplicate, 0.005, format="%.3f",
                          key="dup-threshold")
    pairs = load_near_duplicates(db, store, generation, float(threshold))
    if not pairs:
        st.success(f"No pairs at or above {threshold:.3f}.")
        return
    per_page = 10
    pages = ui.page_count(len(pairs), per_page)
    page = st.number_input(f"{len(pairs)} pairs · page (of {pages})", min_value=1,
                           max_value=pages, value=1, key="dup-page")
    chunk = ui.paginate(pairs, page, per_page)
    meta = {p.id: p for p in db.posters.get(sorted({i for a, b, _ in chunk for i in (a, b)}))}
    with st.container(key="dup-pairs"):
        for a, b, cos in chunk:
            if a not in meta or b not in meta:
                continue
            with st.container(border=True):
                cols = st.columns([1, 1, 3])
                for col, p in zip(cols, (meta[a], meta[b])):
                    poster_card(col, image=p.image, title=p.title, year=p.year,
                                poster_id=p.id, genres=p.shown, width=120, path=p.path)
                cols[2].metric("cosine similarity", f"{cos:.4f}")
