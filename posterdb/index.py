"""The FAISS index: a derived cache of one model's vectors, keyed by DuckDB poster ids.

Vectors are L2-normalised, so inner product = cosine. The index file is written atomically
(temp file + rename) with a JSON sidecar naming the model; DuckDB stays the source of truth and
`sync` brings a loaded index back in line with it (adding/removing the ids that differ).

Two kinds, picked by size (`choose_factory`): exact `Flat` while small, and above `EXACT_MAX` an
approximate index whose candidates are re-ranked exactly:

    PCA256,IVF{nlist}_HNSW32,SQ8,Refine(SQfp16)

i.e. vectors projected to 256 dimensions, 8-bit codes in `nlist` inverted lists found through an
HNSW graph over the list centroids, `NPROBE` lists scanned for `RERANK`·k candidates, which are
re-scored against float16 copies of the full vectors (cosine error ~1e-4). Both parts take adds,
removes (by poster id) and id-selector filters, so DuckDB's ids stay the index's ids. Why this
and not the earlier `IVF(2√n),SQfp16` nprobe 6: on realistic vectors (blends of real posters,
bench/realistic_vectors.py) that one recalls far below 0.98 at 1M; see bench/index_scale.py.
"""
from __future__ import annotations

import json
import math
import os
import re
import tempfile
from collections.abc import Iterable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

from .embedders.base import ModelSpec
from .faults import crash_point

EXACT_MAX = 100_000   # up to this many vectors the index is exact (Flat, ~35 ms a query at 100k)
PCA_DIM = 256         # scan codes live in this many dimensions (re-rank uses all of them)
NPROBE = 48           # inverted lists scanned per query
RERANK = 10           # candidates re-scored exactly = RERANK · k
IVF_NPROBE = 6        # nprobe of plain `IVF…` indexes (the previous default, kept for comparison)
REFINE = ",Refine(SQfp16)"


def nlist_for(n: int) -> int:
    """≈ 4·√n inverted lists, a power of two ≤ 65536 (4096 at 1M): the HNSW quantizer keeps
    finding the lists cheap, so lists can be smaller than with a flat quantizer. Tiny sets (tests
    with a lowered threshold) keep ≥ 16 vectors a list."""
    return 1 << max(2, min(16, round(math.log2(4 * math.sqrt(max(n, 1)))),
                           int(math.log2(max(n, 64) / 16))))


def pca_dim(n: int) -> int:
    """`PCA_DIM`, or fewer when n vectors cannot train that many components (tests)."""
    return min(PCA_DIM, 1 << int(math.log2(max(n, 8) / 2)))


def choose_factory(n: int, *, exact_max: int | None = None) -> str:
    """The index for n vectors: exact `Flat` up to `exact_max` (default `EXACT_MAX`; tests lower
    it to run the approximate path on a few hundred vectors), the re-ranked IVF beyond."""
    if n <= (EXACT_MAX if exact_max is None else exact_max):
        return "Flat"
    return f"PCA{pca_dim(n)},IVF{nlist_for(n)}_HNSW32,SQ8{REFINE}"


def train_size(factory: str) -> int:
    """How many vectors to train `factory` on: ~64 per inverted list, at least 100k (or all)."""
    found = re.search(r"IVF(\d+)", factory)
    return max(100_000, 64 * int(found.group(1))) if found else 0


@dataclass
class SearchResult:
    """Neighbours of each query: ids (n, k) with -1 padding, similarities (n, k)."""

    ids: np.ndarray
    similarities: np.ndarray


