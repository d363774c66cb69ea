"""Small real slices of a posters folder, and running the CLI as a subprocess (tests, bench)."""
from __future__ import annotations

import csv
import os
import shutil
import sys
from pathlib import Path

import posterdb

SOURCE_ROOT = Path(posterdb.__file__).resolve().parents[1]   # holds posterdb/ (the CLI is posterdb/ui/cli)


def write_slice(rows: list[dict], dst: Path, posters: Path) -> Path:
    """Copy the posters of these labels.csv rows into dst/images and write dst/labels.csv."""
    (dst / "images").mkdir(parents=True, exist_ok=True)
    for r in rows:
        shutil.copyfile(posters / r["file"], dst / r["file"])
    with open(dst / "labels.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return dst


def copy_posters(dst: Path, n: int, start: int = 0, every: int = 1, *, posters: Path) -> Path:
    """n real posters (labels.csv rows start, start+every, ...) + their labels.csv into dst."""
    with open(posters / "labels.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))[start::every][:n]
    return write_slice(rows, dst, posters)


def posterdb_cmd() -> list[str]:
    """`python -m posterdb.ui.cli.main` with this interpreter (runs the checkout's code, whatever is installed)."""
    return [sys.executable, "-m", "posterdb.ui.cli.main"]


def subprocess_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for a CLI subprocess: this checkout first on PYTHONPATH, no crash point."""
    env = {k: v for k, v in os.environ.items() if k != "POSTERDB_CRASH_AT"}
    env["PYTHONPATH"] = str(SOURCE_ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra or {})
    return env
