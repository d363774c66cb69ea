"""What every page section shares: the store resource, cached views and poster renderers.

The PosterDB is one `st.cache_resource` per server process; views derived from it are cached by
the store's generation and dropped when it moves (see `refresh_if_changed`).
"""
from __future__ import annotations

import threading

import streamlit as st

from posterdb.core.genres import GENRES
from posterdb.core.records import StoredPoster
from posterdb.store import PosterDB
from posterdb.ui import helpers as ui

EVIDENCE_COLUMNS = 5
GRID_COLUMNS = 6
THUMB = 150           # px: stored posters are ~182×268
UPLOAD_WIDTH = 240


# -- resources (shared by every session of this server process) ---------------------------------

@st.cache_resource(show_spinner="Opening the poster store…")
def open_store(store: str, model_dir: str | None) -> PosterDB:
    """The store facade; it keeps the embedder, the FAISS index and the classifier in memory and
    brings the index/classifier in line with DuckDB by itself whenever the generation moved."""
    return PosterDB.open(store, create=False, model_dir=model_dir, busy_timeout=30.0)


@st.cache_resource
def store_lock(store: str) -> threading.RLock:
    """One page request at a time uses the shared PosterDB (its FAISS index is synced in place)."""
    return threading.RLock()


@st.cache_resource
def generation_seen(store: str) -> dict:
    return {"generation": None}


# -- cached views (keyed by the store generation, cleared when it moves) -------------------------

@st.cache_data(show_spinner=False, max_entries=4)
def load_info(_db: PosterDB, store: str, generation: int) -> dict:
    return _db.info()


def load_review_queue(db: PosterDB, limit: int) -> list[dict]:
    """The library's ranking (it caches each poster's probabilities per classifier, so a review
    click only re-scores labels, not images)."""
    with st.spinner("Ranking suspicious labels…"):
        return db.curation.queue(limit=limit)


@st.cache_data(show_spinner="Looking for near-duplicates…", max_entries=8)
def load_near_duplicates(_db: PosterDB, store: str, generation: int,
                         threshold: float) -> list[tuple[int, int, float]]:
    return _db.search.near_duplicates(threshold)


def refresh_if_changed(db: PosterDB, store: str) -> tuple[PosterDB, int]:
    """Compare the store generation with the last one seen; drop every cached view if it moved.

    The PosterDB itself stays: it re-syncs its FAISS index and reloads the classifier by the
    same generation. A generation that went *back* means the store was replaced (deleted and
    rebuilt under the same path): then the PosterDB is opened afresh as well."""
    gen = db.generation()
    seen = generation_seen(store)
    if seen["generation"] is not None and gen < seen["generation"]:
        open_store.clear()
        db = open_store(store, str(db.model_dir) if db.model_dir else None)
    if seen["generation"] is not None and seen["generation"] != gen:
        st.cache_data.clear()
    seen["generation"] = gen
    return db, gen


# -- small renderers ----------------------------------------------------------------------------

def poster_card(col, *, image: str, title, year, poster_id, genres, highlight=(),
                similarity: float | None = None, measure: str = "cosine", width: int = THUMB,
                path: str | None = None) -> None:
    with col:
        st.image(image, width=width)
        st.markdown(ui.poster_heading(title, year, poster_id, path))
        st.markdown(ui.badges(genres, highlight))
        if similarity is not None:
            st.caption(f"{measure} {similarity:.3f}")


def hit_grid(hits, *, columns: int, highlight=(), key: str) -> None:
    with st.container(key=key):
        for row in ui.chunks(hits, columns):
            cols = st.columns(columns)
            for col, h in zip(cols, row):
                shared = ui.shared_genres(h.genres, highlight) if highlight else ()
                poster_card(col, image=h.image, title=h.title, year=h.year, poster_id=h.id,
                            genres=h.genres, highlight=shared, similarity=h.similarity,
                            measure=h.measure, path=h.path)


def poster_grid(posters: list[StoredPoster], *, columns: int, key: str) -> None:
    with st.container(key=key):
        for row in ui.chunks(posters, columns):
            cols = st.columns(columns)
            for col, p in zip(cols, row):
                poster_card(col, image=p.image, title=p.title, year=p.year, poster_id=p.id,
                            genres=p.shown, path=p.path)
                if not p.genres and p.predicted:
                    col.caption("genres predicted, not yet reviewed")


def decade_filter(info: dict, key: str) -> list[int]:
    return st.multiselect("Decades", ui.decades_of(info), format_func=ui.decade_label, key=key,
                          placeholder="any decade")


def genre_filter(key: str) -> list[str]:
    return st.multiselect("Genres", list(GENRES), key=key, placeholder="any genre")
