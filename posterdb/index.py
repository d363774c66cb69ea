"""The FAISS index: a derived cache of one model's vectors, keyed by DuckDB poster ids.

Vectors are L2-normalised, so inner product = cosine. The index file is written atomically
(temp file + rename) with a JSON sidecar naming the model; DuckDB stays the source of truth and
`sync` brings a loaded index back in line with it (adding/removing the ids that differ).
"""
from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

from .embedders.base import ModelSpec
from .faults import crash_point

EXACT_MAX = 100_000        # up to this many vectors the index is exact (Flat, ~30 ms at 100k)
IVF_NPROBE = 6             # IVF2048,SQfp16 at 1M: ~2.5 ms a query on 2 cores (bench/search_latency)


def choose_factory(n: int, *, exact_max: int | None = None) -> str:
    """The index type for n vectors: exact Flat while small, IVF + 16-bit scalar quantiser beyond.

    nlist ≈ 2·sqrt(n) balances the coarse search (nlist centroids) against the lists scanned
    (nprobe · n / nlist codes): 2048 at 1M. fp16 codes, not 8-bit: SQ8's rounding reorders
    near-tied neighbours (recall@10 stalls at ~0.975 whatever nprobe); fp16 reaches 0.998 at half
    of Flat's memory. Past 4M vectors fp16 codes alone would pass 10 GB: 8-bit there.
    """
    if n <= (EXACT_MAX if exact_max is None else exact_max):  # tests lower it to run IVF
        return "Flat"
    nlist = 1 << max(8, min(16, round(math.log2(2 * math.sqrt(n)))))
    return f"IVF{nlist},{'SQfp16' if n <= 4_000_000 else 'SQ8'}"


@dataclass
class SearchResult:
    """Neighbours of each query: ids (n, k) with -1 padding, similarities (n, k)."""

    ids: np.ndarray
    similarities: np.ndarray


class VectorIndex:
    """One model's FAISS index with poster ids as FAISS ids."""

    def __init__(self, index: faiss.Index, spec: ModelSpec, factory: str):
        self.index = index
        self.spec = spec
        self.factory = factory

    # -- construction -------------------------------------------------------------------------

    @classmethod
    def empty(cls, spec: ModelSpec, factory: str = "Flat") -> VectorIndex:
        if factory == "Flat":
            index = faiss.IndexIDMap2(faiss.IndexFlatIP(spec.dim))
        else:
            index = faiss.index_factory(spec.dim, factory, faiss.METRIC_INNER_PRODUCT)
            faiss.extract_index_ivf(index).nprobe = IVF_NPROBE
        return cls(index, spec, factory)

    @classmethod
    def build(cls, spec: ModelSpec, chunks: Iterable[tuple[np.ndarray, np.ndarray]], n: int,
              train_sample: np.ndarray | None = None, factory: str | None = None) -> VectorIndex:
        """Build from (ids, vectors) chunks streamed from the catalogue (never all in memory twice)."""
        factory = factory or choose_factory(n)
        vi = cls.empty(spec, factory)
        if not vi.index.is_trained:
            if train_sample is None or len(train_sample) == 0:
                raise ValueError(f"{factory} needs a training sample")
            vi.index.train(np.ascontiguousarray(train_sample, dtype=np.float32))
        for ids, vecs in chunks:
            vi.add(ids, vecs)
        return vi

    # -- contents -----------------------------------------------------------------------------

    def __len__(self) -> int:
        return int(self.index.ntotal)

    def ids(self) -> np.ndarray:
        """All poster ids in the index, sorted."""
        if isinstance(self.index, faiss.IndexIDMap2):
            return np.sort(faiss.vector_to_array(self.index.id_map).astype(np.int64))
        ivf = faiss.extract_index_ivf(self.index)
        invlists = ivf.invlists
        parts = [faiss.rev_swig_ptr(invlists.get_ids(i), invlists.list_size(i)).copy()
                 for i in range(ivf.nlist) if invlists.list_size(i)]
        return np.sort(np.concatenate(parts)).astype(np.int64) if parts else np.zeros(0, np.int64)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        if len(ids):
            self.index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32),
                                    np.ascontiguousarray(ids, dtype=np.int64))

    def remove(self, ids: Iterable[int]) -> int:
        ids = np.fromiter((int(i) for i in ids), dtype=np.int64)
        if not len(ids):
            return 0
        return int(self.index.remove_ids(faiss.IDSelectorBatch(ids)))

    # -- search -------------------------------------------------------------------------------

    def search(self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None) -> SearchResult:
        """k nearest by cosine; `allowed` restricts the result to those ids."""
        q = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        k = max(1, int(k))
        params = None
        if allowed is not None:
            sel = faiss.IDSelectorBatch(np.ascontiguousarray(allowed, dtype=np.int64))
            if isinstance(self.index, faiss.IndexIDMap2):
                params = faiss.SearchParameters(sel=sel)
            else:
                params = faiss.SearchParametersIVF(sel=sel, nprobe=faiss.extract_index_ivf(
                    self.index).nprobe)
        sims, ids = self.index.search(q, k, params=params)
        return SearchResult(ids.astype(np.int64), sims.astype(np.float32))

    # -- persistence --------------------------------------------------------------------------

    def save(self, path: str | Path) -> None:
        """Write index + sidecar atomically (temp files in the same folder, then rename)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = {"name": self.spec.name, "version": self.spec.version,
                "weights_sha256": self.spec.weights_sha256, "dim": self.spec.dim,
                "factory": self.factory, "ntotal": len(self)}
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
        os.close(fd)
        try:
            faiss.write_index(self.index, tmp)
            crash_point("index_tmp_written")
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        crash_point("index_renamed")
        _atomic_write_text(sidecar(path), json.dumps(meta, indent=1))

    @classmethod
    def load(cls, path: str | Path) -> VectorIndex:
        path = Path(path)
        meta = json.loads(sidecar(path).read_text())
        index = faiss.read_index(str(path))
        spec = ModelSpec(meta["name"], meta["version"], meta["weights_sha256"], int(meta["dim"]))
        if index.d != spec.dim:
            raise ValueError(f"{path}: dimension {index.d} != sidecar {spec.dim}")
        return cls(index, spec, meta["factory"])


def sidecar(path: Path) -> Path:
    return path.with_suffix(".json")


def _atomic_write_text(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)
