"""The Search section: look-alikes of a stored poster, an upload or (CLIP) a text."""
from __future__ import annotations

import streamlit as st

from posterdb.core.errors import ImageError, PosterDBError
from posterdb.media.images import decode
from posterdb.store import PosterDB
from posterdb.ui import helpers as ui
from posterdb.ui.page import read as read_section
from posterdb.ui.page.common import (
    GRID_COLUMNS, THUMB, decade_filter, genre_filter, hit_grid, poster_card)


def render(db: PosterDB, store: str, generation: int, info: dict) -> None:
    st.header("Search")
    st.caption("Find look-alikes of an uploaded image or a stored poster (or describe one in words "
               "when the store's model understands text), narrowed by decade and genre.")
    modes = ["Stored poster", "Uploaded image", "Printed text"]  # printed: what OCR read
    try:
        if db.models.embedder().supports_text:
            modes.append("Text")
    except PosterDBError as e:  # missing weights etc.: image search still works by id
        st.warning(ui.friendly_error(e))
    mode = st.radio("Search by", modes, horizontal=True, key="search-mode")
    if mode == "Printed text":
        return read_section.render_text_search(db, key="search-read")
    c1, c2, c3 = st.columns([2, 3, 1])
    with c1:
        decades = decade_filter(info, "search-decades")
    with c2:
        genres = genre_filter("search-genres")
    with c3:
        k = st.number_input("Results", min_value=1, max_value=60, value=12, step=1, key="search-k")

    query = None
    if mode == "Stored poster":
        text = st.text_input("Poster id or title", key="search-query",
                             placeholder="e.g. 42 or Casablanca")
        if not text.strip():
            return
        matches = db.posters.find(text)
        if not matches:
            st.warning(f"No stored poster has the id or a title containing “{text.strip()}”.")
            return
        if len(matches) > 1:
            pick = st.selectbox(f"{len(matches)} posters match", matches, key="search-pick",
                                format_func=lambda p: ui.poster_heading(
                                    p.title, p.year, p.id, p.path).replace("**", ""))
        else:
            pick = matches[0]
        with st.container(key="search-query-poster"):
            cols = st.columns(GRID_COLUMNS)
            poster_card(cols[0], image=pick.image, title=pick.title, year=pick.year,
                        poster_id=pick.id, genres=pick.shown, path=pick.path)
        query, label = pick.id, f"#{pick.id}"
    elif mode == "Uploaded image":
        f = st.file_uploader("Poster image", type=list(ui.IMAGE_TYPES), key="search-upload")
        if f is None:
            return
        try:
            query = decode(f.getvalue(), f.name)
        except ImageError as e:
            st.error(f"Cannot use **{f.name}** — {e.reason}")
            return
        st.image(query.image, width=THUMB, caption=f.name)
        label = f.name
    else:
        text = st.text_input("Describe the poster", key="search-text",
                             placeholder="e.g. a cowboy on a horse at sunset")
        if not text.strip():
            return
        query = db.models.embedder().embed_text([text.strip()])[0]
        label = f"“{text.strip()}”"

    hits = db.similar(query, int(k), decades=decades or None, genres=genres or None)
    st.markdown(f"#### {len(hits)} results for {label}")
    if not hits:
        st.info("Nothing matches these filters.")
        return
    hit_grid(hits, columns=GRID_COLUMNS, highlight=genres, key="search-results")
