"""`posterdb ingest` (the real CLI) of a hostile folder into a store that already holds posters:
every bad file is reported with a reason, every good one is stored, nothing stored changes."""
from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import hostile  # tests/ is on sys.path (rootdir conftest, no __init__.py)
import pytest
from hostile import EXPECTED_SIZES, NOT_YIELDED, make_hostile_corpus

from posterdb.testing.slices import posterdb_cmd
from posterdb.testing.slices import subprocess_env as _env


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(posterdb_cmd() + list(args), env=_env(), capture_output=True, text=True,
                          timeout=300)


def _export(store: Path) -> dict[int, dict]:
    r = _cli("export", "--format", "json", "--store", str(store))
    assert r.returncode == 0, r.stderr[-2000:]
    return {p["id"]: p for p in json.loads(r.stdout)}


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def store_with_posters(tmp_path, poster_slice, model_dir):
    src = poster_slice(25, start=4, every=97)
    store = tmp_path / "store"
    r = _cli("ingest", str(src), "--labels", str(src / "labels.csv"), "--store", str(store),
             "--model-dir", str(model_dir), "--json")
    assert r.returncode == 0, r.stdout[-1000:] + r.stderr[-2000:]
    assert json.loads(r.stdout)["added"] == 25
    return store, src


def test_hostile_folder_through_the_cli(tmp_path, store_with_posters, posters_dir, label_rows,
                                        model_dir):
    store, src = store_with_posters
    before = _export(store)
    assert len(before) == 25
    # a real poster not stored yet (so real.jpg & co. must be added), plus one already stored
    new_real = posters_dir / label_rows[1]["file"]
    folder = tmp_path / "hostile"
    expect = make_hostile_corpus(folder, new_real)
    stored_one = sorted((src / "images").iterdir())[0]
    shutil.copyfile(stored_one, folder / "already_stored.jpg")
    expect["already_stored.jpg"] = "ok"

    r = _cli("ingest", str(folder), "--store", str(store), "--model-dir", str(model_dir), "--json")
    assert r.returncode == 1, (r.returncode, r.stdout[-1000:], r.stderr[-2000:])
    report = json.loads(r.stdout)

    failed = {}
    for f in report["failed"]:
        rel = Path(f["path"]).relative_to(folder).as_posix()
        assert rel not in failed, f"{rel!r} reported twice"
        failed[rel] = f["reason"]
    errors = {n for n, k in expect.items() if k == "error"} - NOT_YIELDED
    oks = {n for n, k in expect.items() if k == "ok"}
    assert set(failed) == errors, (f"errors not reported: {sorted(errors - set(failed))}; "
                                   f"reported but ok: {sorted(set(failed) - errors)}")
    assert all(isinstance(v, str) and v.strip() for v in failed.values()), failed

    after = _export(store)
    # the posters stored before are untouched (ids, metadata, labels, image copies)
    assert {i: after[i] for i in before} == before
    for p in before.values():
        assert _sha(store / p["image_path"]) == p["sha256"]
    # every valid file is stored (by content; identical files once), none lost
    by_sha = {p["sha256"]: p for p in after.values()}
    ok_shas = {_sha(folder / n) for n in oks}
    assert ok_shas <= set(by_sha), [n for n in oks if _sha(folder / n) not in by_sha]
    new_shas = ok_shas - {p["sha256"] for p in before.values()}
    assert len(after) == len(before) + len(new_shas)
    assert report["added"] == len(new_shas)
    for name, size in EXPECTED_SIZES.items():
        p = by_sha[_sha(folder / name)]
        assert (p["width"], p["height"]) == size, name
    assert (by_sha[_sha(folder / hostile.EXIF_ROTATED)]["width"],
            by_sha[_sha(folder / hostile.EXIF_ROTATED)]["height"]) == hostile.EXIF_ROTATED_SIZE

    c = _cli("check", "--deep", "--json", "--store", str(store))
    assert c.returncode == 0 and json.loads(c.stdout)["ok"], c.stdout[-2000:]
    info = json.loads(_cli("info", "--json", "--store", str(store)).stdout)
    assert info["posters"] == len(after)
    assert info["models"][0]["vectors"] == len(after)
    assert info["ingest_errors"] >= len(errors)

    # a second run changes nothing and reports the same failures
    again = _cli("ingest", str(folder), "--store", str(store), "--model-dir", str(model_dir),
                 "--json")
    assert again.returncode == 1
    rep2 = json.loads(again.stdout)
    assert rep2["added"] == 0
    assert {Path(f["path"]).relative_to(folder).as_posix() for f in rep2["failed"]} == errors
    assert _export(store) == after
