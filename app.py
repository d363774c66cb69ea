"""posterdb's page: classify uploads with evidence, search, browse & curate, stats.

    streamlit run app.py -- --store DIR [--model-dir DIR]
    (or POSTERDB_STORE / POSTERDB_MODEL_DIR; defaults: posterdb-store, the library's model lookup)

A thin layer: every answer comes from `posterdb.PosterDB`, exactly as the CLI gets it. The page
only reads (DuckDB: many readers or one writer, the library retries on the lock), so it keeps
answering while `posterdb ingest` runs in another process; `db.generation()` is compared on
every rerun and the cached views are dropped when the store changed.
"""
from __future__ import annotations

import hashlib
import logging
import sys
import threading
import time

import pandas as pd
import streamlit as st

from posterdb import ui
from posterdb.errors import ImageError, NotTrainedError, PosterDBError, StoreBusyError
from posterdb.genres import GENRES
from posterdb.images import decode
from posterdb.store import PosterDB

log = logging.getLogger("posterdb.app")

SECTIONS = ("Classify", "Search", "Browse & curate", "Stats")
EVIDENCE_COLUMNS = 5
GRID_COLUMNS = 6
THUMB = 150           # px: stored posters are ~182×268
UPLOAD_WIDTH = 240
BUSY_RETRIES = 8


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
        return db.review_queue(limit=limit)


@st.cache_data(show_spinner="Looking for near-duplicates…", max_entries=8)
def load_near_duplicates(_db: PosterDB, store: str, generation: int,
                         threshold: float) -> list[tuple[int, int, float]]:
    return _db.near_duplicates(threshold)


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
                similarity: float | None = None, width: int = THUMB, path: str | None = None
                ) -> None:
    with col:
        st.image(image, width=width)
        st.markdown(ui.poster_heading(title, year, poster_id, path))
        st.markdown(ui.badges(genres, highlight))
        if similarity is not None:
            st.caption(f"similarity {similarity:.3f}")


def hit_grid(hits, *, columns: int, highlight=(), key: str) -> None:
    with st.container(key=key):
        for row in ui.chunks(hits, columns):
            cols = st.columns(columns)
            for col, h in zip(cols, row):
                shared = ui.shared_genres(h.genres, highlight) if highlight else ()
                poster_card(col, image=h.image, title=h.title, year=h.year, poster_id=h.id,
                            genres=h.genres, highlight=shared, similarity=h.similarity,
                            path=h.path)


def poster_grid(posters: list[dict], *, columns: int, key: str) -> None:
    with st.container(key=key):
        for row in ui.chunks(posters, columns):
            cols = st.columns(columns)
            for col, p in zip(cols, row):
                genres = p["genres"] or p["predicted"]
                poster_card(col, image=p["image"], title=p["title"], year=p["year"],
                            poster_id=p["id"], genres=genres, path=p["path"])
                if not p["genres"] and p["predicted"]:
                    col.caption("genres predicted, not yet reviewed")


def decade_filter(info: dict, key: str) -> list[int]:
    return st.multiselect("Decades", ui.decades_of(info), format_func=ui.decade_label, key=key,
                          placeholder="any decade")


def genre_filter(key: str) -> list[str]:
    return st.multiselect("Genres", list(GENRES), key=key, placeholder="any genre")


# -- Classify -----------------------------------------------------------------------------------

