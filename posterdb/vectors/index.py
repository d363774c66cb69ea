"""The FAISS index: a derived cache of one model's vectors, keyed by DuckDB poster ids.

Vectors are L2-normalised, so inner product = cosine. The index file is written atomically
(temp file + rename) with a JSON sidecar naming the model; DuckDB stays the source of truth and
`sync` brings a loaded index back in line with it (adding/removing the ids that differ).

Two kinds, picked by size (`choose_factory`): exact `Flat` while small, and above `EXACT_MAX`

    PCA256,HNSW32,Refine(SQfp16)

an HNSW graph over the vectors projected to 256 dimensions (L2 there ranks like cosine for unit
vectors), whose `RERANK`·k best candidates are re-scored exactly against float16 copies of the
full vectors (cosine error ~1e-4). Adds go into both parts. FAISS graphs cannot delete, so a
removed poster leaves the float16 copies at once and stays in the graph as a tombstone that
every search excludes (an id selector); past `TOMBSTONES_MAX` of the live count the graph is
rebuilt from the copies. Filters (decade, genre) are id selectors inside the graph search, with
a wider search the fewer ids they allow.

Why not IVF (the earlier `IVF(2√n),SQfp16`, nprobe 6): on realistic vectors (blends of real
posters, bench/realistic_vectors.py) a poster's neighbours spread over many inverted lists; at
200k IVF needed 6 % of the lists for a recall@10 of 97 %, HNSW gets 99 % in 0.6 ms. Figures at 1M:
bench/index_scale.py and the README.
"""
from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

from posterdb.core.atomic import replacing, write_atomic
from posterdb.core.faults import crash_point
from posterdb.embedders.base import ModelSpec

EXACT_MAX = 100_000   # up to this many vectors the index is exact (Flat, ~35 ms a query at 100k)
PCA_DIM = 256         # the graph works in this many dimensions (the re-rank uses all of them)
HNSW_M = 32
EF_CONSTRUCTION = 40
EF_SEARCH = 384       # graph search breadth: recall@10 0.991 at 1M (bench/index_scale.py)
EF_FILTERED_MAX = 1024
RERANK = 5            # candidates re-scored exactly = RERANK · k (at least 50)
TOMBSTONES_MAX = 0.2  # removed-but-still-in-graph / live, before the graph is rebuilt
TOMBSTONES_MIN = 1000  # ... and never for fewer than this many
IVF_NPROBE = 6        # nprobe of plain `IVF…` indexes (the previous default, kept for comparison)
REFINE = ",Refine(SQfp16)"
_GRAPH = re.compile(r"PCA(\d+),HNSW(\d+)")


def pca_dim(n: int) -> int:
    """`PCA_DIM`, or fewer when n vectors cannot train that many components (tests)."""
    return min(PCA_DIM, 1 << int(math.log2(max(n, 8) / 2)))


def choose_factory(n: int, *, exact_max: int | None = None) -> str:
    """The index for n vectors: exact `Flat` up to `exact_max` (default `EXACT_MAX`; tests lower
    it to run the approximate path on a few hundred vectors), the re-ranked graph beyond."""
    if n <= (EXACT_MAX if exact_max is None else exact_max):
        return "Flat"
    return f"PCA{pca_dim(n)},HNSW{HNSW_M}{REFINE}"


