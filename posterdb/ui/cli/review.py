"""`posterdb review`: work through what the classifier is unsure of (list / accept / set / apply)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from posterdb.core.errors import UsageError
from posterdb.core.rules import check_poster_id, check_poster_ids
from posterdb.embedders import check_model_name
from posterdb.ui.cli.common import (
    DEFAULT_STORE, JsonOpt, ModelOpt, StoreOpt, command, emit, esc, open_store, out)

review_app = typer.Typer(no_args_is_help=True, add_completion=False, rich_markup_mode=None,
                         help="Review queue: new posters by uncertainty, labelled ones by "
                              "mistakenness; accept, set genres, or apply an edited list.")


def _decisions_table(done: list[dict]) -> None:
    for d in done:
        out.print(f"poster {d['id']}: {', '.join(d['genres'])}", highlight=False)
    out.print(f"{len(done)} poster(s) reviewed")


@review_app.command("list")
@command
def list_(
    kind: Annotated[str, typer.Option("--kind", help="new, labelled or all.")] = "all",
    limit: Annotated[int, typer.Option("--limit", "-n")] = 20,
    offset: Annotated[int, typer.Option("--offset")] = 0,
    duplicates: Annotated[bool, typer.Option(
        "--duplicates", help="Also list each poster's exact copies, rescans and look-alikes.")] = False,
    model: ModelOpt = None, store: StoreOpt = DEFAULT_STORE, as_json: JsonOpt = False,
):
    """The queue, most useful first. `--json` output can be edited and fed to `review apply`."""
    check_model_name(model)
    if limit < 1 or offset < 0:
        raise UsageError("--limit must be ≥ 1 and --offset ≥ 0")
    items = open_store(store).curation.queue(kind, limit=limit, offset=offset, model=model,
                                           duplicates=duplicates)

    def human():
        t = Table(title=f"review queue ({kind})", show_lines=True)
        t.add_column("id", justify="right", no_wrap=True)
        t.add_column("score", no_wrap=True)
        t.add_column("poster", overflow="fold", ratio=1)
        t.add_column("genres · why", overflow="fold", ratio=2)
        for it in items:
            year = f" ({it['year']})" if it["year"] else ""
            if it["labels"]:
                genres = "labels: " + ", ".join(it["labels"])
            else:
                genres = ", ".join(f"✓ {g}" for g in it["published"])
                genres += (" · " if genres else "") + ", ".join(f"? {g}" for g in it["suggested"])
            t.add_row(str(it["id"]), f"{it['score']:.3f}",
                      f"{esc(it['title'] or '')}{year}\n[dim]{it['kind']}[/]",
                      f"{esc(genres or 'no genres')}\n[dim]{esc(it['reason'])}[/]")
        out.print(t)
        for it in items:
            for d in it.get("duplicates", []):
                out.print(f"  {it['id']}: {d['tier']} — " + (esc(d.get("path")) or
                          f"poster {d['id']} {esc(d.get('title'))} (cos {d['similarity']})"),
                          highlight=False)

    emit(as_json, items, human)


@review_app.command()
@command
def accept(
    ids: Annotated[Optional[list[int]], typer.Argument(help="Poster ids.")] = None,
    top: Annotated[int, typer.Option(
        "--top", help="Accept the first N new posters of the queue (a page of suggestions).")] = 0,
    model: ModelOpt = None, store: StoreOpt = DEFAULT_STORE, as_json: JsonOpt = False,
):
    """Accept posters' genres as shown (a new poster's predictions, a labelled one's labels)."""
    check_model_name(model)
    if not ids and top < 1:
        raise UsageError("give poster ids, or --top N")
    check_poster_ids(ids or [])
    db = open_store(store)
    ids = list(ids or [])
    if top:
        ids += [it["id"] for it in db.curation.queue("new", limit=top, model=model)]
    done = db.curation.accept(ids)
    emit(as_json, done, lambda: _decisions_table(done))


@review_app.command("set")
@command
def set_(
    poster_id: Annotated[int, typer.Argument(help="Poster id.")],
    genres: Annotated[list[str], typer.Argument(help="TMDb genres (any case, aliases ok).")],
    store: StoreOpt = DEFAULT_STORE, as_json: JsonOpt = False,
):
    """Set a poster's genres (a person's review: they win over file labels in training)."""
    check_poster_id(poster_id)
    done = open_store(store).curation.set_genres(poster_id, genres)
    emit(as_json, done, lambda: _decisions_table(done))


@review_app.command()
@command
def apply(
    decisions: Annotated[Path, typer.Argument(
        help="JSON list as `review list --json` prints it, edited: \"accept\": true, or new "
             "\"genres\"; unchanged entries are skipped. '-' reads stdin.")],
    store: StoreOpt = DEFAULT_STORE, as_json: JsonOpt = False,
):
    """Apply review decisions from a JSON file."""
    import sys

    try:
        text = sys.stdin.read() if str(decisions) == "-" else decisions.read_text(encoding="utf-8")
        data = json.loads(text)
    except FileNotFoundError:
        raise UsageError(f"{decisions}: no such file") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UsageError(f"{decisions}: not JSON ({e})") from None
    done = open_store(store).curation.apply(data)
    emit(as_json, done, lambda: _decisions_table(done))


def register(app: typer.Typer) -> None:
    app.add_typer(review_app, name="review")
