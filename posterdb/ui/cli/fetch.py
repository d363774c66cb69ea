"""`posterdb fetch tmdb OUT_DIR`: build a labelled training set from The Movie Database.

A thin layer over :func:`posterdb.fetch_tmdb.fetch_tmdb`: options, rich progress per decade,
the summary (or ``--json``) and the exit code (0 ok · 1 some posters failed · 2 bad usage ·
3 refused: 401, TMDb unreachable, folder locked).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape
from rich.table import Table

from posterdb.core.errors import UsageError
from posterdb.core.rules import check_decades
from posterdb.ui.cli.common import JsonOpt, command, emit, err, esc, out

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                  help="Build a labelled training set from an online catalogue.")


@app.callback()
def fetch() -> None:
    """Build a labelled training set from an online catalogue (TMDb)."""


def _decades(text: str) -> tuple[int, ...]:
    """'1970,2010' (or '1970s', or a year of the decade) → (1970, 2010); UsageError otherwise."""
    try:
        years = [int(p.strip().removesuffix("s")) for p in text.split(",") if p.strip()]
    except ValueError:
        raise UsageError(f"--decades {text!r}: give decades as first years, e.g. 1970,2010") \
            from None
    if not years:
        raise UsageError("--decades is empty: give e.g. 1970,2010")
    return tuple(dict.fromkeys(check_decades(years)))


class _Progress:
    """One bar per decade: posters held / wanted, and this run's download rate."""

    def __init__(self, decades: tuple[int, ...], disable: bool):
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self.bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                            MofNCompleteColumn(), TextColumn("{task.fields[rate]} posters/s"),
                            TextColumn("{task.fields[failed]}"), TimeElapsedColumn(),
                            console=err, transient=False, disable=disable)
        self.tasks = {d: self.bar.add_task(f"{d}s", total=None, rate="-", failed="", start=False)
                      for d in decades}
        self.started: dict[int, tuple[float, int]] = {}

    def __call__(self, d) -> None:
        task = self.tasks[d.decade]
        if d.decade not in self.started:
            self.started[d.decade] = (time.perf_counter(), d.downloaded)
            self.bar.start_task(task)
        t0, n0 = self.started[d.decade]
        rate = (d.downloaded - n0) / max(time.perf_counter() - t0, 1e-6)
        self.bar.update(task, completed=min(d.have, d.wanted), total=d.wanted,
                        rate=f"{rate:.1f}", failed=f"[red]{d.failed} failed[/]" if d.failed else "")


def _human(report) -> None:
    t = Table(title=f"TMDb posters in {report.out_dir}")
    for c in ("decade", "wanted", "had", "downloaded", "adopted", "failed", "pages", "have"):
        t.add_column(c, justify="right")
    for d in report.decades:
        t.add_row(f"{d.decade}s", str(d.wanted), str(d.had), str(d.downloaded), str(d.adopted),
                  str(d.failed), str(d.pages), str(d.have))
    out.print(t)
    out.print(f"[bold]{report.downloaded}[/] downloaded in {report.seconds:.1f} s "
              f"({report.posters_per_s:.1f} posters/s), {report.adopted} kept from an "
              f"interrupted run, [red]{len(report.failed)} failed[/]; labels: {report.labels}",
              soft_wrap=True)
    for f in report.failed[:20]:
        out.print(f"[red]failed[/] tmdb {f['tmdb_id']} {escape(repr(f['title']))}: "
                  f"{escape(f['reason'])}", soft_wrap=True)
    if len(report.failed) > 20:
        out.print(f"... and {len(report.failed) - 20} more (--json lists them all)")
    for decade, missing in report.short.items():
        out.print(f"[yellow]{decade}s: TMDb has no more films for this query; "
                  f"{missing} short[/]")
    out.print(f"next: posterdb ingest {esc(report.out_dir)} --labels {esc(report.labels)}",
              soft_wrap=True)


@app.command("tmdb")
@command
def tmdb(
    out_dir: Annotated[Path, typer.Argument(help="Folder to fill: images/ and labels.csv.")],
    per_decade: Annotated[int, typer.Option("--per-decade", help="Posters wanted per decade.")],
    decades: Annotated[str, typer.Option("--decades", help="First years, comma-separated.")]
    = "1970,2010",
    max_genres: Annotated[int, typer.Option(
        "--max-genres", help="Keep TMDb's first N genres of each film.")] = 5,
    size: Annotated[str, typer.Option("--size", help="Poster size from TMDb's configuration.")]
    = "w342",
    min_votes: Annotated[Optional[int], typer.Option(
        "--min-votes", help="Only films with at least this many votes.")] = None,
    language: Annotated[Optional[str], typer.Option(
        "--language", help="TMDb language for titles and posters, e.g. fr-FR.")] = None,
    sort: Annotated[str, typer.Option("--sort", help="TMDb sort_by (a stable order).")]
    = "vote_count.desc",
    concurrency: Annotated[int, typer.Option(
        "--concurrency", help="Downloads at once.")] = 8,
    api_key: Annotated[Optional[str], typer.Option(
        "--api-key", show_default=False,
        help="TMDb v3 API key (better: the environment variable).")] = None,
    read_token: Annotated[Optional[str], typer.Option(
        "--read-token", show_default=False,
        help="TMDb v4 read access token (better: the environment variable).")] = None,
    as_json: JsonOpt = False,
):
    """Posters per decade from TMDb's /discover/movie, with their genres in TMDb's order.

    Re-running resumes: nothing already in OUT_DIR is downloaded again.
    The API root is POSTERDB_TMDB_URL (default https://api.themoviedb.org/3).
    """
    from posterdb.tmdb.client import Credentials, TMDbClient
    from posterdb.tmdb.fetch import FetchOptions, fetch_tmdb

    decade_list = _decades(decades)
    options = FetchOptions(decade_list, per_decade, max_genres=max_genres, size=size,
                           min_votes=min_votes, language=language, sort_by=sort,
                           concurrency=concurrency).check()
    credentials = Credentials.from_env(api_key=api_key, read_token=read_token)
    progress = _Progress(decade_list, disable=as_json or not err.is_terminal)
    try:
        with TMDbClient(credentials=credentials, max_connections=concurrency) as client, \
                progress.bar:
            report = fetch_tmdb(out_dir, options, client, progress)
    except KeyboardInterrupt:
        err.print("interrupted: what was fetched is kept; run the same command to resume")
        raise typer.Exit(130) from None
    emit(as_json, report.to_dict(), lambda: _human(report))
    raise typer.Exit(report.exit_code)


def register(main_app: typer.Typer) -> None:
    main_app.add_typer(app, name="fetch")
