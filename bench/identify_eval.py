"""Calibrate identification on half the read posters, report on the other half (and swap).

Inputs: the OCR cache (``posterdb.read_cache``), ../shared/posters/labels.csv (the truth: each
poster's film is its IMDb id; file names are never used as evidence), a catalogue CSV
(``bench.identify_catalogue``) and optionally out-of-fold image genre probabilities
(``--probs`` .npz with ``files`` and ``P``). Each poster is scored twice: with its year known
(as when a dealer's labels carry it) and without. Writes the scorer fitted on all posters to
``--save`` (the calibration shipped in posterdb/identify/calibration.json).

    python -m bench.identify_eval --cache /work/cache/read/ocr.jsonl \
        --catalogue /work/cache/read/catalogue.csv [--probs P.npz] [--save calibration.json]
"""
from __future__ import annotations

import argparse
import csv
import json
import pickle
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from posterdb.core.genres import parse_genres
from posterdb.reading import cache as read_cache
from posterdb.reading.identify.catalogues import LocalCatalogue
from posterdb.reading.identify.scoring import FilmScorer, Reading, features

LABELS = Path(__file__).resolve().parents[1] / ".." / "shared" / "posters" / "labels.csv"


def load_truth(labels: Path) -> dict[str, dict]:
    out = {}
    with labels.open(encoding="utf-8") as f:
        for row in csv.DictReader(f):
            out[Path(row["file"]).name] = {
                "id": row["imdb_id"], "year": int(row["year"]),
                "genres": tuple(parse_genres(row["genres"])[0])}
    return out


def candidates(cache: Path, catalogue: Path, truth: dict, memo: Path | None):
    """file -> (lines, films); memoised on disk (candidate search is the slow part)."""
    if memo and memo.exists():
        with memo.open("rb") as f:
            got = pickle.load(f)
    else:
        got = {}
    reads = read_cache.by_name(cache)
    todo = [n for n in reads if n in truth and n not in got]
    if todo:
        cat = LocalCatalogue.from_file(catalogue)
        t0 = time.perf_counter()
        for n in todo:
            lines = reads[n]
            got[n] = (lines, cat.candidates(Reading(lines).queries()))
        print(f"candidates for {len(todo)} posters in {time.perf_counter() - t0:.1f} s "
              f"({len(cat)} films)", file=sys.stderr)
        if memo:
            with memo.open("wb") as f:
                pickle.dump(got, f)
    return {n: got[n] for n in reads if n in truth and n in got}


def groups_for(names, cands, truth, probs, year_known: bool):
    G, T = [], []
    for n in names:
        lines, films = cands[n]
        t = truth[n]
        p = probs.get(n) if probs else None
        r = Reading(lines, t["year"] if year_known else None, p)
        G.append(features(r, films) if films else np.zeros((0, 15)))
        T.append(next((j for j, f in enumerate(films) if f.film_id == t["id"]), None))
    return G, T


def evaluate(cands, truth, probs, seed=0, precision=0.95):
    names = sorted(cands)
    rng = np.random.default_rng(seed)
    half = rng.permutation(len(names)) % 2
    rows = []
    for h in (0, 1):
        tr = [n for n, k in zip(names, half) if k != h]
        te = [n for n, k in zip(names, half) if k == h]
        G1, T1 = groups_for(tr, cands, truth, probs, True)
        G0, T0 = groups_for(tr, cands, truth, probs, False)
        scorer = FilmScorer(precision=precision).fit(G1 + G0, T1 + T0,
                                                     [True] * len(G1) + [False] * len(G0))
        for known in (True, False):
            G, T = groups_for(te, cands, truth, probs, known)
            for n, X, t in zip(te, G, T):
                films = cands[n][1]
                if not len(X):
                    rows.append((n, known, False, False, False, 0.0))
                    continue
                p = scorer.scores(X)
                j = int(np.argmax(p))
                acc = bool(p[j] >= scorer.threshold(1 if known else None))
                right = t == j
                exact = films[j].genres == truth[n]["genres"]
                rows.append((n, known, acc, right, exact, float(p[j])))
    return rows


def report(rows, truth, cands) -> dict:
    out = {}
    for known in (True, False):
        rs = [r for r in rows if r[1] == known]
        acc = [r for r in rs if r[2]]
        right = [r for r in acc if r[3]]
        by_dec = defaultdict(lambda: [0, 0, 0])
        for r in rs:
            d = truth[r[0]]["year"] // 10 * 10
            by_dec[d][0] += 1
            by_dec[d][1] += r[2]
            by_dec[d][2] += r[2] and r[3]
        reachable = sum(any(f.film_id == truth[r[0]]["id"] for f in cands[r[0]][1]) for r in rs)
        out["year known" if known else "year unknown"] = {
            "posters": len(rs), "right film among candidates": reachable,
            "identified": len(acc), "right": len(right),
            "precision": len(right) / max(1, len(acc)), "coverage": len(acc) / max(1, len(rs)),
            "identified with exactly the film's genres": sum(r[4] for r in acc),
            "per decade (posters, identified, right)": {
                f"{d}s": v for d, v in sorted(by_dec.items())}}
    return out


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--cache", type=Path, required=True)
    ap.add_argument("--catalogue", type=Path, required=True)
    ap.add_argument("--labels", type=Path, default=LABELS)
    ap.add_argument("--probs", type=Path)
    ap.add_argument("--memo", type=Path)
    ap.add_argument("--precision", type=float, default=0.95)
    ap.add_argument("--save", type=Path)
    ap.add_argument("--json", type=Path)
    a = ap.parse_args(argv)
    truth = load_truth(a.labels)
    cands = candidates(a.cache, a.catalogue, truth, a.memo)
    probs = None
    if a.probs:
        z = np.load(a.probs, allow_pickle=False)
        probs = {str(f): p for f, p in zip(z["files"], z["P"])}
    rows = evaluate(cands, truth, probs, precision=a.precision)
    rep = report(rows, truth, cands)
    rep["catalogue films"] = sum(1 for _ in a.catalogue.open()) - 1
    rep["genre probabilities"] = bool(probs)
    print(json.dumps(rep, indent=1))
    if a.json:
        a.json.write_text(json.dumps(rep, indent=1) + "\n")
    if a.save:
        names = sorted(cands)
        G1, T1 = groups_for(names, cands, truth, probs, True)
        G0, T0 = groups_for(names, cands, truth, probs, False)
        s = FilmScorer(precision=a.precision).fit(
            G1 + G0, T1 + T0, [True] * len(G1) + [False] * len(G0)).save(a.save)
        print(f"saved {s}", file=sys.stderr)


if __name__ == "__main__":
    main()
