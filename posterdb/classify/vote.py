"""Similarity vote: the k nearest labelled posters (cosine, all decades) vote for their genres.

The labelled posters live in a FAISS inner-product index over their L2-normalised vectors (exact
Flat up to `flat_max`, IVF above: see `build_index`), serialised with the classifier; no numpy
copy of the vectors is kept. Neighbour i
gets weight exp(cos_i / T) (times `same_decade_weight` when it shares the query's known decade);
p(genre) = sum of weights of neighbours carrying the genre / sum of weights.
"""
from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from posterdb.classify.ann import build_index
from posterdb.classify.heads import UNKNOWN, as_decades, l2n


def _exclusions(exclude_ids, n: int) -> list[set]:
    """exclude_ids: None, or one entry per query: None, an id, or an iterable of ids."""
    if exclude_ids is None:
        return [set() for _ in range(n)]
    ex = list(exclude_ids)
    if len(ex) != n:
        raise ValueError(f"exclude_ids has {len(ex)} entries for {n} queries")
    out = []
    for e in ex:
        if e is None:
            out.append(set())
        elif isinstance(e, Iterable) and not isinstance(e, (str, bytes)):
            out.append({int(v) for v in e})
        else:
            out.append({int(e)})
    return out


def vote_from_neighbours(idx: np.ndarray, sims: np.ndarray, Y_ref: np.ndarray, k: int,
                         temperature: float, same_decade_weight: float = 1.0,
                         query_decades: np.ndarray | None = None,
                         ref_decades: np.ndarray | None = None) -> np.ndarray:
    """Genre probabilities from precomputed neighbour lists (sorted by similarity, desc).
    Entries with idx < 0 (fewer neighbours than asked) carry no weight."""
    idx, sims = idx[:, :k], sims[:, :k]
    valid = idx >= 0
    s = np.where(valid, sims, -np.inf)
    top = np.max(np.where(valid, sims, -np.inf), axis=1, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    w = np.where(valid, np.exp((s - top) / temperature), 0.0)
    if same_decade_weight != 1.0 and query_decades is not None and ref_decades is not None:
        same = (ref_decades[np.where(valid, idx, 0)] == query_decades[:, None]) & (query_decades[:, None] != UNKNOWN)
        w = np.where(same & valid, w * same_decade_weight, w)
    safe = np.where(valid, idx, 0)
    P = np.empty((len(idx), Y_ref.shape[1]))
    for r0 in range(0, len(idx), VOTE_BLOCK):  # (block, k, g) at a time: (n, k, g) is GiBs at 100k
        Yn = Y_ref[safe[r0 : r0 + VOTE_BLOCK]].astype(np.float64)
        P[r0 : r0 + VOTE_BLOCK] = np.einsum("nk,nkg->ng", w[r0 : r0 + VOTE_BLOCK], Yn)
    tot = w.sum(1, keepdims=True)
    P /= np.maximum(tot, 1e-300)
    prior = Y_ref.mean(0) if len(Y_ref) else np.zeros(Y_ref.shape[1])
    return np.where(tot > 0, P, prior)


VOTE_BLOCK = 2048  # queries per (block, k, genres) label tensor in vote_from_neighbours
MAX_GROUP_SKIP = 2048  # a bigger near-duplicate group leaves its members fewer than k out-of-fold votes


class KNNVote:
    """k-NN genre vote over a labelled reference set held in a FAISS index (pickles with it)."""

    def __init__(self, k: int = 20, temperature: float = 0.05, same_decade_weight: float = 1.0,
                 block: int = 4096, flat_max: int = 20_000, nprobe: int = 24):
        self.k = k
        self.temperature = temperature
        self.same_decade_weight = same_decade_weight
        self.block = block
        self.flat_max = flat_max
        self.nprobe = nprobe

    def fit(self, X: np.ndarray, Y: np.ndarray, ids=None, decades=None, normalized: bool = False) -> "KNNVote":
        """normalized=True: X rows are unit-norm float32 already (not normalised again)."""
        X = np.asarray(X, dtype=np.float32) if normalized else l2n(X)
        self.Y_ = np.asarray(Y).astype(np.uint8)
        n = len(X)
        self.ids_ = np.arange(n, dtype=np.int64) if ids is None else np.asarray(ids, dtype=np.int64)
        if len(self.ids_) != n:
            raise ValueError(f"ids has {len(self.ids_)} entries for {n} posters")
        self.decades_ = as_decades(decades, n)
        self.index_ = build_index(X, self.flat_max, self.nprobe)
        self.n_ref_ = n
        return self

    @property
    def exact_(self) -> bool:
        return self.n_ref_ <= self.flat_max

    def _row_of(self) -> dict[int, int]:
        row_of = getattr(self, "_row_of_cache", None)
        if row_of is None:
            row_of = self._row_of_cache = {int(v): i for i, v in enumerate(self.ids_)}
        return row_of

    def __getstate__(self):
        import faiss

        state = dict(self.__dict__)
        state.pop("_row_of_cache", None)
        state["index_"] = faiss.serialize_index(self.index_)
        return state

    def __setstate__(self, state):
        import faiss

        self.__dict__.update(state)
        self.index_ = faiss.deserialize_index(state["index_"])

    def neighbours(self, X: np.ndarray, k: int, exclude_ids=None, exclude_groups=None):
        """(rows (n, k) int64, sims (n, k) float32), sorted by similarity desc; rows of excluded
        reference posters never appear; -1 / -inf pad when the reference set is too small.

        exclude_groups: optional (query_groups (n,), ref_groups (n_ref,)): reference rows in the
        query's group are skipped (out-of-fold votes: a poster and its near-duplicates)."""
        Q = l2n(X)
        n, m = len(Q), self.n_ref_
        ex = _exclusions(exclude_ids, n)
        rows = np.full((n, k), -1, dtype=np.int64)
        sims = np.full((n, k), -np.inf, dtype=np.float32)
        if min(k, m) == 0 or n == 0:
            return rows, sims
        extra = max((len(e) for e in ex), default=0)
        if exclude_groups is not None:
            q_groups, r_groups = (np.asarray(g) for g in exclude_groups)
            extra += min(int(np.bincount(r_groups).max()), MAX_GROUP_SKIP)
        kk = min(k + extra, m)
        row_of = self._row_of() if extra else {}
        for s in range(0, n, self.block):
            D, I = self.index_.search(np.ascontiguousarray(Q[s : s + self.block]), kk)
            bad = I < 0
            if exclude_groups is not None:
                bad |= r_groups[np.maximum(I, 0)] == q_groups[s : s + self.block, None]
            for r in range(len(I)):
                drop = [row_of[e] for e in ex[s + r] if e in row_of]
                if drop:
                    bad[r] |= np.isin(I[r], drop)
            order = np.argsort(bad, axis=1, kind="stable")[:, :k]  # kept first, in similarity order
            I = np.take_along_axis(np.where(bad, -1, I), order, 1)
            D = np.take_along_axis(np.where(bad, -np.inf, D), order, 1)
            rows[s : s + len(I), : I.shape[1]] = I
            sims[s : s + len(I), : I.shape[1]] = D
        return rows, sims

    def predict_proba(self, X: np.ndarray, decades=None, exclude_ids=None, k: int | None = None,
                      temperature: float | None = None, same_decade_weight: float | None = None,
                      return_neighbours: bool = False):
        k = self.k if k is None else k
        rows, sims = self.neighbours(X, k, exclude_ids)
        P = vote_from_neighbours(
            rows, sims, self.Y_, k, self.temperature if temperature is None else temperature,
            self.same_decade_weight if same_decade_weight is None else same_decade_weight,
            as_decades(decades, len(rows)), self.decades_)
        return (P, rows, sims) if return_neighbours else P
