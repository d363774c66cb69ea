"""Start-up cost of a command: `posterdb --help` and `posterdb info` on the real 5k store (with
a trained classifier), against `python -c pass` measured in the same run (issue 18: a command
imports only what it uses). Median of N runs each, interleaved so load drifts hit all three."""
from __future__ import annotations

import statistics
import subprocess
import sys
import time

from .common import Figure, ensure_store, loadavg

NAME = "startup"
GOAL_INFO_S, GOAL_HELP_S = 1.0, 0.3


def _wall(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)
    return time.perf_counter() - t0


def run(quick: bool = False) -> list[Figure]:
    store = ensure_store(5097)
    trained = (store / "classifiers").is_dir() and any((store / "classifiers").iterdir())
    if not trained:
        from posterdb.store import PosterDB

        PosterDB.open(store).train()
    py = sys.executable
    cmds = {"pass": [py, "-c", "pass"],
            "help": [py, "-m", "posterdb.ui.cli.main", "--help"],
            "info": [py, "-m", "posterdb.ui.cli.main", "info", "--store", str(store), "--json"]}
    for c in cmds.values():   # warm the page cache
        _wall(c)
    n = 5 if quick else 15
    times: dict[str, list[float]] = {k: [] for k in cmds}
    load = loadavg()
    for _ in range(n):
        for k, c in cmds.items():
            times[k].append(_wall(c))
    med = {k: statistics.median(v) for k, v in times.items()}
    note = f"median of {n}; `python -c pass` {med['pass'] * 1000:.0f} ms"
    return [
        Figure(NAME, "`posterdb --help` wall", med["help"], "s", med["pass"], "python -c pass",
               f"≤ {GOAL_HELP_S} s", med["help"] <= GOAL_HELP_S, note=note, load=load),
        Figure(NAME, "`posterdb info` wall (5,097 posters, trained)", med["info"], "s",
               med["pass"], "python -c pass", f"≤ {GOAL_INFO_S} s", med["info"] <= GOAL_INFO_S,
               note=note, load=load),
    ]
