"""The Inbox section: today's arrivals with their published genres, and the posters waiting for a
person (the classifier's least certain first), with a bulk accept of a page of suggestions and
each poster's duplicates in tiers (exact copy / near-duplicate / look-alike)."""
from __future__ import annotations

from datetime import datetime

import streamlit as st

from posterdb.core.errors import NotTrainedError
from posterdb.store import PosterDB
from posterdb.ui import helpers as ui
from posterdb.ui.page import access
from posterdb.ui.page.common import GRID_COLUMNS, poster_card

PAGE_SIZES = (10, 20, 40)
TIER_BADGE = {"exact copy": "red", "near-duplicate": "orange", "look-alike": "violet"}


def render(db: PosterDB, store: str, generation: int, info: dict) -> None:
    st.header("Inbox")
    view = st.radio("View", ["Waiting for review", "Today's arrivals"], horizontal=True,
                    key="inbox-view", label_visibility="collapsed")
    if view == "Today's arrivals":
        arrivals(db)
    else:
        waiting(db)


def _published_line(own, pub, predicted) -> str:
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


def arrivals(db: PosterDB) -> None:
    today = datetime.now().replace(hour=0, minute=0, second=0, microsecond=0)
    posters = db.curation.arrivals(today)
    published = sum(1 for p in posters if p.genres or p.published)
    st.caption(f"{len(posters)} posters arrived today · {published} with published genres "
               f"(in the shop feed) · {len(posters) - published} waiting for a person")
    with st.container(key="inbox-arrivals"):
        for row in ui.chunks(posters[:120], GRID_COLUMNS):
            cols = st.columns(GRID_COLUMNS)
            for col, p in zip(cols, row):
                poster_card(col, image=p.image, title=p.title, year=p.year, poster_id=p.id,
                            genres=[], path=p.path)
                col.markdown(_published_line(p.genres, p.published, p.predicted))


def _accept(db: PosterDB, ids: list[int]) -> None:
    """Button callback: accept the checked suggestions of this page."""
    if not access.may_write(db, "accept suggestions"):
        return
    chosen = [i for i in ids if st.session_state.get(f"inbox-take-{i}", True)]
    try:
        done = db.curation.accept(chosen)
        st.session_state["flash"] = f"Accepted the genres of {len(done)} posters."
    except Exception as e:  # noqa: BLE001 - shown on the page, never as a traceback
        st.session_state["flash_error"] = ui.friendly_error(e)


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


def waiting(db: PosterDB) -> None:
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
    st.caption("Least certain first (smallest margin to a threshold). Untick a poster to leave it "
               "for later; accepting stores its genres as a person's review.")
    access.read_only_note("accept suggestions")
    st.button(f"✓ Accept the suggestions of these {len(ids)} posters", key="inbox-accept-page",
              type="primary", disabled=not access.can_write(), on_click=_accept, args=(db, ids))
    with st.container(key="inbox-queue"):
        for it in items:
            pid = it["id"]
            with st.container(border=True, key=f"inbox-item-{pid}"):
                a, b = st.columns([1, 5])
                a.image(it["image"], width=100)
                with b:
                    st.checkbox("accept", value=True, key=f"inbox-take-{pid}")
                    st.markdown(ui.poster_heading(it["title"], it["year"], pid)
                                + f" · margin **{it['score']:.3f}**")
                    st.markdown(_published_line(it["labels"], it["published"], it["predicted"]))
                    _tiers(db, pid)
