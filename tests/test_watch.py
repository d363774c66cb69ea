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
from posterdb.testing.slices import posterdb_cmd, subprocess_env

N_TRAIN = 60


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    src = make_posters(tmp_path_factory.mktemp("train-src"), N_TRAIN, seed=1)
    store = tmp_path_factory.mktemp("trained") / "store"
    db = PosterDB.open(store)
    assert db.ingest(src, src / "labels.csv", model="fake-pixels").added == N_TRAIN
    db.train()
    return store


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
