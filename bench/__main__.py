"""`make bench` = `.venv/bin/python -m bench [--quick] [--only NAME ...]`.

Runs the benchmarks, prints one table (figure, value, reference measured in the same run, ratio,
goal, pass/fail, load average while measured) and the machine, and writes artifacts/bench.json.
Built stores and vectors are cached under $POSTERDB_BENCH_CACHE (default /tmp/posterdb-bench).
"""
from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
import traceback

from .common import ARTIFACTS, CACHE, Figure, loadavg, machine

BENCHES = {
    "ingest": "ingest_speed",
    "search": "search_latency",
    "classify": "classify_latency",
    "train": "train_time",
    "fetch": "fetch_speed",
    "gpu": "gpu",
    "finetune": "finetune_cpu",  # fine-tune epoch + re-embed speed on the CPU (issue 13)
    "read": "read_speed",        # OCR + identification requests (the `read` extra)
    "crash": "crash_resume",     # not a performance figure: only with --only crash
    "publish": "publish_policy",     # published-genre precision (issue 11): --only publish
    "watch-crash": "watch_crash",    # kill -9 of `posterdb watch` (issue 11): --only watch-crash
    "watch-speed": "watch_speed",    # watch posters/s, read + identify on vs off (issue 21)
    "ray": "ray_ingest",             # local vs Ray engine posters/s (issue 12): --only ray
    "memory": "memory_bound",        # peak RSS of 32 huge 6300² scans (issue 19): --only memory
    "index": "index_scale",          # 1M realistic vectors, ~40 min (issue 12): --only index
    "train-scale": "train_scale",    # fit at 5k..100k posters (issue 9): --only train-scale, ~1 h
    "startup": "startup",            # --help and info wall vs `python -c pass` (issue 18)
}
DEFAULT = ("startup", "ingest", "search", "classify", "train", "gpu", "fetch", "read")


def _fmt(x, unit: str = "") -> str:
    if x is None:
        return "—"
    if isinstance(x, bool):
        return str(x)
    if abs(x) >= 100:
        s = f"{x:,.0f}"
    elif abs(x) >= 10:
        s = f"{x:.1f}"
    elif abs(x) >= 1:
        s = f"{x:.2f}"
    else:
        s = f"{x:.3f}"
    return f"{s} {unit}".rstrip()


def _crash_figures(quick: bool) -> list[Figure]:
    from . import crash_resume

    t0 = time.perf_counter()
    res = crash_resume.run(8 if quick else 30, seed=11, verbose=True)
    s = crash_resume.summary(res)
    return [Figure("crash", f"crash/resume trials ({s['kills_landed']} kills landed)",
                   s["failures"], "failures", s["trials"], "trials", "0 failures",
                   s["failures"] == 0, note=json.dumps(s["per_point"]),
                   extra=s | {"wall_s": round(time.perf_counter() - t0, 1)})]


def table(figs: list[Figure], mach: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"posterdb bench — {mach['cores']} cores, {mach['cpu']}, "
                    f"{mach['ram_gib']} GiB RAM; faiss {mach['faiss']}", show_lines=False)
    for c in ("figure", "value", "reference (same run)", "ratio", "goal", "pass", "load avg"):
        t.add_column(c, overflow="fold")
    for f in figs:
        ref = f"{_fmt(f.reference, f.unit)} {f.ref_label}".strip() if f.reference is not None \
            else (f.ref_label or "—")
        status = {True: "[green]pass[/]", False: "[red]FAIL[/]", None: "—"}[f.passed]
        if f.value is None:
            status = "[yellow]skipped[/]"
        name = f.name + (f"\n[dim]{f.note}[/]" if f.note else "")
        t.add_row(name, _fmt(f.value, f.unit), ref,
                  f"{f.ratio:.2f}×" if f.ratio is not None else "—", f.goal or "—", status,
                  f.load or "—")
    Console(width=200).print(t)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller sizes (< 2 min once cached)")
    ap.add_argument("--only", action="append", choices=sorted(BENCHES),
                    help="run only this benchmark (repeatable)")
    a = ap.parse_args(argv)
    names = a.only or list(DEFAULT)
    mach = machine()
    print(f"machine: {mach['cores']} cores, {mach['cpu']}, {mach['ram_gib']} GiB RAM, "
          f"load average {mach['load_at_start']}; cache {CACHE}", flush=True)
    figs: list[Figure] = []
    t00 = time.perf_counter()
    for name in names:
        t0 = time.perf_counter()
        print(f"[{name}] running{' (quick)' if a.quick else ''} ...", flush=True)
        try:
            if name == "crash":
                got = _crash_figures(a.quick)
            else:
                got = importlib.import_module(f"bench.{BENCHES[name]}").run(quick=a.quick)
        except Exception as e:  # noqa: BLE001 - one broken bench must not hide the others
            traceback.print_exc()
            got = [Figure(name, f"{name} benchmark", None, "", passed=False,
                          note=f"error: {type(e).__name__}: {e}")]
        for f in got:
            f.extra.setdefault("bench_wall_s", round(time.perf_counter() - t0, 1))
        figs += got
        print(f"[{name}] done in {time.perf_counter() - t0:.0f} s", flush=True)
    mach["load_at_end"] = loadavg()
    table(figs, mach)
    ARTIFACTS.mkdir(exist_ok=True)
    out = ARTIFACTS / "bench.json"
    out.write_text(json.dumps({"machine": mach, "quick": a.quick, "only": a.only,
                               "wall_s": round(time.perf_counter() - t00, 1),
                               "figures": [f.to_dict() for f in figs]}, indent=1, default=str))
    print(f"wrote {out}")
    return 0 if all(f.passed is not False for f in figs) else 1


if __name__ == "__main__":
    sys.exit(main())
