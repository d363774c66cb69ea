"""Crash-and-resume harness shared by tests/test_crash.py and bench/crash_resume.py.

SIGKILL `posterdb ingest` (a subprocess) at random moments or at fault-injection points
(`POSTERDB_CRASH_AT`, see posterdb/faults.py), re-run it to completion and verify the store:
every source poster stored exactly once, labels as in labels.csv, vectors == posters, FAISS ids
== DuckDB ids (`posterdb check --deep`). Right after a kill the store may only be behind (a stale
or missing index), never wrong.
"""
from __future__ import annotations

import csv
import hashlib
import json
import random
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from posterdb.testing.slices import posterdb_cmd, subprocess_env

MODEL = "mobilenet-v2"   # the tests pass "fake-pixels": what is tested is storage, not features
POINTS = ("before_commit", "after_commit", "index_tmp_written", "index_renamed",
          "image_tmp_written")
KINDS = ("delay",) + POINTS
INDEX_PROBLEMS = ("index file", "index differs", "index holds")  # a stale cache, not data loss


@dataclass
class Kill:
    kind: str          # "delay" or a crash point name
    arg: float | int   # delay: fraction of a clean run's wall time; point: its N-th hit

    @property
    def label(self) -> str:
        return f"delay {self.arg:.2f}T" if self.kind == "delay" else f"{self.kind}:{self.arg}"


@dataclass
class TrialResult:
    trial: int
    kills: list[str]
    killed: list[bool] = field(default_factory=list)   # did each killed run really die by SIGKILL
    failures: list[str] = field(default_factory=list)
    tmp_left: int = 0
    seconds: float = 0.0
    resumed_added: int = 0

    @property
    def ok(self) -> bool:
        return not self.failures


def plan(n_trials: int, seed: int, n_posters: int) -> list[list[Kill]]:
    """Seeded kill plans; the first len(KINDS) trials cover every kind once, every 4th trial
    kills twice (the second kill hits the resuming run: sync, commit or index write)."""
    rng = random.Random(seed)
    # commits of a fresh run: 1 = register_model, then one per ≥ 256 posters or 2 s of work
    # (so 2–3 for 300 posters here); a planned hit past the last one lets the run finish
    commits = [1, 2, 2, 3]

    def one(kind: str) -> Kill:
        if kind == "delay":
            return Kill(kind, round(rng.uniform(0.1, 0.85), 3))
        if kind in ("before_commit", "after_commit"):
            return Kill(kind, rng.choice(commits))
        if kind in ("index_tmp_written", "index_renamed"):
            return Kill(kind, rng.randint(1, 2))   # 1: the empty index at start, 2: the end
        return Kill(kind, rng.randint(1, n_posters))

    plans = []
    for t in range(n_trials):
        kind = KINDS[t % len(KINDS)] if t < 2 * len(KINDS) else rng.choice(KINDS)
        kills = [one(kind)]
        if t % 4 == 3:
            kills.append(one(rng.choice(KINDS)))
        plans.append(kills)
    return plans


