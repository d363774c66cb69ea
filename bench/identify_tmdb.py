"""Identification through a TMDb-shaped catalogue (the local server of tests/tmdb_server.py),
with and without rate limiting: precision, coverage per decade, exact genres, requests/poster.

The server holds the shared films plus every film of the evaluation catalogue
(bench.identify_catalogue: real IMDb titles + synthetic remakes and sequels). Posters are
identified from their cached reads (file names are never seen) with their years known, in a
seeded sample (the server's search is a linear scan in Python: slow at 65k films).
`--rate-limit K`: every K-th poster's searches get 429 until the client gives up, so the poster
is left pending; a second pass must catch up with no poster failing.

    python -m bench.identify_tmdb --cache OCR.jsonl --catalogue CATALOGUE.csv \
        [--probs P.npz] [--sample 300] [--rate-limit 3]
"""
from __future__ import annotations

import argparse
import csv
import json
import random
import sys
import time
from collections import defaultdict
from pathlib import Path

from bench.identify_eval import LABELS, load_truth
from posterdb.reading import cache as read_cache
from posterdb.reading.identify import PENDING, Reading, TMDbCatalogue, identify

ROOT = Path(__file__).resolve().parents[1]


def server_films(catalogue: Path):
    sys.path.insert(0, str(ROOT))
    from tests.tmdb_server import GENRE_ID, Film, shared_films

    films = shared_films()
    with catalogue.open(encoding="utf-8") as f:
        for i, row in enumerate(csv.DictReader(f)):
            if row["kind"] == "shared":
                continue
            films.append(Film(id=20_000_000 + i, title=row["title"], year=int(row["year"]),
                              genre_ids=[GENRE_ID[g] for g in row["genres"].split("|")
                                         if g in GENRE_ID], poster=None,
                              popularity=random.Random(i).random() * 100))
    return films


def source_calibration(rows, seed: int = 0) -> dict:
    """Choose the year-known threshold on half of the posters' TMDb scores, report on the
    other half, swap; and the threshold from all of them (for calibration.json)."""
    import numpy as np

    from posterdb.reading.identify.scoring import choose_threshold

    score = np.array([r[0] for r in rows])
    right = np.array([r[1] for r in rows], bool)
    half = np.random.default_rng(seed).permutation(len(rows)) % 2
    acc = hit = 0
    for k in (0, 1):
        t = choose_threshold(score[half != k], right[half != k], 0.95)
        sel = (half == k) & (score >= t)
        acc += int(sel.sum())
        hit += int((sel & right).sum())
    return {"identified": acc, "right": hit, "precision": round(hit / max(1, acc), 4),
            "coverage": round(acc / len(rows), 4),
            "threshold from all": choose_threshold(score, right, 0.95)}


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--cache", type=Path, required=True)
    ap.add_argument("--catalogue", type=Path, required=True)
    ap.add_argument("--labels", type=Path, default=LABELS)
    ap.add_argument("--probs", type=Path)
    ap.add_argument("--sample", type=int, default=300)
    ap.add_argument("--rate-limit", type=int, default=0)
    ap.add_argument("--json", type=Path)
    a = ap.parse_args(argv)
    from posterdb.tmdb.client import Credentials, TMDbClient
    from tests.tmdb_server import TMDbServer

    truth = load_truth(a.labels)
    reads = read_cache.by_name(a.cache)
    names = sorted(n for n in reads if n in truth)
    names = random.Random(0).sample(names, min(a.sample, len(names)))
    probs = {}
    if a.probs:
        import numpy as np
        z = np.load(a.probs)
        probs = {str(f): p for f, p in zip(z["files"], z["P"])}
    films = server_films(a.catalogue)
    out = {"server films": len(films), "posters": len(names), "rate_limit_every": a.rate_limit}
    with TMDbServer(films) as srv:
        client = TMDbClient(srv.url, Credentials(api_key=srv.api_key), retries=3,
                            max_retry_after=0.01)
        cat = TMDbCatalogue(client)
        results, t0 = {}, time.perf_counter()
        todo = list(names)
        for rnd in (1, 2, 3):
            left = []
            for k, n in enumerate(todo):
                if a.rate_limit and rnd == 1 and k % a.rate_limit == 0:
                    srv.rate_limit("/search/movie", times=client.retries + 1, retry_after=1)
                got = identify(Reading(reads[n], truth[n]["year"], probs.get(n)), cat)
                results[n] = got
                if got.status == PENDING:
                    left.append(n)
            out[f"pass {rnd}: pending after it"] = len(left)
            todo = left
            if not todo:
                break
        out["seconds"] = round(time.perf_counter() - t0, 1)
        out["api requests"] = sum(srv.api_hits.values())
        out["search requests"] = srv.api_hits["/search/movie"]
    ok = [n for n in names if results[n].status == "identified"]
    right = [n for n in ok if f"tt{int(results[n].film.film_id):07d}" == truth[n]["id"]]
    by_dec = defaultdict(lambda: [0, 0, 0])
    for n in names:
        d = truth[n]["year"] // 10 * 10
        by_dec[f"{d}s"][0] += 1
        by_dec[f"{d}s"][1] += n in ok
        by_dec[f"{d}s"][2] += n in right
    out |= {"identified": len(ok), "right": len(right),
            "precision": round(len(right) / max(1, len(ok)), 4),
            "coverage": round(len(ok) / len(names), 4),
            "exact genres among right": sum(tuple(results[n].film.genres) == truth[n]["genres"]
                                            for n in right),
            "failed": sum(results[n].status == PENDING for n in names),
            "requests per poster": round(out["api requests"] / len(names), 2),
            "per decade (posters, identified, right)": dict(sorted(by_dec.items()))}
    # the same posters' best scores, for a threshold calibrated on this source (2-fold)
    rows = [(results[n].score, results[n].film is not None and
             f"tt{int(results[n].film.film_id):07d}" == truth[n]["id"]) for n in names]
    out["tmdb-calibrated threshold (2-fold)"] = source_calibration(rows)
    print(json.dumps(out, indent=1))
    if a.json:
        a.json.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
