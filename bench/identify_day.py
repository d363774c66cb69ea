"""A day's intake of bare scans identified through a TMDb-shaped catalogue, with artwork.

The world (bench.identify_world): the shared films and 59,757 others in a TMDb-shaped local
server (tests.tmdb_server) whose posters are other captures of the art; splits: art pool /
calibration / evaluation, disjoint.

1. **Calibration** (calibration split only): the artwork space (centring + PCA whitening) is
   fitted on the calibration scans' vectors; each scan is identified twice (year known, year
   unknown) through the server with artwork (candidates' own posters fetched, a reference of
   the most voted films of every decade), and the artwork scorer (logistic regression, one
   threshold per mode at >= 95 % precision with 95 % confidence) is fitted on the feature rows.
   `--save` writes the space and the scorer into posterdb/reading/identify/ (what ships).
2. **The day** (evaluation split): the scans are copied under neutral names with a labels file
   of only `file,year` into an inbox, ingested into a fresh store with mobilenet-v2; their OCR
   lines come from the read cache (the bench's one shortcut: OCR is slow); then
   `db.reading.identify(TMDbCatalogue)`, as the daily flow calls it. Genres posterdb ends up
   with: the film's when identified, else the image classifier's prediction (GenreClassifier
   fitted on every non-evaluation shared poster). Reported: identified share, precision,
   weighted / macro F1, per-decade coverage; then the same with the year unknown (a copy of
   the store without years), with a reference fetched into the store, and with a local film
   file (with and without poster paths) as the catalogue.

    python -m bench.identify_day --cache /work/cache/read/ocr.jsonl \\
        --catalogue /work/cache/read/catalogue.csv --scans /work/cache/read/mobilenet_scans.npz \\
        [--work /tmp/posterdb-bench/identify-day] [--calibration 1500] [--evaluation 1000] \\
        [--save] [--json OUT.json]
"""
from __future__ import annotations

import argparse
import csv
import json
import pickle
import shutil
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from bench.identify_eval import LABELS, load_truth
from bench.identify_world import ROOT, World, build, tmdb_id, write_film_file

MODELS = ROOT.parent / "shared" / "models"


def say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def truth_index(films, imdb: str, source: str) -> int | None:
    want = str(tmdb_id(imdb))
    return next((j for j, f in enumerate(films) if f.film_id == want), None)


def reference_films(cat, decades, per_decade: int):
    """The films with a poster among the `per_decade` most voted of each decade."""
    return cat.reference_films(decades, per_decade)


