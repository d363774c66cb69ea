"""posterdb.labels: the real labels.csv, CSV and JSON Lines, and every malformed case, by row."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from posterdb.core.errors import LabelsError
from posterdb.media.labels import LabelProblem, LabelRow, read_labels


@pytest.fixture
def folder(poster_slice) -> Path:
    """A folder with 6 real posters under images/ (file names in FILES) and their labels.csv."""
    return poster_slice(6)


@pytest.fixture
def files(folder) -> list[str]:
    return sorted(f"images/{p.name}" for p in (folder / "images").iterdir())


def write(path: Path, text: str | bytes) -> Path:
    if isinstance(text, str):
        text = text.encode("utf-8")
    path.write_bytes(text)
    return path


def by_row(problems: list[LabelProblem]) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    for p in problems:
        out.setdefault(p.row, []).append(p.reason)
    return out


# ------------------------------------------------------------------ the real file

def test_shared_labels_csv(posters_dir):
    t0 = time.perf_counter()
    rows, problems = read_labels(posters_dir / "labels.csv")
    assert time.perf_counter() - t0 < 5
    assert (len(rows), problems) == (5097, [])
    first = rows[0]
    assert first == LabelRow(row=1, file="images/tt0015589.jpg",
                             path=(posters_dir / "images/tt0015589.jpg").resolve(),
                             title="The Awful Truth", year=1925, genres=("Comedy",))
    assert rows[1].genres == ("Drama", "History")
    assert [r.row for r in rows] == list(range(1, 5098))
    assert all(r.path.is_file() and r.genres and r.year for r in rows)
    assert not any(r.title.endswith(f"({r.year})") for r in rows)


def test_slice_labels_csv(folder, files):
    rows, problems = read_labels(folder / "labels.csv")
    assert problems == [] and sorted(r.file for r in rows) == files


# ------------------------------------------------------------------ CSV

def test_csv_fields_and_normalisation(folder, files):
    a, b, c, d = files[:4]
    csv_text = (
        "File,Title,Year,Genres,imdb_id\n"
        f"{a},Alpha (1999),1999,sci-fi|Film-Noir,tt1\n"
        f"{b},Beta (1999),2000,DRAMA, comedy ,tt2\n"          # extra field is ignored
        f"{c},,1999.0,,tt3\n"
        f'{d},"Delta, with comma",,"Comedy, Romance",tt4\n'
    )
    rows, problems = read_labels(write(folder / "l.csv", csv_text))
    assert problems == []
    ra, rb, rc, rd = rows
    assert (ra.row, ra.title, ra.year, ra.genres) == (1, "Alpha", 1999, ("Crime", "Science Fiction"))
    assert (rb.title, rb.year, rb.genres) == ("Beta (1999)", 2000, ("Drama",))  # year differs: kept
    assert (rc.title, rc.year, rc.genres) == (None, 1999, ())
    assert (rd.title, rd.year, rd.genres) == ("Delta, with comma", None, ("Comedy", "Romance"))
    assert ra.path == (folder / a).resolve() and ra.path.is_absolute()


def test_csv_file_column_only_and_other_delimiters(folder, files):
    rows, _ = read_labels(write(folder / "only.csv", "file\n" + "\n".join(files) + "\n"))
    assert [r.file for r in rows] == files and all(r.genres == () for r in rows)
    rows, problems = read_labels(write(folder / "semi.csv", f"file;genres\n{files[0]};Drama|War\n"))
    assert problems == [] and rows[0].genres == ("Drama", "War")
    rows, problems = read_labels(write(folder / "tab.tsv", f"title\tfile\nX\t{files[1]}\n"))
    assert problems == [] and (rows[0].file, rows[0].title) == (files[1], "X")


def test_row_numbers_count_records_after_the_header(folder, files):
    text = (f"file,title\n{files[0]},\"two\nlines\"\n\n"          # row 1 spans 2 lines, row 2 blank
            f"{files[1]},ok\nmissing.jpg,x\n")
    rows, problems = read_labels(write(folder / "l.csv", text))
    assert [(r.row, r.title) for r in rows] == [(1, "two\nlines"), (3, "ok")]
    assert problems == [LabelProblem(4, "missing.jpg", "file not found")]


def test_bad_rows_are_reported_with_their_row(folder, files):
    a, b, c = files[:3]
    text = (
        "file,year,genres,title\n"
        f"{a},abc,Drama,A\n"                   # 1 bad year, kept
        f"{b},1850,Biography|Drama,B\n"        # 2 year out of range + unknown genre, kept
        "nope.jpg,2000,Drama,N\n"              # 3 not found, dropped
        f"{a},2001,Comedy,dup\n"               # 4 duplicate of row 1, dropped
        f"./{a},2001,Comedy,dup2\n"            # 5 same file spelled differently
        ",2001,Drama,nofile\n"                 # 6 missing file name
        "../../etc/passwd,,,\n"                # 7 escapes
        "/etc/passwd,,,\n"                     # 8 absolute, outside
        f"{c},2100,Foo|Bar|Drama,C\n"          # 9 two unknown genres, kept
        "images,,,\n"                          # 10 a directory
    )
    rows, problems = read_labels(write(folder / "l.csv", text))
    assert [(r.row, r.year, r.genres) for r in rows] == [
        (1, None, ("Drama",)), (2, None, ("Drama",)), (9, 2100, ("Drama",))]
    got = by_row(problems)
    assert got == {
        1: ["bad year 'abc'"],
        2: ["bad year '1850' (outside 1870..2100)", "unknown genre 'Biography'"],
        3: ["file not found"],
        4: ["duplicate of row 1"],
        5: ["duplicate of row 1"],
        6: ["missing file name"],
        7: ["path escapes the labels folder"],
        8: ["path escapes the labels folder"],
        9: ["unknown genres 'Foo', 'Bar'"],
        10: ["not a regular file"],
    }
    files_of = {p.row: p.file for p in problems}
    assert files_of[3] == "nope.jpg" and files_of[6] is None and files_of[7] == "../../etc/passwd"
    assert [p.row for p in problems] == sorted(p.row for p in problems)


def test_paths_absolute_windows_and_spaces(folder, files):
    a, b, c = files[:3]
    text = f"file\n{(folder / a).resolve()}\n{b.replace('/', chr(92))}\n  {c}  \n"
    rows, problems = read_labels(write(folder / "l.csv", text))
    assert problems == []
    assert [r.path for r in rows] == [(folder / f).resolve() for f in (a, b, c)]
    assert rows[2].file == f"  {c}  "                     # as written


def test_root_allows_a_second_folder(tmp_path, folder, files):
    sub = folder / "labels"
    sub.mkdir()
    labels = write(sub / "l.csv", f"file\n../{files[0]}\n")
    rows, problems = read_labels(labels)
    assert rows == [] and problems[0].reason == "path escapes the labels folder"
    rows, problems = read_labels(labels, root=folder)
    assert problems == [] and rows[0].path == (folder / files[0]).resolve()


def test_symlink_placed_in_the_folder_is_followed_but_dotdot_is_refused(tmp_path, folder, files):
    """Issue 8: a symlink the user put in their own folder is theirs (the folder scan follows it
    for the image, so the labels row must follow it too); `..` or an absolute path elsewhere
    in a row stays refused."""
    outside = tmp_path / "outside.jpg"
    outside.write_bytes((folder / files[0]).read_bytes())
    os.symlink(outside, folder / "linked.jpg")
    text = "file\nlinked.jpg\n../outside.jpg\n" + f"{outside}\n"
    rows, problems = read_labels(write(folder / "l.csv", text))
    assert [r.path for r in rows] == [outside.resolve()]
    assert problems == [LabelProblem(2, "../outside.jpg", "path escapes the labels folder"),
                        LabelProblem(3, str(outside), "path escapes the labels folder")]


# ------------------------------------------------------------------ encodings

def test_cp1252_rows_are_read_and_reported(folder, files):
    a, b = files[:2]
    raw = f"file,title\n{a},Caf".encode() + "é Society".encode("cp1252") + f"\n{b},Ok ☃\n".encode()
    rows, problems = read_labels(write(folder / "l.csv", raw))
    assert [r.title for r in rows] == ["Café Society", "Ok ☃"]
    assert problems == [LabelProblem(1, a, "not valid UTF-8 (read as cp1252)")]


@pytest.mark.parametrize("eol", ["\r\n", "\r"])
def test_cp1252_row_numbers_with_crlf_and_cr(folder, files, eol):
    a, b, c = files[:3]
    raw = (f"file,title{eol}{a},A{eol}{b},".encode() + "Pokémon".encode("cp1252")
           + f"{eol}{c},C{eol}".encode())
    rows, problems = read_labels(write(folder / "l.csv", raw))
    assert [(r.row, r.title) for r in rows] == [(1, "A"), (2, "Pokémon"), (3, "C")]
    assert problems == [LabelProblem(2, b, "not valid UTF-8 (read as cp1252)")]


def test_bom_and_utf16(folder, files):
    text = f"file,title\n{files[0]},Amélie\n"
    rows, problems = read_labels(write(folder / "bom.csv", b"\xef\xbb\xbf" + text.encode()))
    assert problems == [] and rows[0].title == "Amélie"
    rows, problems = read_labels(write(folder / "u16.csv", text.encode("utf-16")))
    assert problems == [] and rows[0].title == "Amélie"


def test_undecodable_header_is_reported_as_row_0(folder, files):
    raw = "file,title,d\xe9cor\n".encode("latin-1") + f"{files[0]},A,x\n".encode()
    rows, problems = read_labels(write(folder / "l.csv", raw))
    assert len(rows) == 1 and problems == [LabelProblem(0, None, "header not valid UTF-8 (read as cp1252)")]


# ------------------------------------------------------------------ JSON Lines

def test_jsonl(folder, files):
    a, b, c, d = files[:4]
    lines = [
        json.dumps({"file": a, "title": "A (2001)", "year": 2001, "genres": ["Sci-Fi", "drama"]}),
        "",
        json.dumps({"file": b, "year": "1999", "genres": "Horror|Thriller"}),
        "{not json",
        "[1, 2]",
        json.dumps({"file": c, "genres": ["Biography", 7], "year": 1999.5}),
        json.dumps({"FILE": d, "title": 1917, "genres": None}),
        json.dumps({"title": "no file"}),
        json.dumps({"file": 12}),
        json.dumps({"file": a}),
    ]
    for suffix in (".jsonl", ".ndjson", ".txt"):
        rows, problems = read_labels(write(folder / f"l{suffix}", "\n".join(lines) + "\n"))
        assert [(r.row, r.file, r.title, r.year, r.genres) for r in rows] == [
            (1, a, "A", 2001, ("Drama", "Science Fiction")),
            (3, b, None, 1999, ("Horror", "Thriller")),
            (6, c, None, None, ()),
            (7, d, "1917", None, ()),
        ]
        got = by_row(problems)
        assert got[4][0].startswith("invalid JSON")
        assert got[5] == ["not a JSON object"]
        assert got[6] == ["bad year 1999.5", "unknown genres 'Biography', '7'"]
        assert got[8] == ["missing file name"]
        assert got[9] == ["file not found"]
        assert got[10] == ["duplicate of row 1"]
        assert set(got) == {4, 5, 6, 8, 9, 10}


def test_jsonl_hostile_values(folder, files):
    lines = [json.dumps({"file": files[0], "genres": {"a": 1}, "title": ["x"], "year": True}),
             "[" * 50_000 + "]" * 50_000,
             json.dumps({"file": "../" * 20 + "etc/passwd"}),
             json.dumps({"file": "a\x00b.jpg"})]
    rows, problems = read_labels(write(folder / "l.jsonl", "\n".join(lines)))
    assert [(r.genres, r.title, r.year) for r in rows] == [((), None, None)]
    got = by_row(problems)
    assert got[1] == ["bad year True", "bad title ['x']", "bad genres {'a': 1}"]
    assert len(got[2]) == 1 and got[2][0].startswith("invalid JSON")     # RecursionError caught
    assert got[3] == ["path escapes the labels folder"]
    assert got[4] == ["invalid file name (NUL byte)"]


# ------------------------------------------------------------------ whole-file failures

@pytest.mark.parametrize("name, content, match", [
    ("l.csv", "title,year\nX,1999\n", "no 'file' column"),
    ("l.csv", "", "empty labels file"),
    ("l.csv", "\n\n  \n", "empty labels file"),
    ("l.csv", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x10" * 10, "binary data"),
    ("l.json", '[{"file": "a.jpg"}]', "JSON array is not supported"),
    ("l.jsonl", "not json\nat all\n", "not a CSV or JSON Lines file"),
    ("l.jsonl", '{"title": "x"}\n', "no object has a 'file' key"),
    ("l.csv", b"\xff\xfe\x00\xd8", "invalid UTF-16"),
])
def test_unusable_files_raise_labels_error(tmp_path, name, content, match):
    path = write(tmp_path / name, content)
    with pytest.raises(LabelsError, match=match) as info:
        read_labels(path)
    assert str(path) in str(info.value)


def test_missing_directory_and_unreadable(tmp_path):
    with pytest.raises(LabelsError, match="labels file not found"):
        read_labels(tmp_path / "nope.csv")
    with pytest.raises(LabelsError, match="is a directory"):
        read_labels(tmp_path)
    locked = write(tmp_path / "locked.csv", "file\n")
    locked.chmod(0)
    try:
        locked.read_bytes()                    # root can still read it (os.geteuid() == 0)
    except PermissionError:
        with pytest.raises(LabelsError, match="permission denied"):
            read_labels(locked)
    else:
        assert read_labels(locked) == ([], [])


def test_empty_jsonl_is_empty(tmp_path):
    assert read_labels(write(tmp_path / "l.jsonl", "\n\n")) == ([], [])
