"""The world the identification benches run in: a TMDb-shaped catalogue with posters.

* Films: the 5,097 shared films plus the evaluation catalogue's others
  (bench.identify_catalogue: 56,694 real IMDb titles, 1,500 same-title remakes, 1,563 sequels).
* Posters: a shared film's posters are *other captures* of its artwork
  (tests.tmdb_server.recapture: crop, tilt, colour, blur, rescale, JPEG re-encode, each at a
  seeded strength between 0.5 and 1.5), never the scan's own bytes; 30 % list a second
  capture; 6 % of the shared films have no poster at all. A remake or sequel has *different*
  art: another capture of a poster from the *art pool* (a seeded 15 % of the shared posters,
  kept out of every split, so pool art is never a scan). A quarter of the IMDb distractors get
  pool art too (they crowd the reference); the rest have none.
* Vote counts are drawn from one distribution for every film, so "the most voted films of a
  decade" (a reference fetch) holds some shared films and misses others.

Splits (seeded, over all shared posters): art pool 15 %, then calibration / evaluation halves.
"""
from __future__ import annotations

import csv
import random
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.tmdb_server import GENRE_ID, Film, Recapture, shared_films  # noqa: E402

POOL_SHARE, NO_POSTER_SHARE, SECOND_CAPTURE_SHARE, DISTRACTOR_ART_SHARE = 0.15, 0.06, 0.3, 0.25


@dataclass
class World:
    films: list[Film]
    pool: list[str] = field(default_factory=list)          # shared files (art pool)
    calibration: list[str] = field(default_factory=list)   # shared files
    evaluation: list[str] = field(default_factory=list)    # shared files
    no_poster: set[str] = field(default_factory=set)       # shared files whose film has none


def tmdb_id(imdb_id: str) -> int:
    return int(imdb_id.lstrip("t"))


def build(catalogue: Path, labels: Path, seed: int = 0) -> World:
    rng = random.Random(seed)
    base = shared_films(labels)
    with labels.open(encoding="utf-8") as f:
        files = [Path(r["file"]).name for r in csv.DictReader(f)]
    order = list(range(len(files)))
    rng.shuffle(order)
    n_pool = int(POOL_SHARE * len(files))
    pool_idx, rest = order[:n_pool], order[n_pool:]
    world = World([], pool=[files[i] for i in pool_idx],
                  calibration=[files[i] for i in rest[0::2]],
                  evaluation=[files[i] for i in rest[1::2]])
    pool_paths = [labels.parent / "images" / files[i] for i in pool_idx]
    in_pool = set(pool_idx)
    votes = lambda: int(rng.paretovariate(1.2) * 20)  # noqa: E731  one distribution for all
    for i, film in enumerate(base):
        src = film.poster
        film.vote_count = votes()
        film.popularity = film.vote_count / 10 + rng.random()
        if i not in in_pool and rng.random() < NO_POSTER_SHARE:
            film.poster, film.images = None, []
            world.no_poster.add(files[i])
        else:
            first = Recapture(src, seed=film.id, strength=rng.uniform(0.5, 1.5))
            film.poster = first
            film.images = [first] + ([Recapture(src, seed=film.id + 7, strength=rng.uniform(0.5, 1.5))]
                                     if rng.random() < SECOND_CAPTURE_SHARE else [])
        world.films.append(film)
    with catalogue.open(encoding="utf-8") as f:
        for i, row in enumerate(csv.DictReader(f)):
            if row["kind"] == "shared":
                continue
            art = None
            if row["kind"] in ("remake", "sequel") or rng.random() < DISTRACTOR_ART_SHARE:
                art = Recapture(rng.choice(pool_paths), seed=20_000_000 + i,
                                strength=rng.uniform(0.5, 1.5))
            v = votes()
            world.films.append(Film(
                id=20_000_000 + i, title=row["title"], year=int(row["year"]),
                genre_ids=[GENRE_ID[g] for g in row["genres"].split("|") if g in GENRE_ID],
                poster=art, images=None, vote_count=v, popularity=v / 10 + rng.random()))
    return world


def write_film_file(world: World, path: Path, image_base: str | None) -> Path:
    """The same films as a local film file (CSV: id, title, year, genres, poster); with
    `image_base` (the server's image URL root + size) the poster column holds each film's
    poster URLs on that host, else it is empty (identification from the file is text only)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    names = {g: n for n, g in GENRE_ID.items()}
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["id", "title", "year", "genres", "poster"])
        for film in world.films:
            refs = [image_base.rstrip("/") + film.image_path(k)
                    for k in range(len(film.posters))] if image_base else []
            w.writerow([film.id, film.title, film.year or "",
                        "|".join(names[g] for g in film.genre_ids if g in names), "|".join(refs)])
    tmp.replace(path)
    return path
