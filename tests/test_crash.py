"""Crash and resume: SIGKILL `posterdb ingest` (a subprocess) at random moments and at injected
crash points (posterdb/faults.py), re-run it, and check nothing is lost, doubled or out of step.

8 seeded trials on 300 real posters (ingest commits every ≥ 256 posters or 2 s, so a fresh run
makes 2–3 commits): every kind of kill once, two of them followed by a second kill of the resuming
run. The machinery is posterdb/testing/crash.py; the long proof is bench/crash_resume.py
(`.venv/bin/python -m bench.crash_resume --trials 30 --seed 11`).
Set POSTERDB_CRASH_TRIALS to run more or fewer here.
"""
from __future__ import annotations

import os
import signal
import subprocess

import pytest

from posterdb.core import faults
from posterdb.testing.crash import (
    KINDS,
    _env,
    _ingest_args,
    calibrate,
    plan,
    run_trial,
    source_truth,
    verify,
)
from posterdb.testing.slices import copy_posters

MODEL = "fake-pixels"   # crash/resume is about storage: the fast deterministic embedder will do
N_POSTERS = 300
BATCH = 16
SEED = 9   # its 8 trials: every kind of kill, each at a hit every fresh run reaches
N_TRIALS = int(os.environ.get("POSTERDB_CRASH_TRIALS", "8"))
PLAN = plan(N_TRIALS, SEED, N_POSTERS)
_landed: dict[str, int] = {}

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def crash_src(tmp_path_factory, posters_dir, model_dir):
    """300 real posters + labels.csv, their truth, and the wall time of a clean ingest."""
    work = tmp_path_factory.mktemp("crash")
    src = copy_posters(work / "src", N_POSTERS, start=3, every=15, posters=posters_dir)
    truth = source_truth(src)
    assert len(truth[0]) == N_POSTERS
    clean = calibrate(src, work / "clean", model_dir, BATCH, truth, MODEL)
    return work, src, truth, clean


@pytest.mark.parametrize("trial", range(len(PLAN)),
                         ids=[f"{i}-{'+'.join(k.label.replace(' ', '') for k in kills)}"
                              for i, kills in enumerate(PLAN)])
def test_kill_and_resume(trial, crash_src, model_dir):
    work, src, truth, clean = crash_src
    res = run_trial(trial, PLAN[trial], src, work / f"store{trial}", model_dir, BATCH, truth, clean,
                    MODEL)
    for kill, killed in zip(PLAN[trial], res.killed):
        _landed[kill.kind] = _landed.get(kill.kind, 0) + killed
    assert res.ok, "\n".join(res.failures)


def test_every_kind_of_kill_landed():
    """The plan really exercised each window (a kill that never fired proves nothing)."""
    if len(_landed) == 0:
        pytest.skip("no trials ran")
    missing = [k for k in KINDS if not _landed.get(k)]
    assert not missing, f"no kill landed for {missing}: {_landed}"


@pytest.mark.parametrize("point, where", [("image_tmp_written:5", "images"),
                                          ("index_tmp_written:2", "index")])
def test_tmp_files_left_by_a_kill_are_harmless(point, where, crash_src, model_dir):
    work, src, truth, _ = crash_src
    store = work / f"tmp-{where}"
    args = _ingest_args(src, store, model_dir, BATCH, MODEL)
    p = subprocess.run(args, env=_env({"POSTERDB_CRASH_AT": point}), capture_output=True,
                       timeout=300)
    assert p.returncode == -signal.SIGKILL
    left = sorted((store / where).rglob("*.tmp"))
    assert left, f"a kill at {point} should leave a temp file under {where}/"
    r = subprocess.run(args, env=_env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-500:] + r.stderr[-1500:]
    assert verify(store, *truth, model=MODEL) == []
    # nothing cleans them up (yet): they stay, unreferenced, and nothing trips over them
    assert all(t.exists() for t in left)


def test_crash_point_is_inert_without_the_variable(monkeypatch):
    monkeypatch.setattr(faults, "_hits", {})
    monkeypatch.delenv(faults.ENV, raising=False)
    faults.crash_point("before_commit")
    monkeypatch.setenv(faults.ENV, "before_commit:3")
    faults.crash_point("after_commit")          # another point: not counted, no kill
    faults.crash_point("before_commit")         # hit 1 of 3
    faults.crash_point("before_commit")         # hit 2 of 3
    assert faults._hits == {"before_commit": 2}
