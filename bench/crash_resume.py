"""Crash and resume: SIGKILL `posterdb ingest` at random moments and at injected crash points,
re-run it to completion, and verify the store (the full loop of ``tests/test_crash.py``).

    .venv/bin/python -m bench.crash_resume [--trials 24] [--posters 300] [--seed 7]

Each trial uses a fresh store: 1–2 killed runs, then one run to completion (same arguments),
then: exit code 0, every source poster stored exactly once (count == distinct sha256 of the
source files), labels/title/year of every poster match labels.csv, DuckDB vectors == posters,
FAISS ids == DuckDB ids (`posterdb check --deep --json`: ok, exit 0). Right after each kill the
store may only be behind (index stale/missing), never wrong: the catalogue-level checks must pass.
Kills are either a timer (mostly lands while embedding) or a fault-injection point
(`POSTERDB_CRASH_AT`, see posterdb/faults.py) for the short commit / index-write windows.
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from .common import write_slice

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("POSTERDB_SHARED", ROOT.parent / "shared"))
POSTERS = SHARED / "posters"
MODELS = SHARED / "models"

POINTS = ("before_commit", "after_commit", "index_tmp_written", "index_renamed",
          "image_tmp_written")
KINDS = ("delay",) + POINTS
INDEX_PROBLEMS = ("index file", "index differs", "index holds")  # a stale cache, not data loss


def posterdb_cmd() -> list[str]:
    """The console script next to this interpreter (the venv's), else `python -m cli.main`."""
    script = Path(sys.executable).with_name("posterdb")
    return [str(script)] if script.exists() else [sys.executable, "-m", "cli.main"]


def copy_posters(dst: Path, n: int, start: int = 0, every: int = 1,
                 posters: Path = POSTERS) -> Path:
    """n real posters (labels.csv rows start, start+every, ...) + their labels.csv into dst."""
    with open(posters / "labels.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))[start::every][:n]
    return write_slice(rows, dst, posters)


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


def _ingest_args(src: Path, store: Path, model_dir: Path, batch_size: int) -> list[str]:
    return posterdb_cmd() + ["ingest", str(src), "--labels", str(src / "labels.csv"),
                             "--store", str(store), "--model-dir", str(model_dir), "--json",
                             "--batch-size", str(batch_size)]


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "POSTERDB_CRASH_AT"}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra or {})
    return env


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
    from posterdb.store import PosterDB

    if not (store / "catalog.duckdb").exists():
        return []
    try:
        report = PosterDB.open(store, create=False).check(deep=True)
    except Exception as e:  # noqa: BLE001 - any failure to read the killed store is a finding
        return [f"after kill: check raised {type(e).__name__}: {e}"]
    return [f"after kill: {p}" for p in report["problems"]
            if not any(m in p for m in INDEX_PROBLEMS)]


def verify(store: Path, src_shas: set[str], by_sha: dict[str, dict]) -> list[str]:
    """The finished store: every source poster once, labelled as in labels.csv, FAISS == DuckDB."""
    import duckdb
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
    con = duckdb.connect(str(store / "catalog.duckdb"), read_only=True)
    try:
        rows = con.execute("SELECT id, sha256, title, year FROM posters ORDER BY id").fetchall()
        vec_ids = [i for (i,) in con.execute(
            "SELECT poster_id FROM embeddings_mobilenet_v2 ORDER BY poster_id").fetchall()]
        labels: dict[int, set[str]] = {}
        for pid, g in con.execute("SELECT poster_id, genre FROM genre_labels "
                                  "WHERE origin = 'file'").fetchall():
            labels.setdefault(pid, set()).add(g)
    finally:
        con.close()
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
    faiss_ids = db.index().ids()
    if not np.array_equal(faiss_ids, np.asarray(ids, dtype=np.int64)):
        bad.append("the FAISS index (as opened) differs from DuckDB")
    if db.index_state().status != "loaded":
        bad.append(f"index file was not current after the run: {db.index_state()}")
    return bad


