"""An index file on disk: written with a checksum, read only when its bytes are as written, and
compared with the catalogue's vectors.

`<model>.faiss` holds the FAISS index (+ the float16 re-rank copies) followed by a 28-byte
trailer: the length and CRC-32 of the FAISS bytes and the catalogue generation they reflect
(so a file carries its own checksum: an older copy of a file is still a valid file, synced on
load). `<model>.json`, the sidecar, names the model and kind and says the file has a trailer.
`load_index` checks length and CRC *before* FAISS parses a byte: a damaged or changed file
(zeroed vectors, a truncated copy, one rewritten by another program without the trailer) is
refused as `IndexFileError`, never half-read. A file written before trailers existed (its
sidecar does not announce one) is read as it is. `mismatches` is the deep check: each DuckDB vector
against the one the index holds (exact for Flat, float16 rounding for the re-rank copies, the
PCA projection for a graph's own vectors).
"""
from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import faiss
import numpy as np

from posterdb.core.atomic import replacing, write_atomic
from posterdb.core.faults import crash_point
from posterdb.embedders.base import ModelSpec

TOLERANCE = {"exact": 1e-6, "fp16": 2e-3, "graph": 1e-3}   # |stored - DuckDB| allowed per value
REFINE = ",Refine(SQfp16)"
_CHUNK = 16 << 20
_MAGIC = b"PDBIXEND"
_TRAILER = struct.Struct("<QIq")            # FAISS bytes, their CRC-32, generation (-1: unknown)
TRAILER_SIZE = _TRAILER.size + len(_MAGIC)  # 28


class IndexFileError(ValueError):
    """An index file (or its sidecar) that cannot be used: damaged, truncated or changed."""


def sidecar(path: Path) -> Path:
    return path.with_suffix(".json")


