"""The Streamlit page (app.py) driven in-process by streamlit.testing's AppTest, on a real store.

The store: 150 real posters (every 33rd labels row: all decades) + one re-encoded copy of a stored
poster (a near-duplicate), a classifier trained on it, and an eval report. Every check of what the
page shows is made against the same library call the page makes, or against DuckDB reopened.

The store has a page password and the `app` fixture signs its session in: every change made on
the page needs that (`posterdb.ui.page.access`); reading does not (see the access tests).
"""
from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from posterdb.classify.report import EvalReport
from posterdb.core.errors import ImageError, NotTrainedError, StoreBusyError
from posterdb.core.genres import GENRES
from posterdb.store import PosterDB
from posterdb.ui import auth
from posterdb.ui import helpers as ui
from tests.conftest import copy_slice

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "app.py")
N_STORE, EVERY = 150, 33
PAGE_PASSWORD = "matinee at the Odeon, 1925"


@pytest.fixture(autouse=True)
def _repo_root(monkeypatch):
    """Streamlit reads .streamlit/config.toml (server.address = 127.0.0.1) from the cwd."""
    monkeypatch.chdir(ROOT)


def sign_in(at: AppTest, password: str = PAGE_PASSWORD, key: str = "signin") -> AppTest:
    at.text_input(key=f"{key}-password").input(password)
    at.button(key=f"{key}-submit").click().run()
    return at


# -- fixtures -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def store(tmp_path_factory, label_rows, posters_dir, model_dir) -> Path:
    """A trained store of real posters (+ one near-duplicate, + an eval report when available)."""
    base = tmp_path_factory.mktemp("app")
    src = copy_slice(label_rows, posters_dir, base / "src", N_STORE, every=EVERY)
    # a re-encoded copy of a stored poster (cos ≈ 0.98): a near-duplicate without labels
    original = Image.open(posters_dir / label_rows[EVERY * 3]["file"]).convert("RGB")
    original.save(src / "images" / "reprint.jpg", quality=85)
    db = PosterDB.open(base / "store", model_dir=model_dir)
    report = db.ingest(src, src / "labels.csv")
    assert report.added == N_STORE + 1 and not report.failed
    db.train()
    try:
        db.genres.evaluate()
    except ValueError:  # the chart of a store this small (no cross-decade cell) may fail to
        pass            # render; the JSON report is written before it
    auth.set_page_password(db, PAGE_PASSWORD)
    return db.root


@pytest.fixture
def app(store, model_dir, monkeypatch):
    """A fresh page session (new AppTest) on the module's store, run once and signed in."""
    monkeypatch.setenv("POSTERDB_STORE", str(store))
    monkeypatch.setenv("POSTERDB_MODEL_DIR", str(model_dir))
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    assert_clean(at)
    sign_in(at)
    assert_clean(at)
    return at


def reopen(store: Path, model_dir: Path) -> PosterDB:
    return PosterDB.open(store, create=False, model_dir=model_dir)


def assert_clean(at: AppTest) -> None:
    """No exception element and no error box on the page."""
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def go(at: AppTest, section: str) -> AppTest:
    at.radio(key="section").set_value(section).run()
    assert_clean(at)
    return at


def texts(at: AppTest) -> list[str]:
    return [m.value for m in at.markdown]


def headings(at: AppTest) -> list[str]:
    """Poster headings '**Title** (year) · #id' as shown in the grids."""
    return [t for t in texts(at) if t.startswith("**") and " · #" in t]


def ids_shown(at: AppTest) -> list[int]:
    return [int(t.rsplit("#", 1)[1].split()[0]) for t in headings(at)]


def outside_poster(label_rows, n: int = 1) -> list[dict]:
    """Labels rows not in the store's slice."""
    return [r for i, r in enumerate(label_rows) if i % EVERY][:n]


# -- Classify -----------------------------------------------------------------------------------

