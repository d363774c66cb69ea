"""The daily flow (issue 21): a store remembers its film catalogue, and `posterdb watch` reads
and identifies each batch after it is stored, so identified posters reach the shop feed as
facts with their provenance; a catalogue that is down leaves posters pending, identified on
the next pass, nothing lost.

Real parts: the CLI as a subprocess on a real store (DuckDB, FAISS, image copies; the
`fake-pixels` embedder, trained on synthetic posters: what the vectors mean is not under test),
real shared posters as the dealer's scans under neutral names (their years in a labels file
dropped in the inbox, as a dealer's list gives them), the real OCR models, and the real local
TMDb-shaped server (tests/tmdb_server.py) holding the shared films, stopped and started again
on the same port."""
from __future__ import annotations

import csv
import json
import shutil
import subprocess
from pathlib import Path

import duckdb
import pytest

pytest.importorskip("rapidocr_onnxruntime")

from posterdb.core.genres import parse_genres  # noqa: E402
from posterdb.store import PosterDB  # noqa: E402
from tests.conftest import N_TRAIN  # noqa: E402
from posterdb.testing.slices import posterdb_cmd, subprocess_env  # noqa: E402
from tests.tmdb_server import GENRE_ID, TMDbServer, reopen, shared_films  # noqa: E402

N_UP, N_DOWN = 40, 10          # scans while TMDb answers, then while it is down: 50 in all


def run(*args, env: dict | None = None) -> tuple[int, dict]:
    """The CLI in this process (fast); `env` set for the call."""
    from typer.testing import CliRunner

    from posterdb.ui.cli.main import app

    res = CliRunner().invoke(app, [str(a) for a in args] + ["--json"], env=env)
    assert "Traceback" not in res.stdout, res.stdout
    return res.exit_code, json.loads(res.stdout)


def cli(*args, env: dict | None = None, timeout: float = 300) -> tuple[int, dict]:
    r = subprocess.run(posterdb_cmd() + [str(a) for a in args] + ["--json"],
                       env=subprocess_env(env), capture_output=True, text=True, timeout=timeout)
    assert "Traceback" not in r.stderr, r.stderr[-3000:]
    return r.returncode, json.loads(r.stdout)


def _scans(label_rows, posters_dir, inbox: Path, rows: list[dict], first: int) -> dict[str, dict]:
    """Copy these posters into the inbox as scan-NNN.jpg with a years file; name -> row."""
    inbox.mkdir(exist_ok=True)
    names = {}
    for i, r in enumerate(rows, first):
        name = f"scan-{i:03d}.jpg"
        shutil.copyfile(posters_dir / r["file"], inbox / name)
        names[name] = r
    with open(inbox / f"years-{first}.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file", "year"])
        for name, r in names.items():
            w.writerow([name, r["year"]])
    return names


def _film_id(row: dict) -> str:
    return str(int(row["imdb_id"].lstrip("t")))


def _feed(path: Path) -> dict[str, dict]:
    """Feed rows of the scans, by scan name (the stored copy's original path)."""
    return {r["id"]: r for r in json.loads(path.read_text())}


def _names(store: Path) -> dict[int, str]:
    con = duckdb.connect(str(store / "catalog.duckdb"), read_only=True)
    try:
        return {int(i): Path(p).name for i, p in con.execute("SELECT id, path FROM posters").fetchall()}
    finally:
        con.close()