def train_size(factory: str) -> int:
    """How many vectors to train `factory` on (PCA: 100k; IVF: ≥ 64 a list)."""
    if factory == "Flat":
        return 0
    found = re.search(r"IVF(\d+)", factory)
    return max(100_000, 64 * int(found.group(1))) if found else 100_000


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
        self._dead = self._tombstones()

    # -- construction -------------------------------------------------------------------------

    @classmethod
    def empty(cls, spec: ModelSpec, factory: str = "Flat") -> VectorIndex:
        refine = None
        base = factory.removesuffix(REFINE)
        if factory == "Flat":
            index = faiss.IndexIDMap2(faiss.IndexFlatIP(spec.dim))
        elif _GRAPH.fullmatch(base):
            index = faiss.IndexIDMap2(faiss.index_factory(spec.dim, base, faiss.METRIC_L2))
            graph = _graph(index).hnsw
            graph.efConstruction, graph.efSearch = EF_CONSTRUCTION, EF_SEARCH
        else:    # IVF kinds (the previous default; benchmarks)
            index = faiss.index_factory(spec.dim, base, faiss.METRIC_INNER_PRODUCT)
            faiss.extract_index_ivf(index).nprobe = IVF_NPROBE
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
        return int((self.refine if self.refine is not None else self.index).ntotal)

    @property
    def nprobe(self) -> int | None:
        """Search breadth: IVF lists probed, or the graph's efSearch."""
        if self.factory == "Flat":
            return None
        if self._is_graph():
            return int(_graph(self.index).hnsw.efSearch)
        return int(faiss.extract_index_ivf(self.index).nprobe)

    @nprobe.setter
    def nprobe(self, value: int) -> None:
        if self._is_graph():
            _graph(self.index).hnsw.efSearch = int(value)
        else:
            faiss.extract_index_ivf(self.index).nprobe = int(value)

    def ids(self) -> np.ndarray:
        """All (live) poster ids in the index, sorted."""
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
            if len(self._dead):
                self._dead = np.setdiff1d(self._dead, i)

    def remove(self, ids: Iterable[int]) -> int:
        ids = np.unique(np.fromiter((int(i) for i in ids), dtype=np.int64))
        if not len(ids):
            return 0
        if not self._is_graph():
            removed = int(self.index.remove_ids(faiss.IDSelectorBatch(ids)))
            if self.refine is not None:
                self.refine.remove_ids(faiss.IDSelectorBatch(ids))
            return removed
        present = ids[np.isin(ids, self.ids())]
        removed = int(self.refine.remove_ids(faiss.IDSelectorBatch(present)))
        self._dead = np.union1d(self._dead, present)
        if len(self._dead) > max(TOMBSTONES_MIN, TOMBSTONES_MAX * len(self)):
            self._rebuild_graph()
        return removed

    def _is_graph(self) -> bool:
        return bool(_GRAPH.fullmatch(self.factory.removesuffix(REFINE)))

    def _tombstones(self) -> np.ndarray:
        """Ids still in the graph whose poster was removed (only graphs keep any)."""
        if not self._is_graph():
            return np.zeros(0, np.int64)
        in_graph = faiss.vector_to_array(self.index.id_map).astype(np.int64)
        return np.setdiff1d(in_graph, self.ids())

    def _rebuild_graph(self, chunk: int = 50_000) -> None:
        """A fresh graph (same trained PCA) over the live float16 copies: drops the tombstones."""
        old = faiss.downcast_index(self.index.index)
        pca = _copy_transform(old.chain.at(0))
        fresh = faiss.IndexIDMap2(faiss.IndexPreTransform(
            pca, faiss.IndexHNSWFlat(old.index.d, HNSW_M, faiss.METRIC_L2)))
        graph = _graph(fresh).hnsw
        graph.efConstruction, graph.efSearch = EF_CONSTRUCTION, _graph(self.index).hnsw.efSearch
        live = self.ids()
        for start in range(0, len(live), chunk):
            part = live[start:start + chunk]
            fresh.add_with_ids(self.refine.reconstruct_batch(part), part)
        self.index, self._dead = fresh, np.zeros(0, np.int64)

    # -- search -------------------------------------------------------------------------------

    def search(self, queries: np.ndarray, k: int,
               allowed: np.ndarray | None = None) -> SearchResult:
        """k nearest by cosine; `allowed` restricts the result to those ids."""
        q = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        k = max(1, int(k))
        if allowed is not None:
            allowed = np.ascontiguousarray(allowed, dtype=np.int64)
        params, keep = self._params(allowed)
        with _threads(1 if len(q) == 1 else None):
            if self.refine is None:
                sims, ids = self.index.search(q, k, params=params)
                return SearchResult(ids.astype(np.int64), sims.astype(np.float32))
            _, cand = self.index.search(q, max(50, k * self.rerank), params=params)
            del keep
            return self._rescore(q, cand, k)

    def _params(self, allowed: np.ndarray | None):
        """Per-call search parameters (filter, breadth); plus the objects they point to, which
        must outlive the call."""
        sel, bits = (None, None) if allowed is None else _selector(allowed)
        if self.factory == "Flat":
            return (None if sel is None else faiss.SearchParameters(sel=sel)), [sel, bits]
        if self._is_graph():
            ef = int(_graph(self.index).hnsw.efSearch)
            keep = [sel, bits]
            if allowed is not None:   # a filter passes fewer nodes: search wider
                share = len(allowed) / max(1, len(self))
                ef = min(EF_FILTERED_MAX, max(ef, int(ef / max(share, 1e-3))))
            elif len(self._dead):
                keep.append(faiss.IDSelectorBatch(self._dead))
                sel = faiss.IDSelectorNot(keep[-1])
            params = faiss.SearchParametersHNSW(efSearch=ef)
            if sel is not None:
                params.sel = sel
            return params, keep + [sel]
        ivf = faiss.extract_index_ivf(self.index)
        params = faiss.SearchParametersIVF(nprobe=ivf.nprobe)
        if sel is not None:
            params.sel = sel
        outer = params
        if isinstance(self.index, faiss.IndexPreTransform):
            outer = faiss.SearchParametersPreTransform(index_params=params)
        return outer, [sel, bits, params]

    def _rescore(self, q: np.ndarray, cand: np.ndarray, k: int) -> SearchResult:
        """Exact top-k of each query among its candidates, scored on the float16 copies."""
        out_ids = np.full((len(q), k), -1, np.int64)
        out_sims = np.full((len(q), k), -np.finfo(np.float32).max, np.float32)  # as faiss pads
        for row, (query, ids) in enumerate(zip(q, cand)):
            ids = np.unique(ids[ids >= 0])
            if len(self._dead):
                ids = ids[np.isin(ids, self._dead, invert=True)]
            if not len(ids):
                continue
            # einsum, not @: BLAS would wake its own threads for 500+ rows (see _threads)
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
        with replacing(path, fsync=False) as f:  # a cache: DuckDB rebuilds it if it is lost
            writer = faiss.PyCallbackIOWriter(f.write)
            faiss.write_index(self.index, writer)
            if self.refine is not None:
                faiss.write_index(self.refine, writer)
            del writer
            f.flush()
            crash_point("index_tmp_written")
        crash_point("index_renamed")
        write_atomic(sidecar(path), json.dumps(meta, indent=1).encode())

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
        if refine is not None and refine.d != spec.dim:
            raise ValueError(f"{path}: re-rank copies of dimension {refine.d} != {spec.dim}")
        return cls(index, spec, meta["factory"], refine)


