"""What the integrity checks cost: `python -m bench.integrity_cost --n 20000 [--dim 1280]`.

Builds a catalogue of n posters with random unit vectors (no images) and its exact index file,
then times, in this run: reading the index file with FAISS alone (the reference), the load
path's checks (length + CRC-32 of the file, 256 vectors compared with DuckDB), the deep check's
block verification of the catalogue file and its comparison of every vector with DuckDB's.
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np

from posterdb.core.records import PosterRecord
from posterdb.embedders.base import ModelSpec
from posterdb.storage.catalog import Catalog, embedding_table
from posterdb.storage.catalog.blocks import verify_blocks
from posterdb.vectors.index import VectorIndex
from posterdb.vectors.index_file import _verify_bytes, read_sidecar


def build(root: Path, n: int, dim: int) -> tuple[Catalog, Path, ModelSpec]:
    spec = ModelSpec("bench-random", "1", "0" * 64, dim)
    cat = Catalog(root / "catalog.duckdb")
    cat.migrate()
    rng = np.random.default_rng(0)
    index = VectorIndex.empty(spec)
    for start in range(0, n, 10_000):
        m = min(10_000, n - start)
        x = rng.standard_normal((m, dim)).astype(np.float32)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        with cat.write() as con:
            table = cat.register_model(con, spec)
            ids = cat.allocate_ids(con, m)
            cat.insert_posters(con, ids, [PosterRecord(f"{int(i):064x}", f"p{i}.jpg",
                                                       f"images/00/{int(i):064x}.jpg", None,
                                                       None, 1, 1, "JPEG", "bench")
                                          for i in ids])
            cat.insert_vectors(con, table, ids, x)
        index.add(ids, x)
    path = root / "index" / "bench_random.faiss"
    index.save(path)
    return cat, path, spec


def timed(fn, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=20_000)
    ap.add_argument("--dim", type=int, default=1280)
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="posterdb-integrity-"))
    try:
        cat, path, spec = build(root, args.n, args.dim)
        table = embedding_table(spec.name)
        meta = read_sidecar(path)
        plain = timed(lambda: faiss.read_index(str(path)))
        crc = timed(lambda: _verify_bytes(path, meta))
        loaded = VectorIndex.load(path)
        with cat.read() as con:
            ids = cat.vector_ids(con, table)
            pick = ids[np.unique(np.linspace(0, len(ids) - 1, 256).astype(int))]
            sample = timed(lambda: loaded.mismatches(*cat.few_vectors(con, table, pick)))
            layout = cat.file_layout(con)

        def compare_all():
            for s in range(0, len(ids), 50_000):
                with cat.read() as con:
                    part = ids[s:s + 50_000]
                    got, vec = cat.vectors_between(con, table, int(part[0]), int(part[-1]))
                assert loaded.mismatches(got, vec) == 0

        blocks = timed(lambda: verify_blocks(cat.path, *layout), 1)
        deep = timed(compare_all, 1)
        size = path.stat().st_size / 1e6
        db_size = cat.path.stat().st_size / 1e6
        print(f"n={args.n} dim={args.dim}: index file {size:.0f} MB, catalogue {db_size:.0f} MB")
        print(f"  FAISS read alone (reference)        {plain * 1e3:8.1f} ms")
        print(f"  + length and CRC-32 of the file     {crc * 1e3:8.1f} ms  ({crc / plain:.2f}x)")
        print(f"  + 256 vectors compared with DuckDB  {sample * 1e3:8.1f} ms")
        print(f"  deep: catalogue blocks verified     {blocks * 1e3:8.1f} ms")
        print(f"  deep: every vector compared         {deep * 1e3:8.1f} ms")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