def test_classify_upload_shows_genres_and_evidence_then_adds_it(app, store, model_dir,
                                                               label_rows, posters_dir):
    row = outside_poster(label_rows)[0]
    data = (posters_dir / row["file"]).read_bytes()
    name = f"{row['title']}.jpg"  # "Title (1925).jpg": the year is read from the name
    app.file_uploader(key="classify-upload").set_value((name, data, "image/jpeg")).run()
    assert_clean(app)
    key = hashlib.sha256(data).hexdigest()[:16]
    assert app.number_input(key=f"year-{key}").value == int(row["year"])

    expected = reopen(store, model_dir).classify([posters_dir / row["file"]], [int(row["year"])])[0]
    pred = ui.by_probability(expected.genres, expected.probabilities)  # likeliest first
    md = texts(app)
    assert "#### Predicted genres" in md
    assert ui.badges(pred, pred) in md
    bars = app.get("progress")
    assert len(bars) >= len(expected.genres) and all(0 <= b.value <= 100 for b in bars)
    assert any(expected.genres[0] in b.text for b in bars) if expected.genres else True
    assert any(c.value.startswith("Blend: heads ") for c in app.caption)
    # the evidence grid: the same posters the library returns, in order, genres marked
    assert len(expected.evidence) == 10
    assert ids_shown(app) == [h.id for h in expected.evidence]
    for h in expected.evidence:
        assert ui.badges(h.genres, ui.shared_genres(h.genres, expected.genres)) in md
    assert any("similarity" in c.value for c in app.caption)

    # accept with a correction: the multiselect is prefilled with the prediction
    pick = app.multiselect(key=f"genres-pick-{key}")
    assert pick.value == pred
    corrected = ["Drama", "History"] if expected.genres != ["Drama", "History"] else ["War"]
    pick.set_value(corrected)
    app.button(key=f"add-btn-{key}").click().run()
    assert_clean(app)
    assert any("Stored" in s.value for s in app.success)

    db = reopen(store, model_dir)
    (stored,) = [p for p in db.posters.get() if p.sha256 == hashlib.sha256(data).hexdigest()]
    assert list(stored.genres) == corrected and stored.reviewed
    assert stored.year == int(row["year"]) and stored.title == row["title"].rsplit(" (", 1)[0]
    assert Path(stored.image).read_bytes() == data
    # the rerun after the write already knows the poster is in the catalogue
    assert any(f"#{stored.id}" in i.value for i in app.info)


def test_classify_several_uploads_and_a_bad_file(app, label_rows, posters_dir):
    rows = outside_poster(label_rows, 3)[1:]
    files = [(Path(r["file"]).name, (posters_dir / r["file"]).read_bytes(), "image/jpeg")
             for r in rows]
    files.append(("notes.jpg", b"these are not pixels", "image/jpeg"))
    files.append(("empty.png", b"", "image/png"))
    app.file_uploader(key="classify-upload").set_value(files).run()
    assert not app.exception
    errors = [e.value for e in app.error]
    assert len(errors) == 2
    assert "notes.jpg" in errors[0] and "not an image" in errors[0]
    assert "empty.png" in errors[1] and "empty file" in errors[1]
    assert texts(app).count("#### Predicted genres") == 2
    assert len(headings(app)) == 20  # two evidence grids of 10


# -- Search -------------------------------------------------------------------------------------

def test_search_by_stored_poster_with_filters(app, store, model_dir):
    db = reopen(store, model_dir)
    seventies = [p for p in db.posters.get() if p.decade == 1970]
    query = seventies[0]
    go(app, "Search")
    app.text_input(key="search-query").input(str(query.id)).run()
    assert_clean(app)
    expected = db.similar(query.id, 12)
    assert ids_shown(app) == [query.id] + [h.id for h in expected]
    assert f"#### 12 results for #{query.id}" in texts(app)

    app.multiselect(key="search-decades").set_value([1970]).run()
    assert_clean(app)
    expected = db.similar(query.id, 12, decades=[1970])
    shown = ids_shown(app)[1:]
    assert shown == [h.id for h in expected] and shown
    assert all(db.posters.one(i).decade == 1970 for i in shown)

    app.multiselect(key="search-decades").set_value([])
    app.multiselect(key="search-genres").set_value(["Drama"])
    app.number_input(key="search-k").set_value(5).run()
    assert_clean(app)
    shown = ids_shown(app)[1:]
    assert shown == [h.id for h in db.similar(query.id, 5, genres=["Drama"])]
    assert len(shown) == 5 and all("Drama" in db.posters.one(i).genres for i in shown)


def test_search_by_title_and_by_uploaded_image(app, store, model_dir, label_rows, posters_dir):
    db = reopen(store, model_dir)
    go(app, "Search")
    target = db.posters.get()[10]
    word = max(target.title.split(), key=len)
    app.text_input(key="search-query").input(word).run()
    assert_clean(app)
    assert ids_shown(app)[0] == db.posters.find(word)[0].id

    app.text_input(key="search-query").input("no such title zzzz").run()
    assert not app.exception and app.warning

    app.radio(key="search-mode").set_value("Uploaded image").run()
    data = Path(target.image).read_bytes()
    app.file_uploader(key="search-upload").set_value(("q.jpg", data, "image/jpeg")).run()
    assert_clean(app)
    assert ids_shown(app)[0] == target.id  # the stored copy itself comes first
    assert "Text" not in app.radio(key="search-mode").options  # MobileNet has no text tower


