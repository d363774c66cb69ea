"""`posterdb train`, `classify` and `eval`: the genre classifier from the command line."""
from __future__ import annotations

import json
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Annotated, Optional

import typer

from posterdb.core.errors import PosterDBError, UsageError
from posterdb.core.rules import check_path, check_year
from posterdb.embedders import check_model_name
from posterdb.reading.configured import check_catalogue
from posterdb.ui.cli.common import (
    DEFAULT_STORE, JsonOpt, ModelDirOpt, ModelOpt, StoreOpt, command, decades_option, emit, err,
    esc, hits_table, open_store, out)
from posterdb.ui.cli.intake_output import train_report
from posterdb.ui.cli.read import CatalogueOpt


@contextmanager
def train_progress(console, enabled: bool):
    """A rich bar by stage with an ETA; yields the fit's progress callback(stage, done, total)."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    bar = Progress(TextColumn("[bold]train[/] {task.description}"), BarColumn(),
                   MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("ETA"),
                   TimeRemainingColumn(), console=console, transient=True,
                   disable=not enabled or not console.is_terminal)
    with bar:
        task = bar.add_task("loading vectors", total=None)

        def progress(stage: str, done: int, total: int) -> None:
            bar.update(task, description=stage, completed=done, total=total)

        yield progress


@command
def train(model: ModelOpt = None,
          publish_precision: Annotated[float, typer.Option(
              "--publish-precision", help="Per genre, publish predictions only above the "
              "threshold reaching this out-of-fold precision; the rest are suggestions.")] = 0.8,
          max_train: Annotated[Optional[int], typer.Option(
              "--max-train", help="Fit on a seeded random sample of at most N labelled posters "
              "(a quick model).")] = None,
          store: StoreOpt = DEFAULT_STORE, model_dir: ModelDirOpt = None,
          as_json: JsonOpt = False):
    """Fit the genre classifier on the labelled posters (review labels win over file labels)."""
    check_model_name(model)
    if not 0.0 < publish_precision <= 1.0:
        raise UsageError(f"--publish-precision must be in (0, 1], not {publish_precision}")
    if max_train is not None and max_train < 20:
        raise UsageError(f"--max-train must be at least 20, not {max_train}")
    db = open_store(store, model_dir)
    with train_progress(err, enabled=not as_json) as progress:
        result = db.train(model, publish_precision=publish_precision, max_train=max_train,
                          progress=progress)

    def human():
        sample = (f" (a sample of {result['n_labelled']} labelled)"
                  if result.get("n_labelled", result["n_train"]) > result["n_train"] else "")
        out.print(f"trained on [bold]{result['n_train']}[/] posters{sample} in "
                  f"{result['seconds']:.1f} s ({result.get('heads')} heads, peak memory "
                  f"{result.get('peak_rss_mib', 0) / 1024:.2f} GiB) -> {result['file']}")
        train_report(out, result)

    emit(as_json, result, human)


@command
def classify(
    paths: Annotated[list[Path], typer.Argument(help="Image files and/or folders.")],
    year: Annotated[Optional[int], typer.Option("--year", help="Release year (all images).")]
    = None,
    labels: Annotated[Optional[Path], typer.Option(
        "--labels", help="CSV/JSONL giving year (and title) per file.")] = None,
    save: Annotated[bool, typer.Option(
        "--save", help="Store the images with their predicted genres.")] = False,
    evidence: Annotated[int, typer.Option("--evidence", "-n", help="Evidence posters each.")] = 8,
    identify: Annotated[Optional[bool], typer.Option(
        "--identify/--no-identify", help="Also read each image and identify its film (default: "
        "when the store has a catalogue, posterdb config).")] = None,
    catalogue: CatalogueOpt = None,
    model: ModelOpt = None,
    store: StoreOpt = DEFAULT_STORE, model_dir: ModelDirOpt = None, as_json: JsonOpt = False,
):
    """Predict genres for images, with the similar stored posters that justify them; with a
    film catalogue, the film each one shows first."""
    from posterdb.media.images import iter_image_files, open_poster
    from posterdb.media.labels import read_labels

    check_year(year)
    check_model_name(model)
    if not 0 <= evidence <= 100:
        raise UsageError(f"--evidence must be between 0 and 100, not {evidence}")
    for p in paths:
        check_path(p, "image or folder")
    meta = {}
    if labels:
        rows, _ = read_labels(check_path(labels, "labels file"))
        meta = {r.path.resolve(): r for r in rows}
    failed, posters, years = [], [], []
    for f in [f for p in paths for f in (iter_image_files(p) if p.is_dir() else [p])]:
        try:
            posters.append(open_poster(f))
        except PosterDBError as e:
            failed.append({"path": str(f), "reason": getattr(e, "reason", str(e))})
            continue
        row = meta.get(Path(f).resolve())
        years.append(row.year if row and row.year else year)
    if catalogue is not None and identify is not False:
        check_catalogue(catalogue)               # before any store is opened or created
    db = open_store(store, model_dir, create=save)
    flow = db.daily.flow(catalogue, identify=identify, patient=True)
    results = db.classify(posters, years, model=model, n_evidence=evidence) if posters else []
    films = ([flow.preview(p.image, y, r.probabilities) for p, r, y in zip(posters, results, years)]
             if flow is not None else [None] * len(results))
    saved = []
    if save:
        for p, r, y, film in zip(posters, results, years, films):
            row = meta.get(Path(p.path).resolve())
            if r.in_store is None:
                saved.append(db.genres.add_poster(p, r.genres, title=row.title if row else None,
                                                  year=y, model=model, origin="prediction",
                                                  scores=[r.probabilities[g] for g in r.genres]))
                if film is not None:        # what was read, and the film (facts win)
                    flow.adopt(saved[-1], film["lines"])

    def human():
        for r, film in zip(results, films):
            if film is not None:
                out.print(f"[bold]{esc(r.name)}[/] film: {esc(film_line(film))}", highlight=False)
            probs = ", ".join(f"{g} {r.probabilities[g]:.2f}" for g in r.genres)
            out.print(f"[bold]{esc(r.name)}[/]{f' ({r.year})' if r.year else ''}: [green]{probs}[/]  "
                      f"(heads {r.alpha:.0%} / vote {1 - r.alpha:.0%}"
                      f"{f', {r.decade_head}s head' if r.decade_head else ''})")
            out.print(hits_table("evidence: most similar stored posters", r.evidence, r.genres))
        for f in failed:
            out.print(f"[red]failed[/] {esc(f['path'])}: {esc(f['reason'])}")
        if saved:
            out.print(f"saved {len(saved)} posters with their predicted genres")

    emit(as_json, {"results": [r.to_dict() | film_json(film) for r, film in zip(results, films)],
                   "failed": failed, "saved": saved}, human)
    raise typer.Exit(1 if failed else 0)


def film_json(found: dict | None) -> dict:
    """An image's identification for --json: {} without a catalogue, else "film" (the
    identification, or None when none was possible) and "film_error"."""
    if found is None:
        return {}
    got = found["identification"]
    return {"film": got.to_dict() if got is not None else None, "film_error": found["error"]}


def film_line(found: dict) -> str:
    got = found["identification"]
    if got is None:
        return f"not identified ({found['error'] or 'no answer'})"
    if got.status == "identified":
        return (f"{got.film.title} ({got.film.year or '?'}) · {got.source} {got.film.film_id} · "
                f"score {got.score:.2f} · genres {', '.join(got.film.genres) or 'none listed'}")
    if got.film is not None:
        return (f"not identified; best candidate {got.film.title} ({got.film.year or '?'}), "
                f"score {got.score:.2f}")
    return "not identified" + (f" ({got.error})" if got.error else "")


@command
def eval_(
    train_decades: Annotated[Optional[list[int]], typer.Option(
        "--train-decades", help="Train only on these decades (repeatable), e.g. 2010.")] = None,
    test_decades: Annotated[Optional[list[int]], typer.Option(
        "--test-decades", help="Test only on these decades (repeatable), e.g. 1970.")] = None,
    test_labels: Annotated[Optional[Path], typer.Option(
        "--test-labels", help="Evaluate on an external labelled folder (its labels file).")] = None,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    no_matrix: Annotated[bool, typer.Option(
        "--no-matrix", help="Skip the cross-decade matrix (faster).")] = False,
    no_transductive: Annotated[bool, typer.Option(
        "--no-transductive", help="Do not centre decades with the test posters' features.")]
    = False,
    heads: Annotated[str, typer.Option(
        "--heads", help="The classifier's heads: auto (exact RBF SVMs up to 6,000 labelled "
        "posters, Nystroem above), exact or nystroem.")] = "auto",
    compare_heads: Annotated[Optional[str], typer.Option(
        "--compare-heads", help="Also report heads and blend with these heads (exact or "
        "nystroem) on the same split.")] = None,
    model: ModelOpt = None,
    models: Annotated[Optional[str], typer.Option(
        "--models", help="Compare stored embedders side by side on the same split, "
        "e.g. mobilenet-v2,mobilenet-v2-ft-<hash> (heads, vote, blend).")] = None,
    store: StoreOpt = DEFAULT_STORE, model_dir: ModelDirOpt = None, as_json: JsonOpt = False,
):
    """The study's report: unbalanced/balanced RBF SVM vs heads, vote and posterdb's blend."""
    train_d = decades_option(train_decades, "--train-decades", as_json)
    test_d = decades_option(test_decades, "--test-decades", as_json)
    check_model_name(model)
    if models is not None:
        names = [m.strip() for m in models.split(",") if m.strip()]
        if not names:
            raise UsageError("--models needs at least one model name")
        for m in names:
            check_model_name(m)
        db = open_store(store, model_dir)
        with err.status("comparing models...", spinner="dots") if not as_json else nullcontext():
            data = db.genres.compare_models(names, train_decades=train_d or None,
                                            test_decades=test_d or None, seed=seed,
                                            transductive=not no_transductive)
        emit(as_json, data, lambda: out.print(comparison_table(data)))
        return
    if test_labels is not None:
        check_path(test_labels, "--test-labels file")
    db = open_store(store, model_dir)
    with err.status("evaluating (5 methods + cross-decade matrix)...", spinner="dots") \
            if not as_json else nullcontext():
        report = db.genres.evaluate(model, train_decades=train_d or None, test_decades=test_d or None,
                             test_labels=test_labels, seed=seed, cross_decade=not no_matrix,
                             transductive=not no_transductive, heads=heads,
                             compare_heads=compare_heads)
    data = report.to_json() if hasattr(report, "to_json") else report
    data = json.loads(data) if isinstance(data, str) else data
    emit(as_json, data, lambda: (out.print(report.to_markdown()),
                                 err.print(f"wrote {db.root / 'eval' / 'latest.json'} and "
                                           f"{db.root / 'eval' / 'latest.png'}")))


def comparison_table(data: dict):
    from rich.table import Table

    t = Table(title=f"{data['setup']['description']}: {data['setup']['n_train']} train / "
                    f"{data['setup']['n_test']} test posters")
    for c in ("model", "method", "weighted F1", "macro F1", "micro F1", "samples F1"):
        t.add_column(c)
    for m, res in data["models"].items():
        for method in ("heads", "vote", "blend"):
            if method in res:
                a = res[method]
                t.add_row(m, method, *(f"{a[k]:.3f}" for k in ("weighted", "macro", "micro", "samples")))
    return t


def register(app: typer.Typer) -> None:
    app.command()(train)
    app.command()(classify)
    app.command(name="eval")(eval_)