def classify_upload(db: PosterDB, store: str, generation: int, name: str, data: bytes) -> None:
    """One uploaded file: validate like ingest, predict genres, show the evidence, offer to add it.

    Takes plain bytes so that tests can drive it without a browser as well.
    """
    try:
        poster = decode(data, name)
    except ImageError as e:
        st.error(f"Cannot use **{name}** — {e.reason}")
        return
    key = poster.sha256[:16]
    guess_title, guess_year = ui.title_from_filename(name)
    left, right = st.columns([1, 3], gap="large")
    with left:
        st.image(poster.image, width=UPLOAD_WIDTH,
                 caption=f"{name} · {poster.width}×{poster.height}")
        year = st.number_input("Release year (optional)", min_value=1880, max_value=2100,
                               value=guess_year, step=1, key=f"year-{key}",
                               help="The decade head uses it; leave empty if unknown.")
    year = int(year) if year is not None else None

    box = st.session_state.get("classified")
    if not box or box["at"] != (store, generation):  # results of this store generation only
        box = st.session_state["classified"] = {"at": (store, generation), "results": {}}
    cache, ckey = box["results"], (poster.sha256, year)
    result = cache.get(ckey)
    trained = True
    if result is None:
        try:
            with st.spinner("Classifying…"):
                result = db.classify([poster], [year])[0]
            cache[ckey] = result
        except NotTrainedError:
            trained = False

    with right:
        if not trained:
            st.info("No genre classifier is trained for this store yet (`posterdb train`). "
                    "Showing the most similar stored posters only.")
            genres, probabilities = [], {}
            evidence = db.similar(poster, 10)
        else:
            probabilities, evidence = result.probabilities, result.evidence
            genres = ui.by_probability(result.genres, probabilities)
            st.markdown("#### Predicted genres")
            with st.container(key=f"genres-{key}"):
                st.markdown(ui.badges(genres, genres) if genres else
                            ":orange-badge[no genre above its threshold]")
                for g, p, is_pred in ui.probability_rows(probabilities, genres):
                    st.progress(min(max(p, 0.0), 1.0),
                                text=f"{'**' + g + '**' if is_pred else g} — {ui.pct(p)}")
            decade = (f" · decade head {ui.decade_label(result.decade_head)}"
                      if result.decade_head is not None else " · no decade head (year unknown)")
            st.caption(f"Blend: {ui.share_text(result.alpha)}{decade}. The vote comes from the "
                       f"stored posters below.")
            if result.in_store is not None:
                st.info(f"This exact image is already in the catalogue as poster "
                        f"#{result.in_store} (left out of its own evidence).")

    st.markdown("#### Evidence: the most similar stored posters")
    st.caption("Genres marked ✓ are shared with the prediction.")
    if evidence:
        hit_grid(evidence, columns=EVIDENCE_COLUMNS, highlight=genres, key=f"evidence-{key}")
    else:
        st.caption("The store holds no posters to compare with yet.")

    with st.form(key=f"add-{key}", border=True):
        if trained and result.in_store is not None:
            st.markdown(f"**Review poster #{result.in_store}** — it is already stored: saving "
                        f"records these genres as its reviewed labels.")
        else:
            st.markdown("**Add to catalogue** — accept the prediction or correct it first.")
        c1, c2 = st.columns([2, 3])
        title = c1.text_input("Title", value=guess_title, key=f"title-{key}")
        chosen = c2.multiselect(
            "Genres", list(GENRES), default=list(genres), key=f"genres-pick-{key}",
            format_func=lambda g: f"{g} · {ui.pct(probabilities[g])}" if g in probabilities else g)
        if st.form_submit_button("Add to catalogue", type="primary", key=f"add-btn-{key}"):
            if not chosen:
                st.error("Pick at least one genre before adding the poster.")
            else:
                pid = db.add_poster(poster, chosen, title=title.strip() or None, year=year)
                st.session_state["flash"] = (f"Stored **{title or name}** as poster #{pid} with "
                                             f"genres {', '.join(chosen)}.")
                st.rerun()


def section_classify(db: PosterDB, store: str, generation: int, info: dict) -> None:
    st.header("Classify a poster")
    st.caption("Upload one or several posters: posterdb predicts their genres and shows the stored "
               "posters that back the prediction. Add a poster with the genres you accept.")
    files = st.file_uploader("Poster images", type=list(ui.IMAGE_TYPES),
                             accept_multiple_files=True, key="classify-upload")
    if not files:
        st.caption(f"{info['posters']:,} stored posters to compare with.")
        return
    seen = set()
    for f in files:
        data = f.getvalue()
        with st.container(border=True):
            st.subheader(f.name)
            digest = hashlib.sha256(data).hexdigest()
            if digest in seen:
                st.caption("Same image as an earlier upload: shown once.")
                continue
            seen.add(digest)
            classify_upload(db, store, generation, f.name, data)


# -- Search -------------------------------------------------------------------------------------

def section_search(db: PosterDB, store: str, generation: int, info: dict) -> None:
    st.header("Search")
    st.caption("Find look-alikes of an uploaded image or a stored poster (or describe one in words "
               "when the store's model understands text), narrowed by decade and genre.")
    modes = ["Stored poster", "Uploaded image"]
    try:
        if db.embedder().supports_text:
            modes.append("Text")
    except PosterDBError as e:  # missing weights etc.: image search still works by id
        st.warning(ui.friendly_error(e))
    mode = st.radio("Search by", modes, horizontal=True, key="search-mode")
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
        matches = db.find(text)
        if not matches:
            st.warning(f"No stored poster has the id or a title containing “{text.strip()}”.")
            return
        if len(matches) > 1:
            pick = st.selectbox(f"{len(matches)} posters match", matches, key="search-pick",
                                format_func=lambda p: ui.poster_heading(
                                    p["title"], p["year"], p["id"], p["path"]).replace("**", ""))
        else:
            pick = matches[0]
        with st.container(key="search-query-poster"):
            cols = st.columns(GRID_COLUMNS)
            poster_card(cols[0], image=pick["image"], title=pick["title"], year=pick["year"],
                        poster_id=pick["id"], genres=pick["genres"] or pick["predicted"],
                        path=pick["path"])
        query, label = int(pick["id"]), f"#{pick['id']}"
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
        query = db.embedder().embed_text([text.strip()])[0]
        label = f"“{text.strip()}”"

    hits = db.similar(query, int(k), decades=decades or None, genres=genres or None)
    st.markdown(f"#### {len(hits)} results for {label}")
    if not hits:
        st.info("Nothing matches these filters.")
        return
    hit_grid(hits, columns=GRID_COLUMNS, highlight=genres, key="search-results")