class _TextCapable:
    """The store's MobileNet embedder plus a stand-in text tower (CLIP weights are not to be had
    offline): every text maps to one stored poster's vector."""

    supports_text = True

    def __init__(self, inner, vector):
        self._inner, self._vector = inner, vector

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def embed_text(self, texts):
        import numpy as np

        return np.repeat(self._vector[None, :], len(texts), axis=0)


def test_search_by_text_when_the_model_supports_it(store, model_dir, monkeypatch, tmp_path):
    import posterdb.embedders as embedders

    own = tmp_path / "store"  # its own path: the page opens (and caches) a PosterDB per path
    shutil.copytree(store, own)
    db = reopen(own, model_dir)
    target = db.posters.get()[20]
    vector = db.search.vectors([target.id])[0]
    real = embedders.get_embedder
    monkeypatch.setattr(embedders, "get_embedder",
                        lambda *a, **kw: _TextCapable(real(*a, **kw), vector))
    monkeypatch.setenv("POSTERDB_STORE", str(own))
    monkeypatch.setenv("POSTERDB_MODEL_DIR", str(model_dir))
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    go(at, "Search")
    assert at.radio(key="search-mode").options[-1] == "Text"
    at.radio(key="search-mode").set_value("Text").run()
    at.multiselect(key="search-genres").set_value(list(target.genres[:1]))
    at.text_input(key="search-text").input("a cowboy at sunset").run()
    assert_clean(at)
    expected = db.similar(vector, 12, genres=list(target.genres[:1]))
    assert ids_shown(at) == [h.id for h in expected] and expected[0].id == target.id
    assert "#### 12 results for “a cowboy at sunset”" in texts(at)


# -- Browse & curate ----------------------------------------------------------------------------

def test_browse_by_genre_and_decade_paginated(app, store, model_dir):
    db = reopen(store, model_dir)
    go(app, "Browse & curate")
    assert len(headings(app)) == 24  # first page of everything
    app.selectbox(key="browse-genre").set_value("Drama").run()
    assert_clean(app)
    drama = [p for p in db.posters.get() if "Drama" in (p.genres or p.predicted)]
    assert ids_shown(app) == [p.id for p in drama[:24]]
    app.number_input(key="browse-page").set_value(2).run()
    assert ids_shown(app) == [p.id for p in drama[24:48]]
    app.selectbox(key="browse-decade").set_value(1970).run()
    assert_clean(app)
    both = [p.id for p in drama if p.decade == 1970]
    assert ids_shown(app) == both[:24] and both


def test_review_queue_accept_and_correct_persist(app, store, model_dir):
    db = reopen(store, model_dir)
    queue = db.curation.queue(limit=50)
    labelled = [it["score"] for it in queue if it["kind"] == "labelled"]
    assert queue and labelled == sorted(labelled, reverse=True)
    go(app, "Browse & curate")
    app.radio(key="curate-view").set_value("Review queue").run()
    assert_clean(app)
    first, second = queue[0], queue[1]
    assert ids_shown(app)[:2] == [first["id"], second["id"]]  # most suspicious first
    assert any(first["reason"] == c.value for c in app.caption)

    # one click accepts the genres as shown
    keep = first["genres"] or first["predicted"]
    assert app.multiselect(key=f"review-pick-{first['id']}").value == keep
    app.button(key=f"review-accept-{first['id']}").click().run()
    assert_clean(app)
    assert any("Reviewed" in s.value for s in app.success)
    # a correction: change the genres, then accept
    app.multiselect(key=f"review-pick-{second['id']}").set_value(["Western", "Comedy"])
    app.button(key=f"review-accept-{second['id']}").click().run()
    assert_clean(app)

    db = reopen(store, model_dir)  # DuckDB reopened: the reviews were committed
    a, b = db.posters.one(first["id"]), db.posters.one(second["id"])
    assert a.reviewed and list(a.genres) == keep
    assert b.reviewed and list(b.genres) == ["Comedy", "Western"]
    # reviewed posters leave the queue, on the page as in the library
    shown = ids_shown(app)
    assert first["id"] not in shown and second["id"] not in shown
    assert {first["id"], second["id"]}.isdisjoint(p["id"] for p in db.curation.queue(limit=50))


def test_review_with_no_genre_is_refused_readably(app, store, model_dir):
    db = reopen(store, model_dir)
    item = db.curation.queue(limit=1)[0]
    go(app, "Browse & curate")
    app.radio(key="curate-view").set_value("Review queue").run()
    app.multiselect(key=f"review-pick-{item['id']}").set_value([])
    app.button(key=f"review-accept-{item['id']}").click().run()
    assert not app.exception
    assert app.error and "genre" in app.error[0].value
    assert not reopen(store, model_dir).posters.one(item["id"]).reviewed


