"""`posterdb watch` end to end (issue 11, acceptance 1 and 2): the CLI as a real subprocess on a
real store (DuckDB, FAISS, image copies) trained with the deterministic `fake-pixels` embedder on
synthetic posters (the behaviour under test does not depend on what the vectors mean)."""
from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import time
from pathlib import Path

import duckdb
import pytest
from synthetic import make_posters  # tests/ is on sys.path (rootdir conftest)

from posterdb.store import PosterDB
from tests.conftest import N_TRAIN
from posterdb.testing.slices import posterdb_cmd, subprocess_env



def cli(*args, crash: str | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    env = subprocess_env({"POSTERDB_CRASH_AT": crash} if crash else None)
    return subprocess.run(posterdb_cmd() + [str(a) for a in args], env=env, capture_output=True,
                          text=True, timeout=timeout)


def stored(store: Path) -> tuple[int, int]:
    """(posters, distinct sha256) straight from DuckDB."""
    con = duckdb.connect(str(store / "catalog.duckdb"), read_only=True)
    try:
        return con.execute("SELECT count(*), count(DISTINCT sha256) FROM posters").fetchone()
    finally:
        con.close()


def files_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def test_watch_once_rerun_and_running(tmp_path, trained):
    store = shutil.copytree(trained, tmp_path / "store")
    inbox = tmp_path / "INBOX"
    inbox.mkdir()
    new = sorted((make_posters(tmp_path / "new", 40, seed=7, labelled=0) / "images").iterdir())
    for i, f in enumerate(new[:30]):
        shutil.copy(f, inbox / f"Film {i} ({1940 + i}).png")
    feed = tmp_path / "shop" / "feed.json"
    feed.parent.mkdir()

    r = cli("watch", inbox, "--once", "--settle", "0.3", "--feed", feed, "--json", "--store", store)
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert (summary["files"], summary["added"], summary["failed"]) == (30, 30, 0)
    exported = json.loads(cli("export", "--format", "json", "--store", store).stdout)
    films = {p["title"]: p for p in exported if p["title"].startswith("Film ")}
    assert len(films) == 30
    assert all(p["predicted"] for p in films.values())               # predicted genres
    assert films["Film 7"]["year"] == 1947                           # from "Film 7 (1947).png"
    assert set(films["Film 7"]["published"]) <= set(films["Film 7"]["predicted"])
    assert len(files_in(inbox / "done")) == 30 and not (inbox / "failed").exists()
    assert len(json.loads(feed.read_text())) == N_TRAIN + 30

    # a re-run adds nothing; the same bytes dropped again are recognised
    for f in files_in(inbox / "done")[:3]:
        shutil.copy(f, inbox / f"again-{f.name}")
    r = cli("watch", inbox, "--once", "--settle", "0.3", "--json", "--store", store)
    again = json.loads(r.stdout)
    assert r.returncode == 0 and (again["added"], again["already"], again["failed"]) == (0, 3, 0)
    assert stored(store) == (N_TRAIN + 30, N_TRAIN + 30)

    # a running watcher picks up 10 more within 60 s, one of them written slowly in pieces
    proc = subprocess.Popen(posterdb_cmd() + ["watch", str(inbox), "--interval", "1", "--settle",
                                              "0.6", "--json", "--store", str(store)],
                            env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        time.sleep(1.0)
        t0 = time.monotonic()
        for i, f in enumerate(new[30:39]):          # copied under a temp name, renamed in whole
            tmp = inbox / f"late-{i}.png.part"
            shutil.copy(f, tmp)
            os.replace(tmp, inbox / f"Late {i} ({1960 + i}).png")
        data = new[39].read_bytes()
        with open(inbox / "Slow (1999).png", "wb") as out:   # pauses shorter than --settle
            for k in range(0, len(data), max(1, len(data) // 6)):
                out.write(data[k:k + max(1, len(data) // 6)])
                out.flush()
                time.sleep(0.25)
        while len(files_in(inbox / "done")) < 43 and time.monotonic() - t0 < 60:
            time.sleep(0.2)
        took = time.monotonic() - t0
        assert len(files_in(inbox / "done")) == 43, (took, proc.stderr and "")
        assert took < 60
        print(f"\nrunning watcher: 10 posters (one written in pieces) stored and filed in "
              f"{took:.1f} s")
    finally:
        proc.send_signal(signal.SIGTERM)
        out_text, err_text = proc.communicate(timeout=30)
    assert proc.returncode == 0, err_text
    batches = [json.loads(line) for line in out_text.splitlines() if line.strip()]
    assert sum(b["added"] for b in batches) == 10 and sum(b["failed"] for b in batches) == 0
    assert not (inbox / "failed").exists()
    assert stored(store) == (N_TRAIN + 40, N_TRAIN + 40)
    slow = [p for p in json.loads(cli("export", "--format", "json", "--store", store).stdout)
            if p["title"] == "Slow"]
    assert len(slow) == 1 and slow[0]["year"] == 1999 and slow[0]["width"] == 48


def test_failed_files_are_filed_with_the_reason_and_a_second_watcher_is_refused(tmp_path, trained):
    store = shutil.copytree(trained, tmp_path / "store")
    inbox = tmp_path / "INBOX"
    inbox.mkdir()
    (inbox / "truncated.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 40)
    (inbox / "price list.pdf").write_bytes(b"%PDF-1.4")
    (inbox / "still-copying.png.part").write_bytes(b"x")
    r = cli("watch", inbox, "--once", "--settle", "0.2", "--store", store)
    assert r.returncode == 1 and "Traceback" not in r.stdout + r.stderr
    failed = inbox / "failed"
    assert sorted(p.name for p in failed.iterdir()) == [
        "price list.pdf", "price list.pdf.error.txt", "truncated.jpg", "truncated.jpg.error.txt"]
    assert "not an image file (.pdf)" in (failed / "price list.pdf.error.txt").read_text()
    assert (inbox / "still-copying.png.part").exists()           # temp names are left alone

    from posterdb.curation.inbox import Inbox
    holder = Inbox(inbox)
    holder.lock()
    try:
        r = cli("watch", inbox, "--once", "--json", "--store", store)
        assert r.returncode == 3 and "another `posterdb watch`" in json.loads(r.stdout)["error"]
    finally:
        holder.unlock()


# more kill points and trials (inbox_moved, after_commit, ...): python -m bench.watch_crash
@pytest.mark.parametrize("crash", ["inbox_before_move:2", "random"])
def test_kill_9_during_a_200_poster_drop_then_restart_stores_each_once(tmp_path, trained, crash):
    store = shutil.copytree(trained, tmp_path / "store")
    inbox = tmp_path / "INBOX"
    inbox.mkdir()
    for f in (make_posters(tmp_path / "drop", 200, seed=11, labelled=0) / "images").iterdir():
        shutil.copy(f, inbox / f.name)
    old = time.time() - 60
    for f in inbox.iterdir():
        os.utime(f, (old, old))
    args = ["watch", inbox, "--once", "--batch", "50", "--settle", "0", "--json", "--store", store]
    if crash == "random":   # SIGKILL from outside at a seeded random moment of the run
        proc = subprocess.Popen(posterdb_cmd() + [str(a) for a in args], env=subprocess_env(),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(random.Random(5).uniform(1.5, 3.0))
        proc.kill()
        proc.wait(30)
    else:
        r = cli(*args, crash=crash)
        assert r.returncode == -signal.SIGKILL, (r.returncode, r.stderr[-2000:])
        assert 0 < stored(store)[0] - N_TRAIN < 200      # killed half-way through
    r = cli(*args)
    assert r.returncode == 0, r.stderr[-2000:]
    assert stored(store) == (N_TRAIN + 200, N_TRAIN + 200)       # all 200, none twice
    assert len(files_in(inbox / "done")) == 200 and not (inbox / "failed").exists()
    assert [p for p in inbox.iterdir() if p.is_file() and not p.name.startswith(".")] == []
    check = json.loads(cli("check", "--json", "--store", store).stdout)
    assert check["ok"], check
    exported = json.loads(cli("export", "--format", "json", "--store", store).stdout)
    assert all(p["predicted"] for p in exported if not p["genres"])


# -- inbox safety (issue 19) -------------------------------------------------------------------

def _sha(data: bytes) -> str:
    import hashlib
    return hashlib.sha256(data).hexdigest()


def _shas(store: Path) -> set[str]:
    con = duckdb.connect(str(store / "catalog.duckdb"), read_only=True)
    try:
        return {r[0] for r in con.execute("SELECT sha256 FROM posters").fetchall()}
    finally:
        con.close()


def _overwrite(path: Path, data: bytes) -> None:          # same name, old mtime put back
    st = path.stat()
    path.write_bytes(data)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def _rename_over(path: Path, data: bytes) -> None:         # a whole file renamed over it, old mtime
    tmp = path.with_name(path.name + ".part")
    tmp.write_bytes(data)
    st = path.stat()
    os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.replace(tmp, path)


@pytest.mark.parametrize("when", ["after the commit", "before the store reads it"])
@pytest.mark.parametrize("how", ["overwrite", "rename over", "symlink"])
def test_a_scan_replaced_while_its_batch_runs_is_neither_lost_nor_reported_stored(
        tmp_path, trained, how, when):
    """The CLI's processor (the store's intake + the committed sha256) inside the real watch
    loop; the scan is replaced by other bytes (or a link to a file outside) during its batch."""
    from posterdb.curation.inbox import Inbox

    store = shutil.copytree(trained, tmp_path / "store")
    inbox = tmp_path / "INBOX"
    inbox.mkdir()
    a, b, c = sorted((make_posters(tmp_path / "new", 3, seed=31, labelled=0) / "images").iterdir())
    scan = inbox / "Scan (1950).png"
    shutil.copy(a, scan)
    shutil.copy(c, inbox / "other.png")
    os.utime(scan, (time.time() - 60,) * 2)
    first, second = a.read_bytes(), b.read_bytes()
    outside = tmp_path / "outside.png"
    shutil.copy(b, outside)

    def replace():
        if how == "overwrite":
            _overwrite(scan, second)
        elif how == "rename over":
            _rename_over(scan, second)
        else:
            scan.unlink()
            os.symlink(outside, scan)

    db = PosterDB.open(store)
    def intake(files):                             # what `posterdb watch` runs
        return db.curation.process(files, root=inbox)

    def process(batch):
        if when == "before the store reads it":
            replace()
        out = intake(batch)
        if when == "after the commit":
            replace()
        return out

    box = Inbox(inbox, settle=0)
    watcher = db.curation.watcher(box)
    watcher.process = process
    [rep] = watcher.drain()
    assert (rep.files, rep.added, rep.already, rep.failed, rep.retried) == (2, 1, 0, 0, 1)
    assert any("Scan (1950).png: changed while its batch ran" in w for w in rep.warnings)
    assert [p.name for p in (inbox / "done").iterdir()] == ["other.png"]   # the scan is not
    assert scan.is_symlink() if how == "symlink" else scan.read_bytes() == second
    if how == "symlink" and when == "before the store reads it":   # read through the link...
        assert _sha(second) not in _shas(store)                    # ...and taken back
        assert any("poster" in w and "removed again" in w for w in rep.warnings)

    # the next pass: the new bytes are stored and filed (a link is filed away as failed)
    [again] = db.curation.watcher(box).drain()
    box.close()
    if how == "symlink":
        assert (again.failed, again.failures[0]["reason"]) == (1, "a symbolic link: not followed")
        assert (inbox / "failed" / scan.name).is_symlink() and outside.read_bytes() == second
        assert _sha(second) not in _shas(store)         # the outside image is not in the store
    else:
        assert (again.files, again.added + again.already, again.failed) == (1, 1, 0)
        assert (inbox / "done" / scan.name).read_bytes() == second
        assert _sha(second) in _shas(store)                   # nothing lost
    if when == "after the commit":
        assert _sha(first) in _shas(store)                    # what was read was stored
    assert stored(store)[0] == stored(store)[1]
    assert not [p for p in inbox.iterdir() if p.is_file() and not p.name.startswith(".")]


def test_watch_on_a_missing_inbox_is_a_usage_error_and_creates_nothing(tmp_path):
    typo = tmp_path / "INBXO"
    store = tmp_path / "store"
    r = cli("watch", typo, "--once", "--store", store)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    message = f"{typo}: no such inbox folder (check the path; --create makes a new one)"
    assert r.stderr.strip().splitlines() == [f"error: {message}"]
    r = cli("watch", typo, "--once", "--json", "--store", store)
    assert r.returncode == 2 and json.loads(r.stdout) == {"error": message, "type": "UsageError"}
    assert list(tmp_path.iterdir()) == []                         # no inbox, no store
    r = cli("watch", typo, "--once", "--create", "--json", "--store", store)
    assert r.returncode == 0, r.stdout + r.stderr
    assert typo.is_dir() and json.loads(r.stdout)["files"] == 0


def test_watch_refuses_linked_control_paths_and_never_follows_dropped_links(tmp_path, trained):
    """The hostile-input run's findings, through the CLI on a real store: a lock linked to the
    catalogue, done/ linked elsewhere, a dropped link to an outside image and a labels file
    linked to a system file."""
    store = shutil.copytree(trained, tmp_path / "store")
    catalog = store / "catalog.duckdb"
    size = catalog.stat().st_size
    inbox = tmp_path / "INBOX"
    inbox.mkdir()
    lock = inbox / ".posterdb-watch.lock"
    os.symlink(catalog, lock)
    r = cli("watch", inbox, "--once", "--json", "--store", store)
    assert r.returncode == 3 and json.loads(r.stdout)["type"] == "Unsafe"
    assert f"{lock}: a symbolic link, not the watcher's lock file" in json.loads(r.stdout)["error"]
    assert catalog.stat().st_size == size
    lock.unlink()

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    os.symlink(elsewhere, inbox / "done")
    shutil.copy(min((make_posters(tmp_path / "a", 1, seed=41, labelled=0) / "images").iterdir()),
                inbox / "real.png")
    r = cli("watch", inbox, "--once", "--store", store)
    assert r.returncode == 3 and r.stderr.strip().splitlines() == [(
        f"error: {inbox / 'done'}: a symbolic link, not a folder: the watcher will not write "
        "through it (remove it; it is made again as a folder)")]
    assert list(elsewhere.iterdir()) == [] and stored(store)[0] == N_TRAIN
    (inbox / "done").unlink()

    secret = min((make_posters(tmp_path / "s", 1, seed=43, labelled=0) / "images").iterdir())
    passwd = tmp_path / "passwd"
    passwd.write_text("root:x:0:0:the first line of a system file\n")
    os.symlink(secret, inbox / "link.png")
    os.symlink(passwd, inbox / "labels.csv")
    r = cli("watch", inbox, "--once", "--settle", "0", "--json", "--store", store)
    assert r.returncode == 1, r.stdout + r.stderr
    summary = json.loads(r.stdout)
    assert (summary["added"], summary["failed"]) == (1, 2)
    assert "first line" not in r.stdout + r.stderr                # the linked file is not read
    assert _sha(secret.read_bytes()) not in _shas(store)          # the outside image is not stored
    assert {p.name for p in (inbox / "failed").iterdir() if p.is_symlink()} == {"link.png", "labels.csv"}
    assert [p.name for p in (inbox / "done").iterdir()] == ["real.png"]


def test_a_name_that_is_not_utf8_is_stored_with_the_rest(tmp_path, trained):
    """The catalogue keeps such a name losslessly (core.text.stored_name); the watcher's
    fallback (fail the odd names alone if the store ever refuses them) stays unused."""
    from posterdb.curation.inbox import Inbox

    store = shutil.copytree(trained, tmp_path / "store")
    inbox = tmp_path / "INBOX"
    inbox.mkdir()
    a, b = sorted((make_posters(tmp_path / "n", 2, seed=51, labelled=0) / "images").iterdir())
    odd = os.fsdecode(b"Metropolis \xe9t\xe9 (1927)\x1b.png")         # latin-1 bytes, an ESC
    shutil.copy(a, inbox / odd)
    shutil.copy(b, inbox / "fine.png")
    box = Inbox(inbox, settle=0)
    [rep] = PosterDB.open(store).curation.watcher(box).drain()
    box.close()
    assert (rep.error, rep.added, rep.failed) == (None, 2, 0)
    assert sorted(os.listdir(inbox / "done")) == sorted(["fine.png", odd])
    assert not (inbox / "failed").exists() or not os.listdir(inbox / "failed")


def test_a_live_attacker_swapping_links_never_gets_an_outside_file_stored(tmp_path, trained):
    """A thread swaps seven names between whole files, in-place rewrites (old mtime kept) and
    links to an outside image every few ms while the watcher runs, for 4 s: the outside image
    never stays in the store, no link reaches done/, every file in done/ is stored."""
    import threading

    from posterdb.curation.inbox import Inbox

    store = shutil.copytree(trained, tmp_path / "store")
    inbox = tmp_path / "INBOX"
    inbox.mkdir()
    imgs = sorted((make_posters(tmp_path / "r", 9, seed=61, labelled=0) / "images").iterdir())
    secret = tmp_path / "secret.png"
    shutil.copy(imgs[0], secret)
    stop, rnd = threading.Event(), random.Random(7)

    def attacker():
        i = 0
        while not stop.is_set():
            i += 1
            name, tmp, roll = inbox / f"x{i % 7}.png", inbox / f".t{i}", rnd.random()
            try:
                if roll < 0.4:
                    shutil.copy(rnd.choice(imgs[1:]), tmp)
                    os.utime(tmp, (time.time() - 60,) * 2)
                    os.replace(tmp, name)
                elif roll < 0.8:
                    os.symlink(secret, tmp)
                    os.replace(tmp, name)
                elif name.exists() and not name.is_symlink():
                    _overwrite(name, rnd.choice(imgs[1:]).read_bytes())
            except OSError:
                pass
            time.sleep(rnd.uniform(0, 0.01))

    db = PosterDB.open(store)
    box = Inbox(inbox, settle=0)
    box.lock()
    watcher = db.curation.watcher(box, batch_size=4)
    thread = threading.Thread(target=attacker)
    thread.start()
    reports, t0 = [], time.monotonic()
    try:
        while time.monotonic() - t0 < 4:
            reports += watcher.drain()
    finally:
        stop.set()
        thread.join()
    reports += watcher.drain()
    box.close()
    assert reports and not any(r.error or r.stopped for r in reports)
    shas = _shas(store)
    assert _sha(secret.read_bytes()) not in shas
    done = [p for p in (inbox / "done").rglob("*")] if (inbox / "done").exists() else []
    assert not any(p.is_symlink() for p in done)
    assert {_sha(p.read_bytes()) for p in done} <= shas
    assert [p for p in inbox.iterdir() if p.name not in ("done", "failed")
            and not p.name.startswith(".")] == []
    assert db.check()["ok"]
