"""The Classify section: upload posters; see the film each one shows (read and identified in the
store's catalogue) with its genres, then the image classifier's guess with each genre's
threshold and the stored posters behind it; add the poster with the genres you accept."""
from __future__ import annotations

import hashlib

import streamlit as st

from posterdb.core.errors import ImageError, NotTrainedError
from posterdb.core.genres import GENRES
from posterdb.media.images import decode
from posterdb.store import PosterDB
from posterdb.ui import helpers as ui
from posterdb.ui.page import access, film
from posterdb.ui.page.actions import perform
from posterdb.ui.page.common import EVIDENCE_COLUMNS, UPLOAD_WIDTH, hit_grid


def _propose(key: str, value) -> None:
    """Pre-fill a form field with `value` (the film's or the prediction's) until the person
    edits it: a new proposal (a year typed, a film found) replaces an untouched field only."""
    mark = f"{key}-proposed"
    if key not in st.session_state:   # new, or dropped by Streamlit while another section showed
        st.session_state[key] = value
    elif st.session_state.get(mark) != value and st.session_state[key] == st.session_state.get(mark):
        st.session_state[key] = value
    st.session_state[mark] = value


def _classification(db: PosterDB, store: str, generation: int, poster, year):
    """The image classifier's result for (image, year), cached for this store generation;
    None when no classifier is trained."""
    box = st.session_state.get("classified")
    if not box or box["at"] != (store, generation):  # results of this store generation only
        box = st.session_state["classified"] = {"at": (store, generation), "results": {}}
    cache, ckey = box["results"], (poster.sha256, year)
    if ckey not in cache:
        try:
            with st.spinner("Classifying…"):
                cache[ckey] = db.classify([poster], [year])[0]
        except NotTrainedError:
            cache[ckey] = None
    return cache[ckey]


def _film_section(flow, found: dict | None, key: str) -> list[str]:
    """The film first: who it is, its genres (facts from the catalogue). Returns them."""
    st.markdown("#### Film")
    with st.container(key=f"film-{key}"):
        if flow is None:
            st.caption(film.NO_CATALOGUE)
            return []
        st.markdown(film.found_md(found))
        genres = film.film_genres(found)
        if genres:
            st.markdown("Genres from the catalogue: " + ui.badges(genres, genres))
        elif found and found.get("identification") is not None and \
                found["identification"].status == "identified":
            st.caption("The catalogue lists no genres for this film.")
        if found and found.get("identification") is not None and \
                found["identification"].status != "identified" and not found.get("lines"):
            st.caption("No text was read on this image.")
    return genres


def _guess_section(db: PosterDB, result, key: str) -> list[str]:
    """The image classifier's guess: genres with each one's probability and threshold."""
    st.markdown("#### Predicted genres")
    st.caption("The image classifier's guess, from the picture alone.")
    if result is None:
        st.info("No genre classifier is trained for this store yet (`posterdb train`). "
                "Showing the most similar stored posters only.")
        return []
    genres = ui.by_probability(result.genres, result.probabilities)
    t_pred, t_pub = film.thresholds(db)
    with st.container(key=f"genres-{key}"):
        st.markdown(ui.badges(genres, genres) if genres else
                    ":orange-badge[no genre above its threshold]")
        for g, p, is_pred in ui.probability_rows(result.probabilities, genres):
            st.progress(min(max(p, 0.0), 1.0),
                        text=film.genre_row(g, p, is_pred, t_pred.get(g), t_pub.get(g)))
    decade = (f" · decade head {ui.decade_label(result.decade_head)}"
              if result.decade_head is not None else " · no decade head (year unknown)"
              if result.year is None else " · no decade head for its decade (too few posters)")
    st.caption(f"Blend: {ui.share_text(result.alpha)}{decade}. A genre is predicted when its "
               f"probability reaches its own threshold (set per genre in training); the vote "
               f"comes from the stored posters below.")
    if result.in_store is not None:
        st.info(f"This exact image is already in the catalogue as poster "
                f"#{result.in_store} (left out of its own evidence).")
    return genres


def _add(db: PosterDB, flow, poster, genres: list[str], title: str | None, year: int | None,
         found: dict | None, name: str) -> str:
    """Store the poster with the genres chosen (a person's review), then what was read on it
    and its identification."""
    pid = db.genres.add_poster(poster, genres, title=title, year=year)
    note = ""
    if flow is not None and found is not None:
        got = flow.adopt(pid, found.get("lines") or [])
        note = (" and its film" if got.identified else
                f" (its film is looked up again on the next pass: {got.error})" if got.error else
                " (its film is looked up again on the next pass)" if got.pending else
                " (its film was not identified)")
    return (f"Stored **{title or name}** as poster #{pid} with genres {', '.join(genres)}"
            f"{note}.")