def test_near_duplicate_pairs_side_by_side(app, store, model_dir):
    db = reopen(store, model_dir)
    pairs = db.search.near_duplicates(0.97)
    (reprint,) = [p for p in db.posters.get() if p.path.endswith("reprint.jpg")]
    assert any(reprint.id in (a, b) for a, b, _ in pairs)
    go(app, "Browse & curate")
    app.radio(key="curate-view").set_value("Near-duplicates").run()
    assert_clean(app)
    shown = ids_shown(app)
    assert shown[:2] == list(pairs[0][:2])
    assert reprint.id in shown
    assert app.metric[0].value == f"{pairs[0][2]:.4f}"
    app.slider(key="dup-threshold").set_value(1.0).run()
    assert_clean(app)
    assert len(ids_shown(app)) < len(shown)


# -- Stats --------------------------------------------------------------------------------------

def test_stats_renders_counts_charts_and_eval(app, store, model_dir):
    db = reopen(store, model_dir)
    info = db.info()
    go(app, "Stats")
    metrics = {m.label: m.value for m in app.metric}
    assert metrics["posters"] == f"{info['posters']:,}"
    assert metrics["labelled"] == f"{info['labelled']:,}"
    charts = app.get("vega_lite_chart")
    report = db.genres.latest_eval()
    assert report is not None  # the fixture ran db.genres.evaluate()
    assert len(charts) == 3  # genres, decades, per-genre F1 of the eval
    tables = app.dataframe
    methods = tables[0].value
    assert list(methods.index) == [r["method"] for r in ui.eval_averages(report)]
    assert methods.loc["posterdb: blend", "weighted"] == pytest.approx(
        report.methods["blend"].averages["weighted"])
    if report.chart_png:
        assert app.get("image")


# -- who may change the store (posterdb.ui.page.access) -----------------------------------------

def fresh(store: Path, model_dir: Path, monkeypatch) -> AppTest:
    """A new page session, not signed in."""
    monkeypatch.setenv("POSTERDB_STORE", str(store))
    monkeypatch.setenv("POSTERDB_MODEL_DIR", str(model_dir))
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    return at


def forced_click(at: AppTest, key: str) -> AppTest:
    """Click a disabled button as a hostile client could. (Streamlit ≥ 1.5x drops what a
    browser sends for a disabled widget; the write's own gate is checked by the next test.)"""
    btn = at.button(key=key)
    assert btn.disabled
    btn.proto.disabled = False
    return btn.click().run()


def own_store(store: Path, tmp_path: Path, password: str | None = PAGE_PASSWORD) -> Path:
    """A copy of the module's store (its own path: own cached PosterDB, own sign-in limiter)."""
    own = tmp_path / "store"
    shutil.copytree(store, own)
    if password != PAGE_PASSWORD:
        auth.set_page_password(PosterDB.open(own, create=False), password)
    return own


def test_a_session_not_signed_in_reads_but_cannot_write(store, model_dir, monkeypatch,
                                                        label_rows, posters_dir):
    db = reopen(store, model_dir)
    before, queue = db.posters.count(), db.curation.queue(limit=5)
    waiting = [it["id"] for it in db.curation.queue("new", limit=100)]
    at = fresh(store, model_dir, monkeypatch)
    assert_clean(at)
    assert at.text_input(key="signin-password") is not None
    # classifying (a read) works; adding is disabled, and a click that arrives anyway is refused
    row = outside_poster(label_rows, 6)[5]
    data = (posters_dir / row["file"]).read_bytes()
    key = hashlib.sha256(data).hexdigest()[:16]
    at.file_uploader(key="classify-upload").set_value(("p.jpg", data, "image/jpeg")).run()
    assert_clean(at)
    assert "#### Predicted genres" in texts(at)
    assert "Sign in (sidebar) to add posters." in [c.value for c in at.caption]
    forced_click(at, f"add-btn-{key}")
    assert not at.exception and reopen(store, model_dir).posters.count() == before
    # the review queue: Accept disabled; a forced click stores nothing
    go(at, "Browse & curate")
    at.radio(key="curate-view").set_value("Review queue").run()
    pid = queue[0]["id"]
    forced_click(at, f"review-accept-{pid}")
    assert not at.exception and not reopen(store, model_dir).posters.one(pid).reviewed
    # the inbox: the bulk accept likewise
    go(at, "Inbox")
    if waiting:
        forced_click(at, "inbox-accept-page")
        assert not at.exception
        assert {it["id"] for it in reopen(store, model_dir).curation.queue("new", limit=100)} \
            == set(waiting)
    # a plain value where the sign-in is kept (all a browser could send) is not a sign-in
    go(at, "Browse & curate")
    at.radio(key="curate-view").set_value("Review queue")
    at.session_state["page-access"] = {"mark": "x", "signed_in": True}
    at.run()
    assert at.button(key=f"review-accept-{pid}").disabled
    # signing in enables the controls
    go(at, "Classify")
    sign_in(at)
    assert_clean(at)
    assert "Signed in: changes are allowed." in [c.value for c in at.sidebar.caption]
    go(at, "Browse & curate")
    at.radio(key="curate-view").set_value("Review queue").run()
    assert not at.button(key=f"review-accept-{pid}").disabled


