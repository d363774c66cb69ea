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


# ------------------------------------------------------------------ bounded resources (issue 19)

def _jpeg(im, path: Path, **kw) -> Path:
    im.save(path, "JPEG", quality=90, **kw)
    return path


@pytest.fixture(scope="module")
def big_folder(tmp_path_factory, posters_dir, label_rows) -> Path:
    """6 big scans (real posters blown up to 2400×3600, ~1 MB each; one progressive, one
    EXIF-rotated), a copy of one under a second name, 6 small real posters and one strip."""
    from PIL import Image

    d = tmp_path_factory.mktemp("big")
    for i, r in enumerate(label_rows[3:9]):
        big = Image.open(posters_dir / r["file"]).convert("RGB").resize((2400, 3600))
        kw = {1: {"progressive": True}, 2: {"exif": _orientation(6)}}.get(i, {})
        _jpeg(big, d / f"big-{i}.jpg", **kw)
        shutil.copyfile(posters_dir / label_rows[100 + i]["file"], d / f"small-{i}.jpg")
    shutil.copyfile(d / "big-0.jpg", d / "big-0 again.jpg")
    Image.new("RGB", (4000, 30), "white").save(d / "strip.png")
    return d


def _orientation(value: int) -> bytes:
    from PIL import Image

    exif = Image.Exif()
    exif[0x0112] = value
    return exif.tobytes()


def test_ingest_memory_window_accounting(tmp_path, big_folder):
    """The local engine's books under tiny byte limits: read-ahead, the batch and the decode
    window stay within their limit (+ one file, or one decode alone), commits come by bytes,
    everything is stored with its original bytes and size; the strip fails with its shape."""
    import duckdb

    from posterdb.ingest import LocalEngine
    from posterdb.store import PosterDB

    db = PosterDB.open(tmp_path / "store")
    emb = db.models.embedder("fake-pixels")
    engine = LocalEngine(emb, batch_size=4, workers=3, decode_window=3_000_000,
                         read_ahead=1_500_000, batch_bytes=2_000_000)
    gen0 = db.catalog.current_generation()
    rep = db.ingest(big_folder, model="fake-pixels", engine=engine, commit_bytes=1_000_000,
                    commit_interval=3600, auto_classify=False)
    sizes = {p.name: p.stat().st_size for p in big_folder.iterdir()}
    largest = max(sizes.values())
    assert largest > 700_000 and sum(v for k, v in sizes.items() if k.startswith("big-")) > 4e6
    assert rep.added == 12 and rep.duplicates == 1
    assert [(Path(f["path"]).name, f["reason"][:39]) for f in rep.failed] == \
        [("strip.png", "extreme aspect ratio 4000×30 (133:1; a ")]
    s = engine.stats
    assert s["fit"] == 8                                    # fake-pixels: an 8×8 input
    assert s["read_ahead_peak"] <= 1_500_000 + largest
    assert s["batch_bytes_peak"] <= 2_000_000 + largest
    d = s["decode"]
    assert d["in_use"] == 0 and d["grants"] == 13           # 12 new + the second name's copy
    assert d["peak"] <= max(3_000_000, d["largest"])
    # decodes at 1/2 scale (+ the progressive one's full-size coefficients), not full ones
    assert d["largest"] <= 2400 * 3600 * 2 * 3 + 1200 * 1800 * 16 < 2400 * 3600 * 16
    commits = db.catalog.current_generation() - gen0 - 1    # minus the plan's transaction
    assert commits >= 3                                     # by bytes (the interval is 1 h)
    con = duckdb.connect(str(tmp_path / "store" / "catalog.duckdb"), read_only=True)
    rows = con.execute("SELECT sha256, width, height, image_path FROM posters").fetchall()
    con.close()
    by_sha = {sha: (w, h, p) for sha, w, h, p in rows}
    for i in range(6):
        data = (big_folder / f"big-{i}.jpg").read_bytes()
        w, h, rel = by_sha[hashlib.sha256(data).hexdigest()]
        assert (w, h) == ((3600, 2400) if i == 2 else (2400, 3600))       # original, upright
        assert (tmp_path / "store" / rel).read_bytes() == data            # bytes as they came


