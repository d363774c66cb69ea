"""`posterdb eval` on a store: the study-vs-posterdb report on its labelled posters (saved under
`eval/` as JSON + PNG), optionally against an external labelled test set, and reading the last
report back."""
from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from posterdb.classify.report import EvalReport
from posterdb.core.errors import StoreError, UsageError
from posterdb.core.genres import to_multi_hot
from posterdb.core.rules import decade_of
from posterdb.media.images import open_poster

if TYPE_CHECKING:
    from posterdb.classify.service import GenreService


def evaluate_store(genres: GenreService, model: str, *, train_decades=None, test_decades=None,
                   test_labels=None, seed: int = 0, cross_decade: bool = True,
                   transductive: bool = True, heads: str = "auto",
                   compare_heads: str | None = None) -> EvalReport:
    """heads: the classifier's heads ("auto", "exact", "nystroem"); compare_heads: also report
    the heads and blend of a classifier with those heads, on the same split."""
    from posterdb.classify.blend import HEADS
    from posterdb.classify.experiment import evaluate as run_eval

    for name, value in (("--heads", heads), ("--compare-heads", compare_heads)):
        if value is not None and value not in HEADS:
            raise UsageError(f"{name} must be one of {', '.join(HEADS)}, not {value!r}")
    ids, X, Y, decades = genres.training_data(model)
    kwargs = {}
    if test_labels is not None:
        X_test, Y_test, dec_test = external_test_set(genres, model, Path(test_labels))
        kwargs.update(X_test=X_test, Y_test=Y_test, test_years_or_decades=dec_test)
    report = run_eval(X, Y, decades, train_decades=train_decades, test_decades=test_decades,
                      seed=seed, cross_decade=cross_decade, transductive=transductive,
                      classifier_params={"heads": heads}, compare_heads=compare_heads,
                      **kwargs)
    out = genres.root / "eval"
    out.mkdir(parents=True, exist_ok=True)
    report.save_json(out / "latest.json")
    report.render_png(out / "latest.png")
    return report


def external_test_set(genres: GenreService, model: str, labels: Path):
    """Embed (without storing) the posters named in an external labels file."""
    from posterdb.media.labels import read_labels

    rows, problems = read_labels(labels)
    if not rows:
        raise UsageError(f"{labels}: no usable labelled rows ({len(problems)} problems)")
    kept = [r for r in rows if r.genres]
    X = genres.models.embedder(model).embed_images([open_poster(r.path).image for r in kept])
    Y = to_multi_hot([r.genres for r in kept])
    dec = np.asarray([decade_of(r.year) if r.year else -1 for r in kept], dtype=np.int64)
    return X, Y, dec


def latest_report(root: Path) -> EvalReport | None:
    """The last `posterdb eval` report (an EvalReport, with its chart's path), or None."""
    path = Path(root) / "eval" / "latest.json"
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise StoreError(f"{path}: unreadable evaluation report ({e}); run `posterdb eval` "
                         f"again") from e
    png = path.with_suffix(".png")
    return EvalReport.from_dict(data, str(png) if png.exists() else None)
