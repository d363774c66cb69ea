"""`posterdb page`: the Streamlit page's password, its status, and a launcher that checks the
address it is asked to listen on (docs/page.md).

The password is read from a prompt (twice) or, when stdin is not a terminal, from one line of
stdin — never from the command line, where `ps` and shell history would keep it. Only its scrypt
hash is stored, in the store's own settings.
"""
from __future__ import annotations

import getpass
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from posterdb.core.errors import RefusedError, UsageError
from posterdb.ui import auth
from posterdb.ui.cli.common import (
    DEFAULT_STORE, JsonOpt, ModelDirOpt, StoreOpt, command, emit, open_store, out)

APP_FILE = Path(__file__).resolve().parents[3] / "app.py"

page_app = typer.Typer(no_args_is_help=True, add_completion=False,
                       help="The page: its password (needed for any change made on the page, "
                            "and to serve it beyond loopback) and a checked launcher.")


def _read_password() -> str:
    if sys.stdin is not None and sys.stdin.isatty():
        first = getpass.getpass("New page password: ")
        if getpass.getpass("Once more: ") != first:
            raise UsageError("the two passwords differ; nothing changed")
        return first
    line = sys.stdin.readline() if sys.stdin is not None else ""
    return line.rstrip("\r\n")


def _state(db) -> str:
    stored = auth.stored_hash(db)
    if stored is None:
        return "not set"
    return "set" if auth.parse_hash(stored) else "unreadable"


@page_app.command("password")
@command
def password(
    clear: Annotated[bool, typer.Option(
        "--clear", help="Forget the password: the page becomes read-only, loopback only.")] = False,
    store: StoreOpt = DEFAULT_STORE, as_json: JsonOpt = False,
):
    """Set the page password (prompted twice, or one line of stdin); only a salted scrypt hash
    is kept, in the store. Signed-in pages are signed out by any change."""
    db = open_store(store)
    if clear:
        auth.set_page_password(db, None)
    else:
        auth.set_page_password(db, auth.check_new_password(_read_password()))
    data = {"store": str(db.root), "page_password": _state(db)}
    emit(as_json, data, lambda: out.print(
        f"{db.root}: page password {'cleared: the page is read-only' if clear else 'set'}",
        highlight=False))


@page_app.command("status")
@command
def status(store: StoreOpt = DEFAULT_STORE, as_json: JsonOpt = False):
    """Whether the store has a page password (set / not set / unreadable)."""
    db = open_store(store)
    data = {"store": str(db.root), "page_password": _state(db)}
    emit(as_json, data, lambda: out.print(f"{db.root}: page password {data['page_password']}",
                                          highlight=False))


def serve_command(store: Path, model_dir: Path | None, address: str, port: int) -> list[str]:
    """The `streamlit run app.py` command line the launcher executes."""
    cmd = [sys.executable, "-m", "streamlit", "run", str(APP_FILE), "--server.address", address,
           "--server.port", str(port), "--server.headless", "true", "--", "--store", str(store)]
    return cmd + (["--model-dir", str(model_dir)] if model_dir else [])


def check_address(store: Path, address: str) -> None:
    """Refuse (exit 3, one line) to listen beyond loopback when the store has no page password."""
    if auth.is_loopback_bind(address):
        return
    db = open_store(store)
    if auth.parse_hash(auth.stored_hash(db)) is None:
        raise RefusedError(
            f"--address {address or '(every interface)'}: the page is not served beyond "
            f"loopback without a page password; set one with `posterdb page password --store "
            f"{store}`, or serve on 127.0.0.1")


@page_app.command("serve")
@command
def serve(
    address: Annotated[str, typer.Option(
        "--address", help="Address to listen on (beyond loopback needs a page password).")]
        = "127.0.0.1",
    port: Annotated[int, typer.Option("--port")] = 8501,
    store: StoreOpt = DEFAULT_STORE, model_dir: ModelDirOpt = None, as_json: JsonOpt = False,
):
    """Serve the page (`streamlit run app.py`), checking the address first."""
    if not 1 <= port <= 65535:
        raise UsageError(f"--port {port}: give 1..65535")
    if not APP_FILE.is_file():
        raise UsageError(f"{APP_FILE} is missing: run the page from a posterdb checkout")
    check_address(store, address)
    cmd = serve_command(store, model_dir, address, port)
    sys.stdout.flush()
    os.execv(cmd[0], cmd)


def register(app: typer.Typer) -> None:
    app.add_typer(page_app, name="page")
