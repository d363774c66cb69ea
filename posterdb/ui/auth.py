"""The page's trust boundary, without Streamlit: who reaches it, and who may change the store.

Two questions, one mechanism each:

- **Is this request from beyond loopback?** :func:`exposure` looks at the address the server
  listens on (``server.address``: unset means every interface), the client's address and the
  request's ``Host`` / proxy headers; any one of them pointing beyond loopback makes the request
  *exposed*. Each signal can only make the page stricter, so a spoofed header never opens it.
  Names are not resolved (DNS may say anything): ``localhost`` (and ``*.localhost``) and
  loopback IP literals (``127.0.0.0/8``, ``::1``, ``::ffff:127.x``) are loopback, all else is not.
- **Is this person signed in?** The store keeps a scrypt hash of the page password (with its
  salt and cost, :func:`hash_password`) in its own settings under ``page_password``; sign-in
  checks it in constant time (:func:`verify_password`), bounded by :class:`AttemptLimiter`.
  ``posterdb page password`` sets it from a prompt or stdin, never from argv.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping

from posterdb.core.errors import UsageError

PASSWORD_SETTING = "page_password"
MIN_PASSWORD, MAX_PASSWORD = 8, 1024           # characters; a bound keeps hashing cheap
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**15, 8, 3       # OWASP's scrypt row for 32 MiB
_MAX_N = 2**20                                   # a stored hash asking for more is refused
MAX_FAILURES = 5              # failed sign-ins per client within WINDOW_S, then it waits
GLOBAL_MAX_FAILURES = 30      # all clients together (many addresses, one password)
WINDOW_S = 15 * 60
PROXY_HEADERS = ("forwarded", "x-forwarded-for", "x-forwarded-host", "x-real-ip")


# -- passwords ---------------------------------------------------------------------------------

def check_new_password(password: str) -> str:
    """The password to store, or UsageError (exit 2) saying what is wrong with it."""
    if not isinstance(password, str) or len(password) < MIN_PASSWORD:
        raise UsageError(f"the page password needs at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise UsageError(f"the page password may have at most {MAX_PASSWORD} characters")
    if any(c in password for c in "\x00\r\n"):
        raise UsageError("the page password may not contain NUL or line breaks")
    return password


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def hash_password(password: str, *, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P,
                  salt: bytes | None = None) -> str:
    """'scrypt$N$r$p$<salt b64>$<key b64>' with a fresh 16-byte salt."""
    check_new_password(password)
    salt = os.urandom(16) if salt is None else salt
    key = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p,
                         maxmem=256 * 1024**2, dklen=32)
    return f"scrypt${n}${r}${p}${_b64(salt)}${_b64(key)}"


def parse_hash(stored: str | None) -> tuple[int, int, int, bytes, bytes] | None:
    """(n, r, p, salt, key) of a stored hash, or None when it is not one we can check."""
    try:
        kind, n, r, p, salt, key = str(stored).split("$")
        n, r, p = int(n), int(r), int(p)
        salt_b, key_b = base64.b64decode(salt, validate=True), base64.b64decode(key, validate=True)
    except (ValueError, TypeError):
        return None
    if (kind != "scrypt" or not 2 <= n <= _MAX_N or n & (n - 1) or not 1 <= r <= 32
            or not 1 <= p <= 16 or len(salt_b) < 8 or len(key_b) < 16):
        return None
    return n, r, p, salt_b, key_b


def verify_password(password: str, stored: str | None) -> bool:
    """Whether `password` matches the stored hash (constant-time compare; False if unreadable)."""
    parsed = parse_hash(stored)
    if parsed is None or not isinstance(password, str) or len(password) > MAX_PASSWORD:
        return False
    n, r, p, salt, key = parsed
    got = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p,
                         maxmem=256 * 1024**2, dklen=len(key))
    return hmac.compare_digest(got, key)


def fingerprint(stored: str) -> str:
    """What a session remembers of the hash it signed in against (changes with the password)."""
    return hashlib.sha256(stored.encode("utf-8")).hexdigest()


# -- the store's setting (a PosterDB: its public catalogue) ------------------------------------

def stored_hash(db) -> str | None:
    """The page password's hash saved in the store, or None when none is set."""
    with db.catalog.read() as con:
        return db.catalog.store_settings(con).get(PASSWORD_SETTING) or None


