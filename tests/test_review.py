"""`posterdb review` / `train --publish-precision` / `export --format shop` on a real store
(fake-pixels embedder on synthetic posters, posters arriving through the real inbox watcher)."""
from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import pytest
from synthetic import make_posters
from typer.testing import CliRunner

from posterdb.core.genres import GENRES
from posterdb.curation.inbox import Inbox
from posterdb.curation.watch import Watcher
from posterdb.store import PosterDB
from posterdb.ui.cli.main import app

runner = CliRunner()


def run(*args) -> tuple[int, object]:
    res = runner.invoke(app, [str(a) for a in args])
    try:
        return res.exit_code, json.loads(res.stdout)
    except json.JSONDecodeError:
        return res.exit_code, res.stdout + repr(res.exception)


@pytest.fixture(scope="module")
def base_store(tmp_path_factory) -> Path:
    """60 labelled posters, trained with a low publishing bar (so some genres publish), then 12
    unlabelled arrivals through the inbox."""
    base = tmp_path_factory.mktemp("review")
    src = make_posters(base / "src", 60, seed=1)
    db = PosterDB.open(base / "store")
    db.ingest(src, src / "labels.csv", model="fake-pixels")
    db.train(publish_precision=0.1)
    inbox = base / "INBOX"
    inbox.mkdir()
    for i, f in enumerate(sorted((make_posters(base / "new", 12, seed=4, labelled=0)
                                  / "images").iterdir())):
        shutil.copy(f, inbox / f"New {i} ({1960 + i}).png")
    Watcher(Inbox(inbox, settle=0), lambda b: db.curation.process(b, root=inbox)).run_once()
    return db.root


@pytest.fixture
def store(base_store, tmp_path) -> Path:
    return shutil.copytree(base_store, tmp_path / "store")


def test_published_genres_are_recorded_with_the_prediction_and_fed_to_the_shop(store, tmp_path):
    db = PosterDB.open(store)
    new = [p for p in db.posters.export() if p.title.startswith("New ")]
    assert len(new) == 12 and all(p.predicted for p in new)
    assert all(set(p.published) <= set(p.predicted) for p in new)
    assert any(p.published for p in new)
    code, out = run("export", "--format", "shop", "-o", tmp_path / "feed.csv", "--json",
                    "--store", store)
    assert code == 0 and out["posters"] == 72
    rows = list(csv.DictReader(io.StringIO((tmp_path / "feed.csv").read_text())))
    assert list(rows[0]) == ["id", "title", "year", "image", "genres", "genres_from",
                             "film_source", "film_id", "film_title", "film_year"]
    by_id = {int(r["id"]): r for r in rows}
    for p in new:   # the shop sees only published genres of unreviewed posters
        assert by_id[p.id]["genres"] == "|".join(p.published)
        assert by_id[p.id]["genres_from"] == ("classifier" if p.published else "")
        assert Path(by_id[p.id]["image"]).is_file()
    code, out = run("export", "--format", "shop", "--json", "--store", store)
    assert code == 0 and len(out) == 72 and set(out[0]) == {
        "id", "title", "year", "image", "genres", "genres_from", "film_source", "film_id",
        "film_title", "film_year"}


def test_review_list_round_trips_in_json(store, tmp_path):
    code, items = run("review", "list", "--kind", "new", "-n", "50", "--json", "--store", store)
    assert code == 0 and items and all(it["kind"] == "new" for it in items)
    assert [it["score"] for it in items] == sorted(it["score"] for it in items)  # least sure first
    assert all(it["suggested"] and not it["labels"] for it in items)
    items[0]["accept"] = True
    items[1]["genres"] = ["horror", "Sci-Fi"]         # any case, aliases
    decisions = tmp_path / "decisions.json"
    decisions.write_text(json.dumps(items))
    code, done = run("review", "apply", decisions, "--json", "--store", store)
    assert code == 0, done
    assert done == [{"id": items[0]["id"], "genres": items[0]["predicted"]},
                    {"id": items[1]["id"], "genres": ["Horror", "Science Fiction"]}]
    db = PosterDB.open(store)
    a, b = db.posters.get([items[0]["id"], items[1]["id"]])
    assert a.reviewed and list(a.genres) == items[0]["predicted"]
    assert b.reviewed and list(b.genres) == ["Horror", "Science Fiction"]
    assert sum(p.reviewed for p in db.posters.export()) == 2               # unchanged entries skipped
    code, again = run("review", "list", "--kind", "new", "-n", "50", "--json", "--store", store)
    assert {it["id"] for it in again} == {it["id"] for it in items[2:]}
    code, done = run("review", "apply", decisions, "--json", "--store", store)
    assert code == 0 and len(done) == 1     # accept is explicit; the edited entry now matches


