"""`posterdb ingest`."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from posterdb.core.errors import PosterDBError, UsageError
from posterdb.core.rules import check_path
from posterdb.embedders import check_model_name
from posterdb.reading.configured import check_catalogue
from posterdb.ui.cli.common import (
    DEFAULT_STORE, JsonOpt, ModelDirOpt, StoreOpt, command, emit, err, esc, open_store, out)
from posterdb.ui.cli.read import (
    CatalogueOpt, arrivals_first, identify_line, read_line, remember_catalogue)


@command
def ingest(
    path: Annotated[Path, typer.Argument(help="Folder (searched recursively) or image file.")],
    labels: Annotated[Optional[Path], typer.Option(
        "--labels", help="CSV or JSON Lines: file, title, year, genres.")] = None,
    model: Annotated[Optional[str], typer.Option(
        "--model", metavar="NAME", help="mobilenet-v2, resnet50 or clip (default: the store's "
        "model, else mobilenet-v2).")] = None,
    batch_size: Annotated[Optional[int], typer.Option("--batch-size")] = None,
    workers: Annotated[Optional[int], typer.Option("--workers", help="Decode threads.")] = None,
    no_classify: Annotated[bool, typer.Option(
        "--no-classify", help="Do not auto-classify unlabelled posters.")] = False,
    read: Annotated[bool, typer.Option(
        "--read", help="Then read the text on the posters (OCR, its own stage).")] = False,
    identify: Annotated[Optional[bool], typer.Option(
        "--identify/--no-identify", help="Then read the posters and identify their films "
        "(default: when the store has a catalogue, see `posterdb config`).")] = None,
    catalogue: CatalogueOpt = None,
    threads: Annotated[int, typer.Option("--threads", help="OCR threads.")] = 2,
    engine: Annotated[str, typer.Option(
        "--engine", help="local (threads here) or ray (decode + embed on a Ray cluster).")]
    = "local",
    ray_address: Annotated[Optional[str], typer.Option(
        "--ray-address", help="Ray cluster to join (auto, host:port, ray://...); default: "
                              "start a local one.")] = None,
    ship_weights: Annotated[bool, typer.Option(
        "--ship-weights", help="Send the model weights to the Ray workers (no shared folder).")]
    = False,
    store: StoreOpt = DEFAULT_STORE, model_dir: ModelDirOpt = None, as_json: JsonOpt = False,
):
    """Add posters (and their labels) to the store; re-running adds only what is new."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    check_model_name(model)
    check_path(path, "folder or file")
    if labels is not None:
        check_path(labels, "labels file")
    for name, value in (("--batch-size", batch_size), ("--workers", workers)):
        if value is not None and value < 1:
            raise UsageError(f"{name} must be at least 1, not {value}")
    if engine not in ("local", "ray"):
        raise UsageError(f"--engine must be local or ray, not {engine!r}")
    if engine == "local" and (ray_address or ship_weights):
        raise UsageError("--ray-address and --ship-weights need --engine ray")
    if threads < 1:
        raise UsageError(f"--threads must be at least 1, not {threads}")
    if catalogue is not None and identify is not False:
        catalogue = check_catalogue(catalogue)     # before any store is opened or created
    db = open_store(store, model_dir, create=True)
    flow = db.daily.flow(catalogue, identify=identify, threads=threads, patient=True)
    cat = flow.catalogue if flow is not None else None    # a bad film file: exit 2, nothing stored
    remembered = remember_catalogue(db, flow)
    runner = None
    if engine == "ray":
        from posterdb.ingest.ray_engine import RayEngine

        runner = RayEngine(db.models.embedder(model), address=ray_address, batch_size=batch_size,
                           ship_weights=ship_weights)
    bar = Progress(TextColumn("[bold]ingest"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("{task.fields[rate]} posters/s"), TimeRemainingColumn(),
                   console=err, transient=True, disable=as_json or not err.is_terminal)
    with bar:
        task = bar.add_task("ingest", total=None, rate="-")
        t0 = time.perf_counter()

        def progress(done: int, total: int) -> None:
            rate = done / max(time.perf_counter() - t0, 1e-6)
            bar.update(task, completed=done, total=total, rate=f"{rate:.0f}")

        report = db.ingest(path, labels, model=model, batch_size=batch_size, workers=workers,
                           progress=progress, auto_classify=not no_classify, engine=runner)
    stages = {}  # after ingest, at their own pace: a failure here never undoes the ingest
    if remembered:
        stages["catalogue_remembered"] = remembered
    try:
        if read or flow is not None:
            # asked for (--read / --identify): the older backlog too; on by default: the
            # arrivals only (an old backlog is a long job of its own: posterdb read --all)
            arrivals_first(db, flow, report.added_ids, cat, as_json, threads, stages,
                           backlog=read or identify is True)
    except PosterDBError as e:  # e.g. TMDb refused the key: the posters are stored all the same
        stages["stage_error"] = f"{e} (the posters are stored; run the stage again later)"

    def human():
        out.print(f"[bold]{report.added}[/] added, {report.skipped} already stored, "
                  f"{report.duplicates} duplicate files, {report.embedded_existing} re-embedded, "
                  f"{report.relabelled} relabelled, {report.predicted} auto-classified, "
                  f"[red]{len(report.failed)} failed[/] — {report.scanned} files in "
                  f"{report.seconds:.1f} s ({report.posters_per_s:.0f} posters/s)")
        if report.failed:
            t = Table(title="failed files")
            t.add_column("path", overflow="fold")
            t.add_column("reason", overflow="fold")
            for f in report.failed[:50]:
                t.add_row(esc(f["path"]), esc(f["reason"]))
            out.print(t)
            if len(report.failed) > 50:
                out.print(f"... and {len(report.failed) - 50} more (posterdb info --json)")
        for w in report.warnings:
            out.print(f"[yellow]warning:[/] {esc(w)}")
        for w in report.label_warnings[:20]:
            out.print(f"[yellow]labels row {w['row']}[/] ({esc(w['file'])}): {esc(w['reason'])}")
        if report.near_duplicates:
            out.print(f"{len(report.near_duplicates)} near-duplicates of stored posters, e.g.:")
            for d in report.near_duplicates[:5]:
                out.print(f"  {esc(d['path'])} ~ poster {d['similar_to']} (cos {d['similarity']})")

        if remembered:
            out.print(f"this store now identifies against {remembered} by default "
                      f"(posterdb config)", highlight=False)
        if "read" in stages:
            out.print(read_line(stages["read"]))
        left = stages.get("older_left") or {}
        if left.get("unread") or left.get("undecided"):
            out.print(f"older posters left: {left['unread']} not read, {left['undecided']} "
                      f"read but not identified (posterdb ingest --identify, or posterdb "
                      f"read --all then identify --all)", highlight=False)
        if "identify" in stages:
            out.print(identify_line(stages["identify"]))
        if "stage_error" in stages:
            out.print(f"[yellow]warning:[/] {esc(stages['stage_error'])}")

    emit(as_json, report.to_dict() | stages, human)
    raise typer.Exit(1 if report.failed else 0)


def register(app: typer.Typer) -> None:
    app.command()(ingest)
