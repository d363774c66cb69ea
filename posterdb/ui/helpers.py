"""Pure helpers for the Streamlit page (`app.py`, `posterdb/page/`): configuration, formatting,
paging, friendly errors.

Nothing here imports Streamlit or touches the store, so every function is plain to test.
"""
from __future__ import annotations

import argparse
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from posterdb.classify.report import AVERAGES, EvalReport  # noqa: F401  (AVERAGES: the page's columns)
from posterdb.core.errors import (
    ImageError, NotTrainedError, PosterDBError, StoreBusyError, StoreError)
from posterdb.core.genres import GENRES
from posterdb.core.settings import Settings

IMAGE_TYPES = ("jpg", "jpeg", "png", "webp", "bmp", "tif", "tiff", "gif")
BUSY_MESSAGE = ("The store is busy: another process (an ingest?) is writing to it. "
                "Retrying in a moment…")


@dataclass(frozen=True)
class PageConfig:
    store: Path
    model_dir: Path | None


def page_config(argv: Sequence[str] | None = None,
                env: Mapping[str, str] | None = None) -> PageConfig:
    """`--store DIR` / `--model-dir DIR` after `streamlit run app.py --`, else the environment
    (read by `posterdb.core.settings`), else the defaults.

    Unknown arguments are ignored (under pytest / AppTest, sys.argv belongs to pytest). Who may
    use the page is not configured here: the store's page password (docs/page.md).
    """
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument("--store", default=None)
    parser.add_argument("--model-dir", default=None)
    args, _ = parser.parse_known_args(list(argv or []))
    settings = Settings.from_env(env, store=args.store or None,
                                 model_dir=args.model_dir or None)
    return PageConfig(settings.store, settings.model_dir)


# -- formatting --------------------------------------------------------------------------------

def decade_label(decade: int | str | None) -> str:
    if decade is None or decade == "unknown":
        return "unknown"
    return f"{int(decade)}s"


def year_text(year: int | None) -> str:
    return str(year) if year else "year unknown"


def pct(x: float) -> str:
    return f"{100 * float(x):.0f} %"


def badges(genres: Iterable[str], highlight: Iterable[str] = ()) -> str:
    """Markdown badges; genres in `highlight` are green with a check mark, the rest grey."""
    hi = set(highlight)
    out = [f":green-badge[✓ {g}]" if g in hi else f":gray-badge[{g}]" for g in genres]
    return " ".join(out) if out else ":gray-badge[no genres]"


def poster_heading(title: str | None, year: int | None, poster_id: int | None = None,
                   path: str | None = None) -> str:
    """'**Title** (1975) · #12'; an untitled poster goes by its file name."""
    name = title or (Path(path).name if path else "untitled")
    text = f"**{name}**" + (f" ({year})" if year else "")
    return text + (f" · #{poster_id}" if poster_id is not None else "")


def probability_rows(probabilities: Mapping[str, float], predicted: Iterable[str],
                     top: int = 8, min_p: float = 0.03) -> list[tuple[str, float, bool]]:
    """(genre, p, predicted?) sorted by p: every predicted genre plus the next likeliest ones."""
    pred = set(predicted)
    ranked = sorted(probabilities.items(), key=lambda kv: (-float(kv[1]), kv[0]))
    keep = [(g, float(p), True) for g, p in ranked if g in pred]
    others = [(g, float(p), False) for g, p in ranked if g not in pred and float(p) >= min_p]
    keep += others[:max(0, top - len(keep))]
    return sorted(keep, key=lambda r: (-r[1], r[0]))


def by_probability(genres: Iterable[str], probabilities: Mapping[str, float]) -> list[str]:
    """Genres ordered likeliest first (ties: GENRES order)."""
    order = {g: i for i, g in enumerate(GENRES)}
    return sorted(genres, key=lambda g: (-float(probabilities.get(g, 0.0)), order.get(g, 99)))


def shared_genres(genres: Iterable[str], predicted: Iterable[str]) -> list[str]:
    pred = set(predicted)
    return [g for g in genres if g in pred]


def share_text(alpha: float) -> str:
    """'heads 62 % · vote 38 %' (alpha is the heads' share of the blend)."""
    a = min(max(float(alpha), 0.0), 1.0)
    return f"heads {pct(a)} · neighbour vote {pct(1 - a)}"


# -- uploads -----------------------------------------------------------------------------------

_YEAR = re.compile(r"(?<!\d)(1[89]\d\d|20\d\d)(?!\d)")


