"""Similarity vote: the k nearest labelled posters (cosine, all decades) vote for their genres.

Exact search: inner products of L2-normalised vectors with numpy (the reference set is a few
thousand posters; a brute-force matmul is exact and faster than building an index). Neighbour i
gets weight exp(cos_i / T) (times `same_decade_weight` when it shares the query's known decade);
p(genre) = sum of weights of neighbours carrying the genre / sum of weights.
"""
from __future__ import annotations

from collections.abc import Iterable

import numpy as np

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
    Yn = Y_ref[np.where(valid, idx, 0)].astype(np.float64)  # (n, k, g)
    tot = w.sum(1, keepdims=True)
    P = np.einsum("nk,nkg->ng", w, Yn) / np.maximum(tot, 1e-300)
    prior = Y_ref.mean(0) if len(Y_ref) else np.zeros(Y_ref.shape[1])
    return np.where(tot > 0, P, prior)


class KNNVote:
    """k-NN genre vote over a labelled reference set."""

    def __init__(self, k: int = 20, temperature: float = 0.05, same_decade_weight: float = 1.0,
                 block: int = 1024):
        self.k = k
        self.temperature = temperature
        self.same_decade_weight = same_decade_weight
        self.block = block

    def fit(self, X: np.ndarray, Y: np.ndarray, ids=None, decades=None, normalized: bool = False) -> "KNNVote":
        """normalized=True: X rows are unit-norm float32 already (kept as is, not copied)."""
        self.X_ = np.asarray(X, dtype=np.float32) if normalized else l2n(X)
        self.Y_ = np.asarray(Y).astype(np.uint8)
        n = len(self.X_)
        self.ids_ = np.arange(n, dtype=np.int64) if ids is None else np.asarray(ids, dtype=np.int64)
        if len(self.ids_) != n:
            raise ValueError(f"ids has {len(self.ids_)} entries for {n} posters")
        self.decades_ = as_decades(decades, n)
        self._row_of = {int(v): i for i, v in enumerate(self.ids_)}
        return self

    def neighbours(self, X: np.ndarray, k: int, exclude_ids=None, exclude_rows=None):
        """(rows (n, k) int64, sims (n, k) float32), sorted by similarity desc; rows of excluded
        reference posters never appear; -1 / -inf pad when the reference set is too small.

        exclude_rows: optional list (one per query) of reference row indices to skip (used for
        out-of-fold votes: a poster and its near-duplicates)."""
        Q = l2n(X)
        n, m = len(Q), len(self.X_)
        ex = _exclusions(exclude_ids, n)
        k_eff = min(k, m)
        rows = np.full((n, k), -1, dtype=np.int64)
        sims = np.full((n, k), -np.inf, dtype=np.float32)
        if k_eff == 0 or n == 0:
            return rows, sims
        for s in range(0, n, self.block):
            S = Q[s : s + self.block] @ self.X_.T
            for r in range(len(S)):
                i = s + r
                bad = [self._row_of[e] for e in ex[i] if e in self._row_of]
                if exclude_rows is not None:
                    bad.extend(np.asarray(exclude_rows[i]).tolist())
                if bad:
                    S[r, bad] = -np.inf
            if k_eff < m:
                part = np.argpartition(-S, k_eff - 1, axis=1)[:, :k_eff]
            else:
                part = np.tile(np.arange(m), (len(S), 1))
            ps = np.take_along_axis(S, part, 1)
            order = np.argsort(-ps, axis=1, kind="stable")
            part = np.take_along_axis(part, order, 1)
            ps = np.take_along_axis(ps, order, 1)
            part = np.where(np.isfinite(ps), part, -1)
            rows[s : s + len(S), :k_eff] = part
            sims[s : s + len(S), :k_eff] = ps
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
