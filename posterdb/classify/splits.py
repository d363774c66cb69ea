"""Seeded splits by poster that keep identical / near-identical images on the same side.

Near-duplicates are pairs whose (L2-normalised) vectors have cosine >= `threshold`; the groups are
the connected components of that graph, so a chain a~b~c lands together even when cos(a, c) is
below the threshold.
"""
from __future__ import annotations

import numpy as np

from posterdb.core.settings import THRESHOLDS

DEFAULT_DUP_THRESHOLD = THRESHOLDS.same_image
FLAT_MAX = 20_000  # above this many rows, near-duplicates are found with a FAISS IVF range search


def _l2(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def near_duplicate_pairs(X: np.ndarray, threshold: float = DEFAULT_DUP_THRESHOLD,
                         block: int = 2048, flat_max: int = FLAT_MAX) -> np.ndarray:
    """(m, 2) int array of index pairs i < j with cos(X[i], X[j]) >= threshold.
    Exact blocks of inner products up to `flat_max` rows; above, a FAISS IVF range search (near-
    duplicates share a list or a probed neighbour list; the n^2 scan would dominate training)."""
    Xn = _l2(X)
    n = len(Xn)
    out = []
    if n > flat_max:
        from posterdb.classify.ann import build_index

        index = build_index(Xn, flat_max)
        for s in range(0, n, 4 * block):
            lims, _, J = index.range_search(Xn[s : s + 4 * block], threshold)
            i = np.repeat(np.arange(s, s + len(lims) - 1), np.diff(lims).astype(np.int64))
            keep = i < J
            out.append(np.stack([i[keep], J[keep]], axis=1))
        return np.concatenate(out) if out else np.zeros((0, 2), dtype=np.int64)
    for s in range(0, n, block):
        S = Xn[s : s + block] @ Xn.T
        i, j = np.nonzero(S >= threshold)
        i = i + s
        keep = i < j
        out.append(np.stack([i[keep], j[keep]], axis=1))
    return np.concatenate(out) if out else np.zeros((0, 2), dtype=np.int64)


def near_duplicate_groups(X: np.ndarray, threshold: float = DEFAULT_DUP_THRESHOLD,
                          flat_max: int = FLAT_MAX, known: np.ndarray | None = None) -> np.ndarray:
    """Group label per row (0..g-1, in order of first appearance): connected components of the
    cos >= threshold graph. Rows without near-duplicates get a group of their own. `known`: a
    group label per row that the caller knows already (copies of one poster); rows sharing one
    are joined too, since their looks may be further apart than the threshold."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n = len(X)
    pairs = near_duplicate_pairs(X, threshold, flat_max=flat_max)
    if known is not None:
        known = np.asarray(known)
        if len(known) != n:
            raise ValueError(f"groups has {len(known)} labels for {n} posters")
        _, first = np.unique(known, return_inverse=True)
        leader = np.full(first.max() + 1 if n else 0, n, dtype=np.int64)
        np.minimum.at(leader, first, np.arange(n))
        pairs = np.concatenate([pairs.reshape(-1, 2), np.stack([np.arange(n), leader[first]], 1)])
    graph = coo_matrix((np.ones(len(pairs), np.int8), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    _, comp = connected_components(graph, directed=False)
    first = np.full(comp.max() + 1 if n else 0, n, dtype=np.int64)
    np.minimum.at(first, comp, np.arange(n))
    rank = np.empty_like(first)
    rank[np.argsort(first, kind="stable")] = np.arange(len(first))
    return rank[comp].astype(np.int64)


def grouped_train_test_split(X: np.ndarray, test_size: float = 0.25, seed: int = 0,
                             threshold: float = DEFAULT_DUP_THRESHOLD,
                             groups: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Seeded (train_idx, test_idx), both sorted, with every near-duplicate group on one side.

    Groups are shuffled with `seed` and assigned to the test side until it holds
    round(test_size * n) posters (a group that would overshoot by more than it helps goes to train).
    """
    n = len(X)
    if not 0.0 < test_size < 1.0:
        raise ValueError(f"test_size must be in (0, 1), got {test_size}")
    if n < 2:
        raise ValueError("need at least 2 posters to split")
    g = near_duplicate_groups(X, threshold) if groups is None else np.asarray(groups)
    sizes = np.bincount(g)
    order = np.random.default_rng(seed).permutation(len(sizes))
    target = int(round(test_size * n))
    target = min(max(target, 1), n - 1)
    in_test = np.zeros(len(sizes), dtype=bool)
    filled = 0
    for grp in order:
        if filled >= target:
            break
        if filled + sizes[grp] - target > target - filled:  # overshoot worse than stopping here
            continue
        in_test[grp] = True
        filled += sizes[grp]
    test_mask = in_test[g]
    if not test_mask.any() or test_mask.all():  # pathological: one giant group
        raise ValueError("cannot split: near-duplicate groups leave one side empty")
    return np.flatnonzero(~test_mask), np.flatnonzero(test_mask)


def group_kfold(groups: np.ndarray, n_splits: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Seeded K-fold over rows where rows of one group share a fold; folds balanced by size."""
    groups = np.asarray(groups)
    uniq, inv = np.unique(groups, return_inverse=True)
    sizes = np.bincount(inv)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(uniq))
    order = order[np.argsort(-sizes[order], kind="stable")]  # big groups first, random among equals
    fold_of_group = np.empty(len(uniq), dtype=np.int64)
    load = np.zeros(n_splits, dtype=np.int64)
    for grp in order:
        f = int(np.argmin(load))
        fold_of_group[grp] = f
        load[f] += sizes[grp]
    fold = fold_of_group[inv]
    return [(np.flatnonzero(fold != f), np.flatnonzero(fold == f)) for f in range(n_splits)]


def drop_near_duplicates_of(X_ref: np.ndarray, X_query: np.ndarray,
                            threshold: float = DEFAULT_DUP_THRESHOLD, block: int = 2048) -> np.ndarray:
    """Boolean mask over X_query: True where the row has NO near-duplicate in X_ref (keep it)."""
    R, Q = _l2(X_ref), _l2(X_query)
    keep = np.ones(len(Q), dtype=bool)
    if len(R) == 0:
        return keep
    for s in range(0, len(Q), block):
        keep[s : s + block] = (Q[s : s + block] @ R.T).max(axis=1) < threshold
    return keep