def test_config_remembers_the_catalogue_and_model_dir(tmp_path, monkeypatch):
    store = tmp_path / "store"
    films = tmp_path / "films.csv"
    films.write_text("id,title,year,genres\nf1,The Kid,1921,Comedy|Drama\n")
    code, r = run("config", "show", "--store", store)
    assert code == 0 and r["settings"]["catalogue"]["from"] == "unset"
    assert not r["identify_by_default"]
    code, r = run("config", "set", "catalogue", tmp_path / "nope.csv", "--store", store)
    assert code == 2 and "no such file" in r["error"]
    (tmp_path / "notes.txt").write_text("just some notes\n")
    code, r = run("config", "set", "catalogue", tmp_path / "notes.txt", "--store", store)
    assert code == 2 and "not a film file" in r["error"]
    code, r = run("config", "set", "colour", "blue", "--store", store)
    assert code == 2 and "catalogue" in r["error"]
    code, r = run("config", "set", "catalogue", films, "--store", store)
    assert code == 0 and r["identify_by_default"]
    assert r["settings"]["catalogue"] == r["settings"]["catalogue"] | {
        "value": str(films.resolve()), "from": "store", "saved": str(films.resolve())}
    code, r = run("config", "set", "catalogue", "TMDb", "--store", store)
    assert r["settings"]["catalogue"]["value"] == "tmdb" and not r["tmdb_credentials"]
    # the environment wins over the store (and is said to); credentials are never saved
    code, r = run("config", "show", "--store", store,
                  env={"POSTERDB_CATALOGUE": str(films), "TMDB_API_KEY": "k"})
    assert r["settings"]["catalogue"]["from"] == "flag or environment"
    assert r["settings"]["catalogue"]["saved"] == "tmdb" and r["tmdb_credentials"]
    models = tmp_path / "models"
    models.mkdir()
    code, r = run("config", "set", "model_dir", models, "--store", store)
    assert code == 0 and r["settings"]["model_dir"]["value"] == str(models.resolve())
    assert PosterDB.open(store).settings.model_dir == models.resolve()   # used without a flag
    assert PosterDB.open(store, model_dir=tmp_path).settings.model_dir == tmp_path
    con = duckdb.connect(str(store / "catalog.duckdb"), read_only=True)
    saved = dict(con.execute("SELECT key, value FROM meta").fetchall())
    con.close()
    assert saved["catalogue"] == "tmdb" and not any("k" == v for v in saved.values())
    code, r = run("config", "unset", "catalogue", "--store", store)
    assert code == 0 and not r["identify_by_default"]


CLEAR = ("tt0011841", "tt0012349", "tt0011000")   # posters that print their titles clearly


def test_ingest_remembers_a_catalogue_and_needs_one_to_identify(tmp_path, posters_dir,
                                                               label_rows, monkeypatch):
    clear = [r for r in label_rows if r["imdb_id"] in CLEAR]
    src = tmp_path / "src"
    _scans(label_rows, posters_dir, src, clear[:2], 0)
    store = tmp_path / "store"
    code, r = run("ingest", src, "--model", "fake-pixels", "--identify", "--store", store,
                  env={"TMDB_API_KEY": "", "TMDB_READ_TOKEN": ""})
    assert code == 2 and "config set catalogue" in r["error"]       # says how, stores nothing
    films = tmp_path / "films.csv"
    with open(films, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "title", "year", "genres"])
        for row in label_rows[:20] + clear:
            w.writerow([row["imdb_id"], row["title"], row["year"], row["genres"]])
    code, r = run("ingest", src, "--labels", src / "years-0.csv", "--model", "fake-pixels",
                  "--catalogue", films, "--store", store)
    assert code == 0 and r["added"] == 2 and r["catalogue_remembered"] == str(films.resolve())
    assert r["arrivals"]["read"] == 2 and r["identify"]["identified"] == 2
    # the next ingest identifies by default; --no-identify skips it
    _scans(label_rows, posters_dir, src, clear[2:], 5)
    code, r = run("ingest", src, "--labels", src / "years-5.csv", "--model", "fake-pixels",
                  "--no-identify", "--store", store)
    assert code == 0 and r["added"] == 1 and "identify" not in r and "read" not in r
    code, r = run("ingest", src, "--model", "fake-pixels", "--store", store)   # by default:
    assert r["added"] == 0 and r["read"]["read"] == 0                      # the arrivals only
    assert r["older_left"] == {"unread": 1, "undecided": 0}
    code, r = run("ingest", src, "--model", "fake-pixels", "--identify", "--store", store)
    assert r["added"] == 0 and r["read"]["read"] == 1 and r["identify"]["identified"] == 1

    # the page's Inbox: each of today's arrivals with its film and its genres
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("POSTERDB_STORE", str(store))
    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "app.py"),
                           default_timeout=120)
    at.run()
    at.radio(key="section").set_value("Inbox").run()
    at.radio(key="inbox-view").set_value("Today's arrivals").run()
    assert not at.exception and not at.error
    md = [m.value for m in at.markdown]
    for row in clear:
        title = row["title"].rsplit(" (", 1)[0]
        assert any(m.startswith(":green-badge[identified] **" + title) for m in md), (title, md)
    assert sum(m.startswith("labels ") for m in md) == 3             # the films' genres
    assert not any("no genres yet" in m for m in md)


