"""`db.train()` wall time at 1k, 2k and 5k labelled posters (goal ≤ 60 s at 5k on 2 cores),
plotted to artifacts/train_time.png. Stores are built once and cached under the bench cache."""
from __future__ import annotations

import time

from .common import (
    ARTIFACTS,
    MODELS,
    Figure,
    api_missing,
    ensure_store,
    loadavg,
    standalone,
)

NAME = "train"
GOAL_S = 60.0


def _plot(points: list[tuple[int, float]]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ARTIFACTS.mkdir(exist_ok=True)
    out = ARTIFACTS / "train_time.png"
    fig, ax = plt.subplots(figsize=(6, 4))
    xs, ys = zip(*points)
    ax.plot(xs, ys, "o-", label="db.train() wall time")
    ax.axhline(GOAL_S, color="red", ls="--", lw=1, label=f"goal at 5k: ≤ {GOAL_S:.0f} s")
    for x, y in points:
        ax.annotate(f"{y:.1f} s", (x, y), textcoords="offset points", xytext=(0, 6), ha="center")
    ax.set_xlabel("labelled posters")
    ax.set_ylabel("seconds")
    ax.set_title(f"posterdb train time (mobilenet-v2, 2 cores; load {loadavg()})")
    ax.set_ylim(bottom=0)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return str(out)


def run(quick: bool = False) -> list[Figure]:
    from posterdb.store import PosterDB

    sizes = [1000] if quick else [1000, 2000, 5097]
    why = api_missing(PosterDB, "train")
    if why:
        return [Figure(NAME, f"train time at {n} posters", None, "s", goal="≤ 60 s at 5k",
                       note=f"skipped: {why}") for n in sizes]
    figs, points = [], []
    for n in sizes:
        db = PosterDB.open(ensure_store(n), model_dir=MODELS)
        load = loadavg()
        t0 = time.perf_counter()
        try:
            res = db.train()
        except (ImportError, AttributeError, NotImplementedError) as e:
            figs.append(Figure(NAME, f"train time at {n} posters", None, "s", goal="≤ 60 s at 5k",
                               note=f"skipped: db.train() not usable yet ({type(e).__name__}: {e})"))
            continue
        wall = time.perf_counter() - t0
        points.append((n, wall))
        fit = res.get("seconds") if isinstance(res, dict) else None
        figs.append(Figure(
            NAME, f"train time at {n} posters", wall, "s", None, "", "≤ 60 s at 5k" if n > 4000
            else "", (wall <= GOAL_S) if n > 4000 else None, load=f"{load} → {loadavg()}",
            note=f"fit {fit} s of it; n_train {res.get('n_train') if isinstance(res, dict) else '?'}"))
    if points:
        path = _plot(points)
        for f in figs:
            f.extra["plot"] = path
    return figs


if __name__ == "__main__":
    standalone(run)