# -- Browse & curate ----------------------------------------------------------------------------

def section_browse(db: PosterDB, store: str, generation: int, info: dict) -> None:
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
    total, _ = db.browse(genres=[genre] if genre else None, decades=[decade] if decade else None,
                         limit=0)
    pages = ui.page_count(total, per_page)
    page = st.number_input(f"Page (of {pages})", min_value=1, max_value=pages, value=1, step=1,
                           key="browse-page")
    page = min(int(page), pages)
    _, posters = db.browse(genres=[genre] if genre else None,
                           decades=[decade] if decade else None,
                           offset=(page - 1) * per_page, limit=per_page)
    st.caption(f"{total:,} posters · page {page} of {pages}")
    poster_grid(posters, columns=GRID_COLUMNS, key="browse-grid")


def _review(db: PosterDB, poster_id: int, pick_key: str, title: str) -> None:
    """Button callback: store the reviewed genres (runs before the rerun draws the queue)."""
    chosen = st.session_state.get(pick_key) or []
    try:
        db.set_review(poster_id, chosen)
        st.session_state["flash"] = f"Reviewed **{title}** (#{poster_id}): {', '.join(chosen)}."
    except Exception as e:  # noqa: BLE001 - shown on the page, never as a traceback
        st.session_state["flash_error"] = ui.friendly_error(e)


def review_queue(db: PosterDB, store: str, generation: int, info: dict) -> None:
    st.caption("The labels the classifier doubts most come first. Keep the genres shown to accept "
               "them, or change them and save: reviewed genres win over file labels in training.")
    try:
        queue = load_review_queue(db, 60)
    except NotTrainedError:
        st.info("The review queue needs a trained classifier: run `posterdb train`.")
        return
    if not queue:
        st.success("Nothing left to review.")
        return
    shown = st.select_slider("Show", [5, 10, 20, 60], value=10, key="review-show", width=320)
    st.caption(f"{len(queue)} posters waiting (of the 60 most suspicious), most suspicious first.")
    for p in queue[:shown]:
        pid, probs = p["id"], p.get("predicted_probabilities") or {}
        current = p["genres"] or p["predicted"]
        with st.container(border=True, key=f"review-{pid}"):
            c1, c2 = st.columns([1, 5])
            c1.image(p["image"], width=110)
            with c2:
                st.markdown(ui.poster_heading(p["title"], p["year"], pid, p["path"])
                            + f" · suspicion **{p['suspicion']:.2f}**")
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
                         on_click=_review, args=(db, pid, pick_key, p["title"] or f"#{pid}"))


