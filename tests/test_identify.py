"""Identification from read lines: candidate queries, catalogues (file and a real local
TMDb-shaped server), the calibrated threshold, and faults that delay but never fail."""
from __future__ import annotations

import gzip

import pytest

pytest.importorskip("rapidfuzz")

from posterdb.reading.identify import (
    PENDING,
    CatalogueError,
    Film,
    LocalCatalogue,
    Reading,
    TMDbCatalogue,
    identify,
)
from posterdb.reading.identify.text import queries, spaced, squash, title_keys, years_in  # noqa: E402
from posterdb.reading.ocr import ReadLine  # noqa: E402


def L(text: str, top: float, height: float = 20.0, conf: float = 0.98, left: float = 10.0):
    return ReadLine(text, conf, ((left, top), (left + 150, top), (left + 150, top + height),
                                 (left, top + height)))


ASPHALT = [L("LOUIS CALHERN", 10, 8), L("JEAN HAGEN", 20, 8), L("THE", 60, 30),
           L("Aphalt", 95, 40), L("JUNGLE", 140, 40), L("MARILYN MONROE", 200, 8),
           L("xq", 220, 6, conf=0.3)]


def test_queries_join_adjacent_lines_and_survive_noise():
    qs = queries(ASPHALT)
    keys = [q.key for q in qs]
    assert "THEAPHALTJUNGLE" in keys and "APHALTJUNGLE" in keys
    assert "XQ" not in "".join(keys)                     # low-confidence line dropped
    assert qs[0].height == 1.0                           # tallest lines first
    assert {q.key for q in qs[:2]} <= {"APHALT", "JUNGLE", "APHALTJUNGLE"}


def test_run_together_words_are_split_for_word_search():
    assert spaced("THESHOW") == "THE SHOW"
    assert spaced("THECOURTMARTIALOF") == "THE COURT MARTIAL OF"
    q = next(q for q in queries([L("LONCHANEYISTHEMONSTER", 5, 30)]))
    assert q.search_text == "LON CHANEY IS THE MONSTER"


def test_title_keys_cover_articles_subtitles_and_sequel_numbers():
    assert {"THEGODFATHERPARTII", "GODFATHERPARTII", "THEGODFATHERPART2"} <= title_keys(
        "The Godfather: Part II")
    assert "DRSTRANGELOVE" in title_keys("Dr. Strangelove: Or How I Learned to Stop Worrying")
    assert squash("Amélie & Nino") == "AMELIEANDNINO"
    assert years_in([L("© 1950 Loew's Inc.", 0), L("19501", 10)]) == {1950}


@pytest.fixture
def films_csv(tmp_path):
    p = tmp_path / "films.csv"
    p.write_text("id,title,year,genres\n"
                 "a1,The Asphalt Jungle (1950),1950,Crime|Drama|Film-Noir\n"
                 "a2,The Asphalt Jungle,1990,Crime|Drama\n"
                 "a3,Asphalt Jungle 2,1953,Crime\n"
                 "b1,Jungle Book,1942,Adventure|Family\n"
                 "c1,The Show,1927,Drama\n", encoding="utf-8")
    return p


def test_local_catalogue_file_finds_the_film_despite_ocr_noise(films_csv):
    cat = LocalCatalogue.from_file(films_csv)
    assert len(cat) == 5
    first = cat.films[0]
    assert (first.title, first.year, first.genres) == ("The Asphalt Jungle", 1950,
                                                      ("Crime", "Drama"))
    found = {f.film_id for f in cat.candidates(queries(ASPHALT))}
    assert {"a1", "a2", "a3"} <= found and "c1" not in found


def test_identifies_the_right_film_and_refuses_a_near_miss(films_csv):
    cat = LocalCatalogue.from_file(films_csv)
    got = identify(Reading(ASPHALT, year=1950), cat)
    assert got.status == "identified" and got.film.film_id == "a1"
    assert got.film.genres == ("Crime", "Drama")
    # the right film is not in the catalogue: only a remake 40 years later and a sequel
    near = LocalCatalogue([f for f in cat.films if f.film_id != "a1"])
    refused = identify(Reading(ASPHALT, year=1950), near)
    assert refused.status == "unidentified"
    assert refused.film is not None and refused.film.film_id != "a1"   # kept as evidence
    # year unknown and two films of the same title: too ambiguous to accept either
    same = LocalCatalogue([f for f in cat.films if f.film_id in ("a1", "a2")])
    assert identify(Reading(ASPHALT), same).status == "unidentified"


def test_a_poster_with_no_readable_text_is_unidentified(films_csv):
    got = identify(Reading([L("~", 10, conf=0.2)]), LocalCatalogue.from_file(films_csv))
    assert (got.status, got.film) == ("unidentified", None)


