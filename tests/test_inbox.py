"""Inbox mechanics on a real folder: completeness, temp names, hints, filing away, one watcher."""
import json
import os
import shutil
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


# -- inbox safety (issue 19): nothing in the inbox is followed --------------------------------

def _outside(tmp_path: Path) -> dict[str, Path]:
    """Files outside the inbox that a link in it could point at, with their bytes."""
    out = tmp_path / "outside"
    (out / "dir").mkdir(parents=True)
    (out / "secret.png").write_bytes(b"outside image bytes")
    (out / "passwd").write_text("root:x:0:0:first line of a system file\n")
    (out / "dir" / "x.png").write_bytes(b"outside folder file")
    (out / "catalog.duckdb").write_bytes(b"D" * 4096)
    return {p.name: p for p in out.rglob("*") if p.is_file()}


def _unchanged(files: dict[str, Path], before: dict[str, bytes]) -> bool:
    return {n: p.read_bytes() for n, p in files.items()} == before


def _recording_process(seen: list):
    from posterdb.curation.watch import Outcome

    def process(batch):
        seen.extend(p for p, _ in batch)
        return [Outcome(p, False, reason="not an image") for p, _ in batch]
    return process


def test_links_fifos_sockets_and_hard_links_in_the_inbox_are_filed_away_unread(tmp_path):
    import socket

    from posterdb.curation.watch import Watcher

    outside = _outside(tmp_path)
    before = {n: p.read_bytes() for n, p in outside.items()}
    inbox = tmp_path / "INBOX"
    (inbox / "sub").mkdir(parents=True)
    os.symlink(outside["secret.png"], inbox / "link.png")                  # a file
    os.symlink(outside["passwd"], inbox / "labels.csv")                    # a labels file
    os.symlink(outside["passwd"], inbox / "sub" / "more.jsonl")            # one in a sub-folder
    os.symlink(outside["x.png"].parent, inbox / "linked folder")           # a folder
    os.symlink("/nonexistent/x.jpg", inbox / "dangling.jpg")
    os.symlink("link.png", inbox / "chain.jpg")                            # a link to a link
    os.link(outside["catalog.duckdb"], inbox / "hard.png")                 # a hard link
    os.mkfifo(inbox / "pipe.jpg")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(inbox / "sock.jpg"))
    _drop(inbox / "sub" / "real.jpg", b"a real scan")
    for p in inbox.rglob("*"):
        os.utime(p, (OLD, OLD), follow_symlinks=False)
    seen: list = []
    [rep] = Watcher(Inbox(inbox, settle=0.5), _recording_process(seen)).run_once(max_wait=0)
    sock.close()

    assert seen == [inbox / "sub" / "real.jpg"]          # only the plain file reached the store
    unread = {"link.png", "labels.csv", "sub/more.jsonl", "linked folder", "dangling.jpg",
              "chain.jpg", "hard.png", "pipe.jpg", "sock.jpg"}
    assert (rep.files, rep.failed) == (10, 10)
    reasons = {Path(f["path"]).relative_to(inbox).as_posix(): f["reason"] for f in rep.failures}
    assert set(reasons) == unread | {"sub/real.jpg"}
    for name in ("link.png", "labels.csv", "sub/more.jsonl", "linked folder", "dangling.jpg",
                 "chain.jpg"):
        assert reasons[name] == "a symbolic link: not followed"
        assert os.path.islink(inbox / "failed" / name)          # the link itself, not its target
        assert (inbox / "failed" / f"{name}{ERROR_SUFFIX}").read_text().startswith(
            f"{Path(name).name}: a symbolic link: not followed")
    assert reasons["hard.png"].startswith("a hard link (the same file has 2 names): not read")
    assert reasons["pipe.jpg"].startswith("a FIFO (named pipe), not a regular file")
    assert reasons["sock.jpg"].startswith("a socket, not a regular file")
    assert _unchanged(outside, before)                  # nothing outside read into, written, moved
    assert sorted(p.name for p in outside["x.png"].parent.iterdir()) == ["x.png"]
    assert os.stat(outside["catalog.duckdb"]).st_nlink == 2      # only the inbox name moved
    assert "first line" not in json.dumps(rep.__dict__, default=str)
    assert Inbox(inbox).pending() == []


@pytest.mark.skipif(os.geteuid() != 0, reason="mknod of a device needs root")
def test_a_device_in_the_inbox_is_filed_away_unopened(tmp_path):
    from posterdb.curation.watch import Watcher

    os.mknod(tmp_path / "zero.jpg", 0o600 | __import__("stat").S_IFCHR, os.makedev(1, 5))
    os.utime(tmp_path / "zero.jpg", (OLD, OLD))
    seen: list = []
    [rep] = Watcher(Inbox(tmp_path, settle=0), _recording_process(seen)).run_once(max_wait=0)
    assert seen == [] and rep.failures[0]["reason"].startswith("a character device")
    assert (tmp_path / "failed" / "zero.jpg").is_char_device()


@pytest.mark.parametrize("make", ["symlink", "dangling", "hardlink", "folder", "fifo"])
def test_a_lock_that_is_not_a_plain_file_is_refused_and_its_target_untouched(tmp_path, make):
    from posterdb.core.safefs import Unsafe

    outside = _outside(tmp_path)
    before = {n: p.read_bytes() for n, p in outside.items()}
    inbox = tmp_path / "INBOX"
    inbox.mkdir()
    lock = inbox / ".posterdb-watch.lock"
    {"symlink": lambda: os.symlink(outside["catalog.duckdb"], lock),
     "dangling": lambda: os.symlink(tmp_path / "created-through-the-link", lock),
     "hardlink": lambda: os.link(outside["catalog.duckdb"], lock),
     "folder": lambda: lock.mkdir(),
     "fifo": lambda: os.mkfifo(lock)}[make]()
    box = Inbox(inbox)
    with pytest.raises(Unsafe, match=r"\.posterdb-watch\.lock: .*not the watcher's lock file"):
        box.lock()
    box.close()
    assert _unchanged(outside, before)
    assert not (tmp_path / "created-through-the-link").exists()


