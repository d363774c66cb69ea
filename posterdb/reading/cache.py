"""A resumable JSONL cache of OCR reads, keyed by file name + sha256.

Used to read a whole folder once (slow: ~0.3 s a poster on one core) and reuse the lines for
identification, calibration and benchmarks. Each line is appended and flushed as soon as a
poster is read, so a killed run loses at most the poster in flight; re-runs skip what is there.
"""
from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from posterdb.reading.ocr import ENGINE, PosterReader, ReadLine


def load(path: str | Path) -> dict[tuple[str, str], list[ReadLine]]:
    """(file name, sha256) -> lines, from a cache file (a torn last line is ignored)."""
    out: dict[tuple[str, str], list[ReadLine]] = {}
    p = Path(path)
    if not p.exists():
        return out
    with p.open(encoding="utf-8") as f:
        for raw in f:
            try:
                rec = json.loads(raw)
            except json.JSONDecodeError:
                continue
            out[(rec["file"], rec["sha256"])] = [ReadLine.from_json(d) for d in rec["lines"]]
    return out


def by_name(path: str | Path) -> dict[str, list[ReadLine]]:
    return {name: lines for (name, _), lines in load(path).items()}


def read_folder(files: Iterable[Path], cache: str | Path, reader: PosterReader | None = None,
                progress: Callable[[int, int], None] | None = None) -> dict[str, float]:
    """Read every file not yet in `cache` and append it; returns counts and seconds spent."""
    cache = Path(cache)
    cache.parent.mkdir(parents=True, exist_ok=True)
    done = load(cache)
    files = list(files)
    todo = []
    for p in files:
        data = p.read_bytes()
        key = (p.name, hashlib.sha256(data).hexdigest())
        if key not in done:
            todo.append((p, key))
    reader = reader or PosterReader(threads=1)
    t0 = time.perf_counter()
    with cache.open("a", encoding="utf-8") as f:
        for i, (p, (name, sha)) in enumerate(todo, 1):
            lines = reader.read_path(p)
            f.write(json.dumps({"file": name, "sha256": sha, "engine": ENGINE,
                                "lines": [ln.to_json() for ln in lines]}) + "\n")
            f.flush()
            if progress:
                progress(i, len(todo))
    return {"files": len(files), "read": len(todo), "cached": len(files) - len(todo),
            "seconds": time.perf_counter() - t0}


if __name__ == "__main__":  # python -m posterdb.read_cache FOLDER CACHE.jsonl
    import random
    import sys

    folder, out = Path(sys.argv[1]), sys.argv[2]
    files = sorted(folder.glob("*.jpg"))
    random.Random(0).shuffle(files)  # a partial pass is still a fair sample of every decade
    def _p(i: int, n: int) -> None:
        if i % 100 == 0 or i == n:
            print(f"{i}/{n} {time.strftime('%H:%M:%S')}", flush=True)
    print(read_folder(files, out, progress=_p), flush=True)
