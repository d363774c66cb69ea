"""The TMDb client and `fetch_tmdb` against a real local TMDb-shaped HTTP server (tests/tmdb_server.py).

Only the internet is faked (TMDb itself); images are decoded with posterdb's own loader and the
labels file is read back with posterdb's own labels reader.
"""
from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from posterdb.media.images import open_poster
from posterdb.media.labels import read_labels
from posterdb.testing.slices import posterdb_cmd, subprocess_env
from posterdb.tmdb.client import Credentials, TMDbAuthError, TMDbClient
from posterdb.tmdb.fetch import FetchError, FetchOptions, fetch_tmdb
from tests.tmdb_server import GENRE_LIST, TMDbServer, generated_films

NAMES = dict(GENRE_LIST)


@pytest.fixture
def films():
    return generated_films((1970, 2010), 60, no_poster_every=7)


@pytest.fixture
def server(films):
    with TMDbServer(films) as s:
        yield s


def client_for(server: TMDbServer, **kw) -> TMDbClient:
    kw.setdefault("backoff", 0.05)
    return TMDbClient(server.url, Credentials(api_key=server.api_key), **kw)


def rows_of(out: Path) -> list[dict]:
    with open(out / "labels.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_client_endpoints_follow_tmdb_shapes(server, films):
    with TMDbClient(server.url, Credentials(read_token=server.read_token)) as c:  # Bearer
        config = c.configuration()
        assert config.base_url == f"{server.root}/t/p/" and "w342" in config.poster_sizes
        assert list(c.movie_genres().values())[:3] == ["Action", "Adventure", "Animation"]
        seen, page, total = [], 1, None
        while total is None or page <= total:
            listing = c.discover_movies(page, **{"primary_release_date.gte": "2010-01-01",
                                                 "primary_release_date.lte": "2019-12-31",
                                                 "sort_by": "vote_count.desc"})
            total = listing.total_pages
            seen += listing.results
            page += 1
        assert (total, listing.total_results, len(seen)) == (3, 60, 60)
        assert [m.vote_count for m in seen] == sorted((m.vote_count for m in seen), reverse=True)
        assert {m.year // 10 * 10 for m in seen} == {2010}
        target = films[5]
        hits = c.search_movie(target.title.upper().replace(" ", " - "), year=target.year)
        assert hits[0].id == target.id and hits[0].year == target.year
        assert hits[0].genre_names(c.movie_genres()) == [NAMES[g] for g in target.genre_ids]
        assert c.search_movie(target.title, year=target.year + 1) == []


def test_fetch_writes_labels_in_tmdb_order_and_a_rerun_downloads_nothing(server, films, tmp_path):
    out = tmp_path / "set"
    with client_for(server) as c:
        report = fetch_tmdb(out, FetchOptions((1970, 2010), 40, max_genres=2, concurrency=4), c)
        assert report.exit_code == 0 and report.failed == []
        assert [(d.decade, d.have, d.downloaded) for d in report.decades] == \
            [(1970, 40, 40), (2010, 40, 40)]
        assert report.skipped["no_poster"] > 0          # films without poster_path passed over
        assert report.decades[0].pages == 3              # 40 posters needed a third page
        rows = rows_of(out)
        assert len(rows) == 80 and len({r["tmdb_id"] for r in rows}) == 80
        by_id = {f.id: f for f in films}
        for r in rows:
            film = by_id[int(r["tmdb_id"])]
            assert r["genres"] == "|".join(NAMES[g] for g in film.genre_ids[:2])  # TMDb's order
            assert (r["title"], int(r["year"])) == (film.title, film.year)
            assert r["file"] == f"images/{film.year // 10 * 10}s/{film.id}.jpg"
            open_poster(out / r["file"])
        labelled, problems = read_labels(out / "labels.csv")   # what `posterdb ingest` reads
        assert len(labelled) == 80 and problems == []
        hits = sum(server.image_hits.values())
        assert hits == 80 and server.image_requests_with_credentials == 0

        again = fetch_tmdb(out, FetchOptions((1970, 2010), 40, max_genres=2), c)
        assert (again.downloaded, again.adopted, sum(server.image_hits.values())) == (0, 0, 80)
        assert rows_of(out) == rows
        more = fetch_tmdb(out, FetchOptions((1970, 2010), 45, max_genres=2), c)
        assert more.downloaded == 10 and len(rows_of(out)) == 90
        short = fetch_tmdb(out, FetchOptions((1970, 2010), 60, max_genres=2), c)  # 52 exist
        assert short.short == {1970: 8, 2010: 8} and short.exit_code == 0
        assert [d.pages for d in short.decades] == [3, 3] and len(rows_of(out)) == 104
    for p in out.rglob("*"):
        assert not p.is_file() or server.api_key.encode() not in p.read_bytes()


def test_faults_429_503_dropped_and_truncated(server, films, tmp_path):
    decade70 = [f for f in films if f.year < 1980 and f.poster_path]
    bad, flaky, dropped = decade70[1].id, decade70[2].id, decade70[3].id
    server.rate_limit("/discover/movie", times=1, retry_after=1)
    server.fail_image(flaky, 503, times=1)
    server.drop_image(dropped)
    server.truncate_image(bad)
    with client_for(server) as c:
        t0 = time.monotonic()
        report = fetch_tmdb(tmp_path / "set", FetchOptions((1970,), 20, concurrency=4), c)
    assert time.monotonic() - t0 >= 1.0                  # Retry-After honoured
    assert server.api_hits["/discover/movie"] == report.decades[0].pages + 1  # the 429 retried
    assert server.image_hits[flaky] == 2 and server.image_hits[dropped] == 2
    assert [f["tmdb_id"] for f in report.failed] == [bad]
    assert "truncated" in report.failed[0]["reason"] and report.exit_code == 1
    ids = {int(r["tmdb_id"]) for r in rows_of(tmp_path / "set")}
    assert len(ids) == 20 and flaky in ids and dropped in ids and bad not in ids
    assert not list((tmp_path / "set" / "images" / "1970s").glob(f"{bad}.*"))


def test_bad_key_is_one_clear_line_and_never_echoed(server, tmp_path):
    with TMDbClient(server.url, Credentials(api_key="wrong-secret-key")) as c:
        with pytest.raises(TMDbAuthError) as e:
            fetch_tmdb(tmp_path / "set", FetchOptions((1970,), 5), c)
    msg = str(e.value)
    assert e.value.exit_code == 3 and "401" in msg and "\n" not in msg
    assert "wrong-secret-key" not in msg and "wrong-secret-key" not in repr(c.credentials)


def test_an_image_left_without_its_row_is_adopted_not_downloaded(server, tmp_path):
    out = tmp_path / "set"
    with client_for(server) as c:
        fetch_tmdb(out, FetchOptions((2010,), 20), c)
        rows = rows_of(out)
        with open(out / "labels.csv", "w", newline="") as f:   # as if killed before the flush
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows[:8])
        (out / "images" / "2010s" / ".999.jpg.123.part").write_bytes(b"half")  # a killed write
        report = fetch_tmdb(out, FetchOptions((2010,), 20), c)
    assert (report.downloaded, report.adopted, report.decades[0].had) == (0, 12, 8)
    assert sum(server.image_hits.values()) == 20
    assert sorted(r["tmdb_id"] for r in rows_of(out)) == sorted(r["tmdb_id"] for r in rows)
    assert not list(out.rglob("*.part"))


def test_hand_edits_to_labels_csv_survive_and_a_foreign_file_is_refused(server, tmp_path):
    out = tmp_path / "set"
    with client_for(server) as c:
        fetch_tmdb(out, FetchOptions((1970,), 5), c)
        text = (out / "labels.csv").read_text().splitlines()
        text = [text[0] + ",note"] + [ln + ",checked" for ln in text[1:]] + \
            ["images/mine.jpg,,My own scan,1974,Drama,hand-added"]
        (out / "labels.csv").write_text("\n".join(text) + "\n")
        fetch_tmdb(out, FetchOptions((1970,), 8), c)
        rows = rows_of(out)
        assert len(rows) == 9 and rows[-1]["title"] == "My own scan"
        assert [r["note"] for r in rows[:5]] == ["checked"] * 5 and rows[5]["note"] == ""
        other = tmp_path / "other"
        other.mkdir()
        (other / "labels.csv").write_text("file,title\nx.jpg,X\n")
        with pytest.raises(FetchError, match="not written by"):
            fetch_tmdb(other, FetchOptions((1970,), 5), c)
        assert (other / "labels.csv").read_text() == "file,title\nx.jpg,X\n"


def test_a_second_fetch_into_the_same_folder_is_refused(server, tmp_path):
    import fcntl

    out = tmp_path / "set"
    out.mkdir()
    with open(out / ".posterdb-fetch.lock", "a+b") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        with client_for(server) as c, pytest.raises(FetchError, match="another fetch"):
            fetch_tmdb(out, FetchOptions((1970,), 5), c)


def test_cli_json_summary_and_exit_codes(server, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from posterdb.ui.cli.main import app

    for k, v in server.env().items():
        monkeypatch.setenv(k, v)
    runner = CliRunner()
    out = tmp_path / "set"
    res = runner.invoke(app, ["fetch", "tmdb", str(out), "--decades", "1970s,2010",
                              "--per-decade", "5", "--json"])
    data = json.loads(res.stdout)
    assert res.exit_code == 0 and data["downloaded"] == 10 and data["posters"] == 10
    assert [d["have"] for d in data["decades"]] == [5, 5]
    monkeypatch.setenv("TMDB_API_KEY", "not-the-key")
    res = runner.invoke(app, ["fetch", "tmdb", str(out), "--per-decade", "5"])
    assert res.exit_code == 3 and "not-the-key" not in res.output
    assert res.stderr.strip().count("\n") == 0 and "401" in res.stderr
    res = runner.invoke(app, ["fetch", "tmdb", str(out), "--per-decade", "5", "--json"])
    assert res.exit_code == 3 and json.loads(res.stdout)["type"] == "TMDbAuthError"
    monkeypatch.setenv("TMDB_API_KEY", server.api_key)
    for bad in (["--decades", "3000"], ["--decades", "70s"], ["--size", "w999"],
                ["--per-decade", "0"], ["--concurrency", "0"]):
        args = ["fetch", "tmdb", str(out), "--per-decade", "5", *bad]
        res = runner.invoke(app, args)
        assert res.exit_code == 2, (bad, res.output)
        assert "Traceback" not in res.output




def test_kill_9_mid_fetch_then_resume(tmp_path):
    films = generated_films((1970, 2010), 130)
    out = tmp_path / "set"
    with TMDbServer(films, latency=0.05) as server:   # ~40 posters/s: about 5 s to kill it in
        env = subprocess_env(server.env())
        cmd = [*posterdb_cmd(), "fetch", "tmdb", str(out), "--decades",
               "1970,2010", "--per-decade", "100", "--concurrency", "2", "--json"]
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and proc.poll() is None:
                if (out / "labels.csv").exists() and len(rows_of(out)) >= 40:
                    break
                time.sleep(0.05)
            assert proc.poll() is None, "the fetch ended before it could be killed"
            os.kill(proc.pid, signal.SIGKILL)
        finally:
            proc.wait()
        labelled, problems = read_labels(out / "labels.csv")      # valid at the kill
        assert problems == [] and 40 <= len(labelled) < 200
        on_disk = {int(p.stem) for p in out.rglob("*") if p.is_file() and p.stem.isdigit()}
        hits_before = dict(server.image_hits)
        server.latency = 0.0
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        report = json.loads(done.stdout)
        rows = rows_of(out)
        ids = [r["tmdb_id"] for r in rows]
        assert len(rows) == 200 and len(set(ids)) == 200
        images = [p for p in (out / "images").rglob("*") if p.is_file()]
        assert len(images) == 200 and {r["file"] for r in rows} == \
            {p.relative_to(out).as_posix() for p in images}
        assert all(server.image_hits[i] == hits_before[i] for i in on_disk)   # no re-download
        assert report["adopted"] == len(on_disk) - len(labelled)
        assert report["downloaded"] == 200 - len(on_disk)


def test_unreachable_or_malformed_api_root_is_a_clear_error(tmp_path):
    import socket

    from posterdb.tmdb.client import TMDbError, TMDbUsageError

    with pytest.raises(TMDbUsageError, match="not an http"):
        TMDbClient("localhost:8080/3", Credentials(api_key="k"))
    with socket.socket() as s:          # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with TMDbClient(f"http://127.0.0.1:{port}/3", Credentials(api_key="k"), retries=2,
                    backoff=0.01) as c, pytest.raises(TMDbError, match="ConnectError after 3 tries"):
        c.configuration()
    assert c.requests == 3


def test_retry_after_accepts_seconds_and_http_dates():
    from email.utils import formatdate

    from posterdb.tmdb.client import _retry_after

    assert _retry_after("3", 9.0) == 3.0 and _retry_after(None, 9.0) == 9.0
    assert _retry_after("soon", 9.0) == 9.0
    assert 8 <= _retry_after(formatdate(time.time() + 10, usegmt=True), 0.0) <= 10


# -- the network boundary: where images may come from --------------------------------------------

@pytest.fixture
def other(films):
    """A second TMDb-shaped server on another loopback *host* (127.0.0.2): an internal address
    a hostile /configuration or redirect could point at. Nothing may ever reach it."""
    with TMDbServer(films, host="127.0.0.2") as s:
        yield s


def _poster_url(server: TMDbServer, film, size: str = "w342") -> str:
    return f"{server.root}/t/p/{size}{film.poster_path}"


def test_configuration_pointing_images_at_another_host_is_refused(server, other, tmp_path):
    from posterdb.tmdb.client import TMDbHostError

    for base in (f"{other.root}/t/p/",                          # another host
                 f"http://localhost:{server.port}/t/p/",        # another name for this one
                 f"http://127.0.0.1:{other.port}/t/p/",         # this host, another port
                 f"http://{server.api_key}@127.0.0.2:{other.port}/t/p/"):  # user info
        server.image_base = base
        with client_for(server) as c, pytest.raises(TMDbHostError) as e:
            fetch_tmdb(tmp_path / "set", FetchOptions((1970,), 5), c)
        msg = str(e.value)
        assert "/configuration" in msg and "refused" in msg and "\n" not in msg
        host = base.split("//")[1].split("/")[0].rsplit("@", 1)[-1]
        assert host.split(":")[0] in msg and server.api_key not in msg, msg
        assert e.value.exit_code == 3
    assert sum(other.image_hits.values()) == 0 and sum(server.image_hits.values()) == 0
    assert not (tmp_path / "set" / "labels.csv").exists()


def test_cli_refuses_a_foreign_image_host_with_one_line(server, other, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from posterdb.ui.cli.main import app

    for k, v in server.env().items():
        monkeypatch.setenv(k, v)
    server.image_base = f"{other.root}/t/p/"
    res = CliRunner().invoke(app, ["fetch", "tmdb", str(tmp_path / "set"), "--per-decade", "3"])
    assert res.exit_code == 3 and res.stderr.strip().count("\n") == 0, res.output
    assert "127.0.0.2" in res.stderr and "Traceback" not in res.output
    # the image host named in the settings is allowed (one mechanism, configured)
    monkeypatch.setenv("POSTERDB_TMDB_IMAGE_HOST", f"127.0.0.2:{other.port}")
    res = CliRunner().invoke(app, ["fetch", "tmdb", str(tmp_path / "set"), "--decades", "1970",
                                   "--per-decade", "3", "--json"])
    assert res.exit_code == 0 and json.loads(res.stdout)["downloaded"] == 3, res.output
    assert sum(other.image_hits.values()) == 3


def test_image_redirects_stay_on_the_allowed_hosts(server, other, films, tmp_path):
    from posterdb.tmdb.client import TMDbError, TMDbHostError

    posters = [f for f in films if f.year < 1980 and f.poster_path]
    a, b, c_, d = posters[:4]
    with client_for(server) as c:
        # same host: followed (a relative Location too)
        server.redirect_image(a.id, _poster_url(server, b))
        assert c.download(_poster_url(server, a)) == server.poster_bytes(b)
        server.redirect_image(a.id, f"/t/p/w342{c_.poster_path}")
        assert c.download(_poster_url(server, a)) == server.poster_bytes(c_)
        hits = dict(server.image_hits)
        # another host, another port, user info, file:, a loop, a chain too long: refused
        cases = {f"{other.root}/t/p/w342{b.poster_path}": (TMDbHostError, "127.0.0.2"),
                 f"HTTP://LOCALHOST:{server.port}/t/p/w342{b.poster_path}":
                     (TMDbHostError, "localhost"),
                 f"http://127.0.0.1:{other.port}/t/p/w342{b.poster_path}":
                     (TMDbHostError, f"127.0.0.1:{other.port}"),
                 f"http://x:y@127.0.0.1:{server.port}/t/p/w342{b.poster_path}":
                     (TMDbHostError, "user info"),
                 "file:///etc/passwd": (TMDbHostError, "not http(s)"),
                 _poster_url(server, a): (TMDbError, "redirect loop")}
        for location, (kind, words) in cases.items():
            server.redirect_image(a.id, location)
            before = c.requests
            with pytest.raises(kind) as e:
                c.download(_poster_url(server, a))
            assert words in str(e.value) and "\n" not in str(e.value), str(e.value)
            assert c.requests - before == 1  # no retry, no hop to the refused target
        assert server.image_hits[b.id] == hits[b.id]  # b was never fetched by a refused hop
        server.redirect_image(a.id, _poster_url(server, b))     # a → b → a: a loop of two
        server.redirect_image(b.id, f"HTTP://127.0.0.1:{server.port}/t/p/w342{a.poster_path}")
        before = c.requests
        with pytest.raises(TMDbError, match="redirect loop"):
            c.download(_poster_url(server, a))
        assert c.requests - before == 2
        server.faults.redirects.clear()
        chain = [a, b, c_, d] + posters[4:8]
        for x, y in zip(chain, chain[1:]):
            server.redirect_image(x.id, _poster_url(server, y))
        with pytest.raises(TMDbError, match="more than 5 redirects"):
            c.download(_poster_url(server, a))
    assert sum(other.image_hits.values()) == 0
    assert server.image_requests_with_credentials == 0

    # in a fetch: a redirect off the allowed hosts stops it with one line; rows so far kept
    server.faults.redirects.clear()
    server.redirect_image(posters[6].id, f"{other.root}/t/p/w342{b.poster_path}")
    with client_for(server) as c, pytest.raises(TMDbHostError, match="127.0.0.2"):
        fetch_tmdb(tmp_path / "set", FetchOptions((1970,), 20, concurrency=1), c)
    assert sum(other.image_hits.values()) == 0
    kept = rows_of(tmp_path / "set")
    assert 0 < len(kept) < 20 and str(posters[6].id) not in {r["tmdb_id"] for r in kept}

    # an API endpoint answering with a redirect: never followed (the key would go along)
    server.redirect_image(a.id, f"{other.root}/3/configuration")
    with TMDbClient(f"{server.root}/t/p/w342", Credentials(api_key=server.api_key)) as api, \
            pytest.raises(TMDbError, match="redirect to host 127.0.0.2; not followed"):
        api.get_json(a.poster_path)
    assert sum(other.image_hits.values()) == 0 and not other.api_hits


def test_non_http_urls_are_refused_at_once_without_retries(server, tmp_path):
    from posterdb.tmdb.client import TMDbHostError

    with client_for(server, retries=5, backoff=1.0) as c:
        for url in ("file:///etc/passwd", "FILE:///etc/passwd", "ftp://127.0.0.1/x.jpg",
                    "gopher://127.0.0.1:70/x", "data:image/jpeg;base64,AAAA", "//127.0.0.2/x",
                    "/t/p/w342/x.jpg", "javascript:alert(1)"):
            t0 = time.monotonic()
            with pytest.raises(TMDbHostError) as e:
                c.download(url)
            assert time.monotonic() - t0 < 0.5 and c.requests == 0, url
            assert "refused" in str(e.value) and "\n" not in str(e.value)
        assert "file:" in str(pytest.raises(TMDbHostError, c.download, "file:///x").value)
        server.image_base = "file:///etc/"          # /configuration itself names file:
        with pytest.raises(TMDbHostError, match="not http"):
            fetch_tmdb(tmp_path / "set", FetchOptions((1970,), 5), c)
        assert c.requests == 1 and sum(server.image_hits.values()) == 0  # /configuration only


def test_host_policy_normalises_names_and_never_resolves_them():
    from posterdb.core.settings import Settings
    from posterdb.tmdb.client import TMDbHostError, TMDbUsageError
    from posterdb.tmdb.hosts import HostPolicy, normal_host

    p = HostPolicy.for_tmdb("https://api.themoviedb.org/3", "image.tmdb.org")
    for ok in ("https://image.tmdb.org/t/p/w342/a.jpg", "http://image.tmdb.org/t/p/a.jpg",
               "https://IMAGE.TMDB.ORG./t/p/a.jpg", "https://Image.Tmdb.Org:443/a.jpg",
               "https://api.themoviedb.org/t/p/a.jpg"):
        assert p.check(ok).host.lower().rstrip(".") in ("image.tmdb.org", "api.themoviedb.org")
    for bad, words in (("https://image.tmdb.org.evil.com/a.jpg", "image.tmdb.org.evil.com"),
                       ("https://image.tmdb.org@evil.com/a.jpg", "evil.com"),
                       ("https://evil.com#@image.tmdb.org/", "evil.com"),
                       ("https://evil.com\\@image.tmdb.org/", "user info"),
                       ("https://image.tmdb.org:8443/a.jpg", "image.tmdb.org:8443"),
                       ("http://api.themoviedb.org/3", "api.themoviedb.org"),  # API is https
                       ("https://127.0.0.1/a.jpg", "127.0.0.1"),
                       ("https://[::1]/a.jpg", "[::1]"),
                       ("https://image%2Etmdb.org/a.jpg", "refused"),
                       ("https://xn--mage-zqa.tmdb.org/a.jpg", "xn--mage-zqa.tmdb.org")):
        with pytest.raises(TMDbHostError) as e:
            p.check(bad)
        assert words in str(e.value), (bad, str(e.value))
    # IP literals compare canonically; names are not resolved (localhost is not 127.0.0.1)
    v6 = HostPolicy.for_tmdb("http://[::1]:9000/3", "image.tmdb.org")
    assert v6.check("http://[0:0:0::1]:9000/t/p/a.jpg")
    with pytest.raises(TMDbHostError):
        v6.check("http://localhost:9000/t/p/a.jpg")
    with pytest.raises(TMDbHostError):
        HostPolicy.for_tmdb("http://127.0.0.1:9000/3", "x").check("http://127.1:9000/a.jpg")
    assert normal_host("ÍMAGE.example.") == "ímage.example".encode("idna").decode() \
        == normal_host(b"XN--MAGE-UPA.EXAMPLE")
    # the image host setting: host, host:port, scheme://host:port; anything else is refused
    q = HostPolicy.for_tmdb("https://api.themoviedb.org/3", "https://cdn.example:8443")
    assert q.check("https://CDN.example:8443/a.jpg")
    with pytest.raises(TMDbHostError):
        q.check("http://cdn.example:8443/a.jpg")
    for bad in ("", "user@cdn.example", "cdn.example/path", "ftp://cdn.example", "https://"):
        with pytest.raises(TMDbUsageError):
            HostPolicy.for_tmdb("https://api.themoviedb.org/3", bad if bad else " ")
    assert Settings.from_env({}).tmdb.image_host == "image.tmdb.org"
    env = {"POSTERDB_TMDB_IMAGE_HOST": " cdn.example:8443 "}
    assert Settings.from_env(env).tmdb.image_host == "cdn.example:8443"
