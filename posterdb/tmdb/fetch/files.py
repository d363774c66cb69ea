"""The fetch's files: atomic writes (temp + fsync + rename) and labels.csv kept whole.

A kill at any moment leaves either the previous labels.csv or the new one, never a torn row.
"""
from __future__ import annotations

import csv
import io
import time
from pathlib import Path

from posterdb.core import atomic
from posterdb.core.text import csv_cell, csv_value
from posterdb.tmdb.fetch.options import FetchError

LABEL_COLUMNS = ("file", "tmdb_id", "title", "year", "genres")
FLUSH_SECONDS = 1.0


def write_atomic(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that a kill leaves either the old file or the new one (a killed
    write leaves a `.NAME.*.part` file, which the fetcher sweeps)."""
    atomic.write_atomic(path, data, suffix=".part")
    atomic.fsync_dir(path.parent)


class LabelsFile:
    """labels.csv held in memory (tmdb_id → row) and rewritten atomically when `flush`ed.

    A file that is there already must be one of ours (a ``tmdb_id`` column); columns and rows
    someone added by hand (no usable tmdb_id) are written back unchanged, after ours.
    """

    def __init__(self, path: Path):
        self.path = path
        self.rows: dict[int, dict[str, str]] = {}
        self.columns: tuple[str, ...] = LABEL_COLUMNS
        self._foreign: list[dict[str, str]] = []
        self._dirty = False
        self._flushed = 0.0

    def load(self, out_dir: Path) -> int:
        """Read an existing file; rows whose image is gone are dropped (returned count)."""
        if not self.path.exists():
            return 0
        try:
            text = self.path.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as e:
            raise FetchError(f"{self.path}: cannot read the existing labels file: {e}") from e
        reader = csv.DictReader(io.StringIO(text, newline=""))
        header = [c for c in reader.fieldnames or () if c]
        if header and "tmdb_id" not in header:
            raise FetchError(f"{self.path}: not written by `posterdb fetch tmdb` (no tmdb_id "
                             "column); choose another folder")
        self.columns = LABEL_COLUMNS + tuple(c for c in header if c not in LABEL_COLUMNS)
        dropped = 0
        for rec in reader:   # cells as csv_cell wrote them: the neutralising quote comes off
            rec = {c: csv_value(rec.get(c) or "") for c in self.columns}
            try:
                tmdb_id = int(rec["tmdb_id"])
            except ValueError:
                self._foreign.append(rec)  # hand-added: kept as it is, out of the resume logic
                continue
            file = rec["file"].strip()
            if not file or not (out_dir / file).is_file():
                dropped += 1
                self._dirty = True
                continue
            self.rows[tmdb_id] = rec
        return dropped

    def add(self, row: dict[str, str]) -> None:
        self.rows[int(row["tmdb_id"])] = row
        self._dirty = True

    def count(self, decade: int) -> int:
        return sum(1 for r in self.rows.values()
                   if r["year"].isdigit() and int(r["year"]) // 10 * 10 == decade)

    def flush(self, force: bool = False) -> None:
        if not self._dirty or (not force and time.monotonic() - self._flushed < FLUSH_SECONDS):
            return
        buf = io.StringIO(newline="")
        w = csv.DictWriter(buf, fieldnames=self.columns, restval="", lineterminator="\n")
        w.writeheader()      # cells through csv_cell: a title cannot be a spreadsheet formula
        for row in [*self.rows.values(), *self._foreign]:
            w.writerow({k: csv_cell(v) for k, v in row.items()})
        write_atomic(self.path, buf.getvalue().encode("utf-8"))
        self._dirty, self._flushed = False, time.monotonic()
