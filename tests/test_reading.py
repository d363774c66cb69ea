"""Reading stored posters and identifying their films, end to end on a real store: real shared
posters under neutral names (no IMDb ids), real OCR models, a real DuckDB file, the CLI, a
catalogue file and a real local TMDb-shaped server; the page section through AppTest.

The store uses the `fake-pixels` embedder: nothing here judges what the vectors mean."""
from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import duckdb
import pytest

pytest.importorskip("rapidocr_onnxruntime")

from typer.testing import CliRunner  # noqa: E402

from posterdb.store import PosterDB  # noqa: E402
from posterdb.ui.cli.main import app  # noqa: E402

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[1]
FAKE = "fake-pixels"
# poster -> (title, year, genres) of its film; the first three print their titles clearly
FILMS = {"tt0011841": ("Way Down East", 1920, "Drama|Romance"),
         "tt0012349": ("The Kid", 1921, "Comedy|Drama|Family"),
         "tt0011000": ("Leaves From Satan's Book", 1920, "Drama"),
         "tt0015648": ("Battleship Potemkin", 1925, "Drama|History")}
NEAR_MISSES = [("The Kid", 1950, "Western"), ("Way Down East", 1935, "Drama|Romance"),
               ("Way Down East 2", 1923, "Drama"), ("The Kid Brother", 1927, "Comedy"),
               ("Satan's Book", 1990, "Horror"), ("East of Eden", 1955, "Drama")]


def run(*args: str):
    res = runner.invoke(app, [*args, "--json"])
    assert "Traceback" not in res.stdout, res.stdout
    return res.exit_code, json.loads(res.stdout)


@pytest.fixture(scope="module")
def src(tmp_path_factory, posters_dir) -> Path:
    """The posters under neutral names, with a labels file giving only their years."""
    d = tmp_path_factory.mktemp("read-src")
    with open(d / "labels.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file", "year"])
        for i, (imdb, (_, year, _)) in enumerate(FILMS.items()):
            shutil.copyfile(posters_dir / "images" / f"{imdb}.jpg", d / f"scan-{i:03d}.jpg")
            w.writerow([f"scan-{i:03d}.jpg", year])
    return d


@pytest.fixture(scope="module")
def films_csv(tmp_path_factory) -> Path:
    """The films plus near-misses and 300 word-salad distractors."""
    from tests.tmdb_server import distractor_films

    p = tmp_path_factory.mktemp("cat") / "films.csv"
    with open(p, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "title", "year", "genres"])
        for imdb, (t, y, g) in FILMS.items():
            w.writerow([imdb, t, y, g])
        for i, (t, y, g) in enumerate(NEAR_MISSES):
            w.writerow([f"near-{i}", t, y, g])
        for d in distractor_films(300):
            w.writerow([f"d{d.id}", d.title, d.year, "Drama"])
    return p


@pytest.fixture(scope="module")
def store(tmp_path_factory, src) -> Path:
    s = tmp_path_factory.mktemp("read") / "store"
    rep = PosterDB.open(s).ingest(src, src / "labels.csv", model=FAKE)
    assert rep.added == len(FILMS) and not rep.failed
    return s


def test_read_is_resumable_and_text_searchable(store):
    code, r = run("read", "1", "2", "--store", str(store))
    assert code == 0 and r["read"] == 2 and r["lines"] >= 2
    code, r = run("read", "--all", "--store", str(store))
    assert code == 0 and r["read"] == len(FILMS) - 2          # only what was left
    code, r = run("read", "--all", "--store", str(store))
    assert code == 0 and r["read"] == 0
    con = duckdb.connect(str(store / "catalog.duckdb"), read_only=True)
    n_lines, n_reads = con.execute("SELECT (SELECT count(*) FROM poster_text_lines), "
                                   "(SELECT count(*) FROM poster_reads)").fetchone()
    box, conf = con.execute("SELECT box, confidence FROM poster_text_lines LIMIT 1").fetchone()
    con.close()
    assert n_reads == len(FILMS) and n_lines >= len(FILMS) and len(box) == 8 and 0 < conf <= 1
    code, r = run("search-text", "way down", "--store", str(store))
    assert code == 0 and [h["id"] for h in r["hits"]] == [1]
    code, r = run("search-text", "WAYDOWN east", "--store", str(store))   # spaces ignored
    assert [h["id"] for h in r["hits"]] == [1]
    code, r = run("search-text", "griffith", "--store", str(store))
    assert [h["id"] for h in r["hits"]] == [1] and "GRIFFITH" in r["hits"][0]["read_text"]


