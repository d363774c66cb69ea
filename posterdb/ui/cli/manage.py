"""`posterdb remove`, `export`, `reindex` and `migrate`: keeping the store in order."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from posterdb.core.atomic import write_atomic
from posterdb.core.errors import UsageError
from posterdb.core.rules import check_output_path, check_poster_ids
from posterdb.core.text import csv_text
from posterdb.embedders import check_model_name
from posterdb.ui.cli.common import (
    DEFAULT_STORE, JsonOpt, ModelOpt, StoreOpt, command, emit, err, esc, open_store, out,
    store_path)
from posterdb.ui.cli.intake_output import shop_export

EXPORT_COLUMNS = ["id", "title", "year", "decade", "genres", "predicted", "published", "reviewed",
                  "sha256", "path", "image_path", "width", "height", "format", "source",
                  "added_at", "identified_source", "identified_film_id", "identified_title",
                  "identified_year", "identified_score"]


@command
def remove(
    ids: Annotated[list[int], typer.Argument(help="Poster ids.")],
    store: StoreOpt = DEFAULT_STORE, as_json: JsonOpt = False,
):
    """Remove posters from DuckDB, the FAISS indexes and the image folder together."""
    if any(i < 1 for i in ids):
        raise UsageError(f"poster ids are positive integers, not {[i for i in ids if i < 1]}")
    check_poster_ids(ids)
    removed = open_store(store).remove(ids)
    missing = sorted(set(ids) - set(removed))
    emit(as_json, {"removed": removed, "not_found": missing},
         lambda: out.print(f"removed {len(removed)} posters"
                           + (f"; not found: {missing}" if missing else "")))
    raise typer.Exit(1 if missing else 0)


@command
def export(
    fmt: Annotated[str, typer.Option(
        "--format", help="csv, json, or shop (id, title, year, image, published genres; JSON "
                         "when --output ends in .json or with --json, else CSV)")] = "csv",
    output: Annotated[Optional[Path], typer.Option("--output", "-o")] = None,
    store: StoreOpt = DEFAULT_STORE, as_json: JsonOpt = False,
):
    """Every poster with metadata, labels and predictions, as CSV or JSON.

    CSV cells that a spreadsheet would run as a formula are neutralised (posterdb.core.text);
    JSON is exact. --output is written atomically and never inside the store."""
    if fmt not in ("csv", "json", "shop"):
        raise UsageError(f"--format must be csv, json or shop, not {fmt!r}")
    if output is not None and not output.parent.is_dir():
        raise UsageError(f"--output: folder {output.parent} does not exist")
    if output is not None:
        check_output_path(output, store_path(store), "--output")
    if fmt == "shop":
        return shop_export(open_store(store), output, as_json)
    rows = [r.to_dict() for r in open_store(store).posters.export()]
    if fmt == "json" or as_json:
        text = json.dumps(rows, indent=1, default=str) + "\n"
    else:
        table = []
        for r in rows:
            ident = {f"identified_{k}": v for k, v in (r["identified"] or {}).items()}
            r = r | {"genres": "|".join(r["genres"]), "predicted": "|".join(r["predicted"]),
                     "published": "|".join(r["published"])} | ident
            table.append([r.get(c) for c in EXPORT_COLUMNS])
        text = csv_text(EXPORT_COLUMNS, table)
    if output:
        if output.exists() and not output.is_file():   # /dev/stdout, a pipe: write through
            output.write_bytes(text.encode("utf-8"))
        else:
            write_atomic(output, text.encode("utf-8"), fsync=False)
        if not as_json:
            err.print(f"wrote {len(rows)} posters to {esc(output)}")
    else:
        sys.stdout.write(text)


@command
def reindex(model: ModelOpt = None, store: StoreOpt = DEFAULT_STORE, as_json: JsonOpt = False):
    """Rebuild the FAISS index from DuckDB."""
    check_model_name(model)
    db = open_store(store)
    models = [model] if model else [m.name for m in db.models.specs()]
    states = [db.indexes.reindex(m).to_dict() for m in models]
    emit(as_json, {"indexes": states}, lambda: [
        out.print(f"{s['model']}: rebuilt {s['factory']} with {s['ntotal']} vectors")
        for s in states])


@command
def migrate(store: StoreOpt = DEFAULT_STORE, as_json: JsonOpt = False):
    """Bring a store written by an older posterdb up to this version's schema."""
    store = store_path(store)
    if not (store / "catalog.duckdb").exists():
        raise UsageError(f"no posterdb store at {store}")
    version = open_store(store, create=True).catalog.migrate()
    emit(as_json, {"store": str(store), "schema_version": version},
         lambda: out.print(f"{store}: schema version {version}"))


def register(app: typer.Typer) -> None:
    for fn in (remove, export, reindex, migrate):
        app.command()(fn)