# -- 1. calibration -----------------------------------------------------------------------------
def calibrate(world: World, reads, truth, scans, server, work: Path, n: int, per_decade: int,
              save: bool, reuse: bool = False) -> dict:
    """Fit the artwork space and scorer on the calibration split. `reuse`: keep the
    calibration cache of a previous run (its reference and candidates' posters) and its
    feature rows when they are there (calibration-features.pkl), refitting only."""
    from posterdb.embedders import get_embedder
    from posterdb.reading.identify import TMDbCatalogue, art_candidates
    from posterdb.reading.identify.artwork import SPACE_FILE, Artwork, ArtworkSpace
    from posterdb.reading.identify.scoring import (
        ART_FEATURES,
        ART_MODEL,
        FilmScorer,
        Reading,
        features,
    )
    from posterdb.storage.catalog import Catalog
    from posterdb.storage.image_store import ImageStore
    from posterdb.tmdb.client import Credentials, TMDbClient

    names = [x for x in world.calibration if x in reads][:n]
    space = ArtworkSpace.fit("mobilenet-v2", np.stack([scans[x] for x in world.calibration]))
    root = work / "calibration-cache"
    feats = work / "calibration-features.pkl"
    if not reuse:
        shutil.rmtree(root, ignore_errors=True)
        feats.unlink(missing_ok=True)
    root.mkdir(parents=True, exist_ok=True)
    catalog = Catalog(root / "catalog.duckdb")
    catalog.migrate()
    emb = get_embedder("mobilenet-v2", model_dir=MODELS)
    art = Artwork(catalog, ImageStore(root), emb, lambda ids: None, space)
    cat = TMDbCatalogue(TMDbClient(server.url, Credentials(api_key=server.api_key), retries=3,
                                   max_retry_after=0.01))
    t0 = time.perf_counter()
    ref = reference_films(cat, range(1920, 2020, 10), per_decade)
    art.add_reference(cat, ref)
    say(f"calibration reference: {len(ref)} films, {art.counts()} in {time.perf_counter() - t0:.0f} s")
    G, T, K = [], [], []
    t0 = time.perf_counter()
    if feats.exists():
        with feats.open("rb") as f:
            G, T, K = pickle.load(f)
        names = []
    for i, x in enumerate(names):
        vec = space.project(scans[x])[0]
        for known in (True, False):
            r = Reading(reads[x], truth[x]["year"] if known else None, None, vec)
            qs = r.queries()
            films = cat.candidates(qs, year=r.year) if qs else []
            films, ev = art_candidates(r, cat, films, art)
            G.append(features(r, films, ev) if films else np.zeros((0, len(ART_FEATURES))))
            T.append(truth_index(films, truth[x]["id"], "tmdb"))
            K.append(known)
        if (i + 1) % 100 == 0:
            say(f"calibration {i + 1}/{len(names)} ({time.perf_counter() - t0:.0f} s)")
    if names:
        with feats.open("wb") as f:
            pickle.dump((G, T, K), f)
    scorer = FilmScorer(features=ART_FEATURES).fit(G, T, K)
    out = {"posters": len(G) // 2, "reference films": len(ref), "thresholds": scorer.thresholds_,
           "right film among candidates (year known)": sum(t is not None for t, k in zip(T, K) if k),
           "right film among candidates (year unknown)": sum(
               t is not None for t, k in zip(T, K) if not k),
           "seconds": round(time.perf_counter() - t0, 1),
           "oof": oof_summary(scorer)}
    if save:
        space.save(SPACE_FILE)
        scorer.save(ART_MODEL, notes={"fitted by": "bench/identify_day.py on the calibration "
                                      f"split ({len(names)} scans, year known and unknown), "
                                      f"through the TMDb-shaped server, reference {per_decade} "
                                      "most voted films a decade"})
        from posterdb.reading.identify import artwork_scorer
        artwork_scorer.cache_clear()
    out["coef"] = dict(zip(ART_FEATURES, np.round(scorer.coef_, 3).tolist()))
    return out


def oof_summary(scorer) -> dict:
    """Out-of-fold acceptance on the calibration split, per year known / unknown (each poster
    under the threshold of its mode)."""
    o = scorer.oof_
    thr = np.array([scorer.thresholds_.get(m, 1.0) for m in o["mode"]])
    acc = o["top"] >= thr
    out = {}
    for known in (True, False):
        sel = o["year_known"] == known
        a = sel & acc
        out["year known" if known else "year unknown"] = {
            "accepted": int(a.sum()), "of": int(sel.sum()),
            "art only accepted": int((a & (o["mode"] == "art only")).sum()),
            "precision": round(float(o["right"][a].mean()), 4) if a.any() else None}
    return out


# -- 2. the day ---------------------------------------------------------------------------------
def make_store(world: World, reads, truth, work: Path, names: list[str], name: str):
    """Inbox of neutral names + `file,year` labels -> a fresh store, reads from the cache."""
    from posterdb.reading.identify.text import squash
    from posterdb.reading.ocr import ENGINE, text_of
    from posterdb.store import PosterDB
    inbox, store = work / f"{name}-inbox", work / f"{name}-store"
    for p in (inbox, store):
        shutil.rmtree(p, ignore_errors=True)
    inbox.mkdir(parents=True)
    scan_of = {}
    with open(inbox / "labels.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file", "year"])
        for i, x in enumerate(names):
            neutral = f"scan-{i:05d}.jpg"
            shutil.copyfile(LABELS.parent / "images" / x, inbox / neutral)
            w.writerow([neutral, truth[x]["year"]])
            scan_of[neutral] = x
    db = PosterDB.open(store, model_dir=MODELS)
    t0 = time.perf_counter()
    rep = db.ingest(inbox, inbox / "labels.csv", model="mobilenet-v2")
    say(f"{name}: ingested {rep.added} in {time.perf_counter() - t0:.0f} s")
    by_id = {p.id: scan_of[Path(p.path).name] for p in db.posters.get()}
    ids = sorted(by_id)
    lines = [reads[by_id[i]] for i in ids]
    with db.catalog.write() as con:
        db.catalog.save_reads(con, ids, [[ln.to_json() for ln in r] for r in lines], ENGINE,
                              [text_of(r) for r in lines], [squash(text_of(r)) for r in lines])
    return db, by_id


