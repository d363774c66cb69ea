"""`posterdb config show|set|unset`: what a store remembers (its film catalogue, its model dir).

Set once, e.g. `posterdb config set catalogue tmdb`: from then on `ingest`, `watch`, `classify`
and the page read the new posters and identify their films by default. TMDb's credentials are
never saved: they stay in TMDB_API_KEY / TMDB_READ_TOKEN.
"""
from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from posterdb.core.settings import STORE_KEYS
from posterdb.ui.cli.common import (
    DEFAULT_STORE,
    JsonOpt,
    StoreOpt,
    command,
    emit,
    open_store,
    out,
    store_path,
)

app = typer.Typer(no_args_is_help=True, help="What the store remembers: its film catalogue "
                  "(tmdb or a film file) and its model dir.")
KeyArg = Annotated[str, typer.Argument(help="catalogue or model_dir.")]


def describe(s, store) -> dict:
    """The settings in effect, where each comes from, and whether identification is on."""
    values = {"catalogue": s.catalogue, "model_dir": str(s.model_dir) if s.model_dir else None}
    return {"store": str(store),
            "settings": {k: {"value": values[k], "from": s.source_of(k),
                             "saved": s.saved.get(k), "means": STORE_KEYS[k]}
                         for k in STORE_KEYS},
            "identify_by_default": s.catalogue is not None,
            "tmdb_credentials": s.tmdb.has_credentials}


def _human(d: dict) -> None:
    t = Table(title=f"settings of {d['store']}")
    for c in ("setting", "value", "from"):
        t.add_column(c, overflow="fold")
    for k, v in d["settings"].items():
        t.add_row(k, v["value"] or "—", v["from"])
    out.print(t)
    out.print("new posters are read and identified by default" if d["identify_by_default"] else
              "identification is off by default (posterdb config set catalogue tmdb|FILE)")
    if d["settings"]["catalogue"]["value"] == "tmdb" and not d["tmdb_credentials"]:
        out.print("[yellow]warning:[/] the tmdb catalogue needs TMDB_API_KEY or TMDB_READ_TOKEN "
                  "in the environment of every command")


@app.command("show")
@command
def show(store: StoreOpt = DEFAULT_STORE, as_json: JsonOpt = False):
    """The store's settings: value, and whether it comes from the store or a flag/environment."""
    from posterdb.core.settings import Settings
    from posterdb.store import PosterDB

    where = store_path(store)
    if PosterDB.exists(where):
        d = describe(open_store(store).daily.settings(), where)
    else:                      # a reader reports; nothing is created
        d = describe(Settings.from_env(), where) | {"exists": False}
    emit(as_json, d, lambda: _human(d))


@app.command("set")
@command
def set_(key: KeyArg, value: Annotated[str, typer.Argument(
            help="catalogue: tmdb or a film file (IMDb title.basics.tsv[.gz], or a CSV with "
                 "title, year, genres); model_dir: a folder.")],
         store: StoreOpt = DEFAULT_STORE, as_json: JsonOpt = False):
    """Remember a setting in the store (checked first: a film file must exist and look like one)."""
    from posterdb.reading.daily import check_setting

    value = check_setting(key, value)      # before any store is opened or created
    db = open_store(store, create=True)
    d = describe(db.daily.configure(key, value), db.root)
    emit(as_json, d, lambda: (out.print(f"{key} = {value}", highlight=False), _human(d)))


@app.command("unset")
@command
def unset(key: KeyArg, store: StoreOpt = DEFAULT_STORE, as_json: JsonOpt = False):
    """Forget a setting (for the catalogue: identification is off by default again)."""
    from posterdb.reading.daily import check_setting

    if key not in STORE_KEYS:
        check_setting(key, "")
    db = open_store(store)
    d = describe(db.daily.configure(key, None), db.root)
    emit(as_json, d, lambda: _human(d))


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="config")
