"""Readers during an ingest, and writers against writers.

Readers (slow): the page (an in-process `PosterDB`) and `posterdb similar`/`info` subprocesses
keep answering while another process ingests 1,000 real posters. Every read must succeed (the
catalogue retries DuckDB's lock with back-off; a StoreBusyError or any other exception is a
failure), poster counts seen by each reader only grow, and at the end `posterdb check` is clean
and every poster is there.

Writers (fast, synthetic posters, the fake-pixels embedder): two `posterdb ingest` processes of
overlapping folders into one store both finish, the second after waiting for the writer lock;
a writer that may not wait is refused in one line; and a commit whose plan went stale (another
writer stored the same posters meanwhile) resolves it in SQL, storing each poster once.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import threading
import time

import pytest
from synthetic import make_posters  # tests/ is on sys.path (rootdir conftest, no __init__.py)

from posterdb.core.errors import StoreBusyError
from posterdb.ingest import Committer, Embedded, IngestReport, LocalEngine, plan
from posterdb.store import PosterDB
from posterdb.testing.slices import copy_posters, posterdb_cmd
from posterdb.testing.slices import subprocess_env as _env

N_SEED = 30
N_INGEST = 1000
DEADLINE = 300   # seconds for the whole ingest under read load

FAKE = "fake-pixels"


def _cli(*args: str, timeout: float = 120, env: dict | None = None
         ) -> subprocess.CompletedProcess:
    return subprocess.run(posterdb_cmd() + list(args), env=_env(env), capture_output=True,
                          text=True, timeout=timeout)


def _monotone(xs: list[int]) -> bool:
    return all(a <= b for a, b in zip(xs, xs[1:]))


@pytest.mark.slow
def test_readers_during_ingest(tmp_path, posters_dir, model_dir):
    seed = copy_posters(tmp_path / "seed", N_SEED, start=2, every=50, posters=posters_dir)
    src = copy_posters(tmp_path / "src", N_INGEST, start=0, every=5, posters=posters_dir)
    store = tmp_path / "store"
    r = _cli("ingest", str(seed), "--labels", str(seed / "labels.csv"), "--store", str(store),
             "--model-dir", str(model_dir), "--json")
    assert r.returncode == 0, r.stderr[-2000:]
    page = PosterDB.open(store, create=False, model_dir=model_dir)
    query = int(page.indexes.index().ids()[0])

    ingest = subprocess.Popen(
        posterdb_cmd() + ["ingest", str(src), "--labels", str(src / "labels.csv"), "--store",
                          str(store), "--model-dir", str(model_dir), "--json"],
        env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stop = threading.Event()
    cli_counts: list[int] = []
    cli_similar = 0
    failures: list[str] = []

    def cli_reader() -> None:
        nonlocal cli_similar
        while not stop.is_set():
            s = _cli("similar", str(query), "-k", "5", "--store", str(store), "--json")
            try:
                hits = json.loads(s.stdout)["hits"]
                assert s.returncode == 0 and len(hits) == 5 and query not in [h["id"] for h in hits]
                cli_similar += 1
            except Exception as e:  # noqa: BLE001 - a failed read is the finding
                failures.append(f"posterdb similar: rc {s.returncode} {type(e).__name__} "
                                f"{s.stdout[-300:]} {s.stderr[-500:]}")
            i = _cli("info", "--store", str(store), "--json")
            try:
                assert i.returncode == 0
                cli_counts.append(json.loads(i.stdout)["posters"])
            except Exception as e:  # noqa: BLE001
                failures.append(f"posterdb info: rc {i.returncode} {type(e).__name__} "
                                f"{i.stdout[-300:]} {i.stderr[-500:]}")

    t = threading.Thread(target=cli_reader, daemon=True)
    t.start()
    page_counts: list[int] = []
    page_ntotal: list[int] = []
    page_similar = 0
    page_latency: list[float] = []
    t0 = time.monotonic()
    try:
        while ingest.poll() is None:
            if time.monotonic() - t0 > DEADLINE:
                ingest.kill()
                pytest.fail(f"ingest of {N_INGEST} posters took more than {DEADLINE} s")
            r0 = time.monotonic()
            try:
                info = page.info()
                page_counts.append(info["posters"])
                page_ntotal.append(info["models"][0]["index"]["ntotal"])
                hits = page.similar(query, k=5)
                assert len(hits) == 5 and all(h.title and h.image for h in hits)
                filtered = page.similar(query, k=3, decades=[1980])
                assert all(h.decade == 1980 for h in filtered)
                page_similar += 1
                page_latency.append(time.monotonic() - r0)
            except Exception as e:  # noqa: BLE001 - StoreBusyError included: a failed read
                failures.append(f"in-process read: {type(e).__name__}: {e}")
            time.sleep(0.05)
    finally:
        stop.set()
        t.join(timeout=120)
    out, err = ingest.communicate()
    report = json.loads(out)
    assert ingest.returncode == 0, err[-2000:]
    assert report["added"] == N_INGEST and not report["failed"]

    assert not failures, "\n".join(failures[:10])
    assert page_similar >= 5 and cli_similar >= 2, (page_similar, cli_similar)
    assert max(page_latency) < 30, f"a page read waited {max(page_latency):.1f} s for the lock"
    print(f"\npage reads {page_similar} (max {max(page_latency):.2f} s), cli similar "
          f"{cli_similar}, counts seen {sorted(set(page_counts))}")
    assert _monotone(page_counts), page_counts
    assert _monotone(page_ntotal), page_ntotal
    assert _monotone(cli_counts), cli_counts
    assert len(set(page_counts)) > 1, f"the page never saw the ingest progress: {page_counts}"
    assert all(N_SEED <= c <= N_SEED + N_INGEST for c in page_counts + cli_counts)

    c = _cli("check", "--store", str(store), "--json")
    assert c.returncode == 0 and json.loads(c.stdout)["ok"], c.stdout[-2000:]
    assert page.posters.count() == N_SEED + N_INGEST
    assert len(page.indexes.index()) == N_SEED + N_INGEST


# -- writers against writers (fast) -------------------------------------------------------------

def _overlapping(tmp_path, n: int = 240):
    """Two folders sharing a third of their posters (same bytes, other file names)."""
    src = make_posters(tmp_path / "all", n, seed=3)
    files = sorted((src / "images").iterdir())
    a, b = tmp_path / "a", tmp_path / "b"
    for folder, part in ((a, files[: 2 * n // 3]), (b, files[n // 3:])):
        (folder / "images").mkdir(parents=True)
        for f in part:
            shutil.copyfile(f, folder / "images" / f"{folder.name}-{f.name}")
    return a, b, {hashlib.sha256(f.read_bytes()).hexdigest() for f in files}


def _stored_shas(store) -> list[str]:
    db = PosterDB.open(store, create=False)
    return [p.sha256 for p in db.posters.get()]


def _ingest(folder, store, env=None):
    return subprocess.Popen(posterdb_cmd() + ["ingest", str(folder), "--model", FAKE, "--store",
                                              str(store), "--json"],
                            env=_env(env), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def test_two_overlapping_ingests_both_finish_and_store_each_poster_once(tmp_path):
    a, b, shas = _overlapping(tmp_path)
    store = tmp_path / "store"
    first, second = _ingest(a, store), _ingest(b, store)
    outs = [p.communicate(timeout=300) for p in (first, second)]
    for p, (out, err) in zip((first, second), outs):
        assert p.returncode == 0, err[-2000:]
        assert "Traceback" not in err and not json.loads(out)["failed"]
    reports = [json.loads(out) for out, _ in outs]
    # each poster once, whichever went first; the other found the shared third stored
    assert sorted(r["added"] for r in reports) == [80, 160]
    stored = _stored_shas(store)
    assert len(stored) == len(set(stored)) == 240 and set(stored) == shas
    c = _cli("check", "--deep", "--store", str(store), "--json")
    assert c.returncode == 0 and json.loads(c.stdout)["ok"], c.stdout[-2000:]
    # both folders' file names are remembered for the shared posters
    db = PosterDB.open(store, create=False)
    assert db.posters.count() == 240 and len(db.indexes.index()) == 240


def test_a_writer_waits_for_the_lock_with_a_message_then_finishes(tmp_path):
    a, _, _ = _overlapping(tmp_path, 60)
    store = tmp_path / "store"
    db = PosterDB.open(store)
    with db.catalog.exclusive("a long test write"):
        p = _ingest(a, store)
        first = p.stderr.readline()        # released once the waiting writer has said so
    out, rest = p.communicate(timeout=120)
    err = first + rest
    assert p.returncode == 0, err[-2000:]
    assert first.startswith("posterdb: waiting for a long test write (pid")
    assert "Traceback" not in err and json.loads(out)["added"] == 40


def test_a_writer_that_may_not_wait_is_refused_in_one_line(tmp_path):
    a, _, _ = _overlapping(tmp_path, 30)
    store = tmp_path / "store"
    db = PosterDB.open(store)
    with db.catalog.exclusive("another ingest"):
        p = _ingest(a, store, {"POSTERDB_WRITE_WAIT": "0.5"})
        out, err = p.communicate(timeout=120)
        r = _cli("remove", "1", "--store", str(store),   # every writer takes the same lock
                 env={"POSTERDB_WRITE_WAIT": "0.5"})
    assert p.returncode == 3 and r.returncode == 3
    got = json.loads(out)
    assert got["type"] == "StoreBusyError" and "another ingest (pid" in got["error"]
    assert "Traceback" not in err + r.stderr and len(r.stderr.strip().splitlines()) == 1
    # in-process too: the lock is re-entrant for its thread, other threads wait and give up
    db.catalog.writer_wait = 0.2
    with db.catalog.exclusive("outer"), db.catalog.exclusive("inner"):
        failed = []
        t = threading.Thread(target=lambda: _try(db, failed))
        t.start()
        t.join()
        assert failed == ["StoreBusyError"]
    assert db.posters.count() == 0
    assert db.ingest(a, model=FAKE).added == 20   # the lock was released


def _try(db, failed):
    try:
        with db.catalog.exclusive("other thread"):
            pass
    except StoreBusyError:
        failed.append("StoreBusyError")


def test_a_stale_plan_is_resolved_in_sql(tmp_path):
    """A commit whose plan predates another writer's commit of the same posters: the hashes
    are looked up again in the transaction, nothing is stored twice and nothing fails."""
    src = make_posters(tmp_path / "src", 30, seed=8)
    db = PosterDB.open(tmp_path / "s")
    emb = db.models.embedder(FAKE)
    stale = plan(db.catalog, emb.spec, src, src / "labels.csv", run_id="stale")
    assert not stale.stored
    other = db.ingest(src, src / "labels.csv", model=FAKE)   # the other writer, meanwhile
    assert other.added == 30
    report = IngestReport(run_id="stale", model=FAKE)
    committer = Committer(db.catalog, db.images, stale, report)
    for got in LocalEngine(emb, batch_size=8).run(stale):
        if isinstance(got, Embedded):
            committer.commit(got.items, got.vectors, [], [])
    assert (report.added, report.skipped, report.embedded_existing) == (0, 30, 0)
    stored = [p.sha256 for p in db.posters.get()]
    assert len(stored) == len(set(stored)) == 30
    assert all(p.genres for p in db.posters.get())       # labels as the labels file says
    assert db.check(deep=True)["ok"]
