"""Read a labels file (CSV or JSON Lines) into validated rows, reporting bad rows instead of failing.

Only a file that cannot be read at all raises :class:`~posterdb.errors.LabelsError`; everything
wrong with a single row becomes a :class:`LabelProblem` carrying its row number.

Cells are data, kept as written (control characters too: outputs escape them, see
posterdb.core.text) except: a CSV cell's neutralising `'` before a formula character (as
posterdb's own CSVs write it, `core.text.csv_value`) is removed; a title's lone surrogates (a
JSON "\udcff") become U+FFFD and a title longer than `rules.MAX_TITLE_CHARS` is cut, each
with a row problem.
"""
from __future__ import annotations

import csv
import io
import json
import os
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from posterdb.core.errors import LabelsError
from posterdb.core.genres import parse_genres
from posterdb.core.rules import MAX_TITLE_CHARS
from posterdb.core.text import clean_text, csv_value

YEAR_MIN, YEAR_MAX = 1870, 2100
JSONL_SUFFIXES = frozenset({".jsonl", ".ndjson"})
MAX_LABELS_BYTES = 256 * 1024**2
_YEAR_RE = re.compile(r"\d{1,9}(\.0*)?", re.ASCII)
_TITLE_YEAR_RE = re.compile(r"\s*\((\d{4})\)$", re.ASCII)
_NEWLINE = re.compile(r"\r\n|\r|\n")     # line breaks as csv counts them (line_num)
_NEWLINE_B = re.compile(rb"(\r\n|\r|\n)")


@dataclass(frozen=True)
class LabelRow:
    """One usable labels row. `row` is 1-based (CSV: header is row 0; JSONL: the line number)."""

    row: int
    file: str
    path: Path
    title: str | None
    year: int | None
    genres: tuple[str, ...]


@dataclass(frozen=True)
class LabelProblem:
    """Something wrong with one row (row 0 = the CSV header or the whole file)."""

    row: int
    file: str | None
    reason: str


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


# ---------------------------------------------------------------- reading and decoding the file

def _read(path: Path) -> bytes:
    try:
        st = os.stat(path)
        if stat.S_ISDIR(st.st_mode):
            raise LabelsError(f"{path}: is a directory, not a labels file")
        if not stat.S_ISREG(st.st_mode):
            raise LabelsError(f"{path}: not a regular file")
        if st.st_size > MAX_LABELS_BYTES:
            raise LabelsError(f"{path}: labels file too large ({st.st_size:,} bytes)")
        return path.read_bytes()
    except FileNotFoundError as e:
        raise LabelsError(f"{path}: labels file not found") from e
    except PermissionError as e:
        raise LabelsError(f"{path}: permission denied") from e
    except (OSError, ValueError) as e:
        raise LabelsError(f"{path}: cannot read labels file: {getattr(e, 'strerror', None) or e}") from e


def _decode(path: Path, raw: bytes) -> tuple[str, set[int]]:
    """Text of the file and the 1-based line numbers that were not UTF-8 (read as cp1252/latin-1)."""
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return raw.decode("utf-16"), set()
        except UnicodeDecodeError as e:
            raise LabelsError(f"{path}: invalid UTF-16 text") from e
    sample = raw[:8192]
    if sample and sum(b < 9 or 13 < b < 32 for b in sample) > len(sample) // 20:
        raise LabelsError(f"{path}: binary data, not a CSV or JSON Lines file")
    raw = raw.removeprefix(b"\xef\xbb\xbf")
    try:
        return raw.decode("utf-8"), set()
    except UnicodeDecodeError:
        pass
    parts, bad = _NEWLINE_B.split(raw), set()   # lines at even indexes, line breaks between
    for i in range(0, len(parts), 2):
        try:
            parts[i] = parts[i].decode("utf-8")
        except UnicodeDecodeError:
            bad.add(i // 2 + 1)
            try:
                parts[i] = parts[i].decode("cp1252")
            except UnicodeDecodeError:
                parts[i] = parts[i].decode("latin-1")
    return "".join(p if isinstance(p, str) else p.decode("ascii") for p in parts), bad


_ENCODING = "not valid UTF-8 (read as cp1252)"
_BAD_TEXT = object()  # record key marking a row decoded with the fallback encoding


# ---------------------------------------------------------------- records: (row, {key: value})

def _csv_records(path: Path, text: str, bad_lines: set[int],
                 problems: list[LabelProblem]) -> Iterator[tuple[int, dict[str, Any]]]:
    first = next((ln for ln in text.splitlines() if ln.strip()), "")
    delim = max([",", "\t", ";"], key=first.count) if first else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delim)
    header: list[str] | None = None
    row, last_line = 0, 0
    while True:
        try:
            rec = next(reader)
        except StopIteration:
            break
        except csv.Error as e:
            if header is None:
                raise LabelsError(f"{path}: malformed CSV header: {e}") from e
            row += 1
            problems.append(LabelProblem(row, None, f"malformed CSV: {e}"))
            if reader.line_num == last_line:
                break
            last_line = reader.line_num
            continue
        span = range(last_line + 1, reader.line_num + 1)
        last_line = reader.line_num
        if header is None:
            if not any(c.strip() for c in rec):
                continue
            header = [c.strip().lstrip("\ufeff").lower() for c in rec]
            if "file" not in header:
                found = ", ".join(_short(c, 30) for c in header[:8])
                raise LabelsError(f"{path}: no 'file' column in the header (found: {found})")
            if any(n in bad_lines for n in span):
                problems.append(LabelProblem(0, None, f"header {_ENCODING}"))
            index = {name: header.index(name) for name in ("file", "title", "year", "genres")
                     if name in header}
            continue
        row += 1
        if not any(c.strip() for c in rec):
            continue
        fields = {k: (rec[i] if i < len(rec) else None) for k, i in index.items()}
        fields = {k: v if k == "file" else csv_value(v) for k, v in fields.items()}
        if any(n in bad_lines for n in span):
            fields[_BAD_TEXT] = True
        yield row, fields
    if header is None:
        raise LabelsError(f"{path}: empty labels file (no CSV header)")