def forget_years(db, ids) -> None:
    with db.catalog.write() as con:
        for i in ids:
            db.catalog.update_metadata(con, i, None, None)


def restore_years(db, by_id, truth) -> None:
    with db.catalog.write() as con:
        for i, x in by_id.items():
            db.catalog.update_metadata(con, i, None, truth[x]["year"])


def outcome(db, by_id, truth, image_pred, catalogue, label: str, **kw) -> dict:
    from posterdb.classify.report import scores
    from posterdb.core.genres import to_multi_hot
    t0 = time.perf_counter()
    run = db.reading.identify(catalogue, redo=True, **kw)
    secs = time.perf_counter() - t0
    got = db.reading.of(list(by_id))
    Y, P = [], []
    n_ok = n_right = 0
    by_dec = defaultdict(lambda: [0, 0, 0])
    for pid, x in by_id.items():
        ident = got[pid]["identified"] or {}
        ok = ident.get("status") == "identified"
        right = ok and str(ident.get("film_id")) in (str(tmdb_id(truth[x]["id"])), truth[x]["id"])
        n_ok += ok
        n_right += right
        d = truth[x]["year"] // 10 * 10
        by_dec[f"{d}s"][0] += 1
        by_dec[f"{d}s"][1] += ok
        by_dec[f"{d}s"][2] += right
        Y.append(truth[x]["genres"])
        P.append(to_multi_hot([ident["genres"]])[0] if ok else image_pred[x])
    sc = scores(to_multi_hot(Y), np.array(P))
    image_only = scores(to_multi_hot(Y), np.array([image_pred[x] for x in by_id.values()]))
    n = len(by_id)
    res = {"posters": n, "identified": n_ok, "right": n_right,
           "identified share": round(n_ok / n, 4),
           "precision": round(n_right / max(1, n_ok), 4),
           "weighted F1": round(sc["weighted"], 4), "macro F1": round(sc["macro"], 4),
           "image alone weighted/macro F1": [round(image_only["weighted"], 4),
                                             round(image_only["macro"], 4)],
           "seconds": round(secs, 1), "requests": run.get("requests"),
           "artwork": run.get("artwork"),
           "coverage per decade (posters, identified, right)": dict(sorted(by_dec.items()))}
    say(f"{label}: {json.dumps({k: v for k, v in res.items() if 'decade' not in k})}")
    return res


