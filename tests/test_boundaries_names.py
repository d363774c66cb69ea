"""Issue 19, names, cells and output: what is handed in (file names as bytes, labels cells, id
arguments, model names, output paths) and what posterdb writes out (CSV for spreadsheets, the
terminal, JSON). The real CLI in-process (Typer's runner) on real stores (DuckDB, FAISS, image
copies) made with the `fake-pixels` embedder from synthetic posters.

Each class: formula cells in every CSV posterdb writes; control characters / ESC sequences /
bidi overrides in human output (JSON exact); names that are not UTF-8; ids out of range; a
model the store does not hold; output paths inside the store.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from synthetic import picture  # tests/ is on sys.path (rootdir conftest)
from typer.testing import CliRunner

from posterdb.core.text import (
    FORMULA_TRIGGERS,
    csv_cell,
    csv_text,
    csv_value,
    name_bytes,
    name_text,
    shown,
    stored_name,
)
from posterdb.store import PosterDB
from posterdb.ui.cli.main import app

runner = CliRunner()
MODEL = ["--model", "fake-pixels"]
# What must never reach a terminal raw: C0 but LF, DEL, C1, bidi controls, line separators.
UNSAFE = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\u2028\u2029"
                    "\ud800-\udfff]")
HOSTILE_TITLES = ["=HYPERLINK(\"http://x\",\"y\")", "+1+2", "-2+3", "@SUM(A1:A2)", " =1+1",
                  "\t=1+1", "\r=1+1", "\n-1", "\ufeff=1", "\u00a0@x", "\uff1d1+1", "'=quoted",
                  "Red \x1b[31mtitle\x1b[0m", "bell\x07\x9b2J", "evil\u202egpj.exe", "nul\x00byte",
                  "[/bold] not markup [red]", "plain title"]


def cli(*args) -> tuple[int, str, str]:
    """(exit code, stdout, stderr); a traceback (any exception but SystemExit) fails the test."""
    res = runner.invoke(app, [str(a) for a in args])
    if res.exception is not None and not isinstance(res.exception, SystemExit):
        import traceback

        raise AssertionError("traceback:\n" + "".join(traceback.format_exception(
            res.exception)) + res.output)
    return res.exit_code, res.stdout, res.stderr


def png(seed: int) -> bytes:
    buf = io.BytesIO()
    picture(seed).save(buf, "PNG")
    return buf.getvalue()


def write(folder: Path, name: bytes | str, data: bytes) -> Path:
    path = os.path.join(os.fsencode(folder), os.fsencode(name))
    with open(path, "wb") as f:
        f.write(data)
    return Path(os.fsdecode(path))


def no_formula(cell: str) -> bool:
    """A cell a spreadsheet reads as text: it does not begin (also after blanks) with a trigger."""
    if not cell:
        return True
    if cell[0] in FORMULA_TRIGGERS:
        return False
    stripped = cell.lstrip(" \u00a0\ufeff\u200b")
    return not stripped or stripped[0] not in FORMULA_TRIGGERS


def csv_cells(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text, newline="")))


# -- the mechanism --------------------------------------------------------------------------------

def test_owasp_cells_and_their_inverse():
    # OWASP's CSV Injection page: cells beginning with = + - @ TAB CR LF get a leading quote
    for cell in ["=1+2", "+1", "-1", "@x", "\t=1", "\n=1", " =1", "  @x", "\u3000=1",
                 "\ufeff=1", "\uff1d1", "\n\t @x"]:
        assert csv_cell(cell) == "'" + cell, cell
        assert no_formula(csv_cell(cell))
    assert csv_cell("\r=1") == "\\x0d=1"        # CR (like every control but TAB, LF) escaped
    for cell in ["plain", "a=b", "1-2", "", "'quoted"]:
        assert csv_cell(cell) == cell
    assert csv_cell("'=x") == "''=x" and csv_value("''=x") == "'=x" and csv_value("'=x") == "=x"
    assert csv_cell(-1.5) == -1.5 and csv_cell(None) is None     # numbers stay numbers
    # OWASP's examples: the whole row through csv_text
    assert csv_cells(csv_text(None, [['=1+2";=1+2', "=1+2'\" ;,=1+2"]])) == [
        ["'=1+2\";=1+2", "'=1+2'\" ;,=1+2"]]
    assert csv_cell("a\x1bb\x00c\u202e") == "a\\x1bb\\x00c\\u202e"


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=40).map(os.fsdecode) | st.text(max_size=20))
def test_stored_names_round_trip(name):
    stored = stored_name(name)
    stored.encode("utf-8")                      # storable in DuckDB
    assert name_text(stored) == name            # lossless ...
    assert stored == name or stored.startswith('"')   # ... and valid text names untouched
    assert name_bytes(stored) == name.encode("utf-8", "surrogateescape")
    assert not UNSAFE.search(shown(name))


def test_shown_escapes_every_control():
    assert shown("a\x1b[2Jb") == "a\\x1b[2Jb"
    assert shown("\x9b31m\x7f\x00\t\n") == "\\x9b31m\\x7f\\x00\\x09\\x0a"
    assert shown("x\u202egpj.exe\u2066") == "x\\u202egpj.exe\\u2066"
    assert shown(os.fsdecode(b"bad\xff.png")) == "bad\\xff.png"
    assert shown("Amélie ✓ 東京") == "Amélie ✓ 東京"


# -- a store with hostile titles and names ---------------------------------------------------------

@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    """A store whose posters carry hostile titles (labels) and hostile file names."""
    root = tmp_path_factory.mktemp("hostile")
    src = root / "src"
    src.mkdir()
    rows = []
    for i, title in enumerate(HOSTILE_TITLES):
        name = f"p{i:02d}.png"
        write(src, name, png(500 + i))
        rows.append({"file": name, "title": title, "year": 1950 + i, "genres": "Drama"})
    names = {b"esc\x1b[31mred\x1b[0m.png": png(600), b"bidi\xe2\x80\xaegnp.png": png(601),
             b"c1\xc2\x9bx.png": png(602), b"latin\xe9\xff.png": png(603),
             b"broken\x1b]0;pwned\x07\xfe.png": b"not an image"}
    for name, data in names.items():
        write(src, name, data)
    with open(src / "labels.jsonl", "w", encoding="utf-8") as f:   # JSON: titles exactly
        for r in rows:
            f.write(json.dumps(r) + "\n")
    store = root / "store"
    code, out, err = cli("ingest", src, "--labels", src / "labels.jsonl", *MODEL, "--store", store,
                         "--json")
    assert code == 1, out + err          # the broken file failed; everything else stored
    report = json.loads(out)
    assert report["added"] == len(HOSTILE_TITLES) + 4 and len(report["failed"]) == 1
    return src, store, rows, report


def test_titles_stored_exactly_and_json_is_exact(hostile):
    _, store, rows, _ = hostile
    code, out, _ = cli("export", "--format", "json", "--store", store)
    assert code == 0
    got = {Path(p["path"]).name: p["title"] for p in json.loads(out)}
    for r in rows:
        assert got[r["file"]] == r["title"].strip()      # labels strip blanks; nothing escaped


@pytest.mark.parametrize("how", ["export", "export-o", "shop", "shop-o", "watch-feed"])
def test_no_formula_cell_in_any_csv(hostile, tmp_path, how):
    _, store, rows, _ = hostile
    target = tmp_path / "out.csv"
    if how == "export":
        text = cli("export", "--store", store)[1]
    elif how == "export-o":
        assert cli("export", "-o", target, "--store", store)[0] == 0
        text = target.read_text(encoding="utf-8")
    elif how == "shop":
        text = cli("export", "--format", "shop", "--store", store)[1]
    elif how == "shop-o":
        assert cli("export", "--format", "shop", "-o", target, "--store", store)[0] == 0
        text = target.read_text(encoding="utf-8")
    else:
        inbox = tmp_path / "inbox"
        inbox.mkdir()
        write(inbox, "=cmd (1999).png", png(700))     # a title from a name, too
        code, out, err = cli("watch", inbox, "--once", "--settle", "0", "--feed", target, *MODEL,
                             "--store", store)
        assert code == 0, out + err
        text = target.read_text(encoding="utf-8")
    table = csv_cells(text)
    title = table[0].index("title")
    titles = {row[title] for row in table[1:]}
    assert all(no_formula(c) for row in table for c in row), [c for r in table for c in r
                                                              if not no_formula(c)]
    assert "'=HYPERLINK(\"http://x\",\"y\")" in titles and "'+1+2" in titles
    assert "'@SUM(A1:A2)" in titles and "plain title" in titles and "''=quoted" in titles
    assert not any(UNSAFE.search(c) for row in table for c in row if "\n" not in c)
    if how == "watch-feed":
        assert "'=cmd" in titles


def test_fetch_labels_csv_is_neutralised_and_read_back(tmp_path):
    from posterdb.media.labels import read_labels
    from posterdb.tmdb.fetch.files import LabelsFile

    (tmp_path / "images").mkdir()
    labels = LabelsFile(tmp_path / "labels.csv")
    for i, title in enumerate(["=1+1", "+1", "'=x", "Plain"]):
        write(tmp_path / "images", f"{i}.png", png(800 + i))
        labels.add({"file": f"images/{i}.png", "tmdb_id": str(i + 1), "title": title,
                    "year": "1990", "genres": "Drama"})
    labels.flush(force=True)
    text = (tmp_path / "labels.csv").read_text(encoding="utf-8")
    assert all(no_formula(c) for row in csv_cells(text) for c in row)
    again = LabelsFile(tmp_path / "labels.csv")       # resuming: the same titles, not re-quoted
    again.load(tmp_path)
    assert [r["title"] for r in again.rows.values()] == ["=1+1", "+1", "'=x", "Plain"]
    again._dirty = True
    again.flush(force=True)
    assert (tmp_path / "labels.csv").read_text(encoding="utf-8") == text
    rows, _ = read_labels(tmp_path / "labels.csv")      # and ingest reads the titles as given
    assert [r.title for r in rows] == ["=1+1", "+1", "'=x", "Plain"]


def test_human_output_escapes_names_and_titles(hostile, tmp_path):
    src, store, _, _ = hostile
    outputs = []
    code, out, err = cli("ingest", src, "--labels", src / "labels.jsonl", *MODEL, "--store", store)
    assert code == 1 and "failed files" in out and "\\x1b]0;pwned\\x07\\xfe" in out
    outputs.append(out + err)
    for args in (["similar", "1", "-k", "30", *MODEL], ["info"], ["check"],
                 ["export", "--format", "shop"], ["review", "list", *MODEL],
                 ["ingest", tmp_path / "no\x1b[2Jsuch\u202efolder"]):
        code, out, err = cli(*args, "--store", store)
        outputs.append(out + err)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    write(inbox, b"watch\x1b[31m\xff.png", b"junk")
    write(inbox, b"ok\x9b\xe2\x80\xae.png", png(900))
    code, out, err = cli("watch", inbox, "--once", "--settle", "0", *MODEL, "--store", store)
    assert "failed" in out and "watch\\x1b[31m\\xff.png" in out.replace("\n", "")
    outputs.append(out + err)
    note = next((inbox / "failed").glob("*.error.txt")).read_text(encoding="utf-8")
    outputs.append(note)
    for text in outputs:
        assert not UNSAFE.search(text), repr(UNSAFE.search(text).group())
    joined = "".join(outputs).replace("\n", "")     # rich wraps at 80 columns
    assert "Red \\x1b[31mtitle" in joined and "evil\\u202egpj.exe" in joined
    assert "[/bold] not markup [red]" in joined          # markup is text, not a tag
    # --json stays exact
    code, out, _ = cli("similar", "1", "-k", "30", *MODEL, "--store", store, "--json")
    assert "Red \x1b[31mtitle\x1b[0m" in {h["title"] for h in json.loads(out)["hits"]}


# -- names that are not UTF-8 ----------------------------------------------------------------------

def _paths(store: Path) -> set[str]:
    db = PosterDB.open(store, create=False)
    with db.catalog.read() as con:
        return db.catalog.known_paths(con)


def test_names_that_are_not_utf8(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    good = [write(src, f"good{i}.png", png(1000 + i)) for i in range(3)]
    bad = write(src, b"bad\xff\xfe name.png", png(1010))
    twin = write(src, b"twin\xc3(.png", png(1000))            # the bytes of good0, another name
    junk = write(src, b"junk\xe9.png", b"not an image")
    labels = src / "labels.jsonl"                              # JSON can name any file
    labels.write_text(json.dumps({"file": os.fsdecode(b"bad\xff\xfe name.png"),
                                  "title": "Bad \udcff name", "year": 1977,
                                  "genres": ["Drama"]}) + "\n", encoding="utf-8")
    store = tmp_path / "store"
    code, out, err = cli("ingest", src, "--labels", labels, *MODEL, "--store", store, "--json")
    report = json.loads(out)
    assert code == 1 and report["added"] == 4 and report["duplicates"] == 1
    assert [(f["path"], f["reason"]) for f in report["failed"]] == [
        (str(junk), "not an image: unrecognised format")]
    assert report["label_warnings"][0]["reason"].startswith("title is not valid text")
    paths = _paths(store)
    assert {stored_name(p) for p in [*good, bad, twin]} <= paths
    assert any(name_bytes(p) == os.fsencode(bad) for p in paths)          # lossless
    code, out, _ = cli("export", "--format", "json", "--store", store)
    posters = json.loads(out)
    assert {p["title"] for p in posters if p["path"] == stored_name(bad)} == {"Bad \ufffd name"}
    images = [p for p in (store / "images").rglob("*") if p.is_file()]
    assert len(images) == len(posters) == 4                           # no orphan copies
    # a re-run recognises every file: nothing added, nothing relabelled, no new names
    code, out, _ = cli("ingest", src, "--labels", labels, *MODEL, "--store", store, "--json")
    again = json.loads(out)
    assert code == 1 and again["added"] == 0 and again["relabelled"] == 0
    assert again["skipped"] == 5 and len(again["failed"]) == 1 and _paths(store) == paths
    assert cli("check", "--store", store, "--json")[0] == 0


def test_watch_files_away_names_that_are_not_utf8(tmp_path):
    inbox, store = tmp_path / "inbox", tmp_path / "store"
    inbox.mkdir()
    write(inbox, b"Am\xe9lie (2001).png", png(1100))
    write(inbox, b"junk\xff.png", b"junk")
    long_bad = write(inbox, b"L" * 240 + b"\xff.png", b"junk")        # near NAME_MAX
    write(inbox, b"K" * 251 + b".png", png(1101))                      # 255 bytes
    code, out, err = cli("watch", inbox, "--once", "--settle", "0", *MODEL, "--store", store,
                         "--json")
    data = json.loads(out)
    assert code == 1 and data["added"] == 2 and data["failed"] == 2 and not data["errors"]
    assert sorted(os.listdir(os.fsencode(inbox))) == [b".posterdb-watch.lock", b"done", b"failed"]
    failed = os.listdir(os.fsencode(inbox / "failed"))
    assert os.path.basename(os.fsencode(long_bad)) in failed and len(failed) == 4   # + 2 notes
    assert all(len(n) <= 255 for n in failed)
    code, out, _ = cli("export", "--format", "json", "--store", store)
    assert "Amélie" in {p["title"] for p in json.loads(out)}        # the name read as cp1252
    code, out, _ = cli("watch", inbox, "--once", "--settle", "0", *MODEL, "--store", store,
                       "--json")
    assert code == 0 and json.loads(out)["files"] == 0              # nothing left to retry


# -- ids, models, output paths ---------------------------------------------------------------------

@pytest.mark.parametrize("args", [
    ["similar", "2147483648"], ["similar", "99999999999999999999999999"], ["remove", "2147483648"],
    ["remove", "1", "4294967296"], ["review", "set", "2147483648", "Drama"],
    ["review", "accept", "2147483648"], ["read", "2147483648"], ["identify", "9223372036854775808"],
    ["similar", "0"]])
def test_ids_out_of_range_are_usage_errors(hostile, args):
    _, store, _, _ = hostile
    code, out, err = cli(*args, "--store", store)
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1 and "range" in err
    code, out, _ = cli(*args, "--store", store, "--json")
    assert code == 2 and json.loads(out)["type"] == "UsageError"


def test_review_apply_ids_out_of_range(hostile, tmp_path):
    _, store, _, _ = hostile
    (tmp_path / "d.json").write_text(json.dumps([{"id": 2**31, "accept": True}]))
    code, out, _ = cli("review", "apply", tmp_path / "d.json", "--store", store, "--json")
    assert code == 2 and "out of range" in json.loads(out)["error"]


def test_api_ids_out_of_range(hostile):
    from posterdb.core.errors import UsageError

    db = PosterDB.open(hostile[1], create=False)
    for call in (lambda: db.similar(2**31, 3), lambda: db.remove([1, 2**31]),
                 lambda: db.search.vectors([2**40]), lambda: db.curation.set_genres(2**31, ["Drama"])):
        with pytest.raises(UsageError, match="out of range"):
            call()
    assert db.posters.count() >= len(HOSTILE_TITLES)           # nothing removed


@pytest.mark.parametrize("args", [["train", "--model", "resnet50"], ["eval", "--model", "clip"],
                                  ["similar", "1", "--model", "resnet50"]])
def test_a_model_the_store_does_not_hold(hostile, args):
    _, store, _, _ = hostile
    code, out, err = cli(*args, "--store", store)
    assert code == 3 and out == "" and len(err.strip().splitlines()) == 1
    assert "holds no vectors from model" in err and "fake-pixels" in err
    code, out, _ = cli(*args, "--store", store, "--json")
    data = json.loads(out)
    assert code == 3 and data["type"] == "ModelNotHeldError" and "fake-pixels" in data["error"]


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and not p.is_symlink()}


def test_outputs_inside_the_store_are_refused(hostile, tmp_path):
    _, store, _, _ = hostile
    before = _digest(store)
    (tmp_path / "link").symlink_to(store, target_is_directory=True)
    (tmp_path / "cat.csv").symlink_to(store / "catalog.duckdb")
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    for args in (["export", "-o", store / "catalog.duckdb"], ["export", "-o", store / "x.csv"],
                 ["export", "--format", "json", "-o", store / "images" / ".." / "generation"],
                 ["export", "--format", "shop", "-o", tmp_path / "link" / "feed.csv"],
                 ["export", "-o", tmp_path / "cat.csv"], ["export", "-o", store],
                 ["watch", inbox, "--once", "--feed", store / "feed.csv", *MODEL],
                 ["watch", inbox, "--once", "--feed", tmp_path / "cat.csv", *MODEL]):
        code, out, err = cli(*args, "--store", store)
        assert code == 2 and "inside the store" in err and len(err.strip().splitlines()) == 1
        code, out, _ = cli(*args, "--store", store, "--json")
        assert code == 2 and "inside the store" in json.loads(out)["error"]
    assert _digest(store) == before
    # outside the store: written, and atomically (a hard link to the catalogue is not written
    # through)
    os.link(store / "generation", tmp_path / "hard.csv")
    assert cli("export", "-o", tmp_path / "hard.csv", "--store", store)[0] == 0
    assert _digest(store) == before and (tmp_path / "hard.csv").read_text().startswith("id,")


# -- fuzz: file names and labels cells ---------------------------------------------------------------

SUFFIXES = [b".png", b".jpg", b".PNG", b".webp"]
name_bytes_st = st.one_of(
    st.binary(min_size=1, max_size=40),
    st.sampled_from([b"\x1b[31m", b"\x1b]0;t\x07", b"\x9b", b"\xc2\x9b", b"\xe2\x80\xae", b"\xff",
                     b"\xed\xa0\x80", b"\xef\xbb\xbf", b"=", b"-", b"\"", b"\\", b"[/b]", b" ",
                     b"\r", b"\n", b"\t", b"\x7f"]),
    st.integers(200, 250).map(lambda n: b"N" * n),
).map(lambda b: b.replace(b"/", b"_").replace(b"\x00", b"_"))
file_names = st.lists(name_bytes_st, min_size=1, max_size=4).map(b"".join).map(
    lambda b: b[:250]).flatmap(lambda stem: st.sampled_from(SUFFIXES).map(lambda s: stem + s))
cells = st.one_of(
    st.sampled_from(HOSTILE_TITLES + ["", " ", "\ufeff", "\x00", "\udcff", "é", "(1999)"]),
    st.text(max_size=12),
    st.builds(lambda a, b: a + b, st.sampled_from(["=", "+", "-", "@", "\t", "\r", " =", "\x1b"]),
              st.text(max_size=8)),
    st.integers(2_000, 150_000).map(lambda n: "=" + "x" * n),                  # huge cells
)
files = st.lists(st.tuples(file_names, st.booleans(), cells), min_size=1, max_size=4,
                 unique_by=lambda t: t[0].lower())


def fuzz_once(root: Path, entries, labels_kind: str, seed: int, *, full: bool = False) -> dict:
    """One fuzz example: a folder of files with these names (images or junk) and a labels file
    with these title cells, ingested (--json) and re-ingested (human) into root/store. Every
    file is stored or failed with a reason, no traceback, nothing raw on the terminal, the
    re-run adds no name. `full`: also both CSV exports (no formula cell) and `check`."""
    folder = root / f"run{seed}-{len(os.listdir(root))}"
    folder.mkdir()
    paths = {}
    for i, (name, is_image, _) in enumerate(entries):
        paths[name] = write(folder, name, png(seed + i) if is_image else b"\x89PNG junk")
    labels = folder.parent / f"{folder.name}.labels.{labels_kind.split('-')[0]}"
    if labels_kind == "jsonl":
        labels.write_text("".join(json.dumps({"file": str(paths[n]), "title": t, "year": 1990,
                                              "genres": "Drama"}) + "\n"
                                  for n, _, t in entries), encoding="utf-8")
    else:
        buf = io.StringIO(newline="")
        w = csv.writer(buf)
        w.writerow(["file", "title", "year", "genres"])
        for n, _, t in entries:
            w.writerow([str(paths[n]).encode("utf-8", "surrogateescape").decode("utf-8", "replace"),
                        t.encode("utf-8", "replace").decode("utf-8"), 1990, "Drama"])
        text = buf.getvalue()
        data = (text.encode("cp1252", "replace") if labels_kind == "csv-cp1252"
                else text.encode("utf-16") if labels_kind == "csv-utf16"
                else text.encode("utf-8", "replace"))
        labels.write_bytes(data)
    store = root / "store"
    code, out, err = cli("ingest", folder, "--labels", labels, *MODEL, "--store", store, "--json")
    assert code in (0, 1), out + err
    report = json.loads(out)
    failed = {f["path"]: f["reason"] for f in report["failed"]}
    known = _paths(store)
    for name, path in paths.items():             # every file stored or failed with a reason
        assert stored_name(path) in known or failed.get(str(path)), (name, failed)
    # a re-run, human: nothing new, no traceback, nothing raw on the terminal
    code, out, err = cli("ingest", folder, "--labels", labels, *MODEL, "--store", store)
    assert code in (0, 1) and not UNSAFE.search(out + err), repr(out + err)[:500]
    assert _paths(store) == known
    if full:
        check_fuzz_store(store)
    return report


def check_fuzz_store(store: Path) -> None:
    for args in (["export"], ["export", "--format", "shop"]):
        code, out, _ = cli(*args, "--store", store)
        assert code == 0 and all(no_formula(c) for row in csv_cells(out) for c in row)
    code, out, _ = cli("check", "--store", store, "--json")
    assert code == 0 and json.loads(out)["ok"], out


@pytest.fixture(scope="module")
def fuzz_root(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


# A few seconds in the suite; `python -m bench.fuzz_names` runs hundreds of examples.
@settings(max_examples=6, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.function_scoped_fixture])
@given(files, st.sampled_from(["jsonl", "csv", "csv-cp1252", "csv-utf16"]), st.integers(0, 10**6))
def test_fuzz_names_and_cells(fuzz_root, entries, labels_kind, seed):
    fuzz_once(fuzz_root, entries, labels_kind, seed)


def test_fuzz_store_exports_and_checks(fuzz_root):
    if not (fuzz_root / "store").exists():      # the fuzz test did not run (-k): make one
        fuzz_once(fuzz_root, [(b"=x\x1b\xff.png", True, "=1+1")], "jsonl", 1)
    check_fuzz_store(fuzz_root / "store")
