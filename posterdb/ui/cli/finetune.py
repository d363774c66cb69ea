"""`posterdb finetune`: fine-tune MobileNetV2 on the store's labelled posters, keep the weights
in the store (sha256-checked) and re-embed every poster as a second model."""
from __future__ import annotations

from contextlib import nullcontext
from typing import Annotated, Optional

import typer

from posterdb.core.errors import UsageError
from posterdb.ui.cli.common import (
    DEFAULT_STORE, JsonOpt, ModelDirOpt, StoreOpt, command, emit, err, open_store, out, store_path)


@command
def finetune(
    epochs: Annotated[int, typer.Option("--epochs", help="Passes over the labelled posters.")] = 12,
    unfreeze_from: Annotated[int, typer.Option(
        "--unfreeze-from", help="First trainable block (0 = all; 14 = the top blocks only; max 18).")] = 0,
    device: Annotated[Optional[str], typer.Option(
        "--device", help="cpu or cuda (default: cuda when present).")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size")] = 64,
    limit: Annotated[Optional[int], typer.Option(
        "--limit", help="Fine-tune on this many labelled posters (evenly spread; a quick run).")] = None,
    store: StoreOpt = DEFAULT_STORE, model_dir: ModelDirOpt = None, as_json: JsonOpt = False,
):
    """Fine-tune the backbone on the labelled posters; the result is a new model of the store."""
    if epochs < 1:
        raise UsageError(f"--epochs must be >= 1, not {epochs}")
    if not 0 <= unfreeze_from <= 18:
        raise UsageError(f"--unfreeze-from must be a block 0..18, not {unfreeze_from}")
    if device not in (None, "cpu", "cuda", "auto") and not str(device).startswith("cuda:"):
        raise UsageError(f"--device must be cpu or cuda, not {device!r}")
    if batch_size < 1 or (limit is not None and limit < 2):
        raise UsageError("--batch-size must be >= 1 and --limit >= 2")
    store = store_path(store)
    if not store.is_dir():
        raise UsageError(f"--store {store}: no such store")
    db = open_store(store, model_dir)
    with err.status("fine-tuning...", spinner="dots") if not as_json else nullcontext() as status:
        def say(msg: str) -> None:
            if status is not None:
                status.update(msg)
        result = db.finetune.run(epochs=epochs, unfreeze_from=unfreeze_from, device=device,
                                   batch_size=batch_size, limit=limit, progress=say)

    def human():
        out.print(f"fine-tuned on [bold]{result['n_train']}[/] posters ({result['device']}, "
                  f"{len(result['epoch_seconds'])} epochs, {result['seconds']:.0f} s); "
                  f"re-embedded {result['reembedded']} posters as model [bold]{result['model']}[/]")
        out.print(f"weights {result['weights']} (sha256 {result['sha256'][:12]}…); use it with "
                  f"--model {result['model']} (train, similar, classify, eval --models)")

    emit(as_json, result, human)


def register(app: typer.Typer) -> None:
    app.command()(finetune)