def _jsonl_records(path: Path, text: str, bad_lines: set[int],
                   problems: list[LabelProblem]) -> Iterator[tuple[int, dict[str, Any]]]:
    objects = with_file = 0
    for n, line in enumerate(_NEWLINE.split(text), 1):
        line = line.strip()
        if not line:
            continue
        try:
            obj = json.loads(line)
        except (ValueError, RecursionError) as e:
            problems.append(LabelProblem(n, None, f"invalid JSON: {str(e)[:80]}"))
            continue
        if not isinstance(obj, dict):
            problems.append(LabelProblem(n, None, "not a JSON object"))
            continue
        objects += 1
        fields = {str(k).strip().lower(): v for k, v in obj.items()}
        with_file += "file" in fields
        if n in bad_lines:
            fields[_BAD_TEXT] = True
        yield n, fields
    if not objects and problems:
        raise LabelsError(f"{path}: not a CSV or JSON Lines file (no line is a JSON object)")
    if objects and not with_file:
        raise LabelsError(f"{path}: no object has a 'file' key")


# ---------------------------------------------------------------- checking one record

def _year(value: Any) -> tuple[int | None, str | None]:
    """(year, problem)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None, None
    year = None
    if isinstance(value, int) and not isinstance(value, bool):
        year = value
    elif isinstance(value, float) and value.is_integer():
        year = int(value)
    elif isinstance(value, str) and _YEAR_RE.fullmatch(value.strip()):
        year = int(value.strip().split(".")[0])
    if year is None:
        return None, f"bad year {_short(value)}"
    if not YEAR_MIN <= year <= YEAR_MAX:
        return None, f"bad year {_short(value)} (outside {YEAR_MIN}..{YEAR_MAX})"
    return year, None


def _title(value: Any, year: int | None) -> tuple[str | None, str | None]:
    """(title, problem); a trailing "(YYYY)" equal to the year is dropped."""
    if value is None:
        return None, None
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        return None, f"bad title {_short(value)}"
    title, problem = clean_text(str(value).strip()), None
    if title != str(value).strip():
        problem = "title is not valid text (lone surrogates replaced by U+FFFD)"
    if len(title) > MAX_TITLE_CHARS:
        problem = f"title of {len(title):,} characters cut to {MAX_TITLE_CHARS}"
        title = title[:MAX_TITLE_CHARS].rstrip()
    m = _TITLE_YEAR_RE.search(title)
    if m and year is not None and int(m.group(1)) == year:
        title = title[:m.start()].rstrip()
    return title or None, problem


def _genres(value: Any) -> tuple[tuple[str, ...], str | None]:
    if value is not None and not isinstance(value, (str, list)):
        return (), f"bad genres {_short(value)}"
    known, unknown = parse_genres(value)
    if not unknown:
        return tuple(known), None
    names = ", ".join(_short(u, 40) for u in unknown[:5]) + (", ..." if len(unknown) > 5 else "")
    return tuple(known), f"unknown genre{'s' if len(unknown) > 1 else ''} {names}"


def _inside(p: Path, roots: list[Path]) -> bool:
    return any(p == r or p.is_relative_to(r) for r in roots)


def _legacy_bytes(name: str) -> list[str]:
    """The name as a file whose bytes are cp1252 / latin-1 (not UTF-8) would be called: a line
    that was not UTF-8 was read as cp1252, and its file may be named in the same bytes."""
    out = []
    for encoding in ("cp1252", "latin-1"):
        try:
            raw = name.encode(encoding)
        except UnicodeEncodeError:
            continue
        if raw != name.encode("utf-8", "surrogateescape"):
            out.append(os.fsdecode(raw))
    return out


def _resolve(name: str, base: Path, roots: list[Path]) -> tuple[Path | None, str | None]:
    """(resolved path, problem): the named file inside the allowed roots, or why not."""
    if "\x00" in name:
        return None, "invalid file name (NUL byte)"
    stripped = name.strip()
    reason = None
    for cand in dict.fromkeys([stripped, name, stripped.replace("\\", "/"), csv_value(stripped),
                               *_legacy_bytes(stripped)]):
        try:
            # The name must stay inside the folder as written (no `..`, no absolute path
            # elsewhere); a symlink the user placed in their own folder is theirs to follow,
            # exactly as the folder scan follows it for the images.
            lexical = Path(os.path.normpath(os.path.join(base, cand)))
            p = Path(os.path.realpath(lexical))
            if not (_inside(lexical, roots) or _inside(p, roots)):
                reason = reason or "path escapes the labels folder"
                continue
            if p.is_file():
                return p, None
            reason = reason or ("not a regular file" if p.exists() else "file not found")
        except (OSError, ValueError):
            reason = reason or "invalid file name"
    return None, reason


def _check(row: int, rec: dict[Any, Any], base: Path,
           roots: list[Path]) -> tuple[LabelRow | None, list[str]]:
    """(row or None, reasons): one record validated."""
    file = rec.get("file")
    if isinstance(file, (int, float)) and not isinstance(file, bool):
        file = str(file)
    if not isinstance(file, str):
        return None, ["missing file name" if file is None else f"bad file name {_short(file)}"]
    if not file.strip():
        return None, ["missing file name"]
    path, reason = _resolve(file, base, roots)
    if path is None:
        return None, [reason or "file not found"]
    year, y_problem = _year(rec.get("year"))
    title, t_problem = _title(rec.get("title"), year)
    genres, g_problem = _genres(rec.get("genres"))
    reasons = [_ENCODING] if rec.get(_BAD_TEXT) else []
    reasons += [r for r in (y_problem, t_problem, g_problem) if r]
    return LabelRow(row=row, file=file, path=path, title=title, year=year, genres=genres), reasons


def _is_jsonl(path: Path, text: str) -> bool:
    suffix = path.suffix.lower()
    head = text.lstrip()[:1]
    if suffix == ".json" and head == "[":
        raise LabelsError(f"{path}: a JSON array is not supported; use JSON Lines (one object per line)")
    return suffix in JSONL_SUFFIXES or suffix == ".json" or head == "{"


def read_labels(path: Path, *, root: Path | None = None) -> tuple[list[LabelRow], list[LabelProblem]]:
    """Rows whose file exists inside the labels folder (or `root`), and every problem found.

    LabelsError only when the file itself is unusable (missing, unreadable, binary, no header,
    no `file` column). Duplicates of a file keep the first row.
    """
    path = Path(path)
    text, bad_lines = _decode(path, _read(path))
    folder = path.parent if str(path.parent) else Path(".")
    base = Path(os.path.abspath(folder))
    roots = list(dict.fromkeys([base, Path(os.path.realpath(folder))] + (
        [Path(os.path.abspath(root)), Path(os.path.realpath(root))] if root is not None else [])))
    problems: list[LabelProblem] = []
    reader = _jsonl_records if _is_jsonl(path, text) else _csv_records
    rows: list[LabelRow] = []
    first_row: dict[Path, int] = {}
    for row, rec in reader(path, text, bad_lines, problems):
        try:
            label, reasons = _check(row, rec, base, roots)
        except Exception as e:  # defensive: a row must never sink the whole file
            label, reasons = None, [f"unreadable row: {str(e)[:80]}"]
        file = rec.get("file")
        file = file if isinstance(file, str) and file.strip() else None
        if label is not None and label.path in first_row:
            label, reasons = None, [f"duplicate of row {first_row[label.path]}"]
        problems.extend(LabelProblem(row, file, r) for r in reasons)
        if label is not None:
            first_row[label.path] = row
            rows.append(label)
    problems.sort(key=lambda p: p.row)
    return rows, problems
