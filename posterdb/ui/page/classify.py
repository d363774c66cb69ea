"""The Classify section: upload posters, see predicted genres with their evidence, add them."""
from __future__ import annotations

import hashlib

import streamlit as st

from posterdb.core.errors import ImageError, NotTrainedError
from posterdb.core.genres import GENRES
from posterdb.media.images import decode
from posterdb.store import PosterDB
from posterdb.ui import helpers as ui
from posterdb.ui.page import access
from posterdb.ui.page.common import EVIDENCE_COLUMNS, UPLOAD_WIDTH, hit_grid


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
    st.caption("Each shows the genres it voted with (its labels when the classifier was "
               "trained); ✓ marks those shared with the prediction. The vote's similarity is "
               "the cosine of features centred on each decade's mean, so vintage and modern "
               "styles compare fairly."
               if trained else "Genres marked ✓ are shared with the prediction.")
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
        access.read_only_note("add posters")
        if st.form_submit_button("Add to catalogue", type="primary", key=f"add-btn-{key}",
                                 disabled=not access.can_write()):
            if not access.may_write(db, "add posters", now=True):
                return
            if not chosen:
                st.error("Pick at least one genre before adding the poster.")
            else:
                pid = db.genres.add_poster(poster, chosen, title=title.strip() or None, year=year)
                st.session_state["flash"] = (f"Stored **{title or name}** as poster #{pid} with "
                                             f"genres {', '.join(chosen)}.")
                st.rerun()


def render(db: PosterDB, store: str, generation: int, info: dict) -> None:
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