def test_imdb_title_basics_file(tmp_path):
    rows = ["tconst\ttitleType\tprimaryTitle\toriginalTitle\tisAdult\tstartYear\tendYear\t"
            "runtimeMinutes\tgenres",
            "tt0043014\tmovie\tSunset Blvd.\tSunset Blvd.\t0\t1950\t\\N\t110\tDrama,Film-Noir",
            "tt0062622\tmovie\t2001: A Space Odyssey\t2001: A Space Odyssey\t0\t1968\t\\N\t149\t"
            "Adventure,Sci-Fi",
            "tt0098904\ttvSeries\tSeinfeld\tSeinfeld\t0\t1989\t1998\t22\tComedy"]
    p = tmp_path / "title.basics.tsv.gz"
    p.write_bytes(gzip.compress("\n".join(rows).encode()))
    cat = LocalCatalogue.from_file(p)
    assert [(f.film_id, f.year) for f in cat.films] == [("tt0043014", 1950), ("tt0062622", 1968)]
    assert cat.films[1].genres == ("Adventure", "Science Fiction")
    assert cat.films[0].genres == ("Crime", "Drama")


@pytest.mark.parametrize("content, reason", [(b"", "no 'title' column"),
                                             (b"\xff\xfe\x00bad", "not UTF-8"),
                                             (b"name,year\nx,1950\n", "no 'title' column")])
def test_a_bad_catalogue_file_names_the_file_and_the_reason(tmp_path, content, reason):
    p = tmp_path / "films.csv"
    p.write_bytes(content)
    with pytest.raises(CatalogueError, match=reason) as e:
        LocalCatalogue.from_file(p)
    assert "films.csv" in str(e.value)


def test_film_keys_include_original_title():
    f = Film("file", "1", "Diabolique", 1955, ("Horror",), "Les Diaboliques").with_keys()
    assert {"DIABOLIQUE", "LESDIABOLIQUES"} <= f.keys


# -- TMDb (a real local server shaped like TMDb's API) ------------------------------------

tmdb_server = pytest.importorskip("tests.tmdb_server")


@pytest.fixture
def server():
    films = [tmdb_server.Film(id=1, title="The Asphalt Jungle", year=1950, genre_ids=[80, 18]),
             tmdb_server.Film(id=2, title="The Asphalt Jungle", year=1990, genre_ids=[80]),
             tmdb_server.Film(id=3, title="The Kid", year=1921, genre_ids=[35, 18, 10751])]
    films += tmdb_server.distractor_films(300)
    with tmdb_server.TMDbServer(films) as srv:
        yield srv


def _client(srv, **kw):
    from posterdb.tmdb.client import Credentials, TMDbClient
    return TMDbClient(srv.url, Credentials(api_key=srv.api_key), **kw)


def test_tmdb_catalogue_identifies_with_few_requests(server):
    cat = TMDbCatalogue(_client(server))
    got = identify(Reading(ASPHALT, year=1950), cat)
    assert got.status == "identified" and got.source == "tmdb"
    assert (got.film.film_id, got.film.title, got.film.genres) == ("1", "The Asphalt Jungle",
                                                                   ("Crime", "Drama"))
    kid = identify(Reading([L("halr Chaplin", 5, 12), L("THEKID", 40, 40)], year=1921), cat)
    assert kid.status == "identified" and kid.film.film_id == "3"
    assert server.api_hits["/search/movie"] <= 2 * cat.max_queries
    assert server.api_hits["/genre/movie/list"] == 1


def test_rate_limited_or_down_catalogue_leaves_the_poster_pending(server):
    cat = TMDbCatalogue(_client(server, retries=1, max_retry_after=0.01, backoff=0.01))
    server.rate_limit("/search/movie", times=2, retry_after=1)   # > retries
    first = identify(Reading(ASPHALT, year=1950), cat)
    assert first.status == PENDING and "429" in first.error
    again = identify(Reading(ASPHALT, year=1950), cat)   # the limit has passed: catches up
    assert again.status == "identified" and again.film.film_id == "1"
    down = TMDbCatalogue(_client(server, retries=0, backoff=0.01))
    server.stop()
    assert identify(Reading(ASPHALT, year=1950), down).status == PENDING


def test_a_catalogue_source_may_have_its_own_threshold():
    from posterdb.reading.identify import FilmScorer

    s = FilmScorer.load()
    s.thresholds_ = dict(s.thresholds_, **{"tmdb year known": 0.9})
    assert s.threshold(1950, "tmdb") == 0.9
    assert s.threshold(1950, "file") == s.thresholds_["year known"]
    assert s.threshold(None, "tmdb") == s.thresholds_["year unknown"]
