"""Damaged files, read-only stores, full disks, orphans: every command answers in one line, the
deep check finds the damage, `prune` removes what nothing refers to.

Real DuckDB and FAISS files of a small store (synthetic posters, the fake-pixels embedder: what
is tested is storage); the damage is done to the bytes on disk. Read-only and full-disk tests
need either a non-root user (chmod) or root with mount namespaces (`unshare -m`: a read-only
bind mount, a 12 MB tmpfs); they are skipped where neither is available.
"""
from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest
from synthetic import make_posters  # tests/ is on sys.path (rootdir conftest, no __init__.py)
from typer.testing import CliRunner

from posterdb.core.errors import CatalogDamagedError, PosterDBError
from posterdb.store import PosterDB
from posterdb.testing.slices import posterdb_cmd, subprocess_env
from posterdb.ui.cli.main import app

FAKE = "fake-pixels"
ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


def cli(*args: str):
    res = runner.invoke(app, [str(a) for a in args])
    return res.exit_code, res.stdout, res.stderr


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A store of 80 labelled synthetic posters, trained twice (two classifier rows), and a
    folder of 6 posters it does not hold."""
    work = tmp_path_factory.mktemp("integrity")
    src = make_posters(work / "src", 80, seed=11)
    new = make_posters(work / "new", 6, seed=12)
    db = PosterDB.open(work / "store")
    assert db.ingest(src, src / "labels.csv", model=FAKE).added == 80
    db.train(FAKE)
    db.train(FAKE)
    return work / "store", new


@pytest.fixture
def store(base, tmp_path):
    path = tmp_path / "store"
    shutil.copytree(base[0], path)
    return path


def blocks_of(path: Path, table: str) -> list[int]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return sorted({b for (b,) in con.execute(
            f"SELECT block_id FROM pragma_storage_info('{table}') WHERE block_id >= 0").fetchall()})
    finally:
        con.close()


def damage(store: Path, kind: str) -> None:
    f = store / "catalog.duckdb"
    data = bytearray(f.read_bytes())
    rng = random.Random(kind)
    if kind == "truncated":
        f.write_bytes(data[: len(data) // 3])
    elif kind == "random-bytes-in-a-page":      # the middle of a block holding poster rows
        b = blocks_of(f, "posters")[0]
        at = 12288 + b * 262144 + 131072
        data[at:at + 4096] = bytes(rng.randrange(256) for _ in range(4096))
        f.write_bytes(data)
    elif kind == "zeroed-header":
        data[:12288] = bytes(12288)
        f.write_bytes(data)
    elif kind == "directory":
        f.unlink()
        f.mkdir()
        (f / "x").write_text("not a catalogue")
    elif kind == "garbage":
        f.write_bytes(rng.randbytes(len(data)))
    elif kind == "empty":
        f.write_bytes(b"")
    else:
        raise AssertionError(kind)


KINDS = ["truncated", "random-bytes-in-a-page", "zeroed-header", "directory", "garbage", "empty"]


COMMANDS = [["info"], ["similar", "1"], ["check"], ["check", "--deep"], ["export"], ["train"],
            ["remove", "1"], ["reindex"], ["ingest", "NEW", "--model", FAKE]]
NEEDS_POSTER_ROWS = 7   # the first 7 read the posters table; reindex and ingest may not


@pytest.mark.parametrize("kind", KINDS)
def test_a_damaged_catalogue_is_one_line_and_exit_3_from_every_command(store, base, kind):
    damage(store, kind)
    before = sorted(p.name for p in store.rglob("*"))
    for i, args in enumerate(COMMANDS):
        args = [str(base[1]) if a == "NEW" else a for a in args]
        code, out, err = cli(*args, "--store", store)
        assert "Traceback" not in out + err and code in (0, 3), (args, code, err[-2000:])
        if kind == "random-bytes-in-a-page" and i >= NEEDS_POSTER_ROWS and code == 0:
            continue        # a command that never reads the damaged page does its work
        assert code == 3, (args, code, out[-500:], err[-500:])
        assert len(err.strip().splitlines()) == 1, (args, err)
        assert "catalog.duckdb" in err and ("damaged" in err or "not a file" in err), err
        code, out, _ = cli(*args, "--store", store, "--json")
        assert code == 3 and json.loads(out)["type"] == "CatalogDamagedError", (args, out)
    assert sorted(p.name for p in store.rglob("*")) == before   # nothing added or removed


def test_a_damaged_catalogue_in_a_real_process_and_on_the_page(store, monkeypatch):
    damage(store, "random-bytes-in-a-page")
    r = subprocess.run(posterdb_cmd() + ["info", "--store", str(store)], env=subprocess_env(),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 3 and len(r.stderr.strip().splitlines()) == 1, r.stderr[-2000:]
    assert "Traceback" not in r.stderr and "the catalogue file is damaged" in r.stderr
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("POSTERDB_STORE", str(store))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert len(at.error) == 1 and "the catalogue file is damaged" in at.error[0].value


def test_damage_in_any_block_is_found_by_the_deep_check_and_never_a_traceback(store, base):
    """Each block of the catalogue damaged in turn: reads and an ingest either work or stop
    with CatalogDamagedError; `check --deep` never calls the store clean."""
    original = (store / "catalog.duckdb").read_bytes()
    n_blocks = (len(original) - 12288) // 262144
    found = {"index-like": 0}
    for b in range(n_blocks):
        data = bytearray(original)
        at = 12288 + b * 262144 + 4096
        data[at:at + 512] = random.Random(b).randbytes(512)
        (store / "catalog.duckdb").write_bytes(data)
        (store / "catalog.duckdb.wal").unlink(missing_ok=True)
        outcome = []
        for step in ("read", "check", "ingest"):
            try:
                db = PosterDB.open(store, create=step == "ingest")
                if step == "read":
                    db.info(), db.similar(1, 3)
                elif step == "check":
                    report = db.check(deep=True)
                    assert not report["ok"] and any("block" in p for p in report["problems"]), b
                else:
                    db.ingest(base[1], base[1] / "labels.csv", model=FAKE)
                outcome.append("ok")
            except CatalogDamagedError as e:
                assert "catalog.duckdb" in str(e)
                outcome.append("damaged")
        if outcome[0] == "ok" and outcome[2] == "damaged":
            found["index-like"] += 1       # passes every read, fails a write: an index block
    assert found["index-like"] >= 1        # the kind the deep check used to miss


def test_orphans_and_a_tampered_classifier_are_reported_and_pruned(store, base):
    db = PosterDB.open(store, create=False)
    first, latest = [r for r in db.info()["classifiers"]][-2:]
    files = sorted((store / "classifiers").iterdir())
    assert len(files) == 2
    # the latest classifier modified after training
    with open(files[1], "ab") as f:
        f.write(b"\0")
    # ingest goes on without auto-classification (the tampered file is never unpickled)
    code, out, _ = cli("ingest", base[1], "--model", FAKE, "--store", store, "--json")
    assert code == 0 and json.loads(out)["added"] == 6
    assert any("not auto-classifying" in w and "does not match" in w
               for w in json.loads(out)["warnings"])
    # an orphan image copy, an orphan classifier, an old temp file, an index of no model
    some = next((store / "images").glob("*/*"))
    (store / "images" / "zz").mkdir(exist_ok=True)
    orphan_image = store / "images" / "zz" / ("0" * 64 + ".png")
    shutil.copyfile(some, orphan_image)
    orphan_clf = store / "classifiers" / "fake_pixels-19990101T000000000000.joblib"
    shutil.copyfile(files[0], orphan_clf)
    stale = store / "images" / "zz" / ".x.png.abc.tmp"
    stale.write_bytes(b"half")
    os.utime(stale, (time.time() - 3600, time.time() - 3600))
    (store / "index" / "resnet50.faiss").write_bytes(b"old")
    code, out, _ = cli("check", "--deep", "--store", store, "--json")
    report = json.loads(out)
    assert code == 1 and not report["ok"]
    assert any("does not match the sha256" in p for p in report["problems"])
    assert any("orphan image copies" in w for w in report["warnings"])
    assert any("orphan classifier files" in w for w in report["warnings"])
    p = report["prunable"]
    assert p["images"] == ["images/zz/" + orphan_image.name]
    assert p["classifiers"] == ["classifiers/" + orphan_clf.name]
    assert p["indexes"] == ["index/resnet50.faiss"] and p["temp_files"] == [f"images/zz/{stale.name}"]
    assert len(p["tampered_classifiers"]) == 1
    # a tampered classifier is never unpickled
    with pytest.raises(PosterDBError, match="does not match"):
        PosterDB.open(store, create=False).genres.classifier(FAKE)
    # dry run: lists, removes nothing
    code, out, _ = cli("prune", "--dry-run", "--store", store, "--json")
    dry = json.loads(out)
    assert code == 0 and dry["dry_run"] and dry["files"] == 5 and orphan_image.exists()
    code, out, _ = cli("check", "--deep", "--prune", "--store", store, "--json")
    after = json.loads(out)
    assert code == 0 and after["ok"], after["problems"]
    assert after["pruned"]["tampered_classifiers"][0]["file"] == files[1].relative_to(store).as_posix()
    assert not any(x.exists() for x in (orphan_image, orphan_clf, stale, files[1]))
    assert files[0].exists() and (store / "images").is_dir() and db.posters.count() == 86
    # the model's previous intact classifier is the one in use again
    fresh = PosterDB.open(store, create=False)
    assert fresh.genres.classifier(FAKE) is not None
    assert [c["trained_at"] for c in fresh.info()["classifiers"]] == [first["trained_at"]]
    assert latest["trained_at"] != first["trained_at"]
    code, out, _ = cli("prune", "--store", store, "--json")
    assert code == 0 and json.loads(out)["files"] == 0


# -- read-only stores and full disks -------------------------------------------------------------

def _can_unshare() -> bool:
    if os.geteuid() != 0 or not shutil.which("unshare"):
        return False
    return subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode == 0


def _in_namespace(script: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = subprocess_env({"PYTHON": sys.executable})
    return subprocess.run(["unshare", "-m", "sh", "-c", script], env=env, capture_output=True,
                          text=True, timeout=timeout)


RO_WRITERS = [["ingest", "NEW", "--model", FAKE], ["train"], ["remove", "1"], ["reindex"],
              ["prune"], ["migrate"], ["review", "accept", "1"]]
RO_READERS = [["info"], ["similar", "1"], ["check", "--deep"]]


def test_a_read_only_store_refuses_writers_in_one_line_and_serves_readers(store, base):
    (store / "index" / "fake_pixels.faiss").unlink()     # readers rebuild it in memory
    cmds = [[a.replace("NEW", str(base[1])) for a in c] for c in RO_WRITERS + RO_READERS]
    if os.geteuid() != 0:
        subprocess.run(["chmod", "-R", "a-w", str(store)], check=True)
        try:
            results = [subprocess.run(posterdb_cmd() + c + ["--store", str(store), "--json"],
                                      env=subprocess_env(), capture_output=True, text=True,
                                      timeout=300) for c in cmds]
        finally:
            subprocess.run(["chmod", "-R", "u+w", str(store)], check=True)
        got = [(r.returncode, r.stdout, r.stderr) for r in results]
    elif _can_unshare():
        mnt = store.parent / "ro"
        mnt.mkdir()
        lines = [f"mount --bind {store} {mnt} && mount -o remount,ro,bind {mnt} || exit 97"]
        for i, c in enumerate(cmds):
            args = " ".join(f"'{a}'" for a in c)
            lines.append(f'"$PYTHON" -m posterdb.ui.cli.main {args} --store {mnt} --json '
                         f'> {store.parent}/out{i} 2> {store.parent}/err{i}; '
                         f'echo $? > {store.parent}/rc{i}')
        r = _in_namespace("\n".join(lines))
        if r.returncode == 97:
            pytest.skip("no read-only bind mount here")
        got = [(int((store.parent / f"rc{i}").read_text()), (store.parent / f"out{i}").read_text(),
                (store.parent / f"err{i}").read_text()) for i in range(len(cmds))]
    else:
        pytest.skip("needs a non-root user or mount namespaces")
    for c, (code, out, err) in zip(cmds, got):
        assert "Traceback" not in out + err, (c, err[-2000:])
        if c in cmds[:len(RO_WRITERS)]:
            assert code == 3, (c, code, out, err[-1000:])
            assert json.loads(out)["type"] == "StoreReadOnlyError", (c, out)
            assert "read-only" in json.loads(out)["error"]
        elif c[0] == "check":   # reports the index file it cannot put back, nothing else
            assert code == 1 and [p for p in json.loads(out)["problems"]] == [
                next(p for p in json.loads(out)["problems"] if "is missing" in p)], out[-1000:]
        else:
            assert code == 0, (c, code, out[-500:], err[-1000:])
    assert PosterDB.open(store, create=False).posters.count() == 80


def test_remove_on_a_full_disk_reports_the_truth_and_stays_consistent(store):
    if not _can_unshare():
        pytest.skip("needs root with mount namespaces (a small tmpfs)")
    tfs = store.parent / "tfs"
    tfs.mkdir()
    cmd = '"$PYTHON" -m posterdb.ui.cli.main'
    script = f"""
