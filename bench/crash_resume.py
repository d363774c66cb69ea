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
import json
import os
import shutil
import sys
import tempfile
from collections import Counter
from pathlib import Path

from posterdb.testing.crash import (
    KINDS,
    TrialResult,
    calibrate,
    plan,
    run_trial,
    source_truth,
)
from posterdb.testing.slices import copy_posters

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("POSTERDB_SHARED", ROOT.parent / "shared"))
POSTERS = SHARED / "posters"
MODELS = SHARED / "models"


def run(n_trials: int = 24, n_posters: int = 300, seed: int = 7, batch_size: int = 16,
        workdir: Path | None = None, model_dir: Path = MODELS, src: Path | None = None,
        verbose: bool = True) -> list[TrialResult]:
    workdir = Path(workdir or tempfile.mkdtemp(prefix="posterdb-crash-"))
    if src is None:
        src = workdir / "src"
        if not (src / "labels.csv").exists():
            copy_posters(src, n_posters, start=3, every=15, posters=POSTERS)
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
