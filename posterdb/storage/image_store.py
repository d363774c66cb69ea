"""Content-addressed copies of every stored poster: `images/ab/<sha256>.<ext>`, written atomically.

The copy is what evidence and the page show, so a poster stays visible after its original file
moves. Copies are written before the commit that references them; a killed write leaves only a
`.tmp` file, which `sweep_temp_files` removes once it is old enough not to be a live writer's.
"""
from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path

from posterdb.core.atomic import replacing
from posterdb.core.faults import crash_point

TEMP_FOLDERS = ("", "images", "index", "classifiers", "eval", "catalogue")


class ImageStore:
    """The store's image folder (and the sweep of temporaries left anywhere in the store)."""

    def __init__(self, root: Path):
        self.root = Path(root)

    @property
    def folder(self) -> Path:
        return self.root / "images"

    @staticmethod
    def relpath(sha256: str, suffix: str) -> str:
        return f"images/{sha256[:2]}/{sha256}{suffix}"

    def file(self, relpath: str) -> Path:
        return self.root / relpath

    def write(self, relpath: str, data: bytes) -> None:
        """Write the copy (temp file + rename); a copy of the right size already there is kept."""
        dest = self.root / relpath
        if dest.exists() and dest.stat().st_size == len(data):
            return
        with replacing(dest, fsync=False) as f:  # DuckDB's commit is the durable record
            f.write(data)
            f.flush()
            crash_point("image_tmp_written")

    def remove(self, relpaths: Iterable[str]) -> None:
        for rel in relpaths:
            (self.root / rel).unlink(missing_ok=True)

    def temp_files(self, older_than: float = 0.0) -> list[Path]:
        """Temporary files a killed write left in the store (`*.tmp`), older than N seconds."""
        cutoff = time.time() - older_than
        found = []
        for name in TEMP_FOLDERS:
            folder = self.root / name
            pattern = "*/*.tmp" if name in ("images", "catalogue") else "*.tmp"
            for f in folder.glob(pattern) if folder.is_dir() else ():
                try:
                    if f.stat().st_mtime < cutoff:
                        found.append(f)
                except OSError:
                    pass
        return found

    def sweep_temp_files(self, older_than: float = 600.0) -> int:
        """Delete stale temporaries; young ones may belong to a live writer in another process."""
        gone = 0
        for f in self.temp_files(older_than):
            try:
                f.unlink()
                gone += 1
            except OSError:
                pass
        return gone