def _selector(ids: np.ndarray) -> tuple[faiss.IDSelector, np.ndarray | None]:
    """An id filter: a bitmap over 0..max id (built in ~1 ms for 100k ids at 1M, where an
    IDSelectorBatch's hash set took most of a filtered search), or a hash set for odd ids."""
    if len(ids) and ids.min() >= 0 and ids.max() < 1 << 32:
        mask = np.zeros(int(ids.max()) + 1, bool)
        mask[ids] = True
        bits = np.packbits(mask, bitorder="little")
        return faiss.IDSelectorBitmap(len(bits), faiss.swig_ptr(bits)), bits
    return faiss.IDSelectorBatch(ids), None


def _copy_transform(vt: faiss.VectorTransform) -> faiss.VectorTransform:
    parts: list[bytes] = []
    writer = faiss.PyCallbackIOWriter(lambda b: parts.append(bytes(b)) or len(b))
    faiss.write_VectorTransform(vt, writer)
    del writer
    data = b"".join(parts)
    pos = 0

    def read(n: int) -> bytes:
        nonlocal pos
        pos += n
        return data[pos - n:pos]

    reader = faiss.PyCallbackIOReader(read)
    return faiss.read_VectorTransform(reader)


def _graph(index: faiss.Index) -> faiss.IndexHNSW:
    """The HNSW inside IndexIDMap2(IndexPreTransform(PCA, HNSW))."""
    return faiss.downcast_index(faiss.downcast_index(index.index).index)


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