def source_truth(src: Path) -> tuple[set[str], dict[str, dict]]:
    """Distinct sha256 of the source images, and the labels row of each sha."""
    with open(src / "labels.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    by_sha = {}
    for r in rows:
        by_sha.setdefault(hashlib.sha256((src / r["file"]).read_bytes()).hexdigest(), r)
    files = [p for p in (src / "images").rglob("*") if p.is_file()]
    shas = {hashlib.sha256(p.read_bytes()).hexdigest() for p in files}
    return shas, by_sha


def _ingest_args(src: Path, store: Path, model_dir: Path, batch_size: int,
                 model: str = MODEL) -> list[str]:
    return posterdb_cmd() + ["ingest", str(src), "--labels", str(src / "labels.csv"),
                             "--store", str(store), "--model-dir", str(model_dir), "--json",
                             "--batch-size", str(batch_size), "--model", model]


_env = subprocess_env


def run_killed(args: list[str], kill: Kill, clean_seconds: float, timeout: float = 120) -> bool:
    """Run ingest and SIGKILL it (timer: kill.arg × a clean run's time, or a crash point);
    True if it died by SIGKILL."""
    env = _env({"POSTERDB_CRASH_AT": f"{kill.kind}:{kill.arg}"} if kill.kind != "delay" else None)
    p = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if kill.kind == "delay":
        try:
            p.wait(kill.arg * clean_seconds)
        except subprocess.TimeoutExpired:
            p.send_signal(signal.SIGKILL)
    try:
        rc = p.wait(timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
        raise AssertionError(f"ingest with kill {kill.label} hung for {timeout} s")
    return rc == -signal.SIGKILL


def store_after_kill(store: Path) -> list[str]:
    """Right after a kill: catalogue-level invariants hold; only the FAISS cache may be behind."""
    from posterdb.core.errors import SchemaVersionError
    from posterdb.store import PosterDB

    if not (store / "catalog.duckdb").exists():
        return []
    try:
        report = PosterDB.open(store, create=False).check(deep=True)
    except SchemaVersionError as e:
        if "schema version 0;" in str(e):   # killed while the store was being created:
            return []                       # nothing was committed, the next writer creates it
        return [f"after kill: check raised {type(e).__name__}: {e}"]
    except Exception as e:  # noqa: BLE001 - any failure to read the killed store is a finding
        return [f"after kill: check raised {type(e).__name__}: {e}"]
    return [f"after kill: {p}" for p in report["problems"]
            if not any(m in p for m in INDEX_PROBLEMS)]


def verify(store: Path, src_shas: set[str], by_sha: dict[str, dict],
           model: str = MODEL) -> list[str]:
    """The finished store: every source poster once, labelled as in labels.csv, FAISS == DuckDB."""
    import numpy as np

    from posterdb.store import PosterDB

    bad = []
    r = subprocess.run(posterdb_cmd() + ["check", "--deep", "--json", "--store", str(store)],
                       env=_env(), capture_output=True, text=True, timeout=120)
    try:
        rep = json.loads(r.stdout)
    except json.JSONDecodeError:
        return [f"check printed no JSON (rc {r.returncode}): {r.stdout[-300:]} {r.stderr[-500:]}"]
    if r.returncode != 0 or not rep.get("ok"):
        bad.append(f"check rc {r.returncode}: {rep.get('problems')}")
    from posterdb.storage.catalog import Catalog, embedding_table

    cat = Catalog(store / "catalog.duckdb")
    with cat.read() as con:
        rows = [(r["id"], r["sha256"], r["title"], r["year"]) for r in cat.poster_rows(con, None)]
        vec_ids = cat.vector_ids(con, embedding_table(model)).tolist()
        labels = {pid: set(gs) for pid, gs in cat.labels(con, origin="file").items()}
    shas = [s for _, s, _, _ in rows]
    if len(shas) != len(set(shas)):
        bad.append(f"{len(shas) - len(set(shas))} posters stored twice")
    if set(shas) != src_shas:
        bad.append(f"stored {len(set(shas))} posters, expected {len(src_shas)} "
                   f"({len(src_shas - set(shas))} missing, {len(set(shas) - src_shas)} unexpected)")
    ids = [pid for pid, _, _, _ in rows]
    if vec_ids != ids:
        bad.append(f"{len(vec_ids)} vectors for {len(ids)} posters (ids differ)")
    wrong = []
    for pid, sha, title, year in rows:
        row = by_sha.get(sha)
        if row is None:
            continue
        if labels.get(pid) != set(row["genres"].split("|")) or year != int(row["year"]):
            wrong.append(pid)
    if wrong:
        bad.append(f"{len(wrong)} posters whose labels/year differ from labels.csv, e.g. {wrong[:5]}")
    db = PosterDB.open(store, create=False)
    faiss_ids = db.indexes.index().ids()
    if not np.array_equal(faiss_ids, np.asarray(ids, dtype=np.int64)):
        bad.append("the FAISS index (as opened) differs from DuckDB")
    if db.indexes.state().status != "loaded":
        bad.append(f"index file was not current after the run: {db.indexes.state()}")
    return bad


def calibrate(src: Path, store: Path, model_dir: Path, batch_size: int,
              truth: tuple[set[str], dict[str, dict]], model: str = MODEL) -> float:
    """Wall time of one uninterrupted ingest (the timer kills are fractions of it); the clean
    store must pass `verify` too."""
    shutil.rmtree(store, ignore_errors=True)
    t0 = time.perf_counter()
    r = subprocess.run(_ingest_args(src, store, model_dir, batch_size, model), env=_env(),
                       capture_output=True, text=True, timeout=300)
    seconds = time.perf_counter() - t0
    if r.returncode != 0:
        raise RuntimeError(f"clean ingest exited {r.returncode}: {r.stdout[-500:]} {r.stderr[-2000:]}")
    bad = verify(store, *truth, model=model)
    if bad:
        raise RuntimeError(f"clean ingest fails verification: {bad}")
    shutil.rmtree(store, ignore_errors=True)
    return seconds


def run_trial(i: int, kills: list[Kill], src: Path, store: Path, model_dir: Path,
              batch_size: int, truth: tuple[set[str], dict[str, dict]],
              clean_seconds: float, model: str = MODEL) -> TrialResult:
    t0 = time.perf_counter()
    res = TrialResult(i, [k.label for k in kills])
    shutil.rmtree(store, ignore_errors=True)
    args = _ingest_args(src, store, model_dir, batch_size, model)
    for kill in kills:
        res.killed.append(run_killed(args, kill, clean_seconds))
        res.failures += store_after_kill(store)
    res.tmp_left = sum(1 for _ in store.rglob("*.tmp")) if store.exists() else 0
    r = subprocess.run(args, env=_env(), capture_output=True, text=True, timeout=300)
    try:
        report = json.loads(r.stdout)
    except json.JSONDecodeError:
        report = {}
    if r.returncode != 0:
        res.failures.append(f"resume exited {r.returncode}: {r.stdout[-500:]} {r.stderr[-1500:]}")
    elif report.get("failed"):
        res.failures.append(f"resume reported failures: {report['failed'][:3]}")
    res.resumed_added = int(report.get("added", 0))
    if not res.failures:
        res.failures += verify(store, *truth, model=model)
    res.seconds = time.perf_counter() - t0
    return res


