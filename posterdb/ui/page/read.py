"""The Read section: search the text read on posters; see what a poster says and which film it
was identified as, next to the stored posters that look like it."""
from __future__ import annotations

import streamlit as st

from posterdb.core.records import StoredPoster
from posterdb.core.rules import shown_genres
from posterdb.store import PosterDB
from posterdb.ui import helpers as ui
from posterdb.ui.page.common import (EVIDENCE_COLUMNS, GRID_COLUMNS, hit_grid, poster_card)


def identification_md(ident: dict | None) -> str:
    """One line of markdown about a poster's identification."""
    if not ident:
        return "Not identified yet (`posterdb identify`)."
    if ident["status"] == "identified":
        genres = ", ".join(ident["genres"]) or "no genres listed"
        return (f":green-badge[identified] **{ident['title']}** ({ident['year'] or '?'}) · "
                f"{ident['source']} film {ident['film_id']} · score {ident['score']:.2f} · "
                f"genres from the catalogue: {genres}")
    if ident["status"] == "pending":
        return f":orange-badge[pending] the catalogue could not answer: {ident['error'] or ''}"
    if ident.get("title"):
        return (f":gray-badge[not identified] best candidate **{ident['title']}** "
                f"({ident['year'] or '?'}), score {ident['score']:.2f}: below the threshold")
    return ":gray-badge[not identified] no catalogue film matched what was read"


def show_poster(db: PosterDB, poster: StoredPoster, key: str) -> None:
    """A stored poster: its read lines, its identified film, and its look-alikes."""
    got = db.reading.of([poster.id])[poster.id]
    left, right = st.columns([1, 3], gap="large")
    poster_card(left, image=poster.image, title=poster.title, year=poster.year,
                poster_id=poster.id, genres=poster.shown, path=poster.path)
    with right, st.container(key=f"{key}-reading"):
        st.markdown("#### What the poster says")
        if got["lines"] is None:
            st.caption("Not read yet (`posterdb read`).")
        elif not got["lines"]:
            st.caption("No text found on this poster.")
        else:
            st.dataframe([{"text": ln["text"], "confidence": round(ln["confidence"], 2)}
                          for ln in got["lines"]], hide_index=True, width="stretch")
        st.markdown("#### Film")
        st.markdown(identification_md(got["identified"]))
    st.markdown("#### Evidence: the most similar stored posters")
    hits = db.similar(poster.id, 6)
    if hits:
        hit_grid(hits, columns=EVIDENCE_COLUMNS, highlight=poster.shown, key=f"{key}-similar")


def render_text_search(db: PosterDB, key: str = "read") -> None:
    """A text box over what was read; the chosen poster shown with its reading and evidence."""
    text = st.text_input("Text printed on the poster", key=f"{key}-query",
                         placeholder="e.g. garbo, keaton, technicolor")
    if not text.strip():
        counts = db.reading.counts()
        st.caption(f"{counts.get('read', 0):,} posters read, "
                   f"{counts.get('identified', 0):,} identified.")
        return
    hits = db.reading.search(text, limit=60)
    if not hits:
        st.info(f"No poster's read text contains “{text.strip()}”.")
        return
    st.markdown(f"#### {len(hits)} posters say “{text.strip()}”")
    with st.container(key=f"{key}-results"):
        for row in ui.chunks(hits, GRID_COLUMNS):
            cols = st.columns(GRID_COLUMNS)
            for col, p in zip(cols, row):
                poster_card(col, image=p["image"], title=p["title"], year=p["year"],
                            poster_id=p["id"], genres=shown_genres(p["genres"], p["predicted"])[0],
                            path=p["path"])
                col.caption(p["read_text"].replace("\n", " · ")[:80])
    pick = st.selectbox("Show", hits, key=f"{key}-pick", format_func=lambda p: ui.poster_heading(
        p["title"], p["year"], p["id"], p["path"]).replace("**", ""))
    with st.container(border=True):
        show_poster(db, db.posters.one(pick["id"]), key=f"{key}-poster")


def render(db: PosterDB, store: str, generation: int, info: dict) -> None:
    st.header("Read & identify")
    st.caption("The text printed on each poster (read by OCR) and the film it identifies, "
               "whose genres are facts from the catalogue. Search it, and check a match against "
               "the posters that look alike.")
    render_text_search(db)