class VectorIndex:
    """One model's FAISS index with poster ids as FAISS ids (+ the float16 re-rank copies)."""

    def __init__(self, index: faiss.Index, spec: ModelSpec, factory: str,
                 refine: faiss.Index | None = None):
        self.index = index
        self.refine = refine
        self.spec = spec
        self.factory = factory
        self.rerank = RERANK

    # -- construction -------------------------------------------------------------------------

    @classmethod
    def empty(cls, spec: ModelSpec, factory: str = "Flat") -> VectorIndex:
        refine = None
        if factory == "Flat":
            index = faiss.IndexIDMap2(faiss.IndexFlatIP(spec.dim))
        else:
            base = factory.removesuffix(REFINE)
            index = faiss.index_factory(spec.dim, base, faiss.METRIC_INNER_PRODUCT)
            ivf = faiss.extract_index_ivf(index)
            ivf.nprobe = NPROBE if base != factory else IVF_NPROBE
            if base != factory:
                refine = faiss.IndexIDMap2(faiss.IndexScalarQuantizer(
                    spec.dim, faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_INNER_PRODUCT))
        return cls(index, spec, factory, refine)

    @classmethod
    def build(cls, spec: ModelSpec, chunks: Iterable[tuple[np.ndarray, np.ndarray]], n: int,
              train_sample: np.ndarray | None = None, factory: str | None = None) -> VectorIndex:
        """Build from (ids, vectors) chunks streamed from the catalogue (never all in memory twice);
        `factory` defaults to `choose_factory(n)`; train on `train_size(factory)` vectors."""
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

    @property
    def nprobe(self) -> int | None:
        return None if self.factory == "Flat" else int(faiss.extract_index_ivf(self.index).nprobe)

    @nprobe.setter
    def nprobe(self, value: int) -> None:
        faiss.extract_index_ivf(self.index).nprobe = int(value)

    def ids(self) -> np.ndarray:
        """All poster ids in the index, sorted."""
        mapped = self.refine if self.refine is not None else self.index
        if isinstance(mapped, faiss.IndexIDMap2):
            return np.sort(faiss.vector_to_array(mapped.id_map).astype(np.int64))
        ivf = faiss.extract_index_ivf(self.index)
        invlists = ivf.invlists
        parts = [faiss.rev_swig_ptr(invlists.get_ids(i), invlists.list_size(i)).copy()
                 for i in range(ivf.nlist) if invlists.list_size(i)]
        return np.sort(np.concatenate(parts)).astype(np.int64) if parts else np.zeros(0, np.int64)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        if len(ids):
            x = np.ascontiguousarray(vectors, dtype=np.float32)
            i = np.ascontiguousarray(ids, dtype=np.int64)
            self.index.add_with_ids(x, i)
            if self.refine is not None:
                self.refine.add_with_ids(x, i)

    def remove(self, ids: Iterable[int]) -> int:
        ids = np.fromiter((int(i) for i in ids), dtype=np.int64)
        if not len(ids):
            return 0
        removed = int(self.index.remove_ids(faiss.IDSelectorBatch(ids)))
        if self.refine is not None:
            self.refine.remove_ids(faiss.IDSelectorBatch(ids))
        return removed

    # -- search -------------------------------------------------------------------------------

    def search(self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None) -> SearchResult:
        """k nearest by cosine; `allowed` restricts the result to those ids."""
        q = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        k = max(1, int(k))
        sel = None if allowed is None else faiss.IDSelectorBatch(
            np.ascontiguousarray(allowed, dtype=np.int64))
        params, keep = self._params(sel)
        with _threads(1 if len(q) == 1 else None):
            if self.refine is None:
                sims, ids = self.index.search(q, k, params=params)
                return SearchResult(ids.astype(np.int64), sims.astype(np.float32))
            _, cand = self.index.search(q, k * self.rerank, params=params)
            del keep
            return self._rescore(q, cand, k)

    def _params(self, sel):
        """Per-call search parameters (filter, nprobe, HNSW breadth); plus the objects they point
        to, which must outlive the call."""
        if self.factory == "Flat":
            return (None if sel is None else faiss.SearchParameters(sel=sel)), [sel]
        ivf = faiss.extract_index_ivf(self.index)
        quantizer = None
        if isinstance(faiss.downcast_index(ivf.quantizer), faiss.IndexHNSW):
            quantizer = faiss.SearchParametersHNSW(efSearch=max(64, 2 * ivf.nprobe))
        params = faiss.SearchParametersIVF(nprobe=ivf.nprobe)
        if sel is not None:
            params.sel = sel
        if quantizer is not None:
            params.quantizer_params = quantizer
        outer = params
        if isinstance(self.index, faiss.IndexPreTransform):
            outer = faiss.SearchParametersPreTransform(index_params=params)
        return outer, [sel, quantizer, params]

    def _rescore(self, q: np.ndarray, cand: np.ndarray, k: int) -> SearchResult:
        """Exact top-k of each query among its candidates, scored on the float16 copies."""
        out_ids = np.full((len(q), k), -1, np.int64)
        out_sims = np.full((len(q), k), -np.finfo(np.float32).max, np.float32)  # as faiss pads
        for row, (query, ids) in enumerate(zip(q, cand)):
            ids = ids[ids >= 0]
            if not len(ids):
                continue
            # einsum, not @: BLAS would wake its own threads for 500+ rows (same barrier cost)
            sims = np.einsum("ij,j->i", self.refine.reconstruct_batch(ids), query)
            top = np.argsort(-sims, kind="stable")[:k]
            out_ids[row, :len(top)] = ids[top]
            out_sims[row, :len(top)] = sims[top]
        return SearchResult(out_ids, out_sims)

    # -- persistence --------------------------------------------------------------------------

    def save(self, path: str | Path) -> None:
        """Write index (+ re-rank copies, same file) and sidecar atomically (temp file, rename)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = {"name": self.spec.name, "version": self.spec.version,
                "weights_sha256": self.spec.weights_sha256, "dim": self.spec.dim,
                "factory": self.factory, "ntotal": len(self)}
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                writer = faiss.PyCallbackIOWriter(f.write)
                faiss.write_index(self.index, writer)
                if self.refine is not None:
                    faiss.write_index(self.refine, writer)
                del writer
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
        with open(path, "rb") as f:
            reader = faiss.PyCallbackIOReader(f.read)
            index = faiss.read_index(reader)
            refine = faiss.read_index(reader) if meta["factory"].endswith(REFINE) else None
            del reader
        spec = ModelSpec(meta["name"], meta["version"], meta["weights_sha256"], int(meta["dim"]))
        if index.d != spec.dim:
            raise ValueError(f"{path}: dimension {index.d} != sidecar {spec.dim}")
        if refine is not None and refine.ntotal != index.ntotal:
            raise ValueError(f"{path}: {refine.ntotal} re-rank vectors for {index.ntotal} codes")
        return cls(index, spec, meta["factory"], refine)


@contextmanager
def _threads(n: int | None):
    """One query runs in one thread: faiss splits work by query anyway, and a second OpenMP
    thread only adds a barrier that waits out the scheduler on a busy machine (~8 ms seen at
    load 10 on 2 cores, vs 0.6 ms in one thread)."""
    if n is None:
        yield
        return
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(n)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


def sidecar(path: Path) -> Path:
    return path.with_suffix(".json")


def _atomic_write_text(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)
