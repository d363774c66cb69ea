"""The evaluation report: per method, per-genre precision / recall / F1 / support and the four
F1 averages; per-decade and cross-decade F1; JSON (NaN-free) and a text table and heatmap.

Kept apart from `experiment.py` (which fits and splits) so that readers of a saved report (the
page, `posterdb eval --json`) need none of the fitting code.
"""
from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from posterdb.core.atomic import replacing, write_atomic
from posterdb.core.genres import GENRES

METHODS = ("study_svm", "study_svm_balanced", "heads", "vote", "blend")
METHOD_LABELS = {
    "study_svm": "study: RBF SVM (unbalanced)",
    "study_svm_balanced": "study: RBF SVM (balanced)",
    "heads": "posterdb: SVM heads only",
    "vote": "posterdb: similarity vote only",
    "blend": "posterdb: blend",
}
HEADS_LABELS = {"exact": "exact RBF SVMs", "nystroem": "Nystroem + balanced linear"}
AVERAGES = ("weighted", "macro", "micro", "samples")
MACRO_NOTE = ("macro F1 averages only the genres with support > 0 in the test set; "
              "genres absent from the test set are left out of the macro average for every method")


def scores(Y_true: np.ndarray, Y_pred: np.ndarray) -> dict[str, float]:
    """weighted / macro (genres with support only) / micro / samples F1."""
    from sklearn.metrics import (
        f1_score,  # here: readers of a saved report need no sklearn
    )

    Y_true = np.asarray(Y_true).astype(int)
    Y_pred = np.asarray(Y_pred).astype(int)
    if len(Y_true) == 0:
        return {a: float("nan") for a in AVERAGES}
    has = Y_true.sum(0) > 0
    return {
        "weighted": float(f1_score(Y_true, Y_pred, average="weighted", zero_division=0)),
        "macro": float(f1_score(Y_true[:, has], Y_pred[:, has], average="macro", zero_division=0))
        if has.any() else float("nan"),
        "micro": float(f1_score(Y_true, Y_pred, average="micro", zero_division=0)),
        "samples": float(f1_score(Y_true, Y_pred, average="samples", zero_division=0)),
    }


@dataclass
class MethodResult:
    name: str
    label: str
    averages: dict[str, float]
    per_genre: dict[str, dict[str, float]]
    fit_seconds: float
    predict_seconds: float

    @classmethod
    def compute(cls, name, Y_true, Y_pred, fit_s=0.0, pred_s=0.0) -> "MethodResult":
        from sklearn.metrics import precision_recall_fscore_support

        p, r, f, s = precision_recall_fscore_support(Y_true, Y_pred, average=None,
                                                     labels=list(range(len(GENRES))), zero_division=0)
        per = {g: {"precision": float(p[j]), "recall": float(r[j]), "f1": float(f[j]), "support": int(s[j])}
               for j, g in enumerate(GENRES)}
        return cls(name, METHOD_LABELS.get(name, name), scores(Y_true, Y_pred), per, float(fit_s), float(pred_s))