def title_from_filename(name: str) -> tuple[str, int | None]:
    """'Jaws (1975).jpg' -> ('Jaws', 1975); 'tt0073195.jpg' -> ('tt0073195', None)."""
    stem = Path(name).stem
    m = _YEAR.search(stem)
    year = int(m.group(1)) if m else None
    title = _YEAR.sub("", stem).replace("()", "").replace("[]", "") if m else stem
    title = " ".join(title.replace("_", " ").split()).strip(" -_.,([")
    return title or stem, year


# -- lists -------------------------------------------------------------------------------------

def page_count(n: int, per_page: int) -> int:
    return max(1, math.ceil(n / max(1, per_page)))


def paginate(items: Sequence, page: int, per_page: int) -> list:
    """Items of 1-based `page` (clamped to the valid range)."""
    page = min(max(1, int(page)), page_count(len(items), per_page))
    return list(items[(page - 1) * per_page: page * per_page])


def chunks(items: Sequence, n: int) -> list[list]:
    return [list(items[i:i + n]) for i in range(0, len(items), n)]


def decades_of(info: Mapping) -> list[int]:
    return sorted(int(d) for d in info.get("by_decade", {}) if str(d).isdigit())


def genre_counts(info: Mapping) -> list[dict]:
    """Rows for the per-genre chart: all 19 genres, labelled and predicted counts."""
    labelled, predicted = info.get("by_genre", {}), info.get("predicted_by_genre", {})
    return [{"genre": g, "labelled": int(labelled.get(g, 0)), "predicted": int(predicted.get(g, 0))}
            for g in GENRES]


def decade_counts(info: Mapping) -> list[dict]:
    return [{"decade": decade_label(d), "posters": int(n)}
            for d, n in info.get("by_decade", {}).items()]


# -- eval report (posterdb.classify.report.EvalReport, as read back by `latest_eval`) -------------

def eval_averages(report: EvalReport) -> list[dict]:
    """One row per method: its label and the weighted / macro / micro / samples F1."""
    return [{"method": m.label} | {a: m.averages.get(a) for a in AVERAGES}
            for m in report.methods.values()]


def eval_per_genre_f1(report: EvalReport) -> dict[str, dict[str, float]]:
    """{method label: {genre: F1}} over the genres with test support (in GENRES order)."""
    if not report.methods:
        return {}
    first = next(iter(report.methods.values())).per_genre
    genres = [g for g in GENRES if (first.get(g, {}).get("support") or 0) > 0]
    out = {m.label: {g: f for g in genres if (f := m.per_genre.get(g, {}).get("f1")) is not None}
           for m in report.methods.values()}
    return {k: v for k, v in out.items() if v}


def _label(report: EvalReport, name: str) -> str:
    m = report.methods.get(name)
    return m.label if m else name


def eval_cross_decade(report: EvalReport, average: str = "weighted") -> dict[str, dict]:
    """{method label: {"decades": [...], "matrix": rows (train decade) × cols (test decade)}}."""
    cd = report.cross_decade
    if not cd or not cd["decades"]:
        return {}
    decades = [decade_label(d) for d in cd["decades"]]
    return {_label(report, name): {"decades": decades, "matrix": m[average]}
            for name, m in cd["methods"].items() if average in m}


def eval_per_decade(report: EvalReport, average: str = "weighted") -> list[dict]:
    """Rows {decade, <method label>: F1, ..., test posters} from the report's per-decade F1."""
    rows: dict[str, dict] = {}
    for name, by_decade in report.per_decade.items():
        for d, sc in by_decade.items():
            row = rows.setdefault(d, {"decade": decade_label(d) if d.isdigit() else d})
            row[_label(report, name)] = sc.get(average)
            if sc.get("n") is not None:
                row["test posters"] = int(sc["n"])
    return [rows[k] for k in sorted(rows, key=lambda d: (not d.isdigit(), d))]


# -- errors ------------------------------------------------------------------------------------

def friendly_error(e: BaseException) -> str:
    """One readable line for the page (never a traceback)."""
    if isinstance(e, ImageError):
        return f"{Path(e.path).name}: {e.reason}"
    if isinstance(e, StoreBusyError):
        return BUSY_MESSAGE
    if isinstance(e, NotTrainedError):
        return "No genre classifier is trained for this store yet: run `posterdb train`."
    if isinstance(e, (StoreError, PosterDBError)):
        return str(e)
    if isinstance(e, ValueError):
        return f"Not accepted: {e}"
    return f"Something went wrong ({type(e).__name__}: {e}). The details are in the server log."