def test_extreme_shapes_through_ingest_and_read(tmp_path, posters_dir, label_rows, monkeypatch):
    """Extreme strips are refused at ingest with their shape; in a store that holds some
    (stored before the limit) `read --all` reads them padded, and a poster whose stored copy is
    broken fails alone, with its reason: every other poster's reading is saved."""
    pytest.importorskip("rapidocr_onnxruntime")
    import duckdb
    from PIL import Image
    from typer.testing import CliRunner

    from posterdb.media import images
    from posterdb.store import PosterDB
    from posterdb.ui.cli.main import app

    src = tmp_path / "in"
    src.mkdir()
    for i in range(3):
        shutil.copyfile(posters_dir / label_rows[i * 50]["file"], src / f"poster-{i}.jpg")
    Image.new("RGB", (10000, 20), "white").save(src / "wide.png")
    Image.new("RGB", (20, 10000), "white").save(src / "tall.jpg", quality=90)
    store = tmp_path / "store"
    rep = PosterDB.open(store).ingest(src, model="fake-pixels", auto_classify=False)
    assert rep.added == 3
    tail = "(500:1; a poster is at most 8:1): crop or re-scan it"
    assert sorted((Path(f["path"]).name, f["reason"]) for f in rep.failed) == [
        ("tall.jpg", f"extreme aspect ratio 20×10000 {tail}"),
        ("wide.png", f"extreme aspect ratio 10000×20 {tail}")]

    monkeypatch.setattr(images, "MAX_ASPECT", float("inf"))    # a store made before the limit
    old = PosterDB.open(store).ingest(src, model="fake-pixels", auto_classify=False)
    assert old.added == 2 and not old.failed
    monkeypatch.undo()
    con = duckdb.connect(str(store / "catalog.duckdb"), read_only=True)
    paths = dict(con.execute("SELECT id, image_path FROM posters ORDER BY id").fetchall())
    con.close()
    broken = min(paths)
    (store / paths[broken]).write_bytes((store / paths[broken]).read_bytes()[:300])

    def read_all() -> tuple[int, dict]:
        res = CliRunner().invoke(app, ["read", "--all", "--store", str(store), "--json"])
        assert "Traceback" not in res.stdout, res.stdout
        return res.exit_code, json.loads(res.stdout)

    code, got = read_all()
    assert code == 1 and got["read"] == 4
    assert [f["id"] for f in got["failed"]] == [broken]
    assert got["failed"][0]["reason"].startswith("truncated or corrupt image data")
    con = duckdb.connect(str(store / "catalog.duckdb"), read_only=True)
    saved = {i for (i,) in con.execute("SELECT poster_id FROM poster_reads").fetchall()}
    con.close()
    assert saved == set(paths) - {broken}                   # the strips too, padded
    code, again = read_all()                                # resumable: only the broken one
    assert code == 1 and again["read"] == 0 and [f["id"] for f in again["failed"]] == [broken]


def test_ocr_reads_extreme_shapes_and_maps_boxes_back():
    """The reader itself: strips of 500:1 either way and a 1-pixel image read without error;
    text on a 3000×400 banner is found, its box in the banner's own pixels."""
    pytest.importorskip("rapidocr_onnxruntime")
    import io

    from PIL import Image, ImageDraw, ImageFont

    from posterdb.reading.ocr import OCR_MAX_SIDE, PosterReader, prepare

    reader = PosterReader(threads=1)
    for size in ((10000, 20), (20, 10000), (1, 1)):
        buf = io.BytesIO()
        Image.new("RGB", size, "white").save(buf, "PNG")
        assert reader.read_bytes(buf.getvalue(), f"{size}") == []
        fitted = prepare(Image.new("RGB", size))
        assert max(fitted.canvas.size) <= OCR_MAX_SIDE
        assert max(fitted.canvas.size) <= 4 * min(fitted.canvas.size) + 4
    banner = Image.new("RGB", (3000, 400), "white")
    ImageDraw.Draw(banner).text((1500, 150), "METROPOLIS", fill="black",
                                font=ImageFont.load_default(size=120))
    buf = io.BytesIO()
    banner.save(buf, "PNG")
    lines = reader.read_bytes(buf.getvalue(), "banner.png")
    hit = [ln for ln in lines if "METROPOLIS" in ln.text.replace(" ", "")]
    assert hit, lines
    xs = [x for x, _ in hit[0].box]
    ys = [y for _, y in hit[0].box]
    assert 1400 < min(xs) < 1600 and 2000 < max(xs) < 2600 and 100 < min(ys) < 250, hit[0].box


# ------------------------------------------------------------------ the generation file

@pytest.fixture
def catalog(tmp_path):
    from posterdb.storage.catalog import Catalog

    cat = Catalog(tmp_path / "store" / "catalog.duckdb")
    cat.migrate()
    with cat.write():
        pass
    with cat.write():
        pass
    return cat


def _counter(cat) -> int:
    with cat.read() as con:
        return cat.generation(con)


@pytest.mark.parametrize("kind", ["/dev/zero", "/dev/urandom", "link to a huge file", "fifo",
                                  "directory", "huge file", "garbage", "negative", "too long",
                                  "unicode digits", "empty", "link to a good file"])
def test_a_hostile_generation_file_is_no_hint(catalog, tmp_path, kind):
    import os
    import time

    gen = catalog.generation_file
    counter = _counter(catalog)
    assert catalog.generation_hint() == counter == 2
    gen.unlink()
    huge = tmp_path / "huge"
    with open(huge, "wb") as f:
        f.truncate(2 * 1024**3)                                 # sparse: 2 GiB of zeros
    good = tmp_path / "good"
    good.write_text("7")
    if kind.startswith("/dev/"):
        os.symlink(kind, gen)
    elif kind == "link to a huge file":
        os.symlink(huge, gen)
    elif kind == "link to a good file":                         # links are not followed at all
        os.symlink(good, gen)
    elif kind == "fifo":
        os.mkfifo(gen)                                          # nobody writes: must not block
    elif kind == "directory":
        gen.mkdir()
    elif kind == "huge file":
        os.replace(huge, gen)
    else:
        gen.write_bytes({"garbage": b"12abc", "negative": b"-5", "too long": b"9" * 40,
                         "unicode digits": "١٢".encode(), "empty": b""}[kind])
    t0 = time.perf_counter()
    assert catalog.generation_hint() is None
    assert catalog.current_generation() == counter              # the catalogue decides
    assert time.perf_counter() - t0 < 2
    if kind != "directory":                                     # a write replaces the file
        with catalog.write():
            pass
        assert gen.is_file() and not gen.is_symlink()
        assert catalog.generation_hint() == _counter(catalog) == counter + 1


def test_a_good_generation_file_still_counts(catalog):
    catalog.generation_file.write_text(" 41\n")
    assert catalog.generation_hint() == 41 == catalog.current_generation()
    with catalog.write():                                       # may run ahead, never behind
        pass
    assert catalog.generation_hint() == 42 == _counter(catalog)