@pytest.mark.parametrize("control", ["done", "failed"])
@pytest.mark.parametrize("make", ["symlink", "file"])
def test_done_or_failed_that_is_not_a_real_folder_is_refused(tmp_path, control, make):
    from posterdb.core.safefs import Unsafe

    other = tmp_path / "elsewhere"
    other.mkdir()
    inbox = tmp_path / "INBOX"
    inbox.mkdir()
    if make == "symlink":
        os.symlink(other, inbox / control)
    else:
        (inbox / control).write_bytes(b"x")
    box = Inbox(inbox)
    with pytest.raises(Unsafe, match=f"INBOX/{control}: a (symbolic link|regular file), not a folder"):
        box.lock()
    box.close()
    assert list(other.iterdir()) == []


@pytest.mark.parametrize("swap", ["done", "failed", "done/sub"])
def test_a_control_folder_swapped_for_a_link_mid_run_stops_the_watcher(tmp_path, swap):
    """done/ (or failed/, or a folder inside done/) replaced by a link while a batch runs:
    nothing is written through it, the file stays in the inbox, the batch says why."""
    from posterdb.core.safefs import Unsafe
    from posterdb.curation.watch import Outcome, Watcher

    other = tmp_path / "elsewhere"
    other.mkdir()
    inbox = tmp_path / "INBOX"
    _drop(inbox / "sub" / "a.jpg", b"scan")
    (inbox / "done" / "sub").mkdir(parents=True)
    (inbox / "failed").mkdir()
    box = Inbox(inbox, settle=0)
    box.lock()

    def process(batch):      # while the batch runs, someone swaps the folder for a link
        target = inbox / swap
        shutil.rmtree(target)
        os.symlink(other, target)
        return [Outcome(p, swap == "done" or swap == "done/sub", poster_id=1, new=True,
                        reason="bad") for p, _ in batch]

    reports = []
    w = Watcher(box, process, after_batch=reports.append)
    with pytest.raises(Unsafe, match=f"{swap}: a symbolic link, not a folder"):
        w.run_once(max_wait=0)
    box.close()
    assert reports[0].stopped and swap in reports[0].stopped and "stopped:" in reports[0].line()
    assert list(other.iterdir()) == []
    assert (inbox / "sub" / "a.jpg").read_bytes() == b"scan"


def test_a_symlinked_folder_inside_done_is_never_written_through(tmp_path):
    from posterdb.core.safefs import Unsafe

    other = tmp_path / "elsewhere"
    other.mkdir()
    (tmp_path / "done").mkdir()
    os.symlink(other, tmp_path / "done" / "sub")
    a = _drop(tmp_path / "sub" / "a.jpg")
    with pytest.raises(Unsafe, match="done/sub: a symbolic link"):
        Inbox(tmp_path).mark_done(a)
    assert list(other.iterdir()) == [] and a.exists()


def test_names_too_long_with_a_counter_still_fit(tmp_path):
    inbox = Inbox(tmp_path)
    name = "L" * 251 + ".jpg"                      # 255 bytes: the longest a name can be
    for n in range(3):
        dest = inbox.mark_failed(_drop(tmp_path / name, b"%d" % n), "bad")
        assert dest.suffix == ".jpg" and len(os.fsencode(dest.name)) <= 255 - len(ERROR_SUFFIX)
        assert dest.with_name(dest.name + ERROR_SUFFIX).read_text().startswith(name)
    assert len(list((tmp_path / "failed").iterdir())) == 6 and inbox.pending() == []


def test_safefs_reads_writes_and_moves_without_following(tmp_path):
    from posterdb.core import safefs

    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "f").write_bytes(b"abc")
    os.symlink(tmp_path / "d", tmp_path / "ld")
    os.symlink(tmp_path / "d" / "f", tmp_path / "lf")
    fd = safefs.open_root(tmp_path)
    try:
        assert safefs.read_file(fd, "d/f")[0] == b"abc"
        for rel in ("lf", "ld/f"):
            with pytest.raises(safefs.Unsafe, match="symbolic link"):
                safefs.read_file(fd, rel, shown="ROOT")
        with pytest.raises(ValueError):
            safefs.read_file(fd, "../x")
        safefs.write_file(fd, "d/new", b"n")
        os.symlink(tmp_path / "d" / "f", tmp_path / "d" / "over")
        safefs.write_file(fd, "d/over", b"o")          # replaces the link, not its target
        assert (tmp_path / "d" / "f").read_bytes() == b"abc"
        assert (tmp_path / "d" / "over").read_bytes() == b"o"
        with safefs.at(fd, "made/here", create=True):
            pass
        safefs.rename(fd, "lf", fd, "made/here/lf")    # a link moves as a link
        assert os.readlink(tmp_path / "made" / "here" / "lf") == str(tmp_path / "d" / "f")
        assert [r for r, _ in safefs.walk(fd)] == ["ld", "d/f", "d/new", "d/over", "made/here/lf"]
        assert not safefs.lexists(fd, "d/none") and safefs.lexists(fd, "ld")
    finally:
        os.close(fd)