def calibrate(src: Path, store: Path, model_dir: Path, batch_size: int,
              truth: tuple[set[str], dict[str, dict]]) -> float:
    """Wall time of one uninterrupted ingest (the timer kills are fractions of it); the clean
    store must pass `verify` too."""
    shutil.rmtree(store, ignore_errors=True)
    t0 = time.perf_counter()
    r = subprocess.run(_ingest_args(src, store, model_dir, batch_size), env=_env(),
                       capture_output=True, text=True, timeout=300)
    seconds = time.perf_counter() - t0
    if r.returncode != 0:
        raise RuntimeError(f"clean ingest exited {r.returncode}: {r.stdout[-500:]} {r.stderr[-2000:]}")
    bad = verify(store, *truth)
    if bad:
        raise RuntimeError(f"clean ingest fails verification: {bad}")
    shutil.rmtree(store, ignore_errors=True)
    return seconds


def run_trial(i: int, kills: list[Kill], src: Path, store: Path, model_dir: Path,
              batch_size: int, truth: tuple[set[str], dict[str, dict]],
              clean_seconds: float) -> TrialResult:
    t0 = time.perf_counter()
    res = TrialResult(i, [k.label for k in kills])
    shutil.rmtree(store, ignore_errors=True)
    args = _ingest_args(src, store, model_dir, batch_size)
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
        res.failures += verify(store, *truth)
    res.seconds = time.perf_counter() - t0
    return res


def run(n_trials: int = 24, n_posters: int = 300, seed: int = 7, batch_size: int = 16,
        workdir: Path | None = None, model_dir: Path = MODELS, src: Path | None = None,
        verbose: bool = True) -> list[TrialResult]:
    workdir = Path(workdir or tempfile.mkdtemp(prefix="posterdb-crash-"))
    if src is None:
        src = workdir / "src"
        if not (src / "labels.csv").exists():
            copy_posters(src, n_posters, start=3, every=15)
    truth = source_truth(src)
    clean = calibrate(src, workdir / "clean", model_dir, batch_size, truth)
    if verbose:
        print(f"{len(truth[0])} posters; clean ingest {clean:.1f} s (timer kills are fractions "
              f"T of it)", flush=True)
    results = []
    for i, kills in enumerate(plan(n_trials, seed, n_posters)):
        res = run_trial(i, kills, src, workdir / f"store{i}", model_dir, batch_size, truth,
                        clean)
        results.append(res)
        if res.ok:
            shutil.rmtree(workdir / f"store{i}", ignore_errors=True)
        if verbose:
            print(f"trial {i:2d} {' + '.join(res.kills):42s} "
                  f"killed={''.join('y' if k else 'n' for k in res.killed):3s} "
                  f"tmp_left={res.tmp_left} resumed_added={res.resumed_added:3d} "
                  f"{res.seconds:5.1f}s {'ok' if res.ok else 'FAIL ' + '; '.join(res.failures)}",
                  flush=True)
    return results


def summary(results: list[TrialResult]) -> dict:
    per_point: Counter = Counter()
    per_point_hit: Counter = Counter()
    for r in results:
        for label, killed in zip(r.kills, r.killed):
            kind = label.split(":")[0].split(" ")[0]
            per_point[kind] += 1
            per_point_hit[kind] += killed
    return {"trials": len(results), "failures": sum(not r.ok for r in results),
            "kills": sum(len(r.kills) for r in results),
            "kills_landed": sum(sum(r.killed) for r in results),
            "per_point": {k: {"planned": per_point[k], "killed": per_point_hit[k]} for k in KINDS},
            "tmp_files_left_after_kills": sum(r.tmp_left for r in results),
            "seconds": round(sum(r.seconds for r in results), 1)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=24)
    ap.add_argument("--posters", type=int, default=300)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--workdir", type=Path, default=None)
    a = ap.parse_args(argv)
    results = run(a.trials, a.posters, a.seed, a.batch_size, a.workdir)
    s = summary(results)
    print(json.dumps(s, indent=1))
    return 0 if s["failures"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
