"""Inbox mechanics on a real folder: completeness, temp names, hints, filing away, one watcher."""
import json
import os
import time
from pathlib import Path

import pytest

from posterdb.curation.feed import FeedRow, format_of, render, write_feed
from posterdb.curation.inbox import (
    ERROR_SUFFIX,
    Hint,
    Inbox,
    InboxBusy,
    Waker,
    hint_from_name,
    is_temporary,
)

OLD = time.time() - 3600


def _drop(path: Path, data: bytes = b"x", age_s: float | None = 3600) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    if age_s is not None:
        t = time.time() - age_s
        os.utime(path, (t, t))
    return path


def test_temp_names_labels_and_filed_folders_are_not_pending(tmp_path):
    inbox = Inbox(tmp_path)
    for name in ["a.jpg", "b.jpg.part", "c.jpg~", ".d.jpg", "e.crdownload", "sub/f.png",
                 "done/g.jpg", "failed/h.jpg", ".hidden/i.jpg", "labels.csv", "notes.pdf"]:
        _drop(tmp_path / name)
    assert [p.relative_to(tmp_path).as_posix() for p in inbox.pending()] == ["a.jpg", "notes.pdf", "sub/f.png"]
    assert [p.name for p in inbox.labels_files()] == ["labels.csv"]
    assert is_temporary("x.JPG.PART") and not is_temporary("x.jpg")
    assert inbox.is_image(tmp_path / "a.jpg") and not inbox.is_image(tmp_path / "notes.pdf")


def test_a_file_is_ready_only_once_settled(tmp_path):
    inbox = Inbox(tmp_path, settle=2.0)
    old = _drop(tmp_path / "renamed-in.jpg")            # atomic rename of an old file: ready at once
    fresh = _drop(tmp_path / "copying.jpg", b"12", age_s=None)
    assert inbox.ready() == [old]
    now = time.time()
    assert inbox.ready(now=now + 5) == [fresh, old]      # unchanged and old enough (sorted)
    with open(fresh, "ab") as f:                         # the writer goes on after a long pause
        f.write(b"34")
    assert not inbox.unchanged(fresh)                    # so it is not filed away half-written
    os.utime(fresh, (now - 10, now - 10))
    assert fresh not in inbox.ready(now=now + 5)         # changed since the last look
    assert inbox.ready(now=now + 5) == [fresh, old]      # stable since the last look
    assert inbox.unchanged(fresh)
    with open(fresh, "ab") as f:
        f.write(b"5")
    assert not inbox.unchanged(fresh)


def test_hints_from_names():
    assert hint_from_name(Path("Battleship Potemkin (1925).jpg")) == Hint("Battleship Potemkin", 1925, (), "name")
    assert hint_from_name(Path("The_Thing_[1982].png")) == Hint("The Thing", 1982, (), "name")
    assert hint_from_name(Path("2001 A Space Odyssey (1968).jpg")).title == "2001 A Space Odyssey"
    assert hint_from_name(Path("Blade Runner 2049.jpg")) == Hint()   # a bare number is not a year
    assert hint_from_name(Path("scan (0042).jpg")) == Hint()        # outside the year range
    assert hint_from_name(Path("IMG_0042.jpg")) == Hint()


def test_labels_file_wins_over_the_name_and_bad_rows_are_warned(tmp_path):
    inbox = Inbox(tmp_path)
    a = _drop(tmp_path / "Alien (1979).jpg")
    b = _drop(tmp_path / "scan-1.jpg")
    c = _drop(tmp_path / "Jaws (1975).jpg")
    (tmp_path / "batch.csv").write_text("file,title,year,genres\n"
                                        "scan-1.jpg,Metropolis,1927,Drama|Science Fiction\n"
                                        "Alien (1979).jpg,Alien,not-a-year,\n"
                                        "gone.jpg,Gone,1950,\n")
    hints, warnings = inbox.hints([a, b, c])
    assert hints[b] == Hint("Metropolis", 1927, ("Drama", "Science Fiction"), "labels:batch.csv")
    assert hints[a].title == "Alien" and hints[a].year is None and hints[a].source == "labels:batch.csv"
    assert hints[c] == Hint("Jaws", 1975, (), "name")
    assert any("bad year" in w for w in warnings)
    assert not any("gone.jpg" in w for w in warnings)   # files already filed away are not news
    (tmp_path / "broken.jsonl").write_bytes(b"\x00\x01\x02" * 100)
    _, warnings = inbox.hints([a])
    assert any("broken.jsonl" in w for w in warnings)


