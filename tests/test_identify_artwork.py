"""Artwork verification: a scan against its candidate films' own posters, fetched from a real
local TMDb-shaped server (another capture of the same art, never the scan's bytes), cached in a
real store content-addressed, embedded by the real int8 MobileNetV2; and the reference of cached
posters naming a film whose title was not read. A film file with poster paths; IMDb akas."""
from __future__ import annotations

import gzip
import io
import shutil

import duckdb
import numpy as np
import pytest
from PIL import Image

pytest.importorskip("rapidfuzz")

from posterdb.reading.identify import (  # noqa: E402
    PENDING,
    LocalCatalogue,
    Reading,
    TMDbCatalogue,
    identify,
)
from posterdb.reading.identify.artwork import ArtworkSpace  # noqa: E402
from posterdb.reading.ocr import ReadLine  # noqa: E402
from tests import tmdb_server as ts  # noqa: E402


def L(text: str, top: float, height: float = 30.0):
    return ReadLine(text, 0.98, ((10, top), (160, top), (160, top + height), (10, top + height)))


@pytest.fixture(scope="module")
def scans(label_rows, posters_dir):
    """Six shared posters of different films (the scans) and six others (other art)."""
    rows = label_rows[100:112]
    return [posters_dir / r["file"] for r in rows]


@pytest.fixture(scope="module")
def store(tmp_path_factory, scans, model_dir):
    """A real store of the six scans (neutral names) embedded by mobilenet-v2."""
    from posterdb.store import PosterDB

    src = tmp_path_factory.mktemp("scans")
    for i, p in enumerate(scans[:6]):
        shutil.copyfile(p, src / f"scan-{i}.jpg")
    root = tmp_path_factory.mktemp("art") / "store"
    db = PosterDB.open(root, model_dir=model_dir)
    assert db.ingest(src, model="mobilenet-v2").added == 6
    return root


def _pid(db, i: int) -> int:
    """The store id of scan-i.jpg."""
    return next(p.id for p in db.posters.get() if p.path.endswith(f"scan-{i}.jpg"))


def _films(scans) -> list:
    """Film k (id 1+k) is "The Lodger" k times over: same title, year 1926 + 10k; the first's
    posters are captures of scan 0; the others have another poster's art (or none)."""
    films = []
    for k in range(4):
        art = scans[0] if k == 0 else scans[6 + k]
        films.append(ts.Film(id=1 + k, title="The Lodger", year=1926 + 10 * k, genre_ids=[53, 80],
                             poster=None if k == 3 else ts.Recapture(art, seed=k),
                             images=[] if k == 3 else None))
    for k in range(1, 6):   # scans 1..5 as films with other titles (the reference)
        films.append(ts.Film(id=100 + k, title=f"Other Film {k}", year=1950, genre_ids=[18],
                             poster=ts.Recapture(scans[k], seed=100 + k, strength=1.2)))
    return films + ts.distractor_films(200)


def _client(srv, **kw):
    from posterdb.tmdb.client import Credentials, TMDbClient
    return TMDbClient(srv.url, Credentials(api_key=srv.api_key), **kw)


def test_images_endpoint_serves_another_capture_never_the_scan(scans):
    films = _films(scans)
    with ts.TMDbServer(films) as srv:
        c = _client(srv)
        listed = c.movie_images(1)
        assert [p.file_path for p in listed] == [films[0].poster_path]
        assert listed[0].width > 0 and listed[0].height > 0
        data = c.poster_image(listed[0].file_path)
        assert data != scans[0].read_bytes()
        a = np.asarray(Image.open(io.BytesIO(data)))
        assert a.ndim == 3 and min(a.shape[:2]) >= 100
        assert c.movie_images(4) == []                              # a film with no poster
        with pytest.raises(Exception, match="404"):
            c.movie_images(999_999)
        assert srv.image_requests_with_credentials == 0


