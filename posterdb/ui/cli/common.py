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
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich.console import Console
from rich.errors import MarkupError
from rich.markup import escape
from rich.table import Table

from posterdb.core.errors import PosterDBError, UsageError
from posterdb.core.settings import Settings
from posterdb.core.text import shown, stored_name

if TYPE_CHECKING:
    from posterdb.store import PosterDB


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

DEFAULT_STORE = None   # --store left out: $POSTERDB_STORE, else ./posterdb-store (core.settings)
StoreOpt = Annotated[Optional[Path], typer.Option(
    "--store", metavar="DIR", show_default=False,
    help="Store directory (default: $POSTERDB_STORE, else ./posterdb-store).")]
ModelDirOpt = Annotated[Optional[Path], typer.Option(
    "--model-dir", metavar="DIR",
    help="Folder holding model weight files (default: $POSTERDB_MODEL_DIR, else what the "
         "store remembers).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document, nothing else.")]
ModelOpt = Annotated[Optional[str], typer.Option(
    "--model", metavar="NAME",
    help="Embedding model: mobilenet-v2, resnet50 or clip (default: the store's).")]


def settings(store: Path | None = None, model_dir: Path | None = None) -> Settings:
    """This command's settings: its flags over the environment over the defaults."""
    return Settings.from_env(store=store, model_dir=model_dir)


def store_path(store: Path | None) -> Path:
    """The store folder a command works on (`--store`, else the environment, else default)."""
    return settings(store).store


def open_store(store: Path | None, model_dir: Path | None = None,
               create: bool = False) -> PosterDB:
    """A writer (create=True) initialises or migrates the store; a reader needs it to exist."""
    from posterdb.store import PosterDB

    conf = settings(store, model_dir)
    if conf.store.exists() and not conf.store.is_dir():
        raise UsageError(f"--store {conf.store} is a file, not a store folder")
    if stored_name(os.path.abspath(conf.store)) != os.path.abspath(conf.store):
        raise UsageError(f"--store {conf.store}: the catalogue (DuckDB) opens only folders whose "
                         "path is valid UTF-8; rename the folder")
    return PosterDB.open(create=create, settings=conf)


def readable_metavars(command) -> None:
    """Help shows `--store DIR`, `-k N` and a flag bare (Typer prints `--json <bool>`): every
    option of the built command tree without its own metavar gets one from its type. (Typer
    may vendor click, so options are matched by shape.)"""
    names = {"int": "N", "float": "X", "str": "TEXT", "Path": "PATH", "bool": ""}
    for param in getattr(command, "params", []):
        if hasattr(param, "is_flag") and param.metavar is None:
            kind = param.bare_type() if hasattr(param, "bare_type") else "str"
            kind = kind.removeprefix("list[").removesuffix("]").replace("Optional[", "")
            param.metavar = ("" if param.is_flag or param.count
                             else names.get(kind, kind.split(".")[-1].upper()))
        elif getattr(param, "param_type_name", "") == "argument" and param.metavar is None:
            param.metavar = param.name.upper()
    for sub in getattr(command, "commands", {}).values():
        readable_metavars(sub)


def decades_option(values, flag: str = "--decade", as_json: bool = False) -> list[int]:
    """`--decade 1970` or a year in it: a year is read as its decade, and said so (stderr)."""
    from posterdb.core.rules import check_decades

    decades = check_decades(values)
    for given, decade in zip(values or [], decades):
        if int(given) != decade and not as_json:
            err.print(f"note: {flag} {given} is read as the {decade}s", highlight=False)
    return decades


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
