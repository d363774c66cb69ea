"""`posterdb watch INBOX`: the dealer's daily intake (see posterdb.inbox / watch / intake)."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from posterdb.core.errors import UsageError
from posterdb.core.rules import check_model_name, check_output_path
from posterdb.ui.cli.common import (
    DEFAULT_STORE,
    JsonOpt,
    ModelDirOpt,
    ModelOpt,
    StoreOpt,
    command,
    emit,
    err,
    esc,
    open_store,
    out,
)


def _within(path: Path, folder: Path) -> bool:
    return path.resolve().is_relative_to(folder.resolve())


@command
def watch(
    inbox: Annotated[Path, typer.Argument(help="The folder distributors drop scans into.")],
    once: Annotated[bool, typer.Option(
        "--once", help="Process what is there (waiting for files still being written), then "
                       "exit: for cron.")] = False,
    interval: Annotated[float, typer.Option(
        "--interval", help="Seconds between looks when nothing wakes the watcher.")] = 5.0,
    feed: Annotated[Optional[Path], typer.Option(
        "--feed", help="Rewrite this shop feed (.csv or .json) after each batch.")] = None,
    settle: Annotated[float, typer.Option(
        "--settle", help="A file is complete once unchanged for this many seconds.")] = 2.0,
    batch: Annotated[int, typer.Option("--batch", help="Files per batch.")] = 64,
    model: ModelOpt = None,
    store: StoreOpt = DEFAULT_STORE, model_dir: ModelDirOpt = None, as_json: JsonOpt = False,
):
    """Watch a folder: store new posters with genres, publish the confident ones, file scans away.

    Each scan moves to INBOX/done/ once stored, or to INBOX/failed/ with NAME.error.txt beside it.
    """
    from posterdb.curation.feed import format_of, write_feed
    from posterdb.curation.inbox import Inbox
    from posterdb.curation.watch import Watcher

    check_model_name(model)
    if interval <= 0 or settle < 0:
        raise UsageError("--interval must be > 0 and --settle ≥ 0")
    if batch < 1:
        raise UsageError(f"--batch must be at least 1, not {batch}")
    if inbox.exists() and not inbox.is_dir():
        raise UsageError(f"{inbox}: not a folder")
    if feed is not None:
        format_of(feed)
        if not feed.parent.is_dir():
            raise UsageError(f"--feed: folder {feed.parent} does not exist")
        check_output_path(feed, store, "--feed")
    for inside, outer, what in ((store, inbox, "the store"), (inbox, store, "the inbox"),
                                (feed, inbox, "the --feed file")):
        if inside is not None and _within(inside, outer):
            raise UsageError(f"{what} ({inside}) must not lie inside {outer}")
    db = open_store(store, model_dir, create=True)
    model = model or db.default_model()
    if db.classifier(model) is None:
        err.print("[yellow]no classifier trained yet: posters are stored without genres "
                  "(run `posterdb train`)[/]")
    box = Inbox(inbox, settle=settle)
    box.lock()   # InboxBusy (exit 3) when another watcher has it
    reports = []

    def after(rep) -> None:
        reports.append(rep)
        if feed is not None:
            write_feed(db.intake.feed(), feed)
        if as_json and not once:
            sys.stdout.write(json.dumps(rep.__dict__) + "\n")
            sys.stdout.flush()
        elif not as_json:
            out.print(esc(rep.line()), highlight=False, soft_wrap=True)
            for f in rep.failures:
                out.print(f"  [red]failed[/] {esc(f['path'])}: {esc(f['reason'])}",
                          highlight=False)
            for w in rep.warnings:
                out.print(f"  [yellow]warning[/] {esc(w)}", highlight=False)

    watcher = Watcher(box, lambda files: db.intake.process(files, model=model, root=box.root),
                      batch_size=batch, interval=interval, after_batch=after)
    try:
        if once:
            watcher.run_once()
        else:
            watcher.stop_on_signals()
            if not as_json:
                err.print(f"watching {box.root} (every {interval:g} s, or at once on a change; "
                          f"Ctrl-C stops)")
            watcher.run()
    finally:
        box.unlock()
    failed = sum(r.failed for r in reports) + sum(bool(r.error) for r in reports)
    if once:
        totals = {k: sum(getattr(r, k) for r in reports)
                  for k in ("files", "added", "already", "failed", "published", "review")}
        totals["errors"] = [r.error for r in reports if r.error]
        emit(as_json, {"inbox": str(box.root), "batches": [r.__dict__ for r in reports],
                       **totals, "feed": str(feed) if feed else None},
             lambda: out.print(f"{totals['files']} file(s): {totals['added']} added, "
                               f"{totals['already']} already stored, {totals['failed']} failed"
                               if reports else "nothing to do"))
    raise typer.Exit(1 if failed else 0)


def register(app: typer.Typer) -> None:
    app.command()(watch)