def test_a_changed_or_cleared_password_signs_sessions_out(store, model_dir, monkeypatch,
                                                         tmp_path, label_rows, posters_dir):
    """A changed password signs sessions out on their next run; and each write re-reads the
    stored hash, so a password cleared between drawing a button and clicking it stops that very
    click (a widget callback runs before the rerun could draw the button disabled)."""
    own = own_store(store, tmp_path)
    db = reopen(own, model_dir)
    before, pid = db.posters.count(), db.curation.queue(limit=1)[0]["id"]
    at = sign_in(fresh(own, model_dir, monkeypatch))
    row = outside_poster(label_rows, 7)[6]
    data = (posters_dir / row["file"]).read_bytes()
    key = hashlib.sha256(data).hexdigest()[:16]
    at.file_uploader(key="classify-upload").set_value(("p.jpg", data, "image/jpeg")).run()
    assert not at.button(key=f"add-btn-{key}").disabled
    auth.set_page_password(db, "another password entirely")   # e.g. `posterdb page password`
    at.button(key=f"add-btn-{key}").click().run()
    assert reopen(own, model_dir).posters.count() == before
    assert at.button(key=f"add-btn-{key}").disabled         # the rerun drew it signed out

    sign_in(at)                                   # the old password no longer works
    assert at.error and "Wrong password" in at.error[-1].value
    sign_in(at, "another password entirely")
    go(at, "Browse & curate")
    at.radio(key="curate-view").set_value("Review queue").run()
    assert not at.button(key=f"review-accept-{pid}").disabled
    auth.set_page_password(db, None)              # cleared between drawing and clicking
    at.button(key=f"review-accept-{pid}").click().run()
    assert [e.value for e in at.error] == ["Not saved: sign in to set labels."]
    assert not reopen(own, model_dir).posters.one(pid).reviewed
    assert at.button(key=f"review-accept-{pid}").disabled
    assert any("no page password is set" in c.value for c in at.caption)


def test_sign_in_attempts_are_bounded(store, model_dir, monkeypatch, tmp_path):
    own = own_store(store, tmp_path)
    at = fresh(own, model_dir, monkeypatch)
    for left in (4, 3, 2, 1):
        sign_in(at, f"guess number {left}")
        assert at.error[0].value == f"Wrong password. {left} tries left."
    sign_in(at, "the fifth guess")
    assert at.error[0].value == "Wrong password. No tries left for now."
    sign_in(at)                                   # the right one, too late
    assert at.error[0].value.startswith("Too many failed sign-ins: try again in 15 min")
    assert at.text_input(key="signin-password") is not None
    other = fresh(own, model_dir, monkeypatch)    # a new session from the same client: too
    sign_in(other)
    assert other.error and other.error[0].value.startswith("Too many failed sign-ins")


@pytest.fixture
def served_on(monkeypatch):
    """Set Streamlit's server.address for the page's next runs (as `--server.address` would)."""
    from streamlit import config

    old = config.get_option("server.address")

    def set_to(address):
        config.set_option("server.address", address)

    yield set_to
    config.set_option("server.address", old)


def _only_the_refusal(at: AppTest) -> str:
    assert not at.exception
    assert len(at.error) == 1 and len(at.main.children) == 1, at.main
    assert not at.sidebar.children and not at.markdown and not at.caption
    line = at.error[0].value
    assert "\n" not in line and line.startswith("Refused: this page is served beyond loopback")
    return line


def test_served_beyond_loopback_without_a_password_refuses_with_one_line(
        store, model_dir, monkeypatch, tmp_path, served_on):
    bare = own_store(store, tmp_path, password=None)
    for address in ("0.0.0.0", "::", "", None, "192.168.1.20", "[::]", "example.org",
                    "127.0.0.1.example.org", "0", "::ffff:10.0.0.1"):
        served_on(address)
        line = _only_the_refusal(fresh(bare, model_dir, monkeypatch))
        assert "posterdb page password" in line and str(bare) not in line, address
    served_on("0.0.0.0")   # an unreadable stored hash lets nobody in: the same line
    db = PosterDB.open(bare, create=False)
    with db.catalog.write() as con:
        db.catalog.set_store_setting(con, auth.PASSWORD_SETTING, "plain text, not a hash")
    _only_the_refusal(fresh(bare, model_dir, monkeypatch))
    auth.set_page_password(db, None)
    # no store at all: the same line, no path, no store made
    _only_the_refusal(fresh(tmp_path / "nowhere", model_dir, monkeypatch))
    assert not (tmp_path / "nowhere").exists()
    for address in ("127.0.0.1", "::1", "localhost", "LOCALHOST.", "127.0.0.2", "[::1]",
                    "0:0:0:0:0:0:0:1", "::ffff:127.0.0.1", "unix:///tmp/posterdb.sock"):
        served_on(address)    # loopback: reading is open
        at = fresh(bare, model_dir, monkeypatch)
        assert_clean(at)
        assert at.sidebar.markdown[0].value.startswith("**"), address