def _clean(o):
    """JSON-safe: NaN/inf -> None, numpy scalars -> python."""
    if isinstance(o, dict):
        return {str(k): _clean(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_clean(v) for v in o]
    if isinstance(o, np.ndarray):
        return _clean(o.tolist())
    if isinstance(o, (np.floating, float)):
        f = float(o)
        return None if not math.isfinite(f) else f
    if isinstance(o, np.integer):
        return int(o)
    return o


def _num(v) -> float | None:
    """A finite number as float, anything else (None, NaN, text, bool) as None."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v) if math.isfinite(v) else None


def _mapping(v) -> dict:
    return dict(v) if isinstance(v, Mapping) else {}


@dataclass
class EvalReport:
    setup: dict
    methods: dict[str, MethodResult]
    per_decade: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    cross_decade: dict | None = None
    classifier: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)
    chart_png: str | None = None  # where `save_png` put its chart, when read back (not saved)

    @classmethod
    def from_dict(cls, d: Mapping, chart_png: str | None = None) -> "EvalReport":
        """A report read back from its JSON, checked once here so that readers (the page) use
        plain attributes: a file written by another version may lack parts or carry nulls;
        missing numbers become None, entries that are not objects are left out."""
        d = _mapping(d)
        methods = {}
        for name, m in _mapping(d.get("methods")).items():
            if not isinstance(m, Mapping):
                continue
            per = {g: {k: _num(v) for k, v in s.items()}
                   for g, s in _mapping(m.get("per_genre")).items() if isinstance(s, Mapping)}
            methods[str(name)] = MethodResult(
                str(name), str(m.get("label") or name),
                {a: _num(_mapping(m.get("averages")).get(a)) for a in AVERAGES}, per,
                _num(m.get("fit_seconds")) or 0.0, _num(m.get("predict_seconds")) or 0.0)
        per_decade = {str(name): {str(dec): {k: _num(v) for k, v in s.items()}
                                  for dec, s in by_dec.items() if isinstance(s, Mapping)}
                      for name, by_dec in _mapping(d.get("per_decade")).items()
                      if isinstance(by_dec, Mapping)}
        cd = d.get("cross_decade")
        cross = None
        if isinstance(cd, Mapping) and isinstance(cd.get("decades"), list):
            decades = [int(x) for x in cd["decades"] if _num(x) is not None]
            mats = {}
            for name, m in _mapping(cd.get("methods")).items():
                if not isinstance(m, Mapping):
                    continue
                mats[str(name)] = {a: [[_num(v) for v in row] for row in grid]
                                   for a, grid in m.items() if isinstance(grid, list)
                                   and len(grid) == len(decades)
                                   and all(isinstance(r, list) and len(r) == len(decades)
                                           for r in grid)}
            cross = {**cd, "decades": decades, "methods": mats}
        return cls(_mapping(d.get("setup")), methods, per_decade, cross,
                   _mapping(d.get("classifier")), _mapping(d.get("timings")), chart_png)

    # -- serialisation -----------------------------------------------------------------------
    def to_dict(self) -> dict:
        return _clean({
            "setup": self.setup,
            "methods": {k: asdict(v) for k, v in self.methods.items()},
            "per_decade": self.per_decade,
            "cross_decade": self.cross_decade,
            "classifier": self.classifier,
            "timings": self.timings,
        })

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    def save_json(self, path: str | Path) -> Path:
        path = Path(path)
        write_atomic(path, self.to_json().encode("utf-8"))
        return path

    # -- rendering ---------------------------------------------------------------------------
    def to_markdown(self) -> str:
        s = self.setup
        lines = [f"**Setup**: {s.get('description', '')} - {s['n_train']} training posters, "
                 f"{s['n_test']} test posters"
                 + (f" ({s['n_dropped_duplicates']} test near-duplicates of training posters dropped)"
                    if s.get("n_dropped_duplicates") else "") + ".", ""]
        lines += ["| method | weighted F1 | macro F1 | micro F1 | samples F1 |", "|---|---:|---:|---:|---:|"]
        for name, m in self.methods.items():
            a = m.averages
            lines.append(f"| {m.label} | " + " | ".join(_f(a[k]) for k in AVERAGES) + " |")
        lines += ["", f"_{MACRO_NOTE} ({len(s.get('genres_in_macro', []))} of {len(GENRES)} here)._"]
        if s.get("transductive"):
            lines.append("_Transductive: the test posters' features (not labels) were used for the "
                         "per-decade centring means._")
        if self.classifier:
            c = self.classifier
            lines.append(f"_Blend: {HEADS_LABELS.get(c.get('heads', 'exact'), c.get('heads'))} heads"
                         + (f" ({c['n_components']} landmarks)" if c.get("n_components") else "")
                         + f", alpha={c.get('alpha')}, k={c.get('k')}, T={c.get('temperature')}, "
                         + (f"C={c.get('C')}" if not isinstance(c.get("C"), dict)
                            else "C per genre (out of fold)")
                         + f", decade heads={c.get('decade_heads')} "
                         f"(weight {c.get('decade_weight')}); chosen out of fold on the training side._")
        names = list(self.methods)
        lines += ["", "| genre | support | " + " | ".join(self.methods[n].label for n in names) + " |",
                  "|---|---:|" + "---:|" * len(names)]
        for g in GENRES:
            sup = self.methods[names[0]].per_genre[g]["support"]
            lines.append(f"| {g} | {sup} | " + " | ".join(_f(self.methods[n].per_genre[g]["f1"]) for n in names) + " |")
        if self.per_decade:
            decs = sorted({d for v in self.per_decade.values() for d in v}, key=_dec_key)
            lines += ["", "| decade | n | " + " | ".join(f"{METHOD_LABELS.get(m, m)} weighted / macro" for m in self.per_decade) + " |",
                      "|---|---:|" + "---:|" * len(self.per_decade)]
            for d in decs:
                first = next(iter(self.per_decade.values()))
                n = first.get(d, {}).get("n", 0)
                cells = []
                for m, v in self.per_decade.items():
                    r = v.get(d)
                    cells.append("-" if r is None else f"{_f(r['weighted'])} / {_f(r['macro'])}")
                lines.append(f"| {d} | {n} | " + " | ".join(cells) + " |")
        if self.cross_decade:
            cd = self.cross_decade
            decs = cd["decades"]
            for m, mats in cd["methods"].items():
                lines += ["", f"Cross-decade weighted F1, {METHOD_LABELS.get(m, m)} (rows: train decade, columns: test decade)", "",
                          "| train \\ test | " + " | ".join(str(d) for d in decs) + " |",
                          "|---|" + "---:|" * len(decs)]
                for i, d in enumerate(decs):
                    lines.append(f"| {d} | " + " | ".join(_f(v) for v in mats["weighted"][i]) + " |")
        return "\n".join(lines) + "\n"

    def render_png(self, path: str | Path, dpi: int = 110) -> Path:
        import matplotlib
        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt

        path = Path(path)
        names = list(self.methods)
        genres = [g for g in GENRES if self.methods[names[0]].per_genre[g]["support"] > 0]
        has_cd = bool(self.cross_decade and self.cross_decade.get("methods")
                      and self.cross_decade.get("decades"))
        fig = plt.figure(figsize=(15, 10 if has_cd else 5.5))
        ax = fig.add_subplot(2 if has_cd else 1, 1, 1)
        width = 0.8 / max(len(names), 1)
        xs = np.arange(len(genres))
        for i, n in enumerate(names):
            m = self.methods[n]
            ax.bar(xs + (i - (len(names) - 1) / 2) * width, [m.per_genre[g]["f1"] for g in genres], width,
                   label=f"{m.label} (w {m.averages['weighted']:.2f} / macro {m.averages['macro']:.2f})")
        ax.set_xticks(xs)
        ax.set_xticklabels([f"{g}\n({self.methods[names[0]].per_genre[g]['support']})" for g in genres],
                           rotation=45, ha="right", fontsize=8)
        ax.set_ylabel("F1")
        ax.set_ylim(0, 1)
        ax.set_title(f"Per-genre F1 - {self.setup.get('description', '')}", fontsize=10)
        ax.legend(fontsize=8, loc="upper right")
        if has_cd:
            cd = self.cross_decade
            decs = cd["decades"]
            meths = list(cd["methods"])
            vals = [np.array(cd["methods"][m]["weighted"], dtype=float) for m in meths]
            finite = [x for v in vals for x in v.ravel() if np.isfinite(x)]
            vmax = max(finite) if finite else 1.0
            for i, (m, v) in enumerate(zip(meths, vals)):
                axh = fig.add_subplot(2, len(meths), len(meths) + i + 1)
                im = axh.imshow(v, vmin=0, vmax=vmax, cmap="viridis")
                axh.set_xticks(range(len(decs)))
                axh.set_xticklabels([str(d) for d in decs], rotation=45, fontsize=8)
                axh.set_yticks(range(len(decs)))
                axh.set_yticklabels([str(d) for d in decs], fontsize=8)
                axh.set_xlabel("test decade")
                axh.set_ylabel("train decade")
                axh.set_title(f"cross-decade weighted F1: {METHOD_LABELS.get(m, m)}", fontsize=9)
                for r in range(len(decs)):
                    for c in range(len(decs)):
                        if np.isfinite(v[r, c]):
                            axh.text(c, r, f"{v[r, c]:.2f}", ha="center", va="center", fontsize=6,
                                     color="white" if v[r, c] < 0.6 * vmax else "black")
                fig.colorbar(im, ax=axh, fraction=0.046)
        fig.tight_layout()
        try:
            with replacing(path) as f:
                fig.savefig(f, dpi=dpi, format="png")
        finally:
            plt.close(fig)
        return path


def _f(v) -> str:
    return "-" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:.3f}"


def _dec_key(d):
    try:
        return int(d)
    except (TypeError, ValueError):
        return 10**9
