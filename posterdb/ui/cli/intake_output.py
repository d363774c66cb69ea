"""Output shared by `train` (before/after figures, publishing) and `export --format shop`."""
from __future__ import annotations

import sys
from pathlib import Path

from posterdb.ui.cli.common import emit, err, esc, out


def _blend(scores: dict | None) -> dict:
    val = (scores or {}).get("validation") or {}
    return val.get("blend", val) if isinstance(val, dict) else {}


def train_report(console, result: dict) -> None:
    """The publishing policy chosen, and out-of-fold figures before (the previous classifier,
    e.g. before a round of reviews) and after this training."""
    pub = result.get("publishing") or {}
    if pub:
        share = pub.get("oof_share_with_published")
        prec = pub.get("oof_micro_precision")
        console.print(f"publishing at precision ≥ {pub['precision_target']:g}: "
                      f"{len(pub.get('thresholds', {}))} genres publish"
                      + (f", out-of-fold micro precision {prec:.3f}" if prec is not None else "")
                      + (f", {share:.0%} of posters get ≥ 1 published genre" if share is not None
                         else ""), highlight=False)
    before, after = _blend(result.get("before")), _blend(result)
    if after and not before:
        console.print("out-of-fold F1 (blend): " + ", ".join(
            f"{k} {v:.3f}" for k, v in after.items() if isinstance(v, (int, float))),
            highlight=False)
    if before and after:
        keys = [k for k in ("weighted", "macro", "micro", "samples") if k in before and k in after]
        n0 = (result.get("before") or {}).get("n_train")
        console.print(f"out-of-fold F1, before ({n0} posters) → after ({result['n_train']}): "
                      + ", ".join(f"{k} {before[k]:.3f} → {after[k]:.3f}" for k in keys),
                      highlight=False)


def shop_export(db, output: Path | None, as_json: bool) -> None:
    """The shop feed (posterdb.feed): to `output` atomically (format by suffix), or stdout.
    `output` was checked by the caller (`rules.check_output_path`: not inside the store)."""
    from posterdb.curation.feed import format_of, render, write_feed

    rows = db.curation.feed()
    if output is not None:
        n = write_feed(rows, output, format_of(output))
        emit(as_json, {"feed": str(output), "posters": n},
             lambda: err.print(f"wrote the shop feed of {n} posters to {esc(output)}"))
        return
    sys.stdout.write(render(rows, "json" if as_json else "csv").decode("utf-8"))


__all__ = ["train_report", "shop_export", "out"]