def test_done_and_failed_keep_the_relative_path_never_overwrite_and_say_why(tmp_path):
    inbox = Inbox(tmp_path)
    a = _drop(tmp_path / "sub" / "a.jpg", b"first")
    assert inbox.mark_done(a) == tmp_path / "done" / "sub" / "a.jpg"
    a2 = _drop(tmp_path / "sub" / "a.jpg", b"second")
    assert inbox.mark_done(a2) == tmp_path / "done" / "sub" / "a (2).jpg"
    assert (tmp_path / "done" / "sub" / "a.jpg").read_bytes() == b"first"
    bad = _drop(tmp_path / "bad.jpg", b"not an image")
    dest = inbox.mark_failed(bad, "cannot identify image file")
    assert dest == tmp_path / "failed" / "bad.jpg" and not bad.exists()
    note = dest.with_name(dest.name + ERROR_SUFFIX).read_text()
    assert note.startswith("bad.jpg: cannot identify image file")
    bad2 = _drop(tmp_path / "bad.jpg", b"again")
    assert inbox.mark_failed(bad2, "again").name == "bad (2).jpg"
    assert inbox.pending() == []


def test_one_watcher_per_inbox(tmp_path):
    first, second = Inbox(tmp_path), Inbox(tmp_path)
    first.lock()
    with pytest.raises(InboxBusy, match="another `posterdb watch`"):
        second.lock()
    first.unlock()
    second.lock()
    second.unlock()


def test_waker_notices_a_new_file(tmp_path):
    waker = Waker(tmp_path)
    try:
        if waker.mode != "watchdog":
            pytest.skip("watchdog cannot watch here; the loop polls")
        _drop(tmp_path / "new.jpg")
        assert waker.wait(5.0) is True
    finally:
        waker.close()


def test_feed_csv_and_json_atomic(tmp_path):
    rows = [FeedRow(1, "Alien", 1979, "images/ab/x.jpg", ("Horror", "Science Fiction"),
                    "catalogue", "tmdb", "348", "Alien", 1979),
            FeedRow(2, None, None, "images/cd/y.png", ())]
    out = tmp_path / "shop" / "feed.json"
    assert write_feed(rows, out) == 2
    assert json.loads(out.read_text())[0] == {"id": 1, "title": "Alien", "year": 1979,
                                              "image": "images/ab/x.jpg",
                                              "genres": ["Horror", "Science Fiction"],
                                              "genres_from": "catalogue", "film_source": "tmdb",
                                              "film_id": "348", "film_title": "Alien",
                                              "film_year": 1979}
    csv_text = render(rows, "csv").decode()
    assert csv_text.splitlines() == [
        "id,title,year,image,genres,genres_from,film_source,film_id,film_title,film_year",
        "1,Alien,1979,images/ab/x.jpg,Horror|Science Fiction,catalogue,tmdb,348,Alien,1979",
        "2,,,images/cd/y.png,,,,,,"]
    assert FeedRow.from_mapping(json.loads(out.read_text())[0]) == rows[0]
    write_feed(rows[:1], tmp_path / "feed.csv")
    assert (tmp_path / "feed.csv").read_text().count("\n") == 2
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []   # no temp left
    assert format_of(Path("f.txt")) == "csv"
    with pytest.raises(ValueError):
        format_of(Path("f.csv"), "xml")


def test_watch_loop_leaves_files_in_place_when_the_store_cannot_take_a_batch(tmp_path):
    """The loop with a processor that fails once (a store busy past its timeout), then works."""
    from posterdb.curation.watch import Outcome, Watcher

    for name in ("a.jpg", "b.jpg", "c.jpg"):
        _drop(tmp_path / name)
    calls = []

    def process(batch):
        calls.append([p.name for p, _ in batch])
        if len(calls) == 1:
            raise RuntimeError("store busy")
        return [Outcome(p, p.name != "c.jpg", poster_id=1, new=True,
                        reason=None if p.name != "c.jpg" else "truncated") for p, _ in batch]

    lines = []
    w = Watcher(Inbox(tmp_path, settle=0), process, batch_size=2, after_batch=lambda r: lines.append(r.line()))
    first = w.run_once()
    assert [r.error for r in first] == ["RuntimeError: store busy"]
    assert "left in the inbox, to retry" in lines[0]
    assert sorted(p.name for p in Inbox(tmp_path).pending()) == ["a.jpg", "b.jpg", "c.jpg"]
    second = w.run_once()
    assert [(r.added, r.failed) for r in second] == [(2, 0), (0, 1)]
    assert calls[1:] == [["a.jpg", "b.jpg"], ["c.jpg"]]
    assert sorted(p.name for p in (tmp_path / "done").iterdir()) == ["a.jpg", "b.jpg"]
    assert (tmp_path / "failed" / "c.jpg.error.txt").read_text().startswith("c.jpg: truncated")
