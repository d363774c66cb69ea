"""The `posterdb` command: a thin Typer layer over `posterdb.PosterDB`.

Exit codes: 0 ok · 1 some input failed (ingest) or the store is inconsistent (check)
· 2 bad usage · 3 posterdb refused or could not do it (model mismatch, missing weights, ...).
"""
from __future__ import annotations

import json
import sys
from contextlib import nullcontext
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from posterdb.errors import PosterDBError

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="posterdb: an embedding store + genre classifier for movie posters.")
out = Console()
err = Console(stderr=True)

StoreOpt = Annotated[Path, typer.Option("--store", envvar="POSTERDB_STORE",
                                        help="Store directory.")]
ModelDirOpt = Annotated[Optional[Path], typer.Option(
    "--model-dir", envvar="POSTERDB_MODEL_DIR", help="Folder holding model weight files.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document, nothing else.")]
ModelOpt = Annotated[Optional[str], typer.Option(
    "--model", help="Embedding model: mobilenet-v2, resnet50 or clip (default: the store's).")]
DEFAULT_STORE = Path("posterdb-store")


def _open(store: Path, model_dir: Path | None = None, create: bool = False):
    from posterdb.store import PosterDB

    return PosterDB.open(store, create=create, model_dir=model_dir)


def _emit(as_json: bool, data, human=None) -> None:
    if as_json:
        sys.stdout.write(json.dumps(data, indent=1, default=str) + "\n")
    elif human is not None:
        human()


def _fail(e: Exception, as_json: bool) -> typer.Exit:
    code = getattr(e, "exit_code", 3)
    if as_json:
        sys.stdout.write(json.dumps({"error": str(e), "type": type(e).__name__}) + "\n")
    else:
        err.print(f"[bold red]error:[/] {e}")
    return typer.Exit(code)


def _hits_table(title: str, hits, predicted: list[str] | None = None) -> Table:
    """Neighbours as a table; with `predicted`, genres shared with the prediction are marked ✓."""
    t = Table(title=title)
    for c in ("id", "similarity", "title", "year", "genres"):
        t.add_column(c, overflow="fold")
    for h in hits:
        genres = ", ".join(f"[green]✓ {g}[/]" if predicted and g in predicted else g
                           for g in h.genres)
        t.add_row(str(h.id), f"{h.similarity:.3f}", h.title or "", str(h.year or ""), genres)
    return t


@app.command()
def ingest(
    path: Annotated[Path, typer.Argument(help="Folder (searched recursively) or image file.")],
    labels: Annotated[Optional[Path], typer.Option(
        "--labels", help="CSV or JSON Lines: file, title, year, genres.")] = None,
    model: Annotated[str, typer.Option("--model", help="mobilenet-v2, resnet50 or clip.")]
    = "mobilenet-v2",
    batch_size: Annotated[Optional[int], typer.Option("--batch-size")] = None,
    workers: Annotated[Optional[int], typer.Option("--workers", help="Decode threads.")] = None,
    no_classify: Annotated[bool, typer.Option(
        "--no-classify", help="Do not auto-classify unlabelled posters.")] = False,
    store: StoreOpt = DEFAULT_STORE, model_dir: ModelDirOpt = None, as_json: JsonOpt = False,
):
    """Add posters (and their labels) to the store; re-running adds only what is new."""
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                               TimeRemainingColumn)

    try:
        db = _open(store, model_dir, create=True)
        bar = Progress(TextColumn("[bold]ingest"), BarColumn(), MofNCompleteColumn(),
                       TextColumn("{task.fields[rate]} posters/s"), TimeRemainingColumn(),
                       console=err, transient=True, disable=as_json or not err.is_terminal)
        with bar:
            task = bar.add_task("ingest", total=None, rate="-")
            import time

            t0 = time.perf_counter()

            def progress(done: int, total: int) -> None:
                rate = done / max(time.perf_counter() - t0, 1e-6)
                bar.update(task, completed=done, total=total, rate=f"{rate:.0f}")

            report = db.ingest(path, labels, model=model, batch_size=batch_size, workers=workers,
                               progress=progress, auto_classify=not no_classify)
    except PosterDBError as e:
        raise _fail(e, as_json) from e

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
                t.add_row(f["path"], f["reason"])
            out.print(t)
            if len(report.failed) > 50:
                out.print(f"... and {len(report.failed) - 50} more (posterdb info --json)")
        for w in report.label_warnings[:20]:
            out.print(f"[yellow]labels row {w['row']}[/] ({w['file']}): {w['reason']}")
        if report.near_duplicates:
            out.print(f"{len(report.near_duplicates)} near-duplicates of stored posters, e.g.:")
            for d in report.near_duplicates[:5]:
                out.print(f"  {d['path']} ~ poster {d['similar_to']} (cos {d['similarity']})")

    _emit(as_json, report.to_dict(), human)
    raise typer.Exit(1 if report.failed else 0)


