"""The `posterdb` command: a thin Typer layer over `posterdb.PosterDB`.

Each command lives in its own module under cli/ with a `register(app)`; add a command by adding
a module and one line below. Errors are handled in one place (`cli.common.command`).
Exit codes: 0 ok · 1 some input failed (ingest/classify) or the store is inconsistent (check)
· 2 bad usage · 3 posterdb refused or could not do it (model mismatch, missing weights, ...).
"""
from __future__ import annotations

import json
import sys

import typer

from posterdb.core.text import shown
from posterdb.ui.cli import (
    classify, config, fetch, finetune, info, ingest, manage, page, read, review, search, watch)
from posterdb.ui.cli.common import readable_metavars

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                  help="posterdb: an embedding store + genre classifier for movie posters.")

ingest.register(app)     # ingest
info.register(app)       # info, check
search.register(app)     # similar
manage.register(app)     # remove, export, reindex, migrate
classify.register(app)   # train, classify, eval
watch.register(app)      # watch
review.register(app)     # review list / accept / set / apply
fetch.register(app)      # fetch tmdb
read.register(app)       # read, identify, search-text
finetune.register(app)   # finetune
page.register(app)       # page password / status / serve
config.register(app)     # config show / set / unset


def main() -> None:  # pragma: no cover - the console script
    """Run the app; a usage error Typer itself finds (a bad option value) is also one JSON
    object on stdout when --json was given. (Typer may vendor click: matched by shape.)"""
    try:
        cli = typer.main.get_command(app)
        readable_metavars(cli)
        code = cli(standalone_mode=False)
    except Exception as e:
        if type(e).__name__ == "Abort":
            sys.exit(1)
        if not (hasattr(e, "format_message") and hasattr(e, "exit_code")):
            raise
        if "--json" in sys.argv[1:]:
            sys.stdout.write(json.dumps({"error": e.format_message(),
                                         "type": type(e).__name__}) + "\n")
        else:   # the message may quote an argument: control characters shown, not sent
            if isinstance(getattr(e, "message", None), str):
                e.message = shown(e.message, newlines=True)
            e.show()
        sys.exit(e.exit_code)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":  # pragma: no cover
    main()
