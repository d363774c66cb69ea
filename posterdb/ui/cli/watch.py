"""`posterdb watch INBOX`: the dealer's daily intake (see posterdb.inbox / watch / intake)."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from posterdb.core.errors import UsageError
from posterdb.core.rules import check_output_path
from posterdb.embedders import check_model_name
from posterdb.ui.cli.common import (
    DEFAULT_STORE, JsonOpt, ModelDirOpt, ModelOpt, StoreOpt, command, emit, err, esc, open_store,
    out, store_path)


def _within(path: Path, folder: Path) -> bool:
    return path.resolve().is_relative_to(folder.resolve())


def store_processor(db, root: Path, model: str | None):
    """The store's intake as the watcher's processor. Each outcome also says what the store
    made of the file: `sha256` of the poster committed for it and `created`, every poster the
    batch added under its name (the watcher files a scan away as stored only if its bytes, read
    again without following links, are those, and takes back posters of bytes no plain file
    held)."""
    def process(files):
        with db.catalog.read() as con:
            before = set(db.catalog.sha_to_id(con).values())
        outcomes = db.curation.process(files, model=model, root=root)
        with db.catalog.read() as con:
            new = sorted(set(db.catalog.sha_to_id(con).values()) - before)
        ids = {o.poster_id for o in outcomes if o.stored and o.poster_id is not None}
        posters = {p.id: p for p in db.posters.get(sorted(ids | set(new)))}
        by_name: dict[str, list] = {}
        for i in new:      # posters of this batch, by the file name they were read under
            if i in posters:
                by_name.setdefault(posters[i].path, []).append((i, posters[i].sha256))
        for o in outcomes:
            if o.stored and o.sha256 is None:
                o.sha256 = posters[o.poster_id].sha256 if o.poster_id in posters else ""
            o.created = tuple(by_name.get(str(o.path), ()))
        return outcomes
    return process


def store_watcher(db, box, model: str | None, **options):
    """The watch loop on this store: its intake as the processor (see `store_processor`) and
    its `remove` to take back posters read from bytes no inbox file held."""
    from posterdb.curation.watch import Watcher

    return Watcher(box, store_processor(db, box.root, model), discard=db.remove, **options)


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
    create: Annotated[bool, typer.Option(
        "--create", help="Make the inbox folder if it does not exist (without it, a missing "
                         "inbox is an error: a mistyped path in a cron line must not pass).")] = False,
    model: ModelOpt = None,
    store: StoreOpt = DEFAULT_STORE, model_dir: ModelDirOpt = None, as_json: JsonOpt = False,
):
    """Watch a folder: store new posters with genres, publish the confident ones, file scans away.

    Each scan moves to INBOX/done/ once stored, or to INBOX/failed/ with NAME.error.txt beside it.
    """
    from posterdb.curation.feed import format_of, write_feed
    from posterdb.curation.inbox import Inbox

    check_model_name(model)
    if interval <= 0 or settle < 0:
        raise UsageError("--interval must be > 0 and --settle ≥ 0")
    if batch < 1:
        raise UsageError(f"--batch must be at least 1, not {batch}")
    if inbox.exists() and not inbox.is_dir():
        raise UsageError(f"{inbox}: not a folder")
    if not inbox.exists() and not create:
        raise UsageError(f"{inbox}: no such inbox folder (check the path; --create makes a new one)")
    if feed is not None:
        format_of(feed)
        if not feed.parent.is_dir():
            raise UsageError(f"--feed: folder {feed.parent} does not exist")
    store = store_path(store)
    if feed is not None:
        check_output_path(feed, store, "--feed")
    for inside, outer, what in ((store, inbox, "the store"), (inbox, store, "the inbox"),
                                (feed, inbox, "the --feed file")):
        if inside is not None and _within(inside, outer):
            raise UsageError(f"{what} ({inside}) must not lie inside {outer}")
    if create:
        inbox.mkdir(parents=True, exist_ok=True)
    box = Inbox(inbox, settle=settle)
    box.lock()   # InboxBusy (exit 3) when another watcher has it; Unsafe for a linked lock/done/failed
    try:
        db = open_store(store, model_dir, create=True)
    except BaseException:
        box.close()
        raise
    model = model or db.models.default()
    if db.genres.classifier(model) is None:
        err.print("[yellow]no classifier trained yet: posters are stored without genres "
                  "(run `posterdb train`)[/]")
    reports = []

    def after(rep) -> None:
        reports.append(rep)
        if feed is not None:
            write_feed(db.curation.feed(), feed)
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

    watcher = store_watcher(db, box, model, batch_size=batch, interval=interval,
                            after_batch=after)
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
        box.close()
    failed = sum(r.failed for r in reports) + sum(bool(r.error) for r in reports)
    if once:
        totals = {k: sum(getattr(r, k) for r in reports)
                  for k in ("files", "added", "already", "failed", "retried", "published",
                            "review")}
        totals["errors"] = [r.error for r in reports if r.error]
        emit(as_json, {"inbox": str(box.root), "batches": [r.__dict__ for r in reports],
                       **totals, "feed": str(feed) if feed else None},
             lambda: out.print(f"{totals['files']} file(s): {totals['added']} added, "
                               f"{totals['already']} already stored, {totals['failed']} failed"
                               + (f", {totals['retried']} changed while read (left in the inbox)"
                                  if totals["retried"] else "")
                               if reports else "nothing to do"))
    raise typer.Exit(1 if failed else 0)


def register(app: typer.Typer) -> None:
    app.command()(watch)