def test_served_beyond_loopback_with_a_password_shows_only_the_sign_in(
        store, model_dir, monkeypatch, tmp_path, served_on):
    own = own_store(store, tmp_path)
    served_on("0.0.0.0")
    at = fresh(own, model_dir, monkeypatch)
    assert not at.exception and not at.error and not at.sidebar.children
    assert at.text_input(key="gate-password") is not None
    assert not [m for m in at.markdown if "posters" in m.value]     # no counts, no store path
    sign_in(at, "not it", key="gate")
    assert at.error[0].value.startswith("Wrong password")
    assert not at.sidebar.children
    sign_in(at, key="gate")
    assert_clean(at)
    assert at.sidebar.markdown[0].value.startswith(f"**{reopen(own, model_dir).posters.count():,}**")
    assert "Signed in: changes are allowed." in [c.value for c in at.sidebar.caption]


# -- keeping up with the store ------------------------------------------------------------------

def test_new_posters_show_up_without_restart(store, model_dir, monkeypatch, tmp_path,
                                             label_rows, posters_dir):
    # a store of its own: the module store's counts stay as the other tests expect them
    own = tmp_path / "store"
    shutil.copytree(store, own)
    monkeypatch.setenv("POSTERDB_STORE", str(own))
    monkeypatch.setenv("POSTERDB_MODEL_DIR", str(model_dir))
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    db = reopen(own, model_dir)
    before = db.posters.count()
    assert f"**{before:,}** posters" in at.sidebar.markdown[0].value
    go(at, "Browse & curate")
    more = copy_slice(label_rows, posters_dir, tmp_path / "more", 12, start=5, every=EVERY)
    assert db.ingest(more, more / "labels.csv").added == 12  # another writer, same process
    at.run()  # any interaction reruns the script
    assert_clean(at)
    assert f"**{before + 12:,}** posters" in at.sidebar.markdown[0].value
    at.selectbox(key="browse-per-page").set_value(96).run()
    at.number_input(key="browse-page").set_value(2).run()
    assert len(headings(at)) == before + 12 - 96


def test_store_busy_is_a_message_and_a_retry_never_a_traceback(app, monkeypatch):
    """Should the library ever give up waiting for the DuckDB lock, the page says so and retries."""
    calls = {"n": 0}
    real = PosterDB.generation

    def flaky(self):
        calls["n"] += 1
        if calls["n"] == 1:
            raise StoreBusyError("catalog.duckdb stayed locked by another process for 30 s")
        return real(self)

    monkeypatch.setattr(PosterDB, "generation", flaky)
    go(app, "Search")  # busy once: warning, pause, automatic rerun, then the page as usual
    assert calls["n"] >= 2
    assert not app.exception and not app.error
    assert app.text_input(key="search-query") is not None
    monkeypatch.setattr(PosterDB, "generation", lambda self: (_ for _ in ()).throw(
        StoreBusyError("still locked")))
    app.session_state["busy_retries"] = 99  # retries used up: the message stays, with a button
    app.run()
    assert not app.exception and not app.error
    assert app.warning[0].value == ui.BUSY_MESSAGE
    assert app.button[-1].label == "Try again"


def test_missing_store_is_a_readable_message(tmp_path, model_dir, monkeypatch):
    monkeypatch.setenv("POSTERDB_STORE", str(tmp_path / "nowhere"))
    monkeypatch.setenv("POSTERDB_MODEL_DIR", str(model_dir))
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    assert not at.exception
    assert "no posterdb store" in at.error[0].value
    assert "posterdb ingest" in at.info[0].value
    assert not (tmp_path / "nowhere").exists()  # the page never creates a store


def test_untrained_store_still_shows_evidence(tmp_path, model_dir, monkeypatch, poster_slice,
                                              label_rows, posters_dir):
    src = poster_slice(30, every=90)
    db = PosterDB.open(tmp_path / "store", model_dir=model_dir)
    db.ingest(src, src / "labels.csv")
    monkeypatch.setenv("POSTERDB_STORE", str(db.root))
    monkeypatch.setenv("POSTERDB_MODEL_DIR", str(model_dir))
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    data = (posters_dir / label_rows[5]["file"]).read_bytes()
    at.file_uploader(key="classify-upload").set_value(("p.jpg", data, "image/jpeg")).run()
    assert_clean(at)
    assert any("No genre classifier" in i.value for i in at.info)
    assert len(headings(at)) == 10
    go(at, "Browse & curate")
    at.radio(key="curate-view").set_value("Review queue").run()
    assert_clean(at)
    assert any("posterdb train" in i.value for i in at.info)


