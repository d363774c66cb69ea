"""`posterdb info` and `posterdb check`: what the store holds, and whether it agrees with itself."""
from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from posterdb.ui.cli.common import (
    DEFAULT_STORE, JsonOpt, ModelDirOpt, StoreOpt, command, emit, esc, open_store, out, store_path)


@command
def info(store: StoreOpt = DEFAULT_STORE, model_dir: ModelDirOpt = None, as_json: JsonOpt = False):
    """Counts by decade and genre, models and index state (a folder with no store: zeros)."""
    from posterdb.store import PosterDB

    store = store_path(store)
    if not store.is_file() and not PosterDB.exists(store):  # nothing to open: create nothing
        data = PosterDB.absent_info(store)
    else:
        data = open_store(store, model_dir).info()

    def human():
        if not data["exists"]:
            out.print(f"{esc(store)}: no store yet (0 posters); `posterdb ingest DIR --store "
                      f"{esc(store)}` makes one")
            return
        out.print(f"[bold]{esc(data['store'])}[/]: {data['posters']} posters, {data['labelled']} "
                  f"labelled, {data['reviewed']} reviewed, {data['ingest_errors']} ingest errors")
        t = Table(title="by decade")
        t.add_column("decade")
        t.add_column("posters", justify="right")
        for d, n in data["by_decade"].items():
            t.add_row(str(d), str(n))
        g = Table(title="by genre (labels)")
        g.add_column("genre")
        g.add_column("posters", justify="right")
        g.add_column("predicted", justify="right")
        for name, n in data["by_genre"].items():
            g.add_row(name, str(n), str(data["predicted_by_genre"].get(name, 0)))
        out.print(t, g)
        for m in data["models"]:
            ix = m["index"]
            out.print(f"model [bold]{m['name']}[/] {m['version']} dim {m['dim']}: {m['vectors']} "
                      f"vectors; index {ix['factory']} {ix['ntotal']} ({ix['status']}"
                      f"{': ' + ix['reason'] if ix['reason'] else ''})")
        for c in data["classifiers"][-1:]:
            out.print(f"classifier for {c['model']}: {c['n_train']} posters, {c['trained_at']}")
        r = data["reading"]
        if r["read"]:
            out.print(f"read {r['read']} posters; identified {r.get('identified', 0)}, "
                      f"unidentified {r.get('unidentified', 0)}, pending {r.get('pending', 0)}")

    emit(as_json, data, human)


@command
def check(
    deep: Annotated[bool, typer.Option("--deep", help="Also re-hash every stored image.")] = False,
    store: StoreOpt = DEFAULT_STORE, as_json: JsonOpt = False,
):
    """Consistency of DuckDB, FAISS files and image copies; exit 1 when inconsistent."""
    report = open_store(store).check(deep=deep)

    def human():
        status = "[green]clean[/]" if report["ok"] else "[red]INCONSISTENT[/]"
        out.print(f"{report['posters']} posters: {status}")
        for p in report["problems"]:
            out.print(f"[red]problem:[/] {esc(p)}")
        for w in report["warnings"]:
            out.print(f"[yellow]warning:[/] {esc(w)}")

    emit(as_json, report, human)
    raise typer.Exit(0 if report["ok"] else 1)


def register(app: typer.Typer) -> None:
    app.command()(info)
    app.command()(check)
