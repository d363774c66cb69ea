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