# -- the pure helpers ---------------------------------------------------------------------------

def test_page_config_argv_then_env_then_default():
    env = {"POSTERDB_STORE": "/env/store", "POSTERDB_MODEL_DIR": "/env/models"}
    cfg = ui.page_config(["--store", "/cli/store"], env)
    assert cfg.store == Path("/cli/store") and cfg.model_dir == Path("/env/models")
    cfg = ui.page_config(["-ra", "--timeout=900", "tests/test_app.py", "--st"], env)
    assert cfg.store == Path("/env/store")  # pytest's argv is ignored, no abbreviations
    cfg = ui.page_config([], {})
    assert cfg.store == Path("posterdb-store") and cfg.model_dir is None
    assert ui.page_config(["--model-dir", "m"], {}).model_dir == Path("m")


def test_title_and_year_from_upload_names():
    assert ui.title_from_filename("Jaws (1975).jpg") == ("Jaws", 1975)
    assert ui.title_from_filename("the_thing-1982.png") == ("the thing", 1982)
    assert ui.title_from_filename("tt0073195.jpg") == ("tt0073195", None)
    assert ui.title_from_filename("2001.jpg") == ("2001", 2001)


def test_probability_rows_keep_predicted_then_likeliest():
    probs = {g: 0.01 for g in GENRES} | {"Drama": 0.9, "War": 0.4, "Crime": 0.2, "Horror": 0.05}
    rows = ui.probability_rows(probs, ["Drama", "War"], top=3)
    assert rows == [("Drama", 0.9, True), ("War", 0.4, True), ("Crime", 0.2, False)]
    rows = ui.probability_rows(probs, ["Western"], top=2)  # a predicted genre is always shown
    assert [g for g, _, _ in rows] == ["Drama", "Western"]


def test_paging_filtering_badges_and_errors():
    items = list(range(50))
    assert ui.page_count(50, 24) == 3 and ui.page_count(0, 24) == 1
    assert ui.paginate(items, 3, 24) == [48, 49] and ui.paginate(items, 9, 24) == [48, 49]
    assert ui.badges(["Drama", "War"], ["War"]) == ":gray-badge[Drama] :green-badge[✓ War]"
    assert ui.by_probability(["Action", "Drama", "War"], {"Drama": 0.9, "War": 0.9,
                                                          "Action": 0.2}) == ["Drama", "War",
                                                                              "Action"]
    assert ui.poster_heading("Jaws", 1975, 7) == "**Jaws** (1975) · #7"
    assert ui.poster_heading(None, None, 8, "/in/scan-01.jpg") == "**scan-01.jpg** · #8"
    assert ui.share_text(0.25) == "heads 25 % · neighbour vote 75 %"
    assert ui.friendly_error(ImageError("/x/a.jpg", "empty file (0 bytes)")) == \
        "a.jpg: empty file (0 bytes)"
    assert "busy" in ui.friendly_error(StoreBusyError("locked"))
    assert "posterdb train" in ui.friendly_error(NotTrainedError("x"))
    assert "Traceback" not in ui.friendly_error(RuntimeError("boom"))


