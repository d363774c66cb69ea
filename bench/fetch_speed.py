"""`posterdb fetch tmdb` throughput: posters/s with 8 concurrent downloads vs 1, same run.

TMDb itself cannot be reached here, so the API is the local TMDb-shaped server of the tests
(tests/tmdb_server.py), run in its own process, serving the real shared posters (~18 KB each)
with an added 20 ms latency on every request so that concurrency means what it means against
a remote API. Each fetch runs in its own subprocess into a fresh folder (its RSS peak is its
own); posters/s counts the whole run (configuration, genres, discover pages, downloads,
validation with posterdb's image loader, atomic writes, labels.csv).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys

from .common import CACHE, ROOT, Figure, loadavg, rss_peak_mib, run_worker, standalone

NAME = "fetch"
LATENCY_S = 0.02
DECADES = (1970, 2010)


def _worker(url: str, out: str, concurrency: int, per_decade: int) -> dict:
    from posterdb.tmdb.fetch import FetchOptions, fetch_tmdb

    os.environ["POSTERDB_TMDB_URL"] = url
    shutil.rmtree(out, ignore_errors=True)
    rep = fetch_tmdb(out, FetchOptions(DECADES, per_decade, concurrency=concurrency))
    return {"downloaded": rep.downloaded, "seconds": rep.seconds,
            "posters_per_s": rep.posters_per_s, "failed": len(rep.failed),
            "rss_peak_mib": rss_peak_mib()}


def _server(latency: float) -> tuple[subprocess.Popen, dict[str, str]]:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen([sys.executable, "-m", "tests.tmdb_server", "--films", "shared",
                             "--latency", str(latency)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, text=True)
    url = proc.stdout.readline().strip()
    exports = {}
    while len(exports) < 4:
        k, _, v = proc.stdout.readline().strip().removeprefix("export ").partition("=")
        exports[k] = v
    if not url.startswith("http://127.0.0.1:"):
        proc.kill()
        raise RuntimeError("the local TMDb server did not start")
    return proc, exports


def run(quick: bool = False) -> list[Figure]:
    per_decade = 40 if quick else 100
    proc, env = _server(LATENCY_S)
    os.environ.update({k: v for k, v in env.items() if k != "POSTERDB_TMDB_URL"})
    try:
        res = {}
        load = loadavg()
        for c in (1, 8):
            out = CACHE / f"fetch-c{c}"
            res[c] = run_worker("fetch_speed", [env["POSTERDB_TMDB_URL"], str(out), str(c),
                                                str(per_decade)])
            if res[c]["downloaded"] != per_decade * len(DECADES) or res[c]["failed"]:
                raise RuntimeError(f"fetch with concurrency {c}: {res[c]}")
    finally:
        proc.kill()
        proc.wait()
    n = per_decade * len(DECADES)
    note = (f"{n} real posters from a local TMDb-shaped server with {LATENCY_S * 1000:.0f} ms "
            f"latency per request; RSS peak {res[8]['rss_peak_mib']:.0f} MiB (c=8), "
            f"{res[1]['rss_peak_mib']:.0f} MiB (c=1)")
    return [Figure(NAME, f"fetch tmdb, {n} posters, concurrency 8", res[8]["posters_per_s"],
                   "posters/s", res[1]["posters_per_s"], "concurrency 1", load=f"{load} → "
                   f"{loadavg()}", note=note, extra={"runs": res, "latency_s": LATENCY_S})]


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        ap = argparse.ArgumentParser()
        ap.add_argument("--worker", nargs=4)
        url, out, c, n = ap.parse_args().worker
        print(json.dumps(_worker(url, out, int(c), int(n))))
    else:
        standalone(run)
