"""The page's trust boundary without a browser: what counts as loopback, the password hash, the
bounded sign-in, and `posterdb page password / status / serve` on a real (synthetic) store.

The page itself under these rules: tests/test_app.py (AppTest) and tests/test_e2e.py (Chromium).
"""
from __future__ import annotations

import json
import subprocess

import pytest
from typer.testing import CliRunner

from posterdb.core.errors import UsageError
from posterdb.store import PosterDB
from posterdb.testing.slices import posterdb_cmd, subprocess_env
from posterdb.ui import auth
from posterdb.ui.cli.main import app
from posterdb.ui.cli.page import check_address, serve_command
from tests.synthetic import make_posters

runner = CliRunner()


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    base = tmp_path_factory.mktemp("pageauth")
    src = make_posters(base / "src", 6)
    db = PosterDB.open(base / "store")
    db.ingest(src, src / "labels.csv", model="fake-pixels")
    return db.root


# -- what counts as loopback ---------------------------------------------------------------------

LOOPBACK_BINDS = ("127.0.0.1", "127.0.0.2", "127.255.255.254", "::1", "[::1]", "0:0:0:0:0:0:0:1",
                  "::ffff:127.0.0.1", "localhost", "LocalHost", "localhost.", "app.localhost",
                  " 127.0.0.1 ", "unix:///run/posterdb.sock")
EXPOSED_BINDS = (None, "", "   ", "0.0.0.0", "::", "[::]", "0", "192.168.1.20", "10.0.0.5",
                 "::ffff:10.0.0.1", "fe80::1%eth0", "example.org", "127.0.0.1.example.org",
                 "localhost.example.org", "localhost@evil.org", "128.0.0.1", "2001:db8::1")


@pytest.mark.parametrize("address", LOOPBACK_BINDS)
def test_loopback_binds(address):
    assert auth.is_loopback_bind(address)
    assert auth.exposure(address, None, {"Host": "127.0.0.1:8501"}) is None


@pytest.mark.parametrize("address", EXPOSED_BINDS)
def test_binds_beyond_loopback(address):
    assert not auth.is_loopback_bind(address)
    why = auth.exposure(address, None, {})
    assert why and why.startswith("it listens on")


def test_peer_and_headers_can_only_make_it_stricter():
    lo = "127.0.0.1"
    assert auth.exposure(lo, None, {}) is None                       # AppTest: no request at all
    for host in ("127.0.0.1:8501", "localhost:8501", "LOCALHOST.:8501", "[::1]:8501", "[::1]",
                 "127.0.0.1", "localhost", "app.localhost:8501"):
        assert auth.exposure(lo, None, {"Host": host}) is None, host
    for host in ("posters.example.org", "evil.example:8501", "127.0.0.1.nip.io:8501",
                 "localhost.evil.org", "[2001:db8::1]:8501", "10.0.0.7:8501"):
        assert "named host" in auth.exposure(lo, None, {"host": host}), host   # DNS rebinding
    for peer in ("192.168.1.9", "::ffff:10.1.2.3", "2001:db8::5"):
        assert "came from" in auth.exposure(lo, peer, {"Host": "127.0.0.1:8501"}), peer
    for peer in ("::ffff:127.0.0.1", "127.0.0.5"):
        assert auth.exposure(lo, peer, {"Host": "127.0.0.1:8501"}) is None, peer
    for h in ("X-Forwarded-For", "x-real-ip", "Forwarded", "X-Forwarded-Host"):
        assert "proxy" in auth.exposure(lo, None, {"Host": "localhost", h: "127.0.0.1"}), h


# -- the password -------------------------------------------------------------------------------

def test_hash_is_salted_scrypt_checked_in_constant_time():
    h1, h2 = auth.hash_password("correct horse"), auth.hash_password("correct horse")
    assert h1 != h2 and h1.startswith(f"scrypt${auth.SCRYPT_N}${auth.SCRYPT_R}${auth.SCRYPT_P}$")
    assert "correct horse" not in h1
    assert auth.verify_password("correct horse", h1) and auth.verify_password("correct horse", h2)
    for wrong in ("Correct horse", "correct horse ", "x" * 5000):
        assert not auth.verify_password(wrong, h1)
    cheap = auth.hash_password("correct horse", n=2**10, r=8, p=1)   # the cost travels with it
    assert auth.verify_password("correct horse", cheap)
    n, r, p, salt, key = auth.parse_hash(h1)
    for broken in (None, "", "plain text", "scrypt$3$8$1$AAAAAAAAAAA=$AAAAAAAAAAAAAAAAAAAAAA==",
                   f"scrypt${2**30}$8$1$" + h1.split("$", 4)[4], "bcrypt$" + h1.split("$", 1)[1],
                   h1[:-6], h1.replace("$", "$$", 1)):
        assert auth.parse_hash(broken) is None and not auth.verify_password("x", broken)
    for bad in ("short", "a" * 1025, "has\nnewline", "nul\x00byte!"):
        with pytest.raises(UsageError):
            auth.check_new_password(bad)