mount -t tmpfs -o size=12m tmpfs {tfs} || exit 97
cp -r {store} {tfs}/s
fill() {{ rm -f {tfs}/fill; a=$(df -k --output=avail {tfs} | tail -1);
          dd if=/dev/zero of={tfs}/fill bs=1k count=$((a - $1)) 2>/dev/null; true; }}
fill 100        # room for DuckDB's log, not for a second copy of the index file
{cmd} remove 3 4 5 --store {tfs}/s --json > {store.parent}/out1; echo $? > {store.parent}/rc1
fill 0          # no room at all: DuckDB cannot commit
dd if=/dev/zero of={tfs}/more bs=1k 2>/dev/null
{cmd} remove 6 --store {tfs}/s --json > {store.parent}/out2 2> {store.parent}/err2
echo $? > {store.parent}/rc2
rm -f {tfs}/fill {tfs}/more
{cmd} check --deep --store {tfs}/s --json > {store.parent}/out3; echo $? > {store.parent}/rc3
"""
    r = _in_namespace(script)
    if r.returncode == 97:
        pytest.skip("no tmpfs mount here")
    rc = [int((store.parent / f"rc{i}").read_text()) for i in (1, 2, 3)]
    first = json.loads((store.parent / "out1").read_text())
    second = json.loads((store.parent / "out2").read_text())
    check = json.loads((store.parent / "out3").read_text())
    assert rc[0] == 0 and first["removed"] == [3, 4, 5] and first["images_removed"] == 3
    assert first["index_failed"] == {} and first["images_failed"] == []
    assert rc[1] == 3 and second["type"] == "StoreFullError"
    assert second["error"].startswith("nothing was removed")
    assert rc[2] == 0 and check["ok"] and check["posters"] == 77, check["problems"]
