"""The Inbox section: today's arrivals — each with the film found (or "not identified" with the
best candidate and its score), its labels or published and suggested genres, and its genres to
edit — and the posters waiting for a person (the classifier's least certain first), whose
genres can be edited and accepted in bulk (nothing uncertain is pre-ticked), with each
poster's duplicates in tiers (exact copy / near-duplicate / look-alike)."""
from __future__ import annotations

from datetime import datetime

import streamlit as st

from posterdb.core.errors import NotTrainedError, PosterDBError
from posterdb.core.genres import GENRES
from posterdb.store import PosterDB
from posterdb.ui import helpers as ui
from posterdb.ui.page import access, film
from posterdb.ui.page.actions import perform

PAGE_SIZES = (10, 20, 40)
ARRIVALS_PER_PAGE = 24
ARRIVAL_COLUMNS = 4
TIER_BADGE = {"exact copy": "red", "near-duplicate": "orange", "look-alike": "violet"}


def render(db: PosterDB, store: str, generation: int, info: dict) -> None:
    st.header("Inbox")
    view = st.radio("View", ["Waiting for review", "Today's arrivals"], horizontal=True,
                    key="inbox-view", label_visibility="collapsed")
    flow = film.flow_of(db, store)
    if view == "Today's arrivals":
        arrivals(db, flow)
    else:
        waiting(db, flow)


def genres_line(own, pub, predicted) -> str:
    """A poster's labels, else its published and suggested predictions, as badges."""
    sugg = [g for g in predicted if g not in pub]
    parts = []
    if own:
        parts.append("labels " + ui.badges(own))
    else:
        if pub:
            parts.append("published " + " ".join(f":green-badge[{g}]" for g in pub))
        if sugg:
            parts.append("suggested " + " ".join(f":blue-badge[{g}]" for g in sugg))
    return " · ".join(parts) or ":gray-badge[no genres yet]"


def _films(db: PosterDB, flow, ids: list[int]) -> dict[int, dict | None]:
    """poster id -> its stored identification (None: not tried yet); {} without a catalogue."""
    if flow is None or not ids:
        return {}
    try:
        return {pid: got["identified"] for pid, got in db.reading.of(ids).items()}
    except PosterDBError:        # the `read` extra missing: no film lines
        return {}


def _save_genres(db: PosterDB, pid: int, key: str) -> None:
    """Button callback: store the genres picked for one poster as a person's review."""
    def save() -> str:
        genres = list(st.session_state.get(key) or [])
        if not genres:
            raise ValueError("pick at least one genre")
        db.curation.set_genres(pid, genres)
        return f"Stored the genres of poster #{pid}: {', '.join(genres)}."
    perform(db, "set genres", save)


def _edit_genres(db: PosterDB, pid: int, shown: list[str], where: str) -> None:
    key = f"inbox-{where}-genres-{pid}"
    with st.popover("Edit genres", width="stretch", key=f"inbox-{where}-edit-{pid}"):
        st.multiselect("Genres", list(GENRES), default=list(shown), key=key)
        access.read_only_note("set genres")
        st.button("Save", key=f"inbox-{where}-save-{pid}", on_click=_save_genres,
                  args=(db, pid, key), disabled=not access.can_write())


def arrivals(db: PosterDB, flow) -> None:
    today = datetime.now().replace(hour=0, minute=0, second=0, microsecond=0)
    posters = db.curation.arrivals(today)
    published = sum(1 for p in posters if p.genres or p.published)
    st.caption(f"{len(posters)} posters arrived today · {published} with published genres "
               f"(in the shop feed) · {len(posters) - published} waiting for a person")
    if flow is None:
        st.caption(film.NO_CATALOGUE)
    if not posters:
        return
    pages = ui.page_count(len(posters), ARRIVALS_PER_PAGE)
    page = st.number_input(f"page (of {pages})", min_value=1, max_value=pages, value=1, step=1,
                           key="inbox-arrivals-page") if pages > 1 else 1
    shown = ui.paginate(posters, int(page), ARRIVALS_PER_PAGE)
    films = _films(db, flow, [p.id for p in shown])
    with st.container(key="inbox-arrivals"):
        for row in ui.chunks(shown, ARRIVAL_COLUMNS):
            cols = st.columns(ARRIVAL_COLUMNS)
            for col, p in zip(cols, row):
                with col, st.container(border=True, key=f"inbox-arrival-{p.id}"):
                    st.image(p.image, width=140)
                    st.markdown(ui.poster_heading(p.title, p.year, p.id, p.path))
                    if flow is not None:
                        st.markdown(film.identification_md(films.get(p.id)))
                    st.markdown(genres_line(p.genres, p.published, p.predicted))
                    _edit_genres(db, p.id, list(p.shown), "arrival")


