"""Shared bench helpers: the /tmp cache, real posters and their vectors, the machine, figures."""
from __future__ import annotations

import csv
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from posterdb.testing.slices import write_slice

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("POSTERDB_SHARED", ROOT.parent / "shared"))
POSTERS = SHARED / "posters"
MODELS = SHARED / "models"
CACHE = Path(os.environ.get("POSTERDB_BENCH_CACHE", "/tmp/posterdb-bench"))
ARTIFACTS = ROOT / "artifacts"
THREADS = 2


@dataclass
class Figure:
    """One row of the bench table. `reference` is measured in the same run (or a quoted earlier
    figure when `ref_label` says so); `ratio` = value / reference."""

    bench: str
    name: str
    value: float | None
    unit: str
    reference: float | None = None
    ref_label: str = ""
    goal: str = ""
    passed: bool | None = None       # None: no goal, or not measured
    note: str = ""
    load: str = ""                   # load average while measured
    extra: dict = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        if self.value is None or not self.reference:
            return None
        return self.value / self.reference

    def to_dict(self) -> dict:
        return asdict(self) | {"ratio": self.ratio}


def loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def machine() -> dict:
    model = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                ram = int(line.split()[1]) / 1024**2
    except OSError:
        pass
    import faiss

    return {"cores": os.cpu_count(), "cpu": model, "ram_gib": round(ram, 1) if ram else None,
            "python": platform.python_version(), "faiss": faiss.__version__,
            "numpy": np.__version__, "load_at_start": loadavg()}


def rss_peak_mib() -> float:
    """This process's resident-set high-water mark (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def label_rows() -> list[dict]:
    with open(POSTERS / "labels.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def poster_folder(n: int) -> Path:
    """A cached folder under CACHE holding the first n real posters (+ labels.csv for them)."""
    rows = label_rows()[:n]
    dst = CACHE / f"posters-{len(rows)}"
    if (dst / "labels.csv").exists():
        return dst
    tmp = dst.with_name(dst.name + ".part")
    shutil.rmtree(tmp, ignore_errors=True)
    write_slice(rows, tmp, POSTERS).rename(dst)
    return dst


def warm(folder: Path) -> None:
    """Read every file once so that neither measurement pays for a cold page cache."""
    for p in sorted((folder / "images").iterdir()):
        p.read_bytes()


def embedder(batch_size: int = 64):
    from posterdb.embedders import get_embedder

    return get_embedder("mobilenet-v2", model_dir=MODELS, batch_size=batch_size,
                        allow_download=False)


def raw_embed(files: list[Path], batch_size: int = 64, emb=None) -> np.ndarray:
    """The reference loop: read, decode (+sha256), preprocess, embed_batch; one thread."""
    from posterdb.media.images import decode, read_bytes

    emb = emb or embedder(batch_size)
    out, batch = [], []
    for f in files:
        p = decode(read_bytes(f), str(f))
        batch.append(emb.preprocess(p.image))
        if len(batch) == batch_size:
            out.append(emb.embed_batch(np.stack(batch)))
            batch = []
    if batch:
        out.append(emb.embed_batch(np.stack(batch)))
    return np.concatenate(out) if out else np.zeros((0, emb.dim), np.float32)


def real_vectors(n: int | None = None, verbose: bool = True) -> np.ndarray:
    """mobilenet-v2 vectors of the first n real posters (all 5,097 by default), cached in CACHE."""
    rows = label_rows()
    n = len(rows) if n is None else min(n, len(rows))
    path = CACHE / "real-vectors.npy"
    if path.exists():
        v = np.load(path, mmap_mode="r")
        if len(v) >= n:
            return np.ascontiguousarray(v[:n])
    if verbose:
        print(f"  (embedding {n} real posters once for the vector cache {path} ...)", flush=True)
    v = raw_embed([POSTERS / r["file"] for r in rows[:n]])
    CACHE.mkdir(parents=True, exist_ok=True)
    old = np.load(path, mmap_mode="r") if path.exists() else None
    if old is None or len(old) < len(v):
        np.save(path.with_suffix(".tmp.npy"), v)
        os.replace(path.with_suffix(".tmp.npy"), path)
    return v


def percentiles(samples_s: list[float]) -> tuple[float, float]:
    """(p50, p99) in milliseconds."""
    a = np.asarray(samples_s) * 1000
    return float(np.percentile(a, 50)), float(np.percentile(a, 99))


def run_worker(module: str, args: list[str], timeout: float = 1800) -> dict:
    """Run `python -m bench.<module> --worker ...` and return the JSON it prints last."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    r = subprocess.run([sys.executable, "-m", f"bench.{module}", "--worker", *args], env=env,
                       capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    if r.returncode != 0:
        raise RuntimeError(f"bench.{module} worker failed ({r.returncode}): {r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


class Timer:
    def __enter__(self):
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.t0


def ensure_store(n: int, verbose: bool = True) -> Path:
    """A cached store under CACHE holding the first n real posters with their labels."""
    from posterdb.store import PosterDB

    folder = poster_folder(n)
    store = CACHE / f"store-{len(label_rows()[:n])}"
    if (store / ".complete").exists():
        PosterDB.open(store)          # a writer: a store cached by an older posterdb migrates
        return store
    if verbose:
        print(f"  (building the cached store {store} once ...)", flush=True)
    shutil.rmtree(store, ignore_errors=True)
    db = PosterDB.open(store, model_dir=MODELS)
    rep = db.ingest(folder, folder / "labels.csv", auto_classify=False)
    if rep.failed:
        raise RuntimeError(f"building {store}: {rep.failed[:3]}")
    (store / ".complete").write_text(str(rep.added))
    return store


def api_missing(db, name: str) -> str | None:
    """Why PosterDB.<name>() cannot be benchmarked yet (None when it looks usable)."""
    if not hasattr(db, name):
        return f"PosterDB.{name}() does not exist yet"
    return None


def standalone(run) -> None:
    """`python -m bench.NAME [--quick]`: run one benchmark module alone and print its figures."""
    import argparse

    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    for f in run(ap.parse_args().quick):
        print(f.to_dict())