def test_identify_from_a_catalogue_file(store, films_csv):
    run("read", "--all", "--store", str(store))
    code, r = run("identify", "--all", "--catalogue", str(films_csv), "--store", str(store))
    assert code == 0 and r["identified"] >= 3 and r["pending"] == 0
    db = PosterDB.open(store, create=False)
    names = {p.id: Path(p.path).name for p in db.posters.get()}
    by_name = dict(zip(sorted(names.values()), FILMS.values()))
    right = 0
    for p in db.posters.get():
        got = db.reading.of([p.id])[p.id]["identified"]
        title, year, genres = by_name[names[p.id]]
        if got["status"] == "identified":
            assert (got["title"], got["year"]) == (title, year)      # never a near-miss
            assert list(p.genres) == genres.split("|")                  # exactly the film's genres
            assert p.title == title                               # it had none
            right += 1
    assert right >= 3
    rows = {r.id: r for r in db.posters.export()}
    ids = [i for i, r in rows.items() if r.identified]
    assert len(ids) == right
    assert set(rows[ids[0]].identified) == {"source", "film_id", "title", "year", "score"}
    assert rows[ids[0]].identified["source"] == "file"
    code, info = run("info", "--store", str(store))
    assert info["reading"] == {"read": len(FILMS), "identified": right,
                               "unidentified": len(FILMS) - right}
    # re-running does nothing: every poster is decided
    code, r = run("identify", "--all", "--catalogue", str(films_csv), "--store", str(store))
    assert r["to_identify"] == 0


def test_review_beats_catalogue_beats_prediction(store, films_csv):
    db = PosterDB.open(store)
    run("read", "--all", "--store", str(store))
    run("identify", "--all", "--catalogue", str(films_csv), "--store", str(store))
    pid = next(p.id for p in db.posters.get() if p.title == "The Kid")
    db.curation.set_genres(pid, ["Western"])
    assert list(db.posters.one(pid).genres) == ["Western"]


def test_identify_needs_a_catalogue_and_valid_ids(store, tmp_path):
    code, r = run("identify", "--all", "--catalogue", str(tmp_path / "nope.csv"),
                  "--store", str(store))
    assert code == 2 and "no such file" in r["error"]
    code, r = run("read", "--store", str(store))
    assert code == 2 and "--all" in r["error"]
    code, r = run("config", "unset", "catalogue", "--store", str(store))  # remembered before
    assert code == 0 and not r["identify_by_default"]
    code, r = run("identify", "--all", "--store", str(store))   # none configured, no TMDb key
    assert code == 2 and "TMDB_API_KEY" in r["error"] and "config set catalogue" in r["error"]


def test_ingest_read_identify_through_a_rate_limited_tmdb(tmp_path, src, monkeypatch):
    """429 on some searches: no poster fails, ingest is complete, a later run catches up."""
    from tests.tmdb_server import GENRE_ID, Film, TMDbServer, distractor_films

    films = [Film(id=100 + i, title=t, year=y, genre_ids=[GENRE_ID[g] for g in gs.split("|")])
             for i, (t, y, gs) in enumerate(list(FILMS.values()) + NEAR_MISSES)]
    with TMDbServer(films + distractor_films(200)) as srv:
        for k, v in srv.env().items():
            monkeypatch.setenv(k, v)
        srv.rate_limit("/search/movie", times=20, retry_after=0)   # > 3 searches x 6 tries
        s = tmp_path / "store"
        code, r = run("ingest", str(src), "--labels", str(src / "labels.csv"), "--model", FAKE,
                      "--identify", "--catalogue", "tmdb", "--store", str(s))
        assert code == 0 and r["added"] == len(FILMS) and r["read"]["read"] == len(FILMS)
        first = r["identify"]
        assert first["pending"] >= 1 and first["identified"] < 3
        assert first["pending"] + first["not_tried"] + first["identified"] + \
            first["unidentified"] == len(FILMS)
        code, r = run("identify", "--all", "--store", str(s))
        assert code == 0 and r["pending"] == 0
        assert first["identified"] + r["identified"] >= 3
        db = PosterDB.open(s, create=False)
        idents = db.reading.of([p.id for p in db.posters.get()])
        assert all(v["identified"]["status"] != "pending" for v in idents.values())
        assert {v["identified"]["source"] for v in idents.values()} == {"tmdb"}