def test_artwork_tells_the_film_from_its_same_title_remakes_year_unknown(store, scans, model_dir):
    """Text alone cannot choose between four "The Lodger"s with no year; the art can."""
    from posterdb.store import PosterDB

    db = PosterDB.open(store, model_dir=model_dir)
    art = db.reading.artwork()
    assert art is not None                      # mobilenet-v2 has a shipped artwork space
    lines = [L("THE LODGER", 40, 40), L("a story of the London fog", 100, 10)]
    with ts.TMDbServer(_films(scans)) as srv:
        cat = TMDbCatalogue(_client(srv))
        vec = art.scans([_pid(db, 0)])[_pid(db, 0)]
        text_only = identify(Reading(lines), cat)
        assert text_only.status == "unidentified"
        got = identify(Reading(lines, vector=vec), cat, artwork=art)
        assert got.status == "identified" and got.film.film_id == "1"
        assert got.film.year == 1926 and set(got.film.genres) == {"Thriller", "Crime"}
        fetched = art.fetched
        assert 1 <= fetched <= 3 * 3             # the remakes' posters, the one with none
        again = identify(Reading(lines, vector=vec), cat, artwork=art)
        assert again.film.film_id == "1" and art.fetched == fetched      # cached: no download
        assert srv.api_hits["/movie/4/images"] == 1       # "no poster" is remembered too
    con = duckdb.connect(str(store / "catalog.duckdb"), read_only=True)
    rows = con.execute("SELECT film_id, sha256, image_path FROM catalogue_posters "
                       "ORDER BY film_id").fetchall()
    n_vec = con.execute("SELECT count(*) FROM catalogue_poster_vectors WHERE model = "
                        "'mobilenet-v2'").fetchone()[0]
    checked = con.execute("SELECT film_id, n_posters FROM catalogue_films WHERE checked_at IS "
                          "NOT NULL ORDER BY film_id").fetchall()
    con.close()
    assert ("4", 0) in checked and n_vec == len({r[1] for r in rows}) >= 2
    for _, sha, rel in rows:                           # content-addressed in the store
        assert rel == f"catalogue/{sha[:2]}/{sha}.jpg" and (store / rel).is_file()


def test_art_alone_names_a_film_whose_title_was_not_read(store, scans, model_dir):
    from posterdb.reading.identify import Film
    from posterdb.store import PosterDB

    db = PosterDB.open(store, model_dir=model_dir)
    art = db.reading.artwork()
    with ts.TMDbServer(_films(scans)) as srv:
        cat = TMDbCatalogue(_client(srv))
        ref = [Film("tmdb", str(100 + k), f"Other Film {k}", 1950, ("Drama",)) for k in range(1, 6)]
        got = db.reading.add_reference(cat, ref)
        assert got["films"] == 5 and got["store"]["posters"] >= 5
        vec = art.scans([_pid(db, 3)])[_pid(db, 3)]
        nothing_read = Reading([L("~", 5, 5)], year=1950, vector=vec)
        named = identify(nothing_read, cat, artwork=db.reading.artwork())
        assert named.film is not None and named.film.film_id == "103"
        assert named.status == "identified"
        assert identify(Reading([L("~", 5, 5)], year=1950), cat).status == "unidentified"


def test_images_rate_limited_leaves_the_poster_pending_then_catches_up(tmp_path, scans,
                                                                      model_dir):
    from posterdb.store import PosterDB

    (tmp_path / "in").mkdir()
    shutil.copyfile(scans[0], tmp_path / "in" / "scan-0.jpg")
    db = PosterDB.open(tmp_path / "store", model_dir=model_dir)
    db.ingest(tmp_path / "in", model="mobilenet-v2")
    films = [ts.Film(id=7000 + k, title="Nosferatu", year=1922 + 57 * k, genre_ids=[27],
                     poster=ts.Recapture(scans[0 if k == 0 else 9], seed=k)) for k in range(2)]
    with ts.TMDbServer(films) as srv:
        cat = TMDbCatalogue(_client(srv, retries=1, max_retry_after=0.01, backoff=0.01))
        art = db.reading.artwork()
        vec = art.scans([1])[1]
        srv.rate_limit("/movie/images", times=2, retry_after=1)
        r = Reading([L("NOSFERATU", 30, 50)], vector=vec)
        assert identify(r, cat, artwork=art).status == PENDING
        got = identify(r, cat, artwork=art)
        assert got.status == "identified" and got.film.film_id == "7000"


