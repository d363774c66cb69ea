"""`posterdb watch INBOX`: the dealer's daily intake (see posterdb.inbox / watch / intake)."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from posterdb.core.errors import UsageError
from posterdb.core.rules import check_output_path
from posterdb.reading.configured import check_catalogue
from posterdb.embedders import check_model_name
from posterdb.ui.cli.common import (
    DEFAULT_STORE, JsonOpt, ModelDirOpt, ModelOpt, StoreOpt, command, emit, err, esc, open_store,
    out, store_path)
from posterdb.ui.cli.read import CatalogueOpt, remember_catalogue


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
    create: Annotated[bool, typer.Option(
        "--create", help="Make the inbox folder if it does not exist (without it, a missing "
                         "inbox is an error: a mistyped path in a cron line must not pass).")] = False,
    identify: Annotated[Optional[bool], typer.Option(
        "--identify/--no-identify", help="Read each batch's posters and identify their films "
        "after they are stored (default: when the store has a catalogue, posterdb config).")]
    = None,
    catalogue: CatalogueOpt = None,
    catch_up: Annotated[int, typer.Option(
        "--catch-up", help="With --once: then read/identify up to this many older posters "
        "(left pending or never read), newest first. A running watcher does them while the "
        "inbox is empty.")] = 256,
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
    if catch_up < 0:
        raise UsageError(f"--catch-up must be ≥ 0, not {catch_up}")
    if catalogue is not None and identify is not False:
        catalogue = check_catalogue(catalogue)      # before any store is opened or created
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
        flow = db.daily.flow(catalogue, identify=identify)
        if flow is not None:
            _ = flow.catalogue              # a film file that cannot be read: exit 2 now
            remember_catalogue(db, flow)
    except BaseException:
        box.close()
        raise
    model = model or db.models.default()
    if db.genres.classifier(model) is None:
        err.print("[yellow]no classifier trained yet: posters are stored without genres "
                  "(run `posterdb train`)[/]")
    reports = []
    caught = None

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

    watcher = db.curation.watcher(box, model, batch_size=batch, interval=interval,
                            after_batch=after, **identify_hooks(db, flow, feed, interval, as_json))
    try:
        if once:
            watcher.run_once()
            if flow is not None and catch_up and not any(r.error for r in reports):
                caught = flow.catch_up_all(limit=catch_up)
                if caught.busy and feed is not None:
                    write_feed(db.curation.feed(), feed)
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
        ident = identify_totals(reports, caught, flow)

        def human():
            out.print(f"{totals['files']} file(s): {totals['added']} added, "
                      f"{totals['already']} already stored, {totals['failed']} failed"
                      + (f", {totals['retried']} changed while read (left in the inbox)"
                         if totals["retried"] else "")
                      if reports else "nothing to do")
            if caught is not None and caught.line():
                out.print(esc(f"older posters: {caught.line()}"), highlight=False)

        emit(as_json, {"inbox": str(box.root), "batches": [r.__dict__ for r in reports],
                       **totals, "identify": ident, "feed": str(feed) if feed else None}, human)
    raise typer.Exit(1 if failed else 0)


def identify_hooks(db, flow, feed: Path | None, interval: float, as_json: bool) -> dict:
    """The watcher's read + identify hooks (none without a catalogue): each batch's posters
    right after they are filed away; older work (pending, unread) while the inbox is empty,
    backing off for a minute when the catalogue cannot answer."""
    import time

    from posterdb.curation.feed import write_feed

    if flow is None:
        return {}

    def after_commit(outcomes) -> dict:
        got = flow.arrivals([o.poster_id for o in outcomes if o.poster_id is not None])
        return got.to_dict() | {"line": got.line()}

    wait = {"until": 0.0}

    def idle() -> bool:
        if time.monotonic() < wait["until"]:
            return False
        got = flow.catch_up()
        if got.busy:
            if feed is not None:
                write_feed(db.curation.feed(), feed)
            if as_json:
                sys.stdout.write(json.dumps({"older_posters": got.to_dict()}) + "\n")
                sys.stdout.flush()
            else:
                out.print(esc(f"older posters: {got.line()}"), highlight=False)
        if got.error or not got.busy:
            wait["until"] = time.monotonic() + (60.0 if got.error else max(interval, 5.0))
        return got.busy and not got.error

    return {"after_commit": after_commit, "idle": idle}


def identify_totals(reports, caught, flow) -> dict | None:
    """Read / identified / left pending over every batch (and the older posters caught up)."""
    if flow is None:
        return None
    keys = ("read", "identified", "unidentified", "pending", "not_tried", "requests")
    tot = {k: sum((r.identify or {}).get(k, 0) for r in reports) for k in keys}
    tot["catalogue"] = flow.choice.describe() if flow.choice else None
    tot["errors"] = [r.identify["error"] for r in reports if r.identify and r.identify["error"]]
    tot["older_posters"] = caught.to_dict() if caught is not None else None
    return tot


def register(app: typer.Typer) -> None:
    app.command()(watch)
