"""`posterdb similar`: look-alikes of a stored poster or an image file."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from posterdb.core.rules import check_k, check_poster_id, validate_genres
from posterdb.embedders import check_model_name
from posterdb.ui.cli.common import (
    DEFAULT_STORE, JsonOpt, ModelDirOpt, ModelOpt, StoreOpt, command, decades_option, emit,
    hits_table, open_store, out)


@command
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
    k = check_k(k)
    decades = decades_option(decade, as_json=as_json)
    genres = validate_genres(genre or [], at_least_one=False)
    check_model_name(model)
    q = (check_poster_id(query) if query.isascii() and query.isdigit() and not Path(query).exists()
         else Path(query))
    db = open_store(store, model_dir)
    hits = db.similar(q, k, decades=decades, genres=genres, model=model)
    emit(as_json, {"query": str(query), "hits": [h.to_dict() for h in hits]},
         lambda: out.print(hits_table(f"similar to {query}", hits)))  # hits_table escapes


def register(app: typer.Typer) -> None:
    app.command()(similar)