def classify_upload(db: PosterDB, store: str, generation: int, name: str, data: bytes) -> None:
    """One uploaded file: validate like ingest, identify its film, predict genres, show the
    evidence, offer to add it. Takes plain bytes so that tests can drive it without a browser."""
    try:
        poster = decode(data, name)
    except ImageError as e:
        st.error(f"Cannot use **{name}** — {e.reason}")
        return
    key = poster.sha256[:16]
    guess_title, guess_year = ui.title_from_filename(name)
    # The year is typed in the form below and taken with its buttons: a year typed outside a
    # form reruns the page when the field loses focus, and that rerun swallowed the click on
    # "Add to catalogue" right after it (nothing stored, or "Pick at least one genre").
    year = st.session_state.get(f"year-{key}", guess_year)
    year = int(year) if year is not None else None
    result = _classification(db, store, generation, poster, year)
    flow = film.flow_of(db, store)
    found = (film.preview(flow, poster, year, result.probabilities if result else None)
             if flow is not None else None)
    ident = found.get("identification") if found else None
    cached = (flow.catalogue_poster(ident.film.source, ident.film.film_id)
              if ident is not None and ident.film is not None else None)

    left, right = st.columns([1, 3], gap="large")
    with left:
        scan, theirs = st.columns(2) if cached is not None else (st.container(), None)
        scan.image(poster.image, width=UPLOAD_WIDTH if theirs is None else UPLOAD_WIDTH // 2,
                   caption=f"{name} · {poster.width}×{poster.height}")
        if theirs is not None:
            theirs.image(str(cached), width=UPLOAD_WIDTH // 2,
                         caption=f"the catalogue's poster of {ident.film.title}")
        st.caption(f"Year: {ui.year_text(year)} (change it in the form below)")
    with right:
        facts = _film_section(flow, found, key)
        genres = _guess_section(db, result, key)

    st.markdown("#### Evidence: the most similar stored posters")
    st.caption("Each shows the genres it voted with (its labels when the classifier was "
               "trained); ✓ marks those shared with the prediction. The vote's similarity is "
               "the cosine of features centred on each decade's mean, so vintage and modern "
               "styles compare fairly."
               if result is not None else "Genres marked ✓ are shared with the prediction.")
    evidence = result.evidence if result is not None else db.similar(poster, 10)
    if evidence:
        hit_grid(evidence, columns=EVIDENCE_COLUMNS, highlight=genres, key=f"evidence-{key}")
    else:
        st.caption("The store holds no posters to compare with yet.")

    identified = ident is not None and ident.status == "identified"
    if not st.session_state.get(f"add-btn-{key}"):   # on "Add", keep what the person saw
        _propose(f"genres-pick-{key}", list(facts or genres))
        _propose(f"title-{key}", ident.film.title if identified else guess_title)
    with st.form(key=f"add-{key}", border=True):
        if result is not None and result.in_store is not None:
            st.markdown(f"**Review poster #{result.in_store}** — it is already stored: saving "
                        f"records these genres as its reviewed labels.")
        else:
            st.markdown("**Add to catalogue** — "
                        + ("the film's genres are filled in; " if facts else
                           "accept the prediction or correct it first; ")
                        + "what was read and the film found are stored with it.")
        c1, c2, c3 = st.columns([2, 1, 3])
        title = c1.text_input("Title", key=f"title-{key}")
        c2.number_input("Release year", min_value=1880, max_value=2100, value=guess_year,
                        step=1, key=f"year-{key}",
                        help="Identification and the decade head use it; leave empty if "
                             "unknown. Enter (or Look up) shows the film and genres for it.")
        chosen = c3.multiselect("Genres", list(GENRES), key=f"genres-pick-{key}")
        access.read_only_note("add posters")
        b1, b2, _ = st.columns([1, 1, 3])
        b1.form_submit_button("Look up with this year", key=f"lookup-btn-{key}")
        if b2.form_submit_button("Add to catalogue", type="primary", key=f"add-btn-{key}",
                                 disabled=not access.can_write()):
            if not chosen:
                st.error("Pick at least one genre before adding the poster.")
            elif perform(db, "add posters",
                         lambda: _add(db, flow, poster, list(chosen), title.strip() or None,
                                      year, found, name), now=True):
                st.rerun()


def render(db: PosterDB, store: str, generation: int, info: dict) -> None:
    st.header("Classify a poster")
    st.caption("Upload one or several posters: posterdb reads each one and identifies its film "
               "(when the store has a film catalogue), predicts its genres from the image, and "
               "shows the stored posters that back the prediction. Add a poster with the "
               "genres you accept.")
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