def test_eval_report_helpers():
    """A report read back from JSON (another version's, with parts missing and nulls) is
    checked once by EvalReport.from_dict; the page's helpers then read plain attributes."""
    per = {g: {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 0} for g in GENRES}
    report = EvalReport.from_dict({
        "setup": {"n_train": 80, "n_test": 20},
        "methods": {
            "study_svm": {"label": "study", "averages": {"weighted": 0.3, "macro": None,
                                                         "micro": 0.2, "samples": 0.1},
                          "per_genre": per | {"Drama": {"f1": 0.6, "support": 9}}},
            "blend": {"label": "posterdb: blend", "averages": {"weighted": 0.5},
                      "per_genre": per | {"Drama": {"f1": 0.7, "support": 9}}}},
        "per_decade": {"blend": {"1970": {"weighted": 0.4, "n": 3}, "1920": {"weighted": 0.1}}},
        "cross_decade": {"decades": [1970, 1980], "methods": {
            "blend": {"weighted": [[0.5, None], [0.2, 0.6]]}}},
        "png": None})
    assert ui.eval_averages(report) == [
        {"method": "study", "weighted": 0.3, "macro": None, "micro": 0.2, "samples": 0.1},
        {"method": "posterdb: blend", "weighted": 0.5, "macro": None, "micro": None,
         "samples": None}]
    assert ui.eval_per_genre_f1(report) == {"study": {"Drama": 0.6},
                                            "posterdb: blend": {"Drama": 0.7}}
    assert ui.eval_cross_decade(report) == {"posterdb: blend": {
        "decades": ["1970s", "1980s"], "matrix": [[0.5, None], [0.2, 0.6]]}}
    assert ui.eval_per_decade(report) == [{"decade": "1920s", "posterdb: blend": 0.1},
                                          {"decade": "1970s", "posterdb: blend": 0.4,
                                           "test posters": 3}]
    odd = EvalReport.from_dict({
        "methods": {"junk": 3, "vote": {"averages": {"weighted": "n/a", "macro": float("nan")}}},
        "cross_decade": {"decades": [1970, 1980], "methods": {"vote": {"weighted": [[0.1]]}}},
        "per_decade": {"vote": [1, 2]}})
    assert ui.eval_averages(odd) == [{"method": "vote", "weighted": None, "macro": None,
                                      "micro": None, "samples": None}]
    assert (ui.eval_cross_decade(odd), ui.eval_per_decade(odd)) == ({}, [])
    empty = EvalReport.from_dict({"cross_decade": {"decades": [], "methods": {}}})
    assert (ui.eval_averages(empty), ui.eval_per_genre_f1(empty), ui.eval_cross_decade(empty),
            ui.eval_per_decade(empty)) == ([], {}, {}, [])


# -- one review queue, one similarity (issue 18) ------------------------------------------------

def test_one_review_queue_on_the_page_the_cli_and_the_inbox(store, model_dir, label_rows,
                                                           posters_dir, tmp_path, monkeypatch):
    """The page's Browse & curate queue, `posterdb review list --json` and the Inbox's waiting
    posters come from one ranking, in one order."""
    import json

    from typer.testing import CliRunner

    from posterdb.ui.cli.main import app as cli

    own = tmp_path / "store"
    shutil.copytree(store, own)
    arrivals = tmp_path / "arrivals"
    arrivals.mkdir()
    for r in outside_poster(label_rows, 12):       # unlabelled arrivals: the "new" part
        shutil.copy(posters_dir / r["file"], arrivals / Path(r["file"]).name)
    assert reopen(own, model_dir).ingest(arrivals).added >= 10   # (a few share bytes)

    def listed(*args):
        r = CliRunner().invoke(cli, ["review", "list", *args, "--json", "--store", str(own)])
        assert r.exit_code == 0, r.output
        return [it["id"] for it in json.loads(r.stdout)]

    everything, new = listed("-n", "60"), listed("--kind", "new", "-n", "1000")
    assert new and everything[:len(new)] == new and len(everything) == 60
    monkeypatch.setenv("POSTERDB_STORE", str(own))
    monkeypatch.setenv("POSTERDB_MODEL_DIR", str(model_dir))
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    go(at, "Browse & curate")
    at.radio(key="curate-view").set_value("Review queue").run()
    at.select_slider(key="review-show").set_value(60).run()
    assert_clean(at)
    assert ids_shown(at) == everything
    go(at, "Inbox")
    assert_clean(at)
    assert ids_shown(at)[:len(new)] == new
    assert [it["id"] for it in reopen(own, model_dir).curation.queue(limit=60)] == everything


def test_evidence_shows_the_genres_each_neighbour_voted_with(store, model_dir, label_rows,
                                                            posters_dir, tmp_path):
    """A neighbour relabelled after training still shows, as evidence, the genres it voted with;
    its similarity is named as the vote's (decade-centred cosine)."""
    from posterdb.core.records import VOTE_SIMILARITY

    work = tmp_path / "store"
    shutil.copytree(store, work)
    db = PosterDB.open(work, model_dir=model_dir)
    image = posters_dir / outside_poster(label_rows)[0]["file"]
    before = db.classify([image], [1975], n_evidence=5)[0]
    first = before.evidence[0]
    voted = list(first.genres)
    clf = db.genres.classifier()
    row = list(clf.ids_).index(first.id)
    assert voted == [g for g, y in zip(clf.genres_, clf.Y_[row]) if y]
    other = ["Western"] if voted != ["Western"] else ["Documentary"]
    db.curation.set_genres(first.id, other)                  # relabelled after training
    assert list(db.posters.one(first.id).genres) == other
    after = PosterDB.open(work, model_dir=model_dir).classify([image], [1975], n_evidence=5)[0]
    card = next(h for h in after.evidence if h.id == first.id)
    assert card.genres == voted and card.measure == VOTE_SIMILARITY
    assert all(h.measure == "cosine" for h in db.similar(first.id, 3))