def _short(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return text if len(text) <= 160 else text[:157] + "..."


def read_sidecar(path: Path) -> dict:
    """The sidecar of an index file; IndexFileError when it is missing or unreadable."""
    try:
        meta = json.loads(sidecar(Path(path)).read_text())
        if not isinstance(meta, dict) or not {"name", "version", "weights_sha256", "dim",
                                              "factory"} <= set(meta):
            raise ValueError("fields missing")
        return meta
    except (OSError, ValueError) as e:
        raise IndexFileError(f"index sidecar {sidecar(Path(path))} is unreadable "
                             f"({_short(e)})") from None


def read_trailer(path: Path) -> tuple[int, int, int | None] | None:
    """(FAISS bytes, CRC-32, generation) from the file's trailer, or None when it has none."""
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            total = f.tell()
            if total < TRAILER_SIZE:
                return None
            f.seek(total - TRAILER_SIZE)
            tail = f.read(TRAILER_SIZE)
    except OSError:
        return None
    if not tail.endswith(_MAGIC):
        return None
    size, crc, gen = _TRAILER.unpack(tail[:_TRAILER.size])
    return size, crc, (None if gen < 0 else gen)


def recorded_generation(path: Path) -> int | None:
    """The catalogue generation the index file at `path` reflects, if its trailer says."""
    found = read_trailer(path)
    return found[2] if found else None


def save_index(vi, path: Path, generation: int | None = None) -> None:
    """Write the index and its sidecar (each atomically: temp file + rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    crc, size = 0, 0
    with replacing(path, fsync=False) as f:  # a cache: DuckDB rebuilds it if it is lost
        def write(b) -> int:
            nonlocal crc, size
            crc, size = zlib.crc32(b, crc), size + len(b)
            return f.write(b)

        writer = faiss.PyCallbackIOWriter(write)
        faiss.write_index(vi.index, writer)
        if vi.refine is not None:
            faiss.write_index(vi.refine, writer)
        del writer
        f.write(_TRAILER.pack(size, crc, -1 if generation is None else int(generation)) + _MAGIC)
        f.flush()
        crash_point("index_tmp_written")
    crash_point("index_renamed")
    meta = {"name": vi.spec.name, "version": vi.spec.version,
            "weights_sha256": vi.spec.weights_sha256, "dim": vi.spec.dim,
            "factory": vi.factory, "ntotal": len(vi), "checksum": "trailer"}
    write_atomic(sidecar(path), json.dumps(meta, indent=1).encode(), fsync=False)


def _verify_bytes(path: Path, meta: dict) -> None:
    trailer = read_trailer(path)
    if trailer is None:
        if meta.get("checksum") == "trailer":
            raise IndexFileError(f"index file {path} lacks the checksum posterdb writes at its "
                                 "end (truncated, damaged or rewritten by another program)")
        return                              # written before trailers: read as it is
    size, crc, _ = trailer
    try:
        total = path.stat().st_size
        if total != size + TRAILER_SIZE:
            raise IndexFileError(f"index file {path} is {total} bytes, its checksum covers "
                                 f"{size} + {TRAILER_SIZE} (damaged or changed)")
        got, left = 0, size
        with open(path, "rb") as f:
            while left and (chunk := f.read(min(_CHUNK, left))):
                got = zlib.crc32(chunk, got)
                left -= len(chunk)
    except OSError as e:
        raise IndexFileError(f"index file {path} is unreadable ({_short(e)})") from None
    if got != crc or left:
        raise IndexFileError(f"index file {path} does not match its recorded checksum "
                             "(damaged or changed since it was written)")


def load_index(cls, path: Path):
    if not path.is_file():
        raise IndexFileError(f"index file {path} is not a regular file")
    meta = read_sidecar(path)
    _verify_bytes(path, meta)
    try:
        with open(path, "rb") as f:
            reader = faiss.PyCallbackIOReader(f.read)
            index = faiss.read_index(reader)
            refine = faiss.read_index(reader) if meta["factory"].endswith(REFINE) else None
            del reader
    except (RuntimeError, OSError, MemoryError) as e:
        raise IndexFileError(f"index file {path} is unreadable ({_short(e)})") from None
    try:
        spec = ModelSpec(meta["name"], meta["version"], meta["weights_sha256"], int(meta["dim"]))
    except (TypeError, ValueError) as e:
        raise IndexFileError(f"index sidecar {sidecar(path)} is unreadable ({e})") from None
    if index.d != spec.dim:
        raise IndexFileError(f"{path}: dimension {index.d} != sidecar {spec.dim}")
    if refine is not None and refine.d != spec.dim:
        raise IndexFileError(f"{path}: re-rank copies of dimension {refine.d} != {spec.dim}")
    return cls(index, spec, meta["factory"], refine)


def mismatches(vi, ids: np.ndarray, vectors: np.ndarray) -> int | None:
    """How many of these (DuckDB) vectors `vi` does not hold as given; None for IVF kinds."""
    ids = np.ascontiguousarray(ids, dtype=np.int64)
    x = np.ascontiguousarray(vectors, dtype=np.float32)
    if not len(ids):
        return 0
    have = np.isin(ids, vi.ids())
    bad = ~have
    ids_in, x_in = ids[have], x[have]
    if not len(ids_in):
        return int(bad.sum())
    if vi.refine is not None:
        off = np.abs(vi.refine.reconstruct_batch(ids_in) - x_in).max(axis=1)
        wrong = off > TOLERANCE["fp16"]
    elif vi.factory == "Flat":
        off = np.abs(vi.index.reconstruct_batch(ids_in) - x_in).max(axis=1)
        wrong = off > TOLERANCE["exact"]
    else:
        return None
    if vi.is_graph():
        wrong |= _graph_mismatch(vi, ids_in, x_in)
    bad[have] = wrong
    return int(bad.sum())


def _graph_mismatch(vi, ids: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Per id: whether the graph's own (projected) vector differs from x projected."""
    in_graph, pca, storage = vi.graph_parts()
    order = np.argsort(in_graph, kind="stable")
    sorted_ids = in_graph[order]
    if not len(order):
        return np.ones(len(ids), bool)
    at = np.minimum(np.searchsorted(sorted_ids, ids), len(order) - 1)
    found = sorted_ids[at] == ids
    out = ~found
    if found.any():
        pos = order[at[found]]
        off = np.abs(storage.reconstruct_batch(pos) - pca.apply(x[found])).max(axis=1)
        out[found] = off > TOLERANCE["graph"]
    return out