def image_predictions(world: World, truth, scans) -> dict[str, np.ndarray]:
    from posterdb.classify.blend import GenreClassifier
    from posterdb.core.genres import to_multi_hot
    train = [x for x in world.pool + world.calibration]
    test = list(world.evaluation)
    X = np.stack([scans[x] for x in train])
    Y = to_multi_hot([truth[x]["genres"] for x in train])
    dec = np.array([truth[x]["year"] // 10 * 10 for x in train])
    Xt = np.stack([scans[x] for x in test])
    dt = np.array([truth[x]["year"] // 10 * 10 for x in test])
    clf = GenreClassifier().fit(X, Y, dec, X_unlabelled=Xt, decades_unlabelled=dt)
    return dict(zip(test, clf.predict(Xt, dt)))


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--cache", type=Path, required=True)
    ap.add_argument("--catalogue", type=Path, required=True)
    ap.add_argument("--scans", type=Path, required=True, help="npz: files, X (mobilenet-v2)")
    ap.add_argument("--labels", type=Path, default=LABELS)
    ap.add_argument("--work", type=Path, default=Path("/tmp/posterdb-bench/identify-day"))
    ap.add_argument("--calibration", type=int, default=1500)
    ap.add_argument("--evaluation", type=int, default=1000)
    ap.add_argument("--reference-per-decade", type=int, default=1000)
    ap.add_argument("--skip-calibration", action="store_true", help="use the shipped files")
    ap.add_argument("--reuse-calibration", action="store_true",
                    help="reuse the calibration cache and feature rows in --work")
    ap.add_argument("--save", action="store_true")
    ap.add_argument("--only", default="known,unknown,reference,file")
    ap.add_argument("--json", type=Path)
    a = ap.parse_args(argv)
    from posterdb.reading import cache as read_cache
    from posterdb.reading.identify import LocalCatalogue, TMDbCatalogue
    from posterdb.tmdb.client import Credentials, TMDbClient
    from tests.tmdb_server import TMDbServer

    a.work.mkdir(parents=True, exist_ok=True)
    truth = load_truth(a.labels)
    reads = read_cache.by_name(a.cache)
    z = np.load(a.scans)
    scans = {str(f): v for f, v in zip(z["files"], z["X"])}
    world = build(a.catalogue, a.labels)
    only = set(a.only.split(","))
    report = {"server films": len(world.films), "art pool": len(world.pool),
              "read posters": len(reads)}
    with TMDbServer(world.films) as server:
        if not a.skip_calibration:
            report["calibration"] = calibrate(world, reads, truth, scans, server, a.work,
                                              a.calibration, a.reference_per_decade, a.save,
                                              a.reuse_calibration)
            say(f"calibration: {json.dumps(report['calibration'])}")
        names = [x for x in world.evaluation if x in reads][:a.evaluation]
        image_pred = image_predictions(world, truth, scans)
        db, by_id = make_store(world, reads, truth, a.work, names, "day")
        client = TMDbClient(server.url, Credentials(api_key=server.api_key), retries=3,
                            max_retry_after=0.01)
        tmdb = TMDbCatalogue(client)
        report["evaluation posters"] = len(names)
        if "known" in only:
            report["tmdb, year known"] = outcome(db, by_id, truth, image_pred, tmdb, "tmdb, year known")
            report["tmdb, year known, text only"] = outcome(
                db, by_id, truth, image_pred, tmdb, "tmdb, year known, text only", artwork=False)
        if "unknown" in only:
            forget_years(db, list(by_id))
            report["tmdb, year unknown"] = outcome(db, by_id, truth, image_pred, tmdb,
                                                   "tmdb, year unknown")
            restore_years(db, by_id, truth)
        if "reference" in only:
            ref = reference_films(tmdb, range(1920, 2020, 10), a.reference_per_decade)
            t0 = time.perf_counter()
            got = db.reading.add_reference(tmdb, ref)
            say(f"reference into the day's store: {got} in {time.perf_counter() - t0:.0f} s")
            report["reference"] = got | {"seconds": round(time.perf_counter() - t0, 1)}
            report["tmdb, year known, with reference"] = outcome(
                db, by_id, truth, image_pred, tmdb, "tmdb, year known, with reference")
            forget_years(db, list(by_id))
            report["tmdb, year unknown, with reference"] = outcome(
                db, by_id, truth, image_pred, tmdb, "tmdb, year unknown, with reference")
        if "file" in only:
            db2, by_id2 = make_store(world, reads, truth, a.work, names, "day-file")
            for posters in (True, False):
                path = write_film_file(world, a.work / f"films-{posters}.csv",
                                       f"{server.root}/t/p/w185" if posters else None)
                cat = LocalCatalogue.from_file(path)
                cat.client = client
                label = f"film file{' with poster URLs' if posters else ', text only'}, year known"
                report[label] = outcome(db2, by_id2, truth, image_pred, cat, label)
                if "file-text" not in only:
                    break
    print(json.dumps(report, indent=1))
    if a.json:
        a.json.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
