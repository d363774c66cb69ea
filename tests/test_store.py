"""The store end to end: ingest real posters into a real DuckDB file + FAISS index, then query it."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from posterdb.core.errors import StoreError
from posterdb.core.genres import GENRES
from posterdb.store import PosterDB


@pytest.fixture(scope="module")
def built(tmp_path_factory, label_rows, posters_dir, model_dir):
    """A store holding 120 real posters (every 40th row: all decades) with their labels."""
    from tests.conftest import copy_slice

    src = copy_slice(label_rows, posters_dir, tmp_path_factory.mktemp("src"), 120, every=40)
    db = PosterDB.open(tmp_path_factory.mktemp("store") / "s", model_dir=model_dir)
    report = db.ingest(src, src / "labels.csv", model="mobilenet-v2")
    return db, src, report


def test_ingest_stores_posters_labels_vectors(built, label_rows):
    db, src, report = built
    assert report.added == 120 and not report.failed
    info = db.info()
    assert info["posters"] == 120 and info["labelled"] == 120
    expected = {}
    for r in label_rows[::40][:120]:
        for g in r["genres"].split("|"):
            expected[g] = expected.get(g, 0) + 1
    assert info["by_genre"] == expected
    decades = {int(r["year"]) // 10 * 10 for r in label_rows[::40][:120]}
    assert {int(d) for d in info["by_decade"]} == decades
    (m,) = info["models"]
    assert m["name"] == "mobilenet-v2" and m["dim"] == 1280 and m["vectors"] == 120
    assert db.check()["ok"]
    # metadata of one poster matches its labels row, the image copy is kept in the store
    row = label_rows[0]
    (p,) = [p for p in db.posters.get() if p.path.endswith(row["file"].split("/")[-1])]
    assert p.year == int(row["year"]) and p.decade == int(row["year"]) // 10 * 10
    assert list(p.genres) == row["genres"].split("|")
    assert p.title and "(" not in p.title[-6:]
    assert (db.root / p.image_path).read_bytes() == (src / row["file"]).read_bytes()


def test_vectors_are_unit_norm_and_index_matches_duckdb(built):
    db, _, _ = built
    ids = db.indexes.index().ids()
    assert len(ids) == 120
    v = db.search.vectors(ids[:10])
    assert np.allclose(np.linalg.norm(v, axis=1), 1, atol=1e-4)


def test_rerun_adds_nothing(built):
    db, src, _ = built
    again = db.ingest(src, src / "labels.csv")
    assert (again.added, again.skipped, again.embedded_existing) == (0, 120, 0)
    assert db.posters.count() == 120


def test_similar_returns_neighbours_with_metadata(built):
    db, _, _ = built
    pid = int(db.indexes.index().ids()[5])
    hits = db.similar(pid, k=10)
    assert len(hits) == 10 and pid not in [h.id for h in hits]
    sims = [h.similarity for h in hits]
    assert sims == sorted(sims, reverse=True) and all(-1 <= s <= 1.0001 for s in sims)
    assert all(h.title and h.year and h.genres and h.image for h in hits)
    only_70s = db.similar(pid, k=10, decades=[1970])
    assert only_70s and all(h.decade == 1970 for h in only_70s)
    drama = db.similar(pid, k=5, genres=["Drama"])
    assert drama and all("Drama" in h.genres for h in drama)
    # a query by image file finds the poster itself first
    p = db.posters.one(pid)
    top = db.similar(db.root / p.image_path, k=1)[0]
    assert top.id == pid and top.similarity > 0.999


def test_incremental_ten_new_files(built, tmp_path, label_rows, posters_dir):
    db, src, _ = built
    from tests.conftest import copy_slice

    more = copy_slice(label_rows, posters_dir, tmp_path / "more", 10, start=1, every=40)
    shutil.copytree(src / "images", more / "images", dirs_exist_ok=True)
    r = db.ingest(more, more / "labels.csv")
    assert r.added == 10 and r.skipped == 120
    assert db.posters.count() == 130 and len(db.indexes.index()) == 130
    removed = db.remove(r.added_ids)
    assert sorted(removed) == sorted(r.added_ids)
    assert db.posters.count() == 120 and db.check()["ok"]


def test_same_bytes_under_two_names_stored_once(tmp_path, posters_dir, label_rows, model_dir):
    folder = tmp_path / "dups"
    folder.mkdir()
    a = posters_dir / label_rows[3]["file"]
    shutil.copyfile(a, folder / "one.jpg")
    shutil.copyfile(a, folder / "two.jpg")
    shutil.copyfile(posters_dir / label_rows[4]["file"], folder / "other.jpg")
    db = PosterDB.open(tmp_path / "store", model_dir=model_dir)
    r = db.ingest(folder)
    assert (r.added, r.duplicates) == (2, 1)
    assert db.posters.count() == 2


def test_remove_and_rebuild_after_deleting_index(tmp_path, poster_slice, model_dir):
    src = poster_slice(40, start=2)
    db = PosterDB.open(tmp_path / "store", model_dir=model_dir)
    db.ingest(src, src / "labels.csv")
    ids = db.indexes.index().ids()
    before = [(h.id, round(h.similarity, 5)) for h in db.similar(int(ids[0]), k=10)]
    db.remove([int(ids[1]), int(ids[2])])
    assert db.check()["ok"] and db.posters.count() == 38
    db.indexes.path("mobilenet-v2").unlink()
    fresh = PosterDB.open(tmp_path / "store", model_dir=model_dir)
    assert not fresh.check()["ok"]  # the missing index file is reported ...
    info = fresh.info()              # ... and rebuilt from DuckDB on open
    assert info["models"][0]["index"]["status"] == "rebuilt"
    assert fresh.check()["ok"]
    after = [(h.id, round(h.similarity, 5)) for h in fresh.similar(int(ids[0]), k=8)]
    assert after == [h for h in before if h[0] not in (ids[1], ids[2])][:8]


def test_stale_index_file_is_synced_from_duckdb(tmp_path, poster_slice, model_dir):
    src = poster_slice(20, start=5)
    db = PosterDB.open(tmp_path / "store", model_dir=model_dir)
    db.ingest(src, src / "labels.csv")
    stale = db.indexes.path("mobilenet-v2").read_bytes()
    stale_meta = db.indexes.path("mobilenet-v2").with_suffix(".json").read_bytes()
    more = poster_slice(5, start=6, name="more")
    db.ingest(more)
    db.indexes.path("mobilenet-v2").write_bytes(stale)  # as if a crash happened before the save
    db.indexes.path("mobilenet-v2").with_suffix(".json").write_bytes(stale_meta)
    fresh = PosterDB.open(tmp_path / "store", model_dir=model_dir)
    assert not fresh.check()["ok"]
    state = fresh.indexes.state()
    assert (state.status, state.added, state.removed) == ("synced", 5, 0)
    assert fresh.check()["ok"]


def test_bad_files_are_recorded_and_nothing_stored_changes(tmp_path, poster_slice, model_dir):
    src = poster_slice(10, start=9)
    db = PosterDB.open(tmp_path / "store", model_dir=model_dir)
    db.ingest(src, src / "labels.csv")
    before = db.posters.export()
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "empty.jpg").write_bytes(b"")
    (bad / "text.jpg").write_bytes(b"this is not an image at all")
    good = next((src / "images").iterdir())
    (bad / "trunc.jpg").write_bytes(good.read_bytes()[:300])
    r = db.ingest(bad)
    assert r.added == 0 and len(r.failed) == 3
    reasons = {f["path"].split("/")[-1]: f["reason"] for f in r.failed}
    assert set(reasons) == {"empty.jpg", "text.jpg", "trunc.jpg"} and all(reasons.values())
    assert db.posters.export() == before
    assert len(db.ingestion.errors()) == 3 and db.check()["ok"]


def test_missing_file_named_in_labels(tmp_path, poster_slice, model_dir):
    src = poster_slice(5, start=11)
    with open(src / "labels.csv", "a", encoding="utf-8") as f:
        f.write("images/nope.jpg,tt0,Nope,1999,Drama,Drama,x\n")
    db = PosterDB.open(tmp_path / "store", model_dir=model_dir)
    r = db.ingest(src, src / "labels.csv")
    assert r.added == 5
    assert [f for f in r.failed if "nope.jpg" in f["path"]]


def test_unlabelled_folder_and_reviews(tmp_path, poster_slice, model_dir):
    src = poster_slice(6, start=13)
    db = PosterDB.open(tmp_path / "store", model_dir=model_dir)
    db.ingest(src / "images")
    assert db.info()["labelled"] == 0
    pid = int(db.indexes.index().ids()[0])
    db.curation.set_genres(pid, ["Horror", "Comedy"])
    assert list(db.posters.one(pid).genres) == ["Comedy", "Horror"] and db.posters.one(pid).reviewed
    with pytest.raises(ValueError):
        db.curation.set_genres(pid, ["Biography"])
    assert set(GENRES) >= set(db.info()["by_genre"])


def test_browse_by_genre_and_decade_uses_labels_else_predictions(tmp_path, poster_slice,
                                                                 model_dir):
    src = poster_slice(8, start=15)
    db = PosterDB.open(tmp_path / "store", model_dir=model_dir)
    db.ingest(src / "images")
    a, b, c = (int(i) for i in db.indexes.index().ids()[:3])
    with db.catalog.write() as con:
        db.catalog.set_labels(con, [a, b], [["Drama"], ["Drama"]], "prediction")
        con.execute("UPDATE posters SET year = 1974, decade = 1970 WHERE id IN (?, ?, ?)", [a, b, c])
    db.curation.set_genres(b, ["Horror"])  # a person's labels win over the old prediction
    db.curation.set_genres(c, ["Drama", "War"])
    total, page = db.posters.browse(genres=["Drama"], decades=[1970])
    assert total == 2 and [p.id for p in page] == [a, c]
    total, page = db.posters.browse(decades=[1970], offset=1, limit=1)
    assert total == 3 and [p.id for p in page] == [b]
    assert db.posters.browse(genres=["Western"]) == (0, [])


def test_open_missing_store_without_create(tmp_path):
    with pytest.raises(StoreError):
        PosterDB.open(tmp_path / "nothing", create=False)


def test_generation_moves_forward_even_after_a_crash_before_commit(tmp_path):
    db = PosterDB.open(tmp_path / "s")
    g0 = db.generation()
    with db.catalog.read() as con:
        assert db.catalog.generation(con) == g0  # the file and DuckDB agree
    db.catalog._write_generation_file(g0 + 5)  # as if killed after the file write, before COMMIT
    with db.catalog.write():
        pass
    with db.catalog.read() as con:
        assert db.generation() == db.catalog.generation(con) == g0 + 6
    with pytest.raises(RuntimeError):
        with db.catalog.write():
            raise RuntimeError("rolled back")
    assert db.generation() == g0 + 6
    db.catalog.generation_file.unlink()  # an older store without the file: DuckDB answers
    assert db.generation() == g0 + 6


def test_stale_temp_files_are_reported_and_swept(tmp_path, poster_slice, model_dir):
    import os
    import time

    src = poster_slice(3, start=17)
    db = PosterDB.open(tmp_path / "store", model_dir=model_dir)
    db.ingest(src)
    old = db.root / "images" / "ab" / ".x.jpg.123.tmp"
    old.parent.mkdir(parents=True, exist_ok=True)
    old.write_bytes(b"half")
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    young = db.root / "index" / "mobilenet_v2.faissXYZ.tmp"  # maybe a live writer's
    young.write_bytes(b"busy")
    report = db.check()
    assert report["ok"] and any("temporary" in w for w in report["warnings"])
    r = db.ingest(src)
    assert r.swept_temp_files == 1 and not old.exists() and young.exists()


def test_eval_report_is_read_back_as_a_record_and_a_torn_one_is_one_line(tmp_path):
    db = PosterDB.open(tmp_path / "s")
    assert db.genres.latest_eval() is None
    (tmp_path / "s" / "eval").mkdir()
    latest = tmp_path / "s" / "eval" / "latest.json"
    latest.write_text('{"setup": {"n_train": 8}, "methods": {"blend": {"averages": {"weighted": 0.5}}}}')
    report = db.genres.latest_eval()
    assert report.setup == {"n_train": 8} and report.chart_png is None
    assert report.methods["blend"].label == "blend" and report.methods["blend"].averages["weighted"] == 0.5
    latest.write_text('{"setup": {"n_tra')  # a torn write by something other than posterdb
    with pytest.raises(StoreError, match="unreadable evaluation report .* run `posterdb eval` again"):
        db.genres.latest_eval()