def test_classify_shows_the_film_first(tmp_path, trained, posters_dir, label_rows):
    """`posterdb classify` on a store with a catalogue: each image's film with the genres;
    --save stores what was read and the film too; --no-identify leaves it out."""
    store = shutil.copytree(trained, tmp_path / "store")
    wde = next(r for r in label_rows if r["imdb_id"] == "tt0011841")
    films = tmp_path / "films.csv"
    films.write_text("id,title,year,genres\ntt0011841,Way Down East,1920,Drama|Romance\n"
                     "near,Way Down East,1935,Drama\n")
    code, r = run("config", "set", "catalogue", films, "--store", store)
    code, r = run("classify", posters_dir / wde["file"], "--year", "1920", "--save",
                  "--store", store)
    assert code == 0, r
    film = r["results"][0]["film"]
    assert film["status"] == "identified" and film["film_id"] == "tt0011841"
    assert film["genres"] == ["Drama", "Romance"] and r["results"][0]["genres"]
    (pid,) = r["saved"]
    db = PosterDB.open(store, create=False)
    assert db.reading.of([pid])[pid]["identified"]["film_id"] == "tt0011841"
    assert list(db.posters.one(pid).genres) == ["Drama", "Romance"]     # facts beat the guess
    code, r = run("classify", posters_dir / wde["file"], "--no-identify", "--store", store)
    assert code == 0 and "film" not in r["results"][0]


def test_the_catalogues_own_poster_is_found_when_cached(tmp_path, trained, posters_dir):
    """Artwork verification caches catalogue posters in `catalogue_posters` (its migration);
    the page shows the first one beside the scan. A store without that cache shows none."""
    store = shutil.copytree(trained, tmp_path / "store")
    films = tmp_path / "films.csv"
    films.write_text("id,title,year,genres\ntt0011841,Way Down East,1920,Drama|Romance\n")
    db = PosterDB.open(store)
    db.daily.configure("catalogue", str(films))
    flow = db.daily.flow()
    assert flow.catalogue_poster("file", "tt0011841") is None          # no cache table yet
    rel = "catalogue/ab/abcdef.jpg"
    (store / "catalogue" / "ab").mkdir(parents=True)
    shutil.copyfile(posters_dir / "images" / "tt0011841.jpg", store / rel)
    con = duckdb.connect(str(store / "catalog.duckdb"))
    con.execute("CREATE TABLE IF NOT EXISTS catalogue_posters (source VARCHAR NOT NULL, "
                "film_id VARCHAR NOT NULL, file_path VARCHAR NOT NULL, rank INTEGER NOT NULL, "
                "sha256 VARCHAR NOT NULL, image_path VARCHAR NOT NULL, language VARCHAR, "
                "width INTEGER, height INTEGER, PRIMARY KEY (source, film_id, file_path))")
    con.execute("INSERT INTO catalogue_posters VALUES ('file', 'tt0011841', '/p1.jpg', 0, "
                "'abcdef', ?, NULL, 182, 268)", [rel])
    con.close()
    assert flow.catalogue_poster("file", "tt0011841") == store / rel
    assert flow.catalogue_poster("tmdb", "tt0011841") is None


