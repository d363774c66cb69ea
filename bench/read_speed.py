"""Reading posters (OCR) and identifying them through a TMDb-shaped catalogue.

Figures:
* read posters/s with 2 onnxruntime threads; reference: 1 thread, same posters, same run
  (CPU seconds per poster are printed too: under a shared, loaded machine they are the stable
  number);
* identification requests per poster against the local TMDb-shaped server (tests/tmdb_server.py)
  holding the shared films plus 20,000 distractors (word-salad titles), on the posters just
  read with their years known; reference: the bound `max_queries` (+ the genre list, once).
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from .common import POSTERS, Figure, label_rows, loadavg, standalone

NAME = "read"


def _read(files: list[Path], threads: int):
    from posterdb.reading.ocr import PosterReader

    r = PosterReader(threads=threads, use_gpu=False)
    r.read_path(files[0])                                     # warm
    t0, c0 = time.perf_counter(), time.process_time()
    out = [r.read_path(f) for f in files]
    return out, time.perf_counter() - t0, time.process_time() - c0


def run(quick: bool = False) -> list[Figure]:
    try:
        import rapidocr_onnxruntime  # noqa: F401
    except ImportError:
        return [Figure(NAME, "read posters/s (2 threads)", None, "posters/s",
                       note="skipped: pip install '.[read]'")]
    n = 12 if quick else 60
    rows = label_rows()[::max(1, 5097 // n)][:n]
    files = [POSTERS / r["file"] for r in rows]
    load = loadavg()
    reads1, wall1, cpu1 = _read(files, 1)
    _, wall2, _ = _read(files, 2)
    figs = [Figure(NAME, "read posters/s (2 threads)", n / wall2, "posters/s", n / wall1,
                   "1 thread", load=load,
                   note=f"CPU {cpu1 / n:.2f} s/poster (1 thread); {os.cpu_count()} cores",
                   extra={"posters": n, "cpu_s_per_poster": cpu1 / n})]
    figs.append(_requests(rows, reads1))
    return figs


def _requests(rows, reads) -> Figure:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from posterdb.reading.identify import Reading, TMDbCatalogue, identify
    from posterdb.tmdb.client import Credentials, TMDbClient
    from tests.tmdb_server import TMDbServer, distractor_films, shared_films

    films = shared_films() + distractor_films(20_000)
    with TMDbServer(films) as srv:
        cat = TMDbCatalogue(TMDbClient(srv.url, Credentials(api_key=srv.api_key)))
        got = [identify(Reading(lines, int(r["year"])), cat) for r, lines in zip(rows, reads)]
        hits = sum(srv.api_hits.values())
    ok = [g for g in got if g.status == "identified"]
    right = sum(g.film.film_id == r["imdb_id"].lstrip("t").lstrip("0") or
                f"tt{int(g.film.film_id):07d}" == r["imdb_id"]
                for g, r in zip(got, rows) if g.status == "identified")
    return Figure(NAME, "identification requests per poster (TMDb search)", hits / len(rows),
                  "requests", cat.max_queries + 1, "bound", goal=f"≤ {cat.max_queries + 1}",
                  passed=hits / len(rows) <= cat.max_queries + 1,
                  note=f"{len(ok)}/{len(rows)} identified, {right} the right film",
                  extra={"identified": len(ok), "right": right, "posters": len(rows)})


if __name__ == "__main__":
    standalone(run)
