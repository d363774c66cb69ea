"""Text handed in and handed out, escaped in one place (issue 19: names, cells and output).

Three boundaries, one function family each:

* **File names → the catalogue.** A POSIX file name is bytes; Python hands them around as `str`
  with each byte that is not UTF-8 as a lone surrogate (U+DC80..U+DCFF, `surrogateescape`).
  DuckDB stores only valid UTF-8, so `stored_name` maps every name to text and `name_bytes`
  maps it back: a name that is valid text (and does not begin with `"`) is stored as it is; any
  other is stored quoted, the way git quotes paths: `"` + the name with `\\`, `\\"`, `\\xHH` (a
  byte that is not UTF-8) and `\\uXXXX` (a lone surrogate) escapes + `"`. One name, one text,
  and back: nothing is lost, the same file is recognised on the next run.
* **Values → a person's terminal.** `shown` makes any value printable on one line: C0 and C1
  control characters, DEL (so every ESC sequence), bidi embeddings/overrides/isolates, line and
  paragraph separators and raw bytes become visible `\\xHH` / `\\uXXXX` escapes. `SafeConsole`
  (posterdb.ui.cli.common) applies it to everything rich prints; JSON output stays exact.
* **Cells → a spreadsheet.** `csv_cell` neutralises formula cells (OWASP "CSV Injection": a
  cell beginning with = + - @ TAB CR or LF, also after leading blanks, gets a leading `'`),
  escapes control characters other than TAB and LF and raw bytes; `csv_text` writes a whole CSV
  through it. `csv_value` undoes exactly the neutralising quote, for CSVs posterdb reads back
  (its own labels.csv): `csv_value(csv_cell(s)) == s` for text without control characters.

Nothing here imports the rest of posterdb.
"""
from __future__ import annotations

import csv
import io
import os
import re
import unicodedata
from collections.abc import Iterable, Sequence
from typing import Any

__all__ = ["stored_name", "name_text", "name_bytes", "readable_name", "clean_text", "shown",
           "csv_cell", "csv_value", "csv_text", "FORMULA_TRIGGERS"]

# -- file names ---------------------------------------------------------------------------------

_SURROGATE = re.compile("[\ud800-\udfff]")
_QUOTED_BODY = re.compile(r'(?:[^"\\]|\\x[89a-f][0-9a-f]|\\ud[89a-f][0-9a-f]{2}|\\["\\])*')
_QUOTED_ESCAPE = re.compile(r'\\(?:x([89a-f][0-9a-f])|u(d[89a-f][0-9a-f]{2})|(["\\]))')


def _fspath(name: Any) -> str:
    name = os.fspath(name) if isinstance(name, (str, bytes, os.PathLike)) else str(name)
    return os.fsdecode(name) if isinstance(name, bytes) else name


def _escape_surrogate(m: re.Match) -> str:
    cp = ord(m.group())
    return f"\\x{cp - 0xDC00:02x}" if 0xDC80 <= cp <= 0xDCFF else f"\\u{cp:04x}"


def stored_name(name: str | bytes | os.PathLike) -> str:
    """The text a file name is stored as (valid UTF-8; see the module docstring)."""
    name = _fspath(name)
    if not name.startswith('"') and not _SURROGATE.search(name):
        return name
    body = name.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + _SURROGATE.sub(_escape_surrogate, body) + '"'


def name_text(stored: str) -> str:
    """The inverse of `stored_name`: the name as Python's file functions take it."""
    if len(stored) < 2 or not (stored.startswith('"') and stored.endswith('"')):
        return stored
    body = stored[1:-1]
    if not _QUOTED_BODY.fullmatch(body):
        return stored        # not one of ours (an unescaped quote, a dangling backslash)

    def unescape(m: re.Match) -> str:
        byte, sur, char = m.groups()
        if byte is not None:
            return chr(0xDC00 + int(byte, 16))
        return chr(int(sur, 16)) if sur is not None else char
    return _QUOTED_ESCAPE.sub(unescape, body)


def name_bytes(stored: str) -> bytes:
    """The file name's bytes, from its stored text."""
    return name_text(stored).encode("utf-8", "surrogateescape")


