"""kill -9 of `posterdb watch` during a 200-poster drop, then a restart (issue 11, acceptance 2).

A store of 300 real posters (mobilenet-v2, trained) is copied per trial; 200 other real posters
land in an inbox; the watcher is SIGKILLed at a fault point (POSTERDB_CRASH_AT: committed but
nothing moved, half the files moved, right after a DuckDB commit) or at a seeded random moment;
a second run must finish the work: all 200 stored once, 200 files in done/, nothing in failed/,
`posterdb check` clean. `python -m bench.watch_crash [--trials 8]` prints one line per trial.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from posterdb.testing.slices import write_slice

from .common import CACHE, MODELS, POSTERS, Figure, label_rows, loadavg

NAME = "watch-crash"
POINTS = ("inbox_before_move:2", "inbox_moved:90", "after_commit:3", "random")


def _env(crash: str | None = None) -> dict:
    from posterdb.testing.slices import subprocess_env

    env = subprocess_env({"POSTERDB_MODEL_DIR": str(MODELS)})
    if crash:
        env["POSTERDB_CRASH_AT"] = crash
    return env


def _cli(*args, crash: str | None = None) -> subprocess.CompletedProcess:
    from posterdb.testing.slices import posterdb_cmd

    return subprocess.run(posterdb_cmd() + [str(a) for a in args], env=_env(crash),
                          capture_output=True, text=True, timeout=900)


def base_store() -> Path:
    """300 labelled real posters, ingested and trained once (cached)."""
    from posterdb.store import PosterDB

    store = CACHE / "watch-crash-store"
    if (store / ".complete").exists():
        return store
    shutil.rmtree(store, ignore_errors=True)
    src = write_slice(label_rows()[:300], CACHE / "watch-crash-src", POSTERS)
    db = PosterDB.open(store, model_dir=MODELS)
    db.ingest(src, src / "labels.csv")
    db.train()
    (store / ".complete").write_text("300")
    return store


def trial(i: int, point: str, rng: random.Random) -> dict:
    import duckdb

    with tempfile.TemporaryDirectory(prefix="watch-crash-") as tmp:
        tmp = Path(tmp)
        store = shutil.copytree(base_store(), tmp / "store")
        inbox = tmp / "INBOX"
        inbox.mkdir()
        old = time.time() - 60
        for r in label_rows()[1000:1200]:
            dst = inbox / Path(r["file"]).name
            shutil.copyfile(POSTERS / r["file"], dst)
            os.utime(dst, (old, old))
        args = ["watch", inbox, "--once", "--batch", "50", "--settle", "0", "--json",
                "--store", store]
        t0 = time.monotonic()
        if point == "random":
            from posterdb.testing.slices import posterdb_cmd

            proc = subprocess.Popen(posterdb_cmd() + [str(a) for a in args], env=_env(),
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(rng.uniform(2.0, 9.0))
            proc.kill()
            rc = proc.wait(60)
        else:
            rc = _cli(*args, crash=point).returncode
        con = duckdb.connect(str(store / "catalog.duckdb"), read_only=True)
        at_kill = con.execute("SELECT count(*) FROM posters").fetchone()[0] - 300
        con.close()
        done_at_kill = len(list((inbox / "done").glob("*"))) if (inbox / "done").exists() else 0
        r = _cli(*args)
        con = duckdb.connect(str(store / "catalog.duckdb"), read_only=True)
        n, distinct = con.execute("SELECT count(*), count(DISTINCT sha256) FROM posters").fetchone()
        con.close()
        done = len(list((inbox / "done").glob("*"))) if (inbox / "done").exists() else 0
        failed = (inbox / "failed").exists()
        left = [p for p in inbox.iterdir() if p.is_file() and not p.name.startswith(".")]
        check = json.loads(_cli("check", "--json", "--store", store).stdout)
        ok = (r.returncode == 0 and n == 500 and distinct == 500 and done == 200 and not failed
              and not left and check.get("ok"))
        return {"trial": i, "point": point, "killed_rc": rc, "stored_at_kill": at_kill,
                "moved_at_kill": done_at_kill, "stored_after": n - 300, "done": done,
                "ok": bool(ok), "seconds": round(time.monotonic() - t0, 1)}


def run(quick: bool = False, trials: int | None = None) -> list[Figure]:
    trials = trials or (4 if quick else 8)
    rng = random.Random(11)
    load = loadavg()
    results = []
    for i in range(trials):
        res = trial(i, POINTS[i % len(POINTS)], rng)
        print(f"  {json.dumps(res)}", flush=True)
        results.append(res)
    failures = sum(not r["ok"] for r in results)
    return [Figure(NAME, f"watch kill -9 during a 200-poster drop, restart ({trials} trials)",
                   failures, "failures", trials, "trials", "0 failures", failures == 0,
                   load=f"{load} → {loadavg()}", extra={"trials": results})]


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=8)
    a = ap.parse_args()
    for f in run(trials=a.trials):
        print(f.to_dict())