def set_page_password(db, password: str | None) -> None:
    """Save the hash of `password` in the store (None forgets it: the page becomes read-only)."""
    value = hash_password(password) if password is not None else None
    with db.catalog.write() as con:
        db.catalog.set_store_setting(con, PASSWORD_SETTING, value)


# -- loopback ----------------------------------------------------------------------------------

def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        ip = ipaddress.ip_address(text.split("%", 1)[0])  # an IPv6 zone (fe80::1%eth0) aside
    except ValueError:
        return None
    mapped = getattr(ip, "ipv4_mapped", None)
    return mapped or ip


def is_loopback_name(host: str | None) -> bool:
    """A host *as written* (no DNS): localhost, *.localhost or a loopback IP literal."""
    if host is None:
        return False
    h = str(host).strip().lower()
    if h.startswith("[") and "]" in h:
        h = h[1:h.index("]")]
    if h.endswith("."):
        h = h[:-1]
    if h == "localhost" or h.endswith(".localhost"):
        return True
    ip = _ip(h)
    return bool(ip and ip.is_loopback)


def is_loopback_bind(address: str | None) -> bool:
    """Whether a server listening on `address` (Streamlit's ``server.address``) is reachable
    from this machine only. Unset or empty listens on every interface: not loopback. A unix
    socket has no network address: loopback (a proxy in front shows in the request headers)."""
    if address is None or not str(address).strip():
        return False
    a = str(address).strip()
    if a.lower().startswith("unix://"):
        return True
    return is_loopback_name(a)


def host_of_header(value: str) -> str:
    """The host part of a ``Host`` header: 'h:port' → 'h', '[::1]:8501' → '::1'."""
    v = value.strip()
    if v.startswith("["):
        return v[1:v.index("]")] if "]" in v else v
    return v.rsplit(":", 1)[0] if v.count(":") == 1 else v


def exposure(bind_address: str | None, client_ip: str | None,
             headers: Mapping[str, str] | None) -> str | None:
    """Why this request counts as beyond loopback (one short phrase), or None on loopback.

    `client_ip` is None when Streamlit saw a loopback peer (or no peer: no server at all, as
    under AppTest); `headers` are the request's (may be empty)."""
    if not is_loopback_bind(bind_address):
        shown = (bind_address or "").strip() or "every interface (server.address unset)"
        return f"it listens on {shown}"
    if client_ip is not None and not is_loopback_name(client_ip):
        return f"a request came from {client_ip}"
    lowered = {str(k).lower(): str(v) for k, v in (headers or {}).items()}
    for h in PROXY_HEADERS:
        if h in lowered:
            return f"a request came through a proxy ({h})"
    host = lowered.get("host")
    if host is not None and not is_loopback_name(host_of_header(host)):
        return f"a request named host {host_of_header(host)[:80]!r}"
    return None


# -- bounded attempts --------------------------------------------------------------------------

class AttemptLimiter:
    """Failed sign-ins per client (and all together) in a sliding window; thread-safe.

    ``wait(key)`` is 0 when a try is allowed, else the seconds until one is. A success clears
    that client's failures. In-process (the page's server): a restart forgets them.
    """

    def __init__(self, per_client: int = MAX_FAILURES, overall: int = GLOBAL_MAX_FAILURES,
                 window_s: float = WINDOW_S, clock: Callable[[], float] = time.monotonic):
        self.per_client, self.overall, self.window = per_client, overall, window_s
        self._clock = clock
        self._lock = threading.Lock()
        self._fails: dict[str, deque[float]] = {}
        self._all: deque[float] = deque()

    def _trim(self, q: deque[float], now: float) -> None:
        while q and q[0] <= now - self.window:
            q.popleft()

    def wait(self, key: str) -> float:
        with self._lock:
            now = self._clock()
            q = self._fails.get(key, deque())
            self._trim(q, now)
            self._trim(self._all, now)
            waits = [0.0]
            if len(q) >= self.per_client:
                waits.append(q[0] + self.window - now)
            if len(self._all) >= self.overall:
                waits.append(self._all[0] + self.window - now)
            return max(waits)

    def failed(self, key: str) -> int:
        """Record a failure; returns the tries this client has left in the window."""
        with self._lock:
            now = self._clock()
            q = self._fails.setdefault(key, deque())
            q.append(now)
            self._all.append(now)
            self._trim(q, now)
            return max(0, self.per_client - len(q))

    def succeeded(self, key: str) -> None:
        with self._lock:
            self._fails.pop(key, None)
