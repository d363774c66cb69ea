"""`posterdb read`, `posterdb identify`, `posterdb search-text`: the text on posters and the film.

Both stages are resumable: `read` reads the stored posters with no reading yet, `identify` the
read posters not identified yet or left pending (catalogue down / rate-limited).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from posterdb.core.errors import RefusedError, UsageError
from posterdb.core.rules import check_poster_ids
from posterdb.ui.cli.common import (
    DEFAULT_STORE, JsonOpt, ModelDirOpt, StoreOpt, command, emit, err, esc, open_store, out,
    settings)

IdsArg = Annotated[Optional[list[int]], typer.Argument(help="Poster ids (default: with --all).")]
AllOpt = Annotated[bool, typer.Option("--all", help="Every stored poster still to do.")]
CatalogueOpt = Annotated[Optional[str], typer.Option(
    "--catalogue", help="tmdb (TMDB_API_KEY / TMDB_READ_TOKEN, POSTERDB_TMDB_URL) or a film "
    "file: IMDb title.basics.tsv[.gz] or a CSV with title, year, genres.")]


def _ids(ids: list[int] | None, every: bool) -> list[int] | None:
    if ids and every:
        raise UsageError("give poster ids or --all, not both")
    if not ids and not every:
        raise UsageError("give poster ids, or --all for every poster still to do")
    if ids and min(ids) < 1:
        raise UsageError(f"poster ids are positive, not {min(ids)}")
    check_poster_ids(ids or [])
    return None if every else ids


def catalogue_for(spec: str | None):
    """The catalogue a command names (checked before any store is opened): a file path, or
    tmdb (the default) which needs TMDb credentials."""

    try:
        from posterdb.reading.identify import open_catalogue
    except ImportError as e:
        raise RefusedError(f"identifying films needs the `read` extra: pip install "
                           f"'posterdb[read]' ({e})") from e

    if spec is None or spec.lower() == "tmdb":
        if not settings().tmdb.has_credentials:
            raise UsageError("--catalogue tmdb needs TMDB_API_KEY or TMDB_READ_TOKEN; or give "
                             "--catalogue FILE (IMDb title.basics.tsv or a title,year,genres CSV)")
        return open_catalogue("tmdb")
    if not Path(spec).is_file():
        raise UsageError(f"--catalogue: no such file {spec}")
    return open_catalogue(spec)


def progress_bar(name: str, as_json: bool):
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    bar = Progress(TextColumn(f"[bold]{name}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("{task.fields[rate]}/s"), TimeRemainingColumn(), console=err,
                   transient=True, disable=as_json or not err.is_terminal)
    task = bar.add_task(name, total=None, rate="-")
    t0 = time.perf_counter()

    def update(done: int, total: int) -> None:
        bar.update(task, completed=done, total=total,
                   rate=f"{done / max(time.perf_counter() - t0, 1e-6):.1f}")

    return bar, update


def run_read(db, ids, as_json: bool, threads: int = 1) -> dict:
    bar, update = progress_bar("read", as_json)
    with bar:
        return db.reading.read(ids, threads=threads, progress=update)


def run_identify(db, catalogue, ids, as_json: bool, redo: bool = False) -> dict:
    bar, update = progress_bar("identify", as_json)
    with bar:
        return db.reading.identify(catalogue, ids, redo=redo, progress=update)


def read_line(r: dict) -> str:
    rate = f" ({r['posters_per_s']} posters/s, {r['device']})" if r["posters_per_s"] else ""
    return (f"read [bold]{r['read']}[/] posters, {r['lines']} lines{rate}"
            + (f", [red]{len(r['failed'])} failed[/]" if r["failed"] else "")
            + (f", not stored: {r['not_found']}" if r["not_found"] else ""))


def identify_line(r: dict) -> str:
    left = r["pending"] + r["not_tried"]
    return (f"identified [bold]{r['identified']}[/], unidentified {r['unidentified']}"
            + (f", [yellow]{left} left for a later run[/] ({r['stopped'] or 'catalogue busy'})"
               if left else "") + f" — {r['requests']} catalogue requests ({r['catalogue']})")


@command
def read(ids: IdsArg = None, every: AllOpt = False,
         threads: Annotated[int, typer.Option("--threads", help="OCR threads.")] = 1,
         store: StoreOpt = DEFAULT_STORE, model_dir: ModelDirOpt = None,
         as_json: JsonOpt = False):
    """Read the text printed on stored posters (OCR; resumable: skips posters already read)."""
    wanted = _ids(ids, every)
    if threads < 1:
        raise UsageError(f"--threads must be at least 1, not {threads}")
    db = open_store(store, model_dir, create=True)
    r = run_read(db, wanted, as_json, threads)
    emit(as_json, r, lambda: out.print(read_line(r)))
    raise typer.Exit(1 if r["failed"] or r["not_found"] else 0)


@command
def identify(ids: IdsArg = None, every: AllOpt = False, catalogue: CatalogueOpt = None,
             redo: Annotated[bool, typer.Option("--redo", help="Identify again, even posters "
                                                "already identified or refused.")] = False,
             store: StoreOpt = DEFAULT_STORE, model_dir: ModelDirOpt = None,
             as_json: JsonOpt = False):
    """Identify the film of read posters in a catalogue; identified posters get its genres."""
    wanted = _ids(ids, every)
    cat = catalogue_for(catalogue)
    db = open_store(store, model_dir, create=True)
    r = run_identify(db, cat, wanted, as_json, redo)
    emit(as_json, r, lambda: out.print(identify_line(r)))


@command
def search_text(query: Annotated[str, typer.Argument(help="Words to find in the read text.")],
                limit: Annotated[int, typer.Option("--limit")] = 50,
                store: StoreOpt = DEFAULT_STORE, as_json: JsonOpt = False):
    """Posters whose read text contains QUERY (case and spaces ignored: "garbo", "greta garbo")."""
    if not query.strip():
        raise UsageError("give some text to search for")
    if limit < 1:
        raise UsageError(f"--limit must be at least 1, not {limit}")
    hits = open_store(store).reading.search(query, limit)
    rows = [{"id": h["id"], "title": h["title"], "year": h["year"], "genres": h["genres"],
             "read_text": h["read_text"]} for h in hits]

    def human():
        t = Table(title=esc(f"read text containing {query!r}"))
        for c in ("id", "title", "year", "read text"):
            t.add_column(c, overflow="fold")
        for h in rows:
            t.add_row(str(h["id"]), esc(h["title"]), str(h["year"] or ""),
                      esc(h["read_text"].replace("\n", " · ")[:120]))
        out.print(t)

    emit(as_json, {"query": query, "hits": rows}, human)


def register(app: typer.Typer) -> None:
    app.command()(read)
    app.command()(identify)
    app.command("search-text")(search_text)