def _accept(db: PosterDB, ids: list[int]) -> None:
    """Button callback: store the genres of the ticked posters of this page (as edited)."""
    def accept() -> str:
        chosen = [i for i in ids if st.session_state.get(f"inbox-take-{i}", False)]
        if not chosen:
            raise ValueError("tick the posters whose genres to accept")
        decisions = [{"id": i, "genres": list(st.session_state.get(f"inbox-genres-{i}") or []),
                      "accept": True} for i in chosen]
        empty = [d["id"] for d in decisions if not d["genres"]]
        if empty:
            raise ValueError(f"pick at least one genre for poster(s) {empty}")
        done = db.curation.apply(decisions)
        return f"Accepted the genres of {len(done)} posters."
    perform(db, "accept genres", accept)


def _tick(ids: list[int], value: bool) -> None:
    for i in ids:
        st.session_state[f"inbox-take-{i}"] = value


def _tiers(db: PosterDB, pid: int) -> None:
    dups = db.curation.duplicates(pid)
    if not dups:
        return
    with st.container(key=f"inbox-dups-{pid}"):
        for d in dups:
            colour = TIER_BADGE[d["tier"]]
            what = (f"also named `{d['path']}`" if d["tier"] == "exact copy" else
                    ui.poster_heading(d.get("title"), d.get("year"), d["id"])
                    + f" · cosine {d['similarity']:.3f}")
            st.markdown(f":{colour}-badge[{d['tier']}] {what}")


def waiting(db: PosterDB, flow) -> None:
    c1, c2 = st.columns([1, 3])
    per_page = c1.selectbox("Per page", PAGE_SIZES, index=1, key="inbox-per-page")
    try:
        queue = db.curation.queue("new", limit=10_000)
    except NotTrainedError:
        st.info("Nothing is predicted before a classifier is trained: run `posterdb train`.")
        return
    if not queue:
        st.success("Nothing waiting: every new poster's genres are published or reviewed.")
        return
    pages = ui.page_count(len(queue), per_page)
    page = c2.number_input(f"{len(queue)} posters waiting · page (of {pages})", min_value=1,
                           max_value=pages, value=1, step=1, key="inbox-page")
    items = ui.paginate(queue, min(int(page), pages), per_page)
    ids = [it["id"] for it in items]
    films = _films(db, flow, ids)
    st.caption("Least certain first (smallest margin to a threshold). Their genres are the "
               "classifier's suggestions, so none is ticked: check a poster's genres, edit "
               "them if needed, tick it; accepting stores them as a person's review.")
    b1, b2, b3 = st.columns([2, 1, 1])
    access.read_only_note("accept genres")
    b1.button("✓ Accept the ticked posters of this page", key="inbox-accept-page",
              type="primary", on_click=_accept, args=(db, ids),
              disabled=not access.can_write())
    b2.button(f"Tick all {len(ids)}", key="inbox-tick-all", on_click=_tick, args=(ids, True))
    b3.button("Untick all", key="inbox-untick-all", on_click=_tick, args=(ids, False))
    with st.container(key="inbox-queue"):
        for it in items:
            pid = it["id"]
            with st.container(border=True, key=f"inbox-item-{pid}"):
                a, b = st.columns([1, 5])
                a.image(it["image"], width=100)
                with b:
                    st.checkbox("accept", value=False, key=f"inbox-take-{pid}")
                    st.markdown(ui.poster_heading(it["title"], it["year"], pid)
                                + f" · margin **{it['score']:.3f}**")
                    if flow is not None:
                        st.markdown(film.identification_md(films.get(pid)))
                    st.markdown(genres_line(it["labels"], it["published"], it["predicted"]))
                    st.multiselect("Genres to accept", list(GENRES), default=list(it["genres"]),
                                   key=f"inbox-genres-{pid}", on_change=_tick,
                                   args=([pid], True))
                    _tiers(db, pid)
