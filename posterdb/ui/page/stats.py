"""The Stats section: what the store holds and the latest evaluation report."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from posterdb.store import PosterDB
from posterdb.ui import helpers as ui


def render(db: PosterDB, store: str, generation: int, info: dict) -> None:
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
    report = db.genres.latest_eval()
    if report is None:
        st.info("No evaluation report yet: run `posterdb eval` to produce one.")
        return
    setup = report.setup
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
    if report.chart_png:
        st.image(report.chart_png, caption="the report's chart (posterdb eval)")
    with st.expander("full report (JSON)"):
        st.json(report.to_dict(), expanded=False)