def test_attempts_are_bounded_per_client_and_overall():
    now = [1000.0]
    lim = auth.AttemptLimiter(per_client=3, overall=5, window_s=60, clock=lambda: now[0])
    assert [lim.failed("a") for _ in range(3)] == [2, 1, 0]
    assert lim.wait("a") == pytest.approx(60) and lim.wait("b") == 0
    now[0] += 30
    assert lim.wait("a") == pytest.approx(30)
    lim.failed("b"), lim.failed("c")        # 5 failures in all: everybody waits
    assert lim.wait("d") > 0
    now[0] += 31                            # a's first failures leave the window
    assert lim.wait("a") == 0 and lim.wait("d") == 0
    lim.failed("a")
    lim.succeeded("a")
    assert lim.wait("a") == 0


# -- the CLI ------------------------------------------------------------------------------------

def test_page_password_from_stdin_never_argv(store):
    res = runner.invoke(app, ["page", "status", "--store", str(store), "--json"])
    assert res.exit_code == 0 and json.loads(res.stdout)["page_password"] == "not set"
    res = runner.invoke(app, ["page", "password", "--store", str(store), "--json"],
                        input="a long enough secret\n")
    assert res.exit_code == 0 and json.loads(res.stdout)["page_password"] == "set", res.output
    assert "a long enough secret" not in res.output
    stored = auth.stored_hash(PosterDB.open(store, create=False))
    assert auth.verify_password("a long enough secret", stored)
    res = runner.invoke(app, ["page", "password", "--store", str(store)], input="short\n")
    assert res.exit_code == 2 and res.stderr.strip().count("\n") == 0 and "8" in res.stderr
    res = runner.invoke(app, ["page", "password", "--password", "on the command line",
                              "--store", str(store)])
    assert res.exit_code == 2                                   # no such option
    assert auth.stored_hash(PosterDB.open(store, create=False)) == stored   # unchanged
    res = runner.invoke(app, ["page", "password", "--clear", "--store", str(store), "--json"])
    assert json.loads(res.stdout)["page_password"] == "not set"
    res = runner.invoke(app, ["page", "status", "--store", str(store / "missing")])
    assert res.exit_code == 3 and not (store / "missing").exists()


def test_serve_refuses_beyond_loopback_without_a_password(store):
    runner.invoke(app, ["page", "password", "--clear", "--store", str(store)])
    r = subprocess.run([*posterdb_cmd(), "page", "serve", "--address", "0.0.0.0", "--port",
                        "1", "--store", str(store)], env=subprocess_env(),
                       capture_output=True, text=True, timeout=120)   # the real launcher
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 3 and r.stdout == "" and len(lines) == 1, (r.stdout, r.stderr)
    assert "0.0.0.0" in lines[0] and "page password" in lines[0]
    for address in ("::", "", "192.168.1.20", "example.org", "[::]"):
        res = runner.invoke(app, ["page", "serve", "--address", address, "--store", str(store)])
        lines = res.stderr.strip().splitlines()
        assert res.exit_code == 3 and len(lines) == 1 and "page password" in lines[0], address
    for address in ("127.0.0.1", "::1", "localhost"):
        check_address(store, address)                           # loopback: no password needed
    runner.invoke(app, ["page", "password", "--store", str(store)], input="now it has one\n")
    check_address(store, "0.0.0.0")
    cmd = serve_command(store, None, "0.0.0.0", 8600)
    assert cmd[cmd.index("--server.address") + 1] == "0.0.0.0" and cmd[-2:] == ["--store",
                                                                               str(store)]
    runner.invoke(app, ["page", "password", "--clear", "--store", str(store)])