@app.command()
def info(store: StoreOpt = DEFAULT_STORE, model_dir: ModelDirOpt = None, as_json: JsonOpt = False):
    """Counts by decade and genre, models and index state."""
    try:
        data = _open(store, model_dir).info()
    except PosterDBError as e:
        raise _fail(e, as_json) from e

    def human():
        out.print(f"[bold]{data['store']}[/]: {data['posters']} posters, {data['labelled']} "
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

    _emit(as_json, data, human)


@app.command()
def similar(
    query: Annotated[str, typer.Argument(help="A stored poster id, or an image file.")],
    k: Annotated[int, typer.Option("-k", help="Number of neighbours.")] = 10,
    decade: Annotated[Optional[list[int]], typer.Option("--decade", help="e.g. 1970 (repeatable)")]
    = None,
    genre: Annotated[Optional[list[str]], typer.Option("--genre", help="TMDb genre (repeatable)")]
    = None,
    model: ModelOpt = None,
    store: StoreOpt = DEFAULT_STORE, model_dir: ModelDirOpt = None, as_json: JsonOpt = False,
):
    """Look-alikes of a poster, for curation; filter by decade and genre."""
    from posterdb.genres import normalize_genre

    genres = []
    for g in genre or []:
        name = normalize_genre(g)
        if name is None:
            raise _fail(PosterDBError(f"unknown genre {g!r}"), as_json)
        genres.append(name)
    try:
        db = _open(store, model_dir)
        q = int(query) if query.isdigit() and not Path(query).exists() else Path(query)
        hits = db.similar(q, k, decades=[d // 10 * 10 for d in decade or []], genres=genres,
                          model=model)
    except PosterDBError as e:
        raise _fail(e, as_json) from e
    _emit(as_json, {"query": str(query), "hits": [h.to_dict() for h in hits]},
          lambda: out.print(_hits_table(f"similar to {query}", hits)))


@app.command()
def remove(
    ids: Annotated[list[int], typer.Argument(help="Poster ids.")],
    store: StoreOpt = DEFAULT_STORE, as_json: JsonOpt = False,
):
    """Remove posters from DuckDB, the FAISS indexes and the image folder together."""
    try:
        removed = _open(store).remove(ids)
    except PosterDBError as e:
        raise _fail(e, as_json) from e
    missing = sorted(set(ids) - set(removed))
    _emit(as_json, {"removed": removed, "not_found": missing},
          lambda: out.print(f"removed {len(removed)} posters"
                            + (f"; not found: {missing}" if missing else "")))
    raise typer.Exit(1 if missing else 0)


@app.command()
def export(
    fmt: Annotated[str, typer.Option("--format", help="csv or json")] = "csv",
    output: Annotated[Optional[Path], typer.Option("--output", "-o")] = None,
    store: StoreOpt = DEFAULT_STORE, as_json: JsonOpt = False,
):
    """Every poster with metadata, labels and predictions, as CSV or JSON."""
    import csv
    import io

    if fmt not in ("csv", "json"):
        raise _fail(PosterDBError(f"--format must be csv or json, not {fmt!r}"), as_json)
    try:
        rows = _open(store).export()
    except PosterDBError as e:
        raise _fail(e, as_json) from e
    if fmt == "json" or as_json:
        text = json.dumps(rows, indent=1, default=str) + "\n"
    else:
        buf = io.StringIO()
        cols = ["id", "title", "year", "decade", "genres", "predicted", "reviewed", "sha256",
                "path", "image_path", "width", "height", "format", "source", "added_at"]
        w = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow(r | {"genres": "|".join(r["genres"]), "predicted": "|".join(r["predicted"])})
        text = buf.getvalue()
    if output:
        output.write_text(text, encoding="utf-8")
        if not as_json:
            err.print(f"wrote {len(rows)} posters to {output}")
    else:
        sys.stdout.write(text)


@app.command()
def reindex(model: ModelOpt = None, store: StoreOpt = DEFAULT_STORE, as_json: JsonOpt = False):
    """Rebuild the FAISS index from DuckDB."""
    try:
        db = _open(store)
        models = [model] if model else [m.name for m in db.models()]
        states = [db.reindex(m).__dict__ for m in models]
    except PosterDBError as e:
        raise _fail(e, as_json) from e
    _emit(as_json, {"indexes": states}, lambda: [
        out.print(f"{s['model']}: rebuilt {s['factory']} with {s['ntotal']} vectors")
        for s in states])


@app.command()
def check(
    deep: Annotated[bool, typer.Option("--deep", help="Also re-hash every stored image.")] = False,
    store: StoreOpt = DEFAULT_STORE, as_json: JsonOpt = False,
):
    """Consistency of DuckDB, FAISS files and image copies; exit 1 when inconsistent."""
    try:
        report = _open(store).check(deep=deep)
    except PosterDBError as e:
        raise _fail(e, as_json) from e

    def human():
        status = "[green]clean[/]" if report["ok"] else "[red]INCONSISTENT[/]"
        out.print(f"{report['posters']} posters: {status}")
        for p in report["problems"]:
            out.print(f"[red]problem:[/] {p}")
        for w in report["warnings"]:
            out.print(f"[yellow]warning:[/] {w}")

    _emit(as_json, report, human)
    raise typer.Exit(0 if report["ok"] else 1)


@app.command()
def train(model: ModelOpt = None, store: StoreOpt = DEFAULT_STORE, model_dir: ModelDirOpt = None,
          as_json: JsonOpt = False):
    """Fit the genre classifier on the labelled posters (review labels win over file labels)."""
    try:
        db = _open(store, model_dir)
        with err.status("training: SVM heads + neighbour vote, tuning thresholds...",
                        spinner="dots") if not as_json else nullcontext():
            result = db.train(model)
    except PosterDBError as e:
        raise _fail(e, as_json) from e

    def human():
        out.print(f"trained on [bold]{result['n_train']}[/] posters in {result['seconds']:.1f} s "
                  f"-> {result['file']}")
        val = result.get("validation") or {}
        if val:
            out.print("validation (out-of-fold): " + ", ".join(
                f"{k} {v:.3f}" for k, v in val.items() if isinstance(v, (int, float))))

    _emit(as_json, result, human)


@app.command()
def classify(
    paths: Annotated[list[Path], typer.Argument(help="Image files and/or folders.")],
    year: Annotated[Optional[int], typer.Option("--year", help="Release year (all images).")]
    = None,
    labels: Annotated[Optional[Path], typer.Option(
        "--labels", help="CSV/JSONL giving year (and title) per file.")] = None,
    save: Annotated[bool, typer.Option(
        "--save", help="Store the images with their predicted genres.")] = False,
    evidence: Annotated[int, typer.Option("--evidence", "-n", help="Evidence posters each.")] = 8,
    model: ModelOpt = None,
    store: StoreOpt = DEFAULT_STORE, model_dir: ModelDirOpt = None, as_json: JsonOpt = False,
):
    """Predict genres for images, with the similar stored posters that justify them."""
    from posterdb.images import iter_image_files, open_poster
    from posterdb.labels import read_labels

    failed, posters, years = [], [], []
    meta = {}
    try:
        if labels:
            rows, _ = read_labels(labels)
            meta = {r.path.resolve(): r for r in rows}
        files = [f for p in paths for f in (iter_image_files(p) if p.is_dir() else [p])]
        for f in files:
            try:
                posters.append(open_poster(f))
            except PosterDBError as e:
                failed.append({"path": str(f), "reason": getattr(e, "reason", str(e))})
                continue
            row = meta.get(Path(f).resolve())
            years.append(row.year if row and row.year else year)
        db = _open(store, model_dir)
        results = db.classify(posters, years, model=model, n_evidence=evidence) if posters else []
        saved = []
        if save:
            for p, r, y in zip(posters, results, years):
                row = meta.get(Path(p.path).resolve())
                if r.in_store is None:
                    saved.append(db.add_poster(p, r.genres, title=row.title if row else None,
                                               year=y, model=model, origin="prediction",
                                               scores=[r.probabilities[g] for g in r.genres]))
    except PosterDBError as e:
        raise _fail(e, as_json) from e

    def human():
        for r in results:
            probs = ", ".join(f"{g} {r.probabilities[g]:.2f}" for g in r.genres)
            out.print(f"[bold]{r.name}[/]{f' ({r.year})' if r.year else ''}: [green]{probs}[/]  "
                      f"(heads {r.alpha:.0%} / vote {1 - r.alpha:.0%}"
                      f"{f', {r.decade_head}s head' if r.decade_head else ''})")
            t = _hits_table("evidence: most similar stored posters", r.evidence, r.genres)
            out.print(t)
        for f in failed:
            out.print(f"[red]failed[/] {f['path']}: {f['reason']}")
        if saved:
            out.print(f"saved {len(saved)} posters with their predicted genres")

    _emit(as_json, {"results": [r.to_dict() for r in results], "failed": failed,
                    "saved": saved}, human)
    raise typer.Exit(1 if failed else 0)


@app.command(name="eval")
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
    model: ModelOpt = None,
    store: StoreOpt = DEFAULT_STORE, model_dir: ModelDirOpt = None, as_json: JsonOpt = False,
):
    """The study's report: unbalanced/balanced RBF SVM vs heads, vote and posterdb's blend."""
    try:
        db = _open(store, model_dir)
        with err.status("evaluating (5 methods + cross-decade matrix)...", spinner="dots") \
                if not as_json else nullcontext():
            report = db.evaluate(model, train_decades=[d // 10 * 10 for d in train_decades or []]
                                 or None,
                                 test_decades=[d // 10 * 10 for d in test_decades or []] or None,
                                 test_labels=test_labels, seed=seed, cross_decade=not no_matrix,
                                 transductive=not no_transductive)
    except PosterDBError as e:
        raise _fail(e, as_json) from e
    data = report.to_json() if hasattr(report, "to_json") else report
    data = json.loads(data) if isinstance(data, str) else data
    _emit(as_json, data, lambda: (out.print(report.to_markdown()),
                                  err.print(f"wrote {db.root / 'eval' / 'latest.json'} and "
                                            f"{db.root / 'eval' / 'latest.png'}")))


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
