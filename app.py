"""posterdb's page: classify uploads with evidence, search, browse & curate, stats.

    streamlit run app.py -- --store DIR [--model-dir DIR]
    (or POSTERDB_STORE / POSTERDB_MODEL_DIR; defaults: posterdb-store, the library's model lookup)

Who may use it (`posterdb.ui.page.access`, docs/page.md): served beyond loopback, it refuses
with one line unless the store has a page password, and then shows nothing before sign-in; on
loopback reading is open and every change to the store needs a signed-in session.

A thin layer: every answer comes from `posterdb.PosterDB`, exactly as the CLI gets it. The page
mostly reads (DuckDB: many readers or one writer, the library retries on the lock), so it keeps
answering while `posterdb ingest` runs in another process; `db.generation()` is compared on
every rerun and the cached views are dropped when the store changed.

Each section is a module of `posterdb.page` with a `render(db, store, generation, info)`; add a
section with a module and one line in SECTIONS below.
"""
from __future__ import annotations

import logging
import sys
import time

import streamlit as st

from posterdb.core.errors import PosterDBError, StoreBusyError
from posterdb.ui import helpers as ui
from posterdb.ui.page import access, classify, curate, inbox, read, search, stats
from posterdb.ui.page.common import (
    load_info,
    open_store,
    refresh_if_changed,
    store_lock,
)

log = logging.getLogger("posterdb.app")

SECTIONS = {
    "Classify": classify.render,
    "Search": search.render,
    "Browse & curate": curate.render,
    "Read & identify": read.render,
    "Inbox": inbox.render,
    "Stats": stats.render,
}
BUSY_RETRIES = 8


def sidebar(cfg: ui.PageConfig, info: dict | None, allowed: access.Access | None = None) -> str:
    with st.sidebar:
        st.title("posterdb")
        st.caption("vintage movie posters: genres, look-alikes, curation")
        st.caption(f"store `{cfg.store}`")
        if info is not None:
            with st.container(key="store-counts"):
                st.markdown(f"**{info['posters']:,}** posters · {info['labelled']:,} labelled · "
                            f"{info['reviewed']:,} reviewed")
            trained = info["classifiers"][-1]["n_train"] if info["classifiers"] else None
            st.caption(f"classifier trained on {trained:,} posters" if trained
                       else "no classifier trained yet")
        if allowed is not None:
            access.sidebar_controls(str(cfg.store.resolve()), allowed)
        section = st.radio("Section", list(SECTIONS), key="section")
        if st.button("↻ Refresh", help="Re-read the store (new posters show up by themselves "
                                        "on the next interaction, too)."):
            st.cache_data.clear()
    return section


def busy() -> None:
    """The library waited long for the DuckDB lock and gave up: say so, and retry by ourselves."""
    tries = st.session_state.get("busy_retries", 0)
    st.warning(ui.BUSY_MESSAGE)
    if tries < BUSY_RETRIES:
        st.session_state["busy_retries"] = tries + 1
        time.sleep(1.0)
        st.rerun()
    st.button("Try again")


def main() -> None:
    st.set_page_config(page_title="posterdb", page_icon="🎬", layout="wide")
    cfg = ui.page_config(sys.argv[1:])
    store = str(cfg.store.resolve())
    exposed = access.request_exposure()
    try:
        with store_lock(store):
            db = open_store(store, str(cfg.model_dir) if cfg.model_dir else None)
            db, generation = refresh_if_changed(db, store)
            info = load_info(db, store, generation)
            allowed = access.evaluate(db, exposed)
    except StoreBusyError:
        busy()
        return
    except Exception as e:  # noqa: BLE001 - no store yet, unreadable store, missing weights...
        if not isinstance(e, PosterDBError):
            log.exception("cannot open the store")
        if exposed:  # no store, no password: beyond loopback that is one line, no details
            access.refuse(exposed)
            return
        sidebar(cfg, None)
        st.error(ui.friendly_error(e))
        if not (cfg.store / "catalog.duckdb").exists():
            st.info(f"Create the store with `posterdb ingest FOLDER --store {cfg.store}`; this "
                    f"page picks it up on the next interaction.")
        return
    if exposed and not allowed.configured:
        access.refuse(exposed)
        return
    if exposed and not allowed.signed_in:
        access.sign_in_page(store, allowed)
        return
    section = sidebar(cfg, info, allowed)
    for k, show in (("flash", st.success), ("flash_error", st.error)):
        if k in st.session_state:
            show(st.session_state.pop(k))
    try:
        with store_lock(store):
            SECTIONS[section](db, store, generation, info)
        st.session_state["busy_retries"] = 0
    except StoreBusyError:
        busy()
    except Exception as e:  # noqa: BLE001 - a readable line on the page, the traceback in the log
        if not isinstance(e, (PosterDBError, ValueError)):
            log.exception("page error")
        st.error(ui.friendly_error(e))


main()
