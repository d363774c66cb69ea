"""Readers during an ingest: the page (an in-process `PosterDB`) and `posterdb similar`/`info`
subprocesses keep answering while another process ingests 1,000 real posters.

Every read must succeed (the catalogue retries DuckDB's lock with back-off; a StoreBusyError or
any other exception is a failure), poster counts seen by each reader only grow, and at the end
`posterdb check` is clean and every poster is there.
"""
from __future__ import annotations

import json
import subprocess
import threading
import time

import pytest

from posterdb.store import PosterDB
from posterdb.testing.slices import copy_posters, posterdb_cmd
from posterdb.testing.slices import subprocess_env as _env

N_SEED = 30
N_INGEST = 1000
DEADLINE = 300   # seconds for the whole ingest under read load

pytestmark = pytest.mark.slow


def _cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(posterdb_cmd() + list(args), env=_env(), capture_output=True, text=True,
                          timeout=timeout)


def _monotone(xs: list[int]) -> bool:
    return all(a <= b for a, b in zip(xs, xs[1:]))


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
