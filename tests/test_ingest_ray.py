"""`posterdb ingest --engine ray` on a real local Ray cluster (one per module: start-up is slow).

300 real posters: the same posters and vectors as the local engine, `check` clean, a re-run adds
nothing; a run SIGKILLed after its first commit (a separate driver process connected with
`--ray-address`) is completed by a re-run to exactly the same set.
"""
from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="the ray extra is not installed")

from posterdb.ingest.ray_engine import RayEngine  # noqa: E402
from posterdb.store import PosterDB  # noqa: E402
from posterdb.testing.slices import posterdb_cmd, subprocess_env  # noqa: E402

N = 300


@pytest.fixture(scope="module")
def cluster():
    """An in-process local Ray (2 CPUs); yields its address for other drivers."""
    ctx = ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ctx.address_info["gcs_address"]
    ray.shutdown()


@pytest.fixture(scope="module")
def posters(tmp_path_factory, label_rows, posters_dir):
    from tests.conftest import copy_slice

    return copy_slice(label_rows, posters_dir, tmp_path_factory.mktemp("ray-src"), N, every=17)


@pytest.fixture(scope="module")
def local(tmp_path_factory, posters, model_dir):
    db = PosterDB.open(tmp_path_factory.mktemp("local") / "s", model_dir=model_dir)
    assert db.ingest(posters, posters / "labels.csv").added == N
    return db


def by_sha(db) -> dict[str, np.ndarray]:
    posters = db.posters.get()
    vecs = db.search.vectors([p.id for p in posters])
    return {p.sha256: v for p, v in zip(posters, vecs)}


def same_as_local(db, local) -> None:
    """Same posters (by content) and vectors: each one's top hit in the local store is itself."""
    mine, theirs = by_sha(db), by_sha(local)
    assert set(mine) == set(theirs) and len(mine) == N
    shas = sorted(mine)
    a = np.stack([mine[s] for s in shas])
    b = np.stack([theirs[s] for s in shas])
    sims = a @ b.T
    assert np.array_equal(sims.argmax(1), np.arange(len(shas)))
    assert sims.diagonal().min() >= 0.999


def test_ray_engine_stores_what_the_local_engine_stores(cluster, posters, local, tmp_path,
                                                        model_dir):
    db = PosterDB.open(tmp_path / "s", model_dir=model_dir)
    engine = RayEngine(db.models.embedder("mobilenet-v2"))
    report = db.ingest(posters, posters / "labels.csv", engine=engine)
    assert (report.added, report.failed) == (N, [])
    same_as_local(db, local)
    assert db.info()["by_genre"] == local.info()["by_genre"]
    assert db.check()["ok"]
    again = db.ingest(posters, posters / "labels.csv", engine=engine)
    assert (again.added, again.skipped) == (0, N)


def test_shipped_weights_give_the_same_vectors(cluster, tmp_path, label_rows, posters_dir,
                                               local, model_dir):
    """--ship-weights: workers load the driver's bytes from Ray's object store, not the path."""
    from tests.conftest import copy_slice

    few = copy_slice(label_rows, posters_dir, tmp_path / "src", 12, every=17)
    db = PosterDB.open(tmp_path / "s", model_dir=model_dir)
    report = db.ingest(few, engine=RayEngine(db.models.embedder("mobilenet-v2"), ship_weights=True))
    assert report.added == 12
    theirs = by_sha(local)
    for sha, v in by_sha(db).items():
        assert float(v @ theirs[sha]) >= 0.999


def _cli(*args, crash_at: str | None = None):
    env = subprocess_env({"POSTERDB_CRASH_AT": crash_at} if crash_at else None)
    return subprocess.run([*posterdb_cmd(), "ingest", *args], env=env, capture_output=True,
                          text=True, timeout=600)


def test_cli_ray_killed_mid_run_then_rerun_gives_the_exact_set(cluster, posters, local,
                                                                tmp_path, model_dir):
    store = tmp_path / "s"
    common = [str(posters), "--labels", str(posters / "labels.csv"), "--store", str(store),
              "--model-dir", str(model_dir), "--engine", "ray", "--ray-address", cluster, "--json"]
    killed = _cli(*common, crash_at="after_commit:2")      # SIGKILL after the first commit
    assert killed.returncode == -9, killed.stderr[-2000:]
    db = PosterDB.open(store, model_dir=model_dir)
    part = db.posters.count()
    assert 0 < part < N                                           # mid-run
    rerun = _cli(*common)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    report = json.loads(rerun.stdout)
    assert report["added"] == N - part and report["skipped"] == part
    db = PosterDB.open(store, model_dir=model_dir)
    same_as_local(db, local)
    assert db.check()["ok"]


def test_cli_refuses_a_bad_engine_before_making_a_store(tmp_path, posters):
    from typer.testing import CliRunner

    from posterdb.ui.cli.main import app

    store = tmp_path / "s"
    for args in (["--engine", "spark"], ["--ray-address", "auto"]):
        res = CliRunner().invoke(app, ["ingest", str(posters), "--store", str(store), *args,
                                       "--json"])
        assert res.exit_code == 2 and json.loads(res.stdout)["type"] == "UsageError", res.output
        assert not store.exists()


def test_ray_engine_takes_names_that_are_not_utf8(cluster, tmp_path):
    """Issue 19: file names travel to the Ray workers as bytes (Arrow strings are UTF-8 only)."""
    import os
    import shutil

    from synthetic import make_posters

    from posterdb.core.text import name_bytes

    imgs = make_posters(tmp_path / "src", 3) / "images"
    bad = os.path.join(os.fsencode(imgs), b"bad\xff\x1b.png")
    shutil.copy(imgs / "p000001.png", bad)
    os.remove(imgs / "p000001.png")
    with open(os.path.join(os.fsencode(imgs), b"junk\xfe.png"), "wb") as f:
        f.write(b"not an image")
    db = PosterDB.open(tmp_path / "store")
    engine = RayEngine(db.models.embedder("fake-pixels"), batch_size=2)
    report = db.ingest(imgs, model="fake-pixels", engine=engine)
    assert report.added == 3 and [f["reason"] for f in report.failed] == [
        "not an image: unrecognised format"]
    with db.catalog.read() as con:
        assert bad in {name_bytes(p) for p in db.catalog.known_paths(con)}
    again = db.ingest(imgs, model="fake-pixels", engine=engine)
    assert again.added == 0 and again.skipped == 3
