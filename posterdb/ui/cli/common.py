"""What every command shares: options, opening the store, output, and the one error handler.

`@command` wraps each command: a posterdb error (or an OS error on a file the user named) becomes
one line on stderr, or `{"error": ..., "type": ...}` on stdout with --json, and the exit code of
its kind (2 bad argument, 3 refused, 1 failed input; see posterdb.errors). Arguments are
validated with `posterdb.rules` before any store is opened or created.

Human output goes through `out` / `err`, two `SafeConsole`s: whatever string they print (a line,
a table cell, a title) has its control characters, ESC sequences, bidi overrides and raw bytes
made visible (`posterdb.core.text.shown`), so a hostile file name or title cannot drive the
terminal. Values put into rich markup go through `esc` (also markup-escaped, so a title such as
`[/bold]` is text, not a tag). JSON output (`emit`) is exact.
"""
from __future__ import annotations

import functools
import json
import logging
import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.errors import MarkupError
from rich.markup import escape
from rich.table import Table

from posterdb.core.errors import PosterDBError
from posterdb.core.text import shown, stored_name


class SafeConsole(Console):
    """A rich Console whose every printed string is terminal-safe (see the module docstring):
    control characters but LF escaped before markup is parsed; a string that is not valid
    markup (a stray `[/x]` from a file name) is printed as plain text instead of raising."""

    def render_str(self, text: str, **kwargs):
        text = shown(text, newlines=True)
        try:
            return super().render_str(text, **kwargs)
        except MarkupError:
            return super().render_str(text, **(kwargs | {"markup": False}))


out = SafeConsole(emoji=False)
err = SafeConsole(stderr=True, emoji=False)


def esc(value) -> str:
    """A value handed in (a name, a title, a reason), ready to put into a rich markup string:
    on one line, control characters visible, markup brackets escaped."""
    return escape(shown("" if value is None else value))


class _LogLines(logging.Handler):
    """posterdb's log warnings (e.g. a folder that cannot be read) as escaped lines on stderr,
    instead of logging's last-resort handler writing the raw message."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            err.print(f"[yellow]{record.levelname.lower()}:[/] {esc(record.getMessage())}",
                      highlight=False, soft_wrap=True)
        except Exception:  # noqa: BLE001 - logging must never raise
            self.handleError(record)


_log = logging.getLogger("posterdb")
if not any(isinstance(h, _LogLines) for h in _log.handlers):
    _log.addHandler(_LogLines(logging.WARNING))

DEFAULT_STORE = Path("posterdb-store")
StoreOpt = Annotated[Path, typer.Option("--store", envvar="POSTERDB_STORE",
                                        help="Store directory.")]
ModelDirOpt = Annotated[Optional[Path], typer.Option(
    "--model-dir", envvar="POSTERDB_MODEL_DIR", help="Folder holding model weight files.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document, nothing else.")]
ModelOpt = Annotated[Optional[str], typer.Option(
    "--model", help="Embedding model: mobilenet-v2, resnet50 or clip (default: the store's).")]


def open_store(store: Path, model_dir: Path | None = None, create: bool = False):
    """A writer (create=True) initialises or migrates the store; a reader needs it to exist."""
    from posterdb.core.errors import UsageError
    from posterdb.store import PosterDB

    if store.exists() and not store.is_dir():
        raise UsageError(f"--store {store} is a file, not a store folder")
    if stored_name(os.path.abspath(store)) != os.path.abspath(store):
        raise UsageError(f"--store {store}: the catalogue (DuckDB) opens only folders whose path "
                         "is valid UTF-8; rename the folder")
    return PosterDB.open(store, create=create, model_dir=model_dir)


def emit(as_json: bool, data, human=None) -> None:
    if as_json:
        sys.stdout.write(json.dumps(data, indent=1, default=str) + "\n")
    elif human is not None:
        human()


def fail(e: BaseException, as_json: bool) -> typer.Exit:
    """One line (or one JSON object) for an error, and the exit to raise."""
    code = getattr(e, "exit_code", 1)
    if as_json:
        sys.stdout.write(json.dumps({"error": str(e), "type": type(e).__name__}) + "\n")
    else:
        err.print(f"[bold red]error:[/] {esc(str(e))}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def command(fn):
    """Decorator for every command: posterdb errors (and OS errors) → one line + exit code."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (PosterDBError, OSError) as e:
            raise fail(e, bool(kwargs.get("as_json"))) from None

    return wrapper


def hits_table(title: str, hits, predicted: list[str] | None = None) -> Table:
    """Neighbours as a table; with `predicted`, genres shared with the prediction are marked ✓."""
    t = Table(title=esc(title))
    for c in ("id", "similarity", "title", "year", "genres"):
        t.add_column(c, overflow="fold")
    for h in hits:
        genres = ", ".join(f"[green]✓ {g}[/]" if predicted and g in predicted else g
                           for g in h.genres)
        t.add_row(str(h.id), f"{h.similarity:.3f}", esc(h.title), str(h.year or ""), genres)
    return t
