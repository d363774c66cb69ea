"""FAISS inner-product indexes over unit-norm vectors, for the vote and near-duplicate search.

Exact `IndexFlatIP` up to `flat_max` rows; above that `IVF(2·sqrt(n)),Flat` probing `nprobe`
lists, so that searching every training poster (out-of-fold votes, near-duplicate groups) costs
about n·(nprobe/nlist)·n instead of n² inner products.
"""
from __future__ import annotations

from contextlib import contextmanager

import numpy as np

FLAT_MAX = 20_000
NPROBE = 24


def build_index(X: np.ndarray, flat_max: int = FLAT_MAX, nprobe: int = NPROBE, seed: int = 0):
    """A FAISS inner-product index over unit-norm float32 rows: exact `IndexFlatIP` up to
    `flat_max` rows, above that `IVF(2·sqrt(n)),Flat` probing `nprobe` lists (k-means on a sample
    of 40 rows per list): the vote needs near neighbours, not every one of them."""
    import faiss

    X = np.ascontiguousarray(X, dtype=np.float32)
    n, d = X.shape
    if n <= flat_max:
        index = faiss.IndexFlatIP(d)
    else:
        nlist = int(2 * np.sqrt(n))
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist, faiss.METRIC_INNER_PRODUCT)
        sample = np.random.default_rng(seed).choice(n, min(n, 40 * nlist), replace=False)
        index.cp.niter = 10
        index.train(X[np.sort(sample)])
        index.nprobe = nprobe
    index.add(X)
    return index


SMALL_BATCH = 16  # at most this many queries: one thread (BLAS and FAISS's OpenMP)
_controller = None


@contextmanager
def single_thread_if_small(n_queries: int):
    """One BLAS / OpenMP thread while answering a few queries: their matrix products are tiny,
    and a second thread only adds hand-offs (on a busy 2-core machine, p50 36 ms -> 5 ms for one
    poster against 5k posters)."""
    global _controller
    if n_queries > SMALL_BATCH:
        yield
        return
    import faiss
    from threadpoolctl import ThreadpoolController

    if _controller is None:
        _controller = ThreadpoolController()  # finds the BLAS libraries once (the slow part)
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        with _controller.limit(limits=1):
            yield
    finally:
        faiss.omp_set_num_threads(before)