def near_duplicates(db: PosterDB, store: str, generation: int) -> None:
    st.caption("Pairs of stored posters whose embeddings are almost identical: reprints, crops, "
               "the same artwork stored twice.")
    threshold = st.slider("Similarity threshold", 0.80, 1.0, 0.97, 0.005, format="%.3f",
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
    meta = {p["id"]: p for p in db.posters(sorted({i for a, b, _ in chunk for i in (a, b)}))}
    with st.container(key="dup-pairs"):
        for a, b, cos in chunk:
            if a not in meta or b not in meta:
                continue
            with st.container(border=True):
                cols = st.columns([1, 1, 3])
                for col, p in zip(cols, (meta[a], meta[b])):
                    poster_card(col, image=p["image"], title=p["title"], year=p["year"],
                                poster_id=p["id"], genres=p["genres"] or p["predicted"],
                                width=120, path=p["path"])
                cols[2].metric("cosine similarity", f"{cos:.4f}")


# -- Stats --------------------------------------------------------------------------------------

def section_stats(db: PosterDB, store: str, generation: int, info: dict) -> None:
    st.header("Stats")
    st.caption("What the store holds, and how well the classifier did in its latest evaluation.")
    m = st.columns(4)
    m[0].metric("posters", f"{info['posters']:,}")
    m[1].metric("labelled", f"{info['labelled']:,}")
    m[2].metric("reviewed", f"{info['reviewed']:,}")
    m[3].metric("ingest errors", f"{info['ingest_errors']:,}")
    c1, c2 = st.columns(2)
    with c1:
        st.subheader("Posters per genre")
        df = pd.DataFrame(ui.genre_counts(info))
        st.bar_chart(df, x="genre", y=["labelled", "predicted"], horizontal=True, height=520,
                     stack=True, x_label="posters", y_label="", sort=False)
    with c2:
        st.subheader("Posters per decade")
        st.bar_chart(pd.DataFrame(ui.decade_counts(info)), x="decade", y="posters", height=520,
                     sort=False, x_label="", y_label="posters")
    for mdl in info["models"]:
        ix = mdl["index"]
        st.caption(f"model **{mdl['name']}** {mdl['version']} · {mdl['dim']}-d · "
                   f"{mdl['vectors']:,} vectors · FAISS {ix['factory']} ({ix['status']})")
    if info["classifiers"]:
        c = info["classifiers"][-1]
        st.caption(f"classifier for **{c['model']}** trained on {c['n_train']:,} posters "
                   f"at {c['trained_at']}")

    st.subheader("Latest evaluation")
    report = db.latest_eval()
    if not report:
        st.info("No evaluation report yet: run `posterdb eval` to produce one.")
        return
    setup = report.get("setup") or {}
    if setup:
        st.caption(f"{setup.get('description', '')} · {setup.get('n_train', '?')} training / "
                   f"{setup.get('n_test', '?')} test posters. {setup.get('macro_note', '')}")
    averages = ui.eval_averages(report)
    if averages:
        st.markdown("**F1 per method** (the study's SVMs and posterdb's parts, same split)")
        st.dataframe(pd.DataFrame(averages).set_index("method"), width="stretch",
                     column_config={a: st.column_config.NumberColumn(format="%.3f")
                                    for a in ui.AVERAGES})
    f1 = ui.eval_per_genre_f1(report)
    if f1:
        st.markdown("**Per-genre F1**")
        df = pd.DataFrame(f1)
        df.index.name = "genre"
        st.bar_chart(df.reset_index(), x="genre", y=list(f1), stack=False, height=380,
                     x_label="", y_label="F1", sort=False)
    cross = ui.eval_cross_decade(report)
    if cross:
        st.markdown("**Cross-decade weighted F1** (rows: train decade, columns: test decade)")
        for label, m in cross.items():
            st.caption(label)
            grid = pd.DataFrame(m["matrix"], index=m["decades"], columns=m["decades"])
            st.dataframe(grid.style.format("{:.2f}", na_rep="–")
                         .background_gradient(cmap="viridis", axis=None, vmin=0, vmax=1),
                         width="stretch")
    per_decade = ui.eval_per_decade(report)
    if per_decade:
        with st.expander("weighted F1 per test decade"):
            st.dataframe(pd.DataFrame(per_decade).set_index("decade"), width="stretch")
    if report.get("png"):
        st.image(report["png"], caption="the report's chart (posterdb eval)")
    with st.expander("full report (JSON)"):
        st.json({k: v for k, v in report.items() if k != "png"}, expanded=False)


# -- page ---------------------------------------------------------------------------------------

RENDER = {"Classify": section_classify, "Search": section_search,
          "Browse & curate": section_browse, "Stats": section_stats}


def sidebar(cfg: ui.PageConfig, info: dict | None) -> str:
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
        section = st.radio("Section", SECTIONS, key="section")
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
    try:
        with store_lock(store):
            db = open_store(store, str(cfg.model_dir) if cfg.model_dir else None)
            db, generation = refresh_if_changed(db, store)
            info = load_info(db, store, generation)
    except StoreBusyError:
        busy()
        return
    except Exception as e:  # noqa: BLE001 - no store yet, unreadable store, missing weights...
        if not isinstance(e, PosterDBError):
            log.exception("cannot open the store")
        sidebar(cfg, None)
        st.error(ui.friendly_error(e))
        if not (cfg.store / "catalog.duckdb").exists():
            st.info(f"Create the store with `posterdb ingest FOLDER --store {cfg.store}`; this "
                    f"page picks it up on the next interaction.")
        return
    section = sidebar(cfg, info)
    for k, show in (("flash", st.success), ("flash_error", st.error)):
        if k in st.session_state:
            show(st.session_state.pop(k))
    try:
        with store_lock(store):
            RENDER[section](db, store, generation, info)
        st.session_state["busy_retries"] = 0
    except StoreBusyError:
        busy()
    except Exception as e:  # noqa: BLE001 - a readable line on the page, the traceback in the log
        if not isinstance(e, (PosterDBError, ValueError)):
            log.exception("page error")
        st.error(ui.friendly_error(e))


main()