def test_accept_top_set_and_mistakes(store):
    code, done = run("review", "accept", "--top", "3", "--json", "--store", store)
    assert code == 0 and len(done) == 3
    pid = done[0]["id"]
    code, done = run("review", "set", pid, "comedy", "THRILLER", "--json", "--store", store)
    assert code == 0 and done == [{"id": pid, "genres": ["Comedy", "Thriller"]}]
    for args, needle in ((("set", 99999, "Drama"), "no such poster"),
                         (("set", pid, "Biography"), "not TMDb genres"),
                         (("accept",), "give poster ids"),
                         (("list", "--kind", "odd"), "kind must be")):
        code, out = run("review", *args, "--json", "--store", store)
        assert code == 2 and needle in out["error"], out


def test_labelled_posters_ranked_by_mistakenness(store):
    code, items = run("review", "list", "--kind", "labelled", "-n", "5", "--json", "--store", store)
    assert code == 0 and len(items) == 5 and all(it["kind"] == "labelled" for it in items)
    assert [it["score"] for it in items] == sorted((it["score"] for it in items), reverse=True)
    assert all(("labelled" in it["reason"] or "is not labelled" in it["reason"])
               and "heads" in it["reason"] for it in items)


def test_train_reports_publishing_and_before_after(store):
    code, out = run("train", "--publish-precision", "0.5", "--json", "--store", store)
    assert code == 0, out
    assert out["publishing"]["precision_target"] == 0.5
    assert out["before"]["publishing"]["precision_target"] == 0.1   # the previous training
    assert "blend" in out["before"]["validation"] and "blend" in out["validation"]
    code, out = run("train", "--publish-precision", "1.5", "--json", "--store", store)
    assert code == 2 and "publish-precision" in out["error"]


def test_classify_save_records_the_published_subset(store, tmp_path):
    img = sorted((make_posters(tmp_path / "one", 1, seed=9, labelled=0) / "images").iterdir())[0]
    code, out = run("classify", img, "--save", "--json", "--store", store)
    assert code == 0, out
    db = PosterDB.open(store)
    saved = [p for p in db.posters.export() if p.path == str(img) or p.path.endswith(img.name)]
    assert len(saved) == 1 and saved[0].predicted
    assert set(saved[0].published) <= set(saved[0].predicted)
    thresholds = dict(zip(GENRES, db.genres.publish_thresholds(db.models.default())))
    probs = (out if isinstance(out, list) else out["results"])[0]["probabilities"]
    assert list(saved[0].published) == [g for g in saved[0].predicted if probs[g] >= thresholds[g]]


def test_the_same_bytes_twice_in_one_batch_count_once(store, tmp_path):
    db = PosterDB.open(store)
    img = sorted((make_posters(tmp_path / "twice", 1, seed=21, labelled=0) / "images").iterdir())[0]
    inbox = tmp_path / "INBOX"
    inbox.mkdir()
    shutil.copy(img, inbox / "a.png")
    shutil.copy(img, inbox / "b.png")
    [rep] = Watcher(Inbox(inbox, settle=0), lambda b: db.curation.process(b, root=inbox)).run_once()
    assert (rep.files, rep.added, rep.already, rep.failed) == (2, 1, 1, 0)
    pid = db.posters.export()[-1].id
    [d] = [d for d in db.curation.duplicates(pid) if d["tier"] == "exact copy"]
    assert d["path"].endswith("b.png")
    code, items = run("review", "list", "--kind", "new", "-n", "100", "--duplicates", "--json",
                      "--store", store)
    assert code == 0 and items and all(isinstance(it["duplicates"], list) for it in items)


def test_a_labels_file_in_the_inbox_gives_title_year_and_genres(store, tmp_path):
    db = PosterDB.open(store)
    imgs = sorted((make_posters(tmp_path / "lab", 2, seed=23, labelled=0) / "images").iterdir())
    inbox = tmp_path / "INBOX"
    inbox.mkdir()
    shutil.copy(imgs[0], inbox / "scan-001.png")
    shutil.copy(imgs[1], inbox / "Nosferatu (1922).png")
    (inbox / "batch.csv").write_text("file,title,year,genres\nscan-001.png,Metropolis,1927,"
                                     "Drama|Science Fiction\n")
    Watcher(Inbox(inbox, settle=0), lambda b: db.curation.process(b, root=inbox)).run_once()
    got = {p.title: p for p in db.posters.export()[-2:]}
    assert got["Metropolis"].year == 1927
    assert list(got["Metropolis"].genres) == ["Drama", "Science Fiction"]  # labelled: published
    assert got["Nosferatu"].year == 1922 and not got["Nosferatu"].genres
    feed = {r.title: r.genres for r in db.curation.feed()}
    assert feed["Metropolis"] == ("Drama", "Science Fiction")
    assert (inbox / "batch.csv").exists() and not any(inbox.glob("*.png"))


def test_watch_refuses_a_store_or_feed_inside_the_inbox(tmp_path):
    inbox = tmp_path / "INBOX"
    inbox.mkdir()
    for extra, needle in ((["--store", inbox / "store"], "the store"),
                          (["--feed", inbox / "feed.csv", "--store", tmp_path / "s"], "--feed")):
        code, out = run("watch", inbox, "--once", "--json", *extra)
        assert code == 2 and needle in out["error"] and "inside" in out["error"], out
    assert not (inbox / "store").exists() and not (tmp_path / "s").exists()
