"""Time from upload to genres + evidence in a real browser (the page's classify view).

    .venv/bin/python bench/page_latency.py [--store /tmp/posterdb-bench-store] [--runs 10]

Builds the store on first use (all of ../shared/posters + a trained classifier; ~1-2 min on
2 cores), starts `streamlit run app.py` on a free local port, and for each run opens a fresh page
in headless Debian Chromium, uploads a re-encoded copy of a real poster (new bytes: a scan the
store has not seen) and waits until the predicted genres and at least 5 evidence images are
loaded. The first run includes loading the index and classifier; the figure that matters is the
median of the later ones. Standalone: not part of the tests nor of `python -m bench`.
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("POSTERDB_SHARED", ROOT.parent / "shared"))
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]


def ensure_store(store: Path, model_dir: Path) -> None:
    """Ingest all of ../shared/posters (when the store is new) and train (when untrained)."""
    sys.path.insert(0, str(ROOT))
    from posterdb.store import PosterDB

    fresh = not (store / "catalog.duckdb").exists()
    db = PosterDB.open(store, model_dir=model_dir)
    if fresh:
        posters = SHARED / "posters"
        t0 = time.perf_counter()
        r = db.ingest(posters, posters / "labels.csv")
        print(f"ingested {r.added} posters in {time.perf_counter() - t0:.0f} s", flush=True)
    if db.genres.classifier() is None:
        t0 = time.perf_counter()
        db.train()
        print(f"trained in {time.perf_counter() - t0:.0f} s", flush=True)
    print(f"store {store}: {db.posters.count()} posters", flush=True)


def reencoded(files: list[Path], out: Path) -> list[Path]:
    from PIL import Image

    out.mkdir(parents=True, exist_ok=True)
    made = []
    for i, f in enumerate(files):
        im = Image.open(f).convert("RGB")
        dst = out / f"scan-{i:02d}.jpg"
        im.save(dst, quality=88)
        made.append(dst)
    return made


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--store", type=Path, default=Path("/tmp/posterdb-bench-store"))
    ap.add_argument("--model-dir", type=Path, default=SHARED / "models")
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--json", action="store_true", help="print one JSON line")
    args = ap.parse_args()
    if not Path(CHROMIUM).exists():
        print(f"{CHROMIUM} missing (apt-get install chromium)", file=sys.stderr)
        return 2
    ensure_store(args.store, args.model_dir)

    with open(SHARED / "posters" / "labels.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    step = max(1, len(rows) // args.runs)
    picks = [SHARED / "posters" / rows[i]["file"] for i in range(7, len(rows), step)]
    tmp = Path(tempfile.mkdtemp(prefix="page-latency-"))
    uploads = reencoded(picks[:args.runs], tmp)

    port = free_port()
    log = open(tmp / "server.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.port", str(port),
         "--server.address", "127.0.0.1", "--server.headless", "true", "--",
         "--store", str(args.store), "--model-dir", str(args.model_dir)],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    times: list[float] = []
    try:
        for _ in range(240):
            try:
                urllib.request.urlopen(url + "/_stcore/health", timeout=2)
                break
            except OSError:
                time.sleep(0.25)
        from playwright.sync_api import sync_playwright

        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            for up in uploads:
                key = hashlib.sha256(up.read_bytes()).hexdigest()[:16]
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                page.set_default_timeout(120_000)
                page.goto(url)
                page.get_by_role("heading", name="Classify a poster").wait_for()
                t0 = time.perf_counter()
                page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(str(up))
                page.locator(f".st-key-genres-{key}").wait_for()
                page.wait_for_function(
                    """(sel) => [...document.querySelectorAll(sel)]
                         .filter(i => i.complete && i.naturalWidth > 0).length >= 5""",
                    arg=f".st-key-evidence-{key} img", timeout=120_000)
                times.append(time.perf_counter() - t0)
                page.close()
            browser.close()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(15)
    warm = times[1:] or times
    result = {"store": str(args.store), "runs": len(times), "first_s": round(times[0], 3),
              "median_s": round(statistics.median(warm), 3),
              "p90_s": round(sorted(warm)[max(0, int(0.9 * len(warm)) - 1)], 3),
              "min_s": round(min(warm), 3), "max_s": round(max(warm), 3)}
    if args.json:
        print(json.dumps(result))
    else:
        print(f"upload → genres + ≥5 evidence images, {result['runs']} runs on {args.store}: "
              f"first {result['first_s']:.2f} s; after that median {result['median_s']:.2f} s "
              f"(min {result['min_s']:.2f}, max {result['max_s']:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