def readable_name(name: str | bytes | os.PathLike) -> str:
    """A name as text a person can read (a title from a file name): bytes that are not UTF-8 are
    read as cp1252 (latin-1 where cp1252 has no character), as the labels reader does."""
    raw = _fspath(name)
    if not _SURROGATE.search(raw):
        return raw
    try:
        data = raw.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return clean_text(raw)
    try:
        return data.decode("cp1252")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def clean_text(value: str) -> str:
    """Text that can be stored and encoded: each lone surrogate becomes U+FFFD."""
    return _SURROGATE.sub("\ufffd", value) if _SURROGATE.search(value) else value


# -- a person's terminal ------------------------------------------------------------------------

# Bidi embeddings, overrides and isolates (the "Trojan Source" set) and the line/paragraph
# separators: they re-order or break what a person reads.
_BIDI = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u2028\u2029"
_UNSAFE = re.compile(f"[\x00-\x1f\x7f-\x9f{_BIDI}\ud800-\udfff]")
_UNSAFE_KEEP_NEWLINE = re.compile(f"[\x00-\x09\x0b-\x1f\x7f-\x9f{_BIDI}\ud800-\udfff]")


def _escape_char(m: re.Match) -> str:
    cp = ord(m.group())
    if 0xDC80 <= cp <= 0xDCFF:           # a raw byte of a name that is not UTF-8
        return f"\\x{cp - 0xDC00:02x}"
    return f"\\x{cp:02x}" if cp < 0x100 else f"\\u{cp:04x}"


def shown(value: Any, *, newlines: bool = False) -> str:
    """`value` as text safe for a terminal: control characters (C0, DEL, C1: every ESC
    sequence), bidi controls, line separators and raw bytes become `\\xHH` / `\\uXXXX`.
    `newlines=True` keeps LF (for multi-line text posterdb itself composed)."""
    text = value if isinstance(value, str) else _fspath(value) if isinstance(
        value, (bytes, os.PathLike)) else str(value)
    pattern = _UNSAFE_KEEP_NEWLINE if newlines else _UNSAFE
    return pattern.sub(_escape_char, text)


# -- cells for a spreadsheet --------------------------------------------------------------------

# OWASP "CSV Injection": = + - @ TAB CR LF; the full-width forms some spreadsheets also take.
FORMULA_TRIGGERS = frozenset("=+-@\t\r\n\uff1d\uff0b\uff0d\uff20")
_CELL_UNSAFE = re.compile(f"[\x00-\x08\x0b-\x1f\x7f-\x9f{_BIDI}\ud800-\udfff]")


def _blank(ch: str) -> bool:
    return ch.isspace() or unicodedata.category(ch) in ("Cc", "Cf", "Zs", "Zl", "Zp")


def _is_formula(cell: str) -> bool:
    """Would a spreadsheet read this cell as a formula (or as the escape of one)?"""
    if not cell:
        return False
    if cell[0] in FORMULA_TRIGGERS:
        return True
    i = 0
    while i < len(cell) and _blank(cell[i]):
        i += 1
    if i < len(cell) and cell[i] in FORMULA_TRIGGERS:
        return True
    return cell[0] == "'" and _is_formula(cell[1:])     # so that csv_value can undo exactly


def csv_cell(value: Any) -> Any:
    """A value as a CSV cell: text with formula triggers neutralised by a leading `'` and
    control characters (but TAB and LF) escaped; numbers and None as they are."""
    if value is None or isinstance(value, (bool, int, float)):
        return value
    text = value if isinstance(value, str) else str(value)
    text = _CELL_UNSAFE.sub(_escape_char, text)
    return "'" + text if _is_formula(text) else text


def csv_value(cell: str | None) -> str | None:
    """A cell posterdb wrote, read back: the neutralising `'` of `csv_cell` removed."""
    if cell and cell[0] == "'" and _is_formula(cell[1:]):
        return cell[1:]
    return cell


def csv_text(header: Sequence[str] | None, rows: Iterable[Sequence[Any]], *,
             lineterminator: str = "\r\n") -> str:
    """A whole CSV (RFC 4180 quoting), every cell through `csv_cell`."""
    buf = io.StringIO(newline="")
    w = csv.writer(buf, lineterminator=lineterminator)
    if header is not None:
        w.writerow([csv_cell(h) for h in header])
    for row in rows:
        w.writerow([csv_cell(v) for v in row])
    return buf.getvalue()