def test_film_file_posters_inside_its_folder_only(tmp_path, scans):
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "a.jpg").write_bytes(ts.recapture(scans[0].read_bytes(), 1))
    (tmp_path / "outside.jpg").write_bytes(b"x")
    f = tmp_path / "p" / "films.csv"
    f.write_text("id,title,year,genres,poster\n"
                 "1,The Lodger,1926,Thriller,a.jpg\n"
                 "2,The Lodger,1944,Thriller,../outside.jpg\n"
                 "3,The Lodger,1932,Thriller,\n", encoding="utf-8")
    cat = LocalCatalogue.from_file(f)
    assert cat.has_posters
    by = {x.film_id: x for x in cat.films}
    [ref] = cat.film_posters(by["1"])
    assert ref.fetch()[:2] == b"\xff\xd8"
    assert cat.film_posters(by["2"]) == [] and cat.film_posters(by["3"]) == []
    plain = tmp_path / "plain.csv"
    plain.write_text("title,year\nThe Lodger,1926\n", encoding="utf-8")
    assert not LocalCatalogue.from_file(plain).has_posters


def test_imdb_akas_add_original_and_foreign_titles(tmp_path):
    from posterdb.reading.identify.text import queries

    basics = ["tconst\ttitleType\tprimaryTitle\toriginalTitle\tisAdult\tstartYear\tendYear\t"
              "runtimeMinutes\tgenres",
              "tt0017136\tmovie\tMetropolis\tMetropolis\t0\t1927\t\\N\t153\tDrama,Sci-Fi",
              "tt0016641\tmovie\tThe Joyless Street\tDie freudlose Gasse\t0\t1925\t\\N\t151\tDrama"]
    akas = ["titleId\tordering\ttitle\tregion\tlanguage\ttypes\tattributes\tisOriginalTitle",
            "tt0016641\t1\tLa rue sans joie\tFR\t\\N\t\\N\t\\N\t0",
            "tt0016641\t2\tDie freudlose Gasse\tDE\t\\N\toriginal\t\\N\t1",
            "tt0017136\t3\tMetrópolis\tES\t\\N\t\\N\t\\N\t0",
            "tt9999999\t1\tNot in basics\tUS\t\\N\t\\N\t\\N\t0"]
    (tmp_path / "title.basics.tsv.gz").write_bytes(gzip.compress("\n".join(basics).encode()))
    (tmp_path / "title.akas.tsv.gz").write_bytes(gzip.compress("\n".join(akas).encode()))
    cat = LocalCatalogue.from_file(tmp_path / "title.basics.tsv.gz")   # akas found beside it
    joyless = next(f for f in cat.films if f.film_id == "tt0016641")
    assert "LARUESANSJOIE" in joyless.keys and "DIEFREUDLOSEGASSE" in joyless.keys
    found = cat.candidates(queries([L("LA RUE SANS JOIE", 30, 40)]))
    assert [f.film_id for f in found] == ["tt0016641"]


def test_the_artwork_space_puts_another_capture_nearest(scans, model_dir):
    """On real MobileNet vectors of 12 posters: each one's recapture is nearest to it."""
    from posterdb.embedders import get_embedder

    emb = get_embedder("mobilenet-v2", model_dir=model_dir, allow_download=False)
    X = emb.embed_images([Image.open(p).convert("RGB") for p in scans])
    R = emb.embed_images([Image.open(io.BytesIO(ts.recapture(p.read_bytes(), i))).convert("RGB")
                          for i, p in enumerate(scans)])
    space = ArtworkSpace.fit("mobilenet-v2", X)
    S = space.project(R) @ space.project(X).T
    assert np.allclose(np.linalg.norm(space.project(R), axis=1), 1, atol=1e-5)
    assert (S.argmax(1) == np.arange(len(scans))).all()
    assert ArtworkSpace.for_model("fake-pixels") is None


def test_identify_reference_option_is_checked_before_a_store_is_made(tmp_path, monkeypatch):
    import json

    from typer.testing import CliRunner

    from posterdb.ui.cli.main import app

    monkeypatch.setenv("TMDB_API_KEY", "k")
    for bad in ("1935", "19x0", "2010-1990", ","):
        res = CliRunner().invoke(app, ["identify", "--all", "--reference", bad, "--store",
                                       str(tmp_path / "s"), "--json"])
        assert res.exit_code == 2 and "--reference" in json.loads(res.stdout)["error"]
    films = tmp_path / "films.csv"
    films.write_text("title,year\nThe Lodger,1926\n", encoding="utf-8")
    res = CliRunner().invoke(app, ["identify", "--all", "--catalogue", str(films), "--reference",
                                   "1920", "--store", str(tmp_path / "s"), "--json"])
    assert res.exit_code == 2 and "tmdb" in json.loads(res.stdout)["error"]
    assert not (tmp_path / "s").exists()