def test_watch_publishes_identified_films_and_survives_a_catalogue_outage(
        tmp_path, trained, posters_dir, label_rows):
    store = shutil.copytree(trained, tmp_path / "store")
    rows = label_rows[3::97][:N_UP + N_DOWN]
    truth = {f"scan-{i:03d}.jpg": r for i, r in enumerate(rows)}
    inbox, feed = tmp_path / "INBOX", tmp_path / "shop" / "feed.json"
    feed.parent.mkdir()
    with TMDbServer(shared_films()) as srv:
        env = srv.env()
        code, r = cli("config", "set", "catalogue", "tmdb", "--store", store)
        assert code == 0 and r["identify_by_default"]

        # 1. forty scans while TMDb answers
        _scans(label_rows, posters_dir, inbox, rows[:N_UP], 0)
        code, r = cli("watch", inbox, "--once", "--settle", "0", "--feed", feed, "--store", store,
                      env=env)
        assert code == 0 and (r["added"], r["failed"]) == (N_UP, 0)
        ident = r["identify"]
        assert ident["read"] == N_UP and ident["pending"] == 0 and ident["errors"] == []
        names = _names(store)
        rows_by_name = {names[i]: f for i, f in _feed(feed).items() if names[i] in truth}
        assert len(rows_by_name) == N_UP
        found = {n: f for n, f in rows_by_name.items() if f["genres_from"] == "catalogue"}
        assert len(found) == ident["identified"] >= 12, ident
        for name, f in found.items():                      # facts, with their provenance
            t = truth[name]
            assert (f["film_source"], f["film_id"]) == ("tmdb", _film_id(t)), (name, f, t)
            assert set(f["genres"]) == {g for g in parse_genres(t["genres"])[0] if g in GENRE_ID}
            assert f["film_year"] == int(t["year"]) and f["title"] == f["film_title"]
        for f in rows_by_name.values():
            if f["genres_from"] != "catalogue":            # the precision policy, as before
                assert f["genres_from"] in ("classifier", "") and f["film_id"] is None
        print(f"\nwatch, TMDb up: {ident['identified']}/{N_UP} scans identified, "
              f"{ident['requests']} requests")

        # 2. ten more while it is down: stored, filed away, left pending
        srv.stop()
        _scans(label_rows, posters_dir, inbox, rows[N_UP:], N_UP)
        code, r = cli("watch", inbox, "--once", "--settle", "0", "--feed", feed, "--store", store,
                      env=env)
        assert code == 0 and (r["added"], r["failed"]) == (N_DOWN, 0)
        assert len(list((inbox / "done").glob("scan-*.jpg"))) == N_UP + N_DOWN
        assert not [p for p in inbox.glob("scan-*.jpg")]
        down = r["identify"]
        assert down["read"] == N_DOWN and down["identified"] == 0
        assert down["pending"] >= 1 and down["errors"]
        names = _names(store)
        late = {i for i, n in names.items() if n in truth and truth[n] in rows[N_UP:]}
        assert len(late) == N_DOWN
        assert all(_feed(feed)[i]["genres_from"] != "catalogue" for i in late)

        # 3. it is back (same address): the next pass identifies them, reading nothing again
        reopen(srv)
        code, r = cli("watch", inbox, "--once", "--settle", "0", "--feed", feed, "--store", store,
                      env=env)
        assert code == 0 and r["files"] == 0
        caught = r["identify"]["older_posters"]
        assert caught["read"] == 0 and caught["pending"] == 0 and caught["identified"] >= 1
        fed = _feed(feed)
        back = {i for i in late if fed[i]["genres_from"] == "catalogue"}
        assert len(back) == caught["identified"]
        for i in back:
            assert fed[i]["film_id"] == _film_id(truth[names[i]])
    db = PosterDB.open(store, create=False)
    assert db.posters.count() == N_TRAIN + N_UP + N_DOWN                  # each scan once, none lost
    assert db.reading.counts()["read"] == N_TRAIN + N_UP + N_DOWN    # the backlog too, once
    assert "pending" not in db.reading.counts()