def test_a_refused_tmdb_key_does_not_fail_the_ingest(tmp_path, src, monkeypatch):
    from tests.tmdb_server import TMDbServer

    with TMDbServer([]) as srv:
        for k, v in srv.env().items():
            monkeypatch.setenv(k, v)
        monkeypatch.setenv("TMDB_API_KEY", "wrong-key")
        code, r = run("ingest", str(src), "--labels", str(src / "labels.csv"), "--model", FAKE,
                      "--identify", "--store", str(tmp_path / "s"))
    assert code == 0 and r["added"] == len(FILMS) and r["read"]["read"] == len(FILMS)
    assert "401" in r["stage_error"] and "posters are stored" in r["stage_error"]


def test_removing_a_poster_removes_its_reading(tmp_path, src, films_csv):
    s = tmp_path / "store"
    db = PosterDB.open(s)
    db.ingest(src, src / "labels.csv", model=FAKE)
    db.reading.read([1])
    assert db.reading.of([1])[1]["lines"]
    db.remove([1])
    assert db.reading.of([1])[1] == {"lines": None, "identified": None}


def test_page_shows_what_was_read_and_the_film(store, films_csv, monkeypatch):
    from streamlit.testing.v1 import AppTest

    run("read", "--all", "--store", str(store))
    run("identify", "--all", "--catalogue", str(films_csv), "--store", str(store))
    monkeypatch.setenv("POSTERDB_STORE", str(store))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.run()
    at.radio(key="section").set_value("Read & identify").run()
    at.text_input(key="read-query").set_value("way down").run()
    assert not at.exception and not at.error
    md = [m.value for m in at.markdown]
    assert any("identified" in m and "**Way Down East** (1920)" in m for m in md), md
    assert "#### Evidence: the most similar stored posters" in md
    assert any("WAYDOWNEAST" in str(d.value) for d in at.dataframe)
    # the Search section finds it by printed text too
    at.radio(key="section").set_value("Search").run()
    at.radio(key="search-mode").set_value("Printed text").run()
    at.text_input(key="search-read-query").set_value("griffith").run()
    assert not at.exception and not at.error
    assert any("posters say" in m.value for m in at.markdown)


def test_catalogue_genres_the_image_doubts_are_a_review_signal(tmp_path):
    """An identified poster's catalogue genres are labels: when the image classifier disagrees,
    the poster ranks up in the review queue. (Synthetic pictures carry no text, so the lines
    read off this one are written to the catalogue directly.)"""
    from synthetic import make_posters

    from posterdb.reading.identify import Film, LocalCatalogue

    src = make_posters(tmp_path / "src", 40, seed=3, labelled=39)
    db = PosterDB.open(tmp_path / "s")
    db.ingest(src, src / "labels.csv", model=FAKE)
    db.train()
    (p,) = [p for p in db.posters.get() if not p.genres]
    queue = {q["id"]: q for q in db.curation.queue(limit=40)}
    assert queue[p.id]["reason"].startswith("unlabelled")
    line = {"text": "THE WILD BUNCH", "confidence": 0.99,
            "box": [[10, 20], [170, 20], [170, 60], [10, 60]]}
    with db.catalog.write() as con:
        db.catalog.save_reads(con, [p.id], [[line]], "test", ["THE WILD BUNCH"],
                              ["THEWILDBUNCH"])
    genres = ["War"] if "War" not in p.predicted else ["Western"]
    cat = LocalCatalogue([Film("file", "wb", "The Wild Bunch", p.year, tuple(genres))])
    r = db.reading.identify(cat, [p.id])
    assert r["identified"] == 1
    assert list(db.posters.one(p.id).genres) == genres          # catalogue labels, trained on next
    q = {q["id"]: q for q in db.curation.queue(limit=40)}[p.id]
    assert q["reason"].startswith(f"labelled {genres[0]}")
    assert q["predicted_probabilities"][genres[0]] < 0.5
