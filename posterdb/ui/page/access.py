"""Who may use the page, in Streamlit terms (the rules themselves: `posterdb.ui.auth`).

- Served beyond loopback (see `auth.exposure`) with no page password in the store: every request
  gets one line, :data:`REFUSAL`, and nothing else.
- Served beyond loopback with a password: nothing but the sign-in form until signed in.
- On loopback: reading is open; every write (adding a poster, setting or accepting labels) needs
  a signed-in session. Each write action calls :func:`may_write` right before it writes, which
  re-reads the stored hash, so a changed or removed password signs everybody out.

A session's sign-in is an object of a class of ours in its session state (a browser can only
send plain widget values, never one of these), tied to the fingerprint of the hash it matched.
"""
from __future__ import annotations

import hmac
import logging
from dataclasses import dataclass

import streamlit as st

from posterdb.ui import auth

log = logging.getLogger("posterdb.app")

SESSION_KEY = "page-access"
CURRENT_KEY = "page-access-now"   # this run's Access, for the sections' write controls
REFUSAL = ("Refused: this page is served beyond loopback ({why}) and no page password is set. "
           "Set one with `posterdb page password`, or serve on 127.0.0.1.")
READ_ONLY = "Sign in (sidebar) to {what}."
NO_PASSWORD = ("Read-only: no page password is set for this store "
               "(`posterdb page password`); changes are made with the CLI.")


@dataclass(frozen=True)
class SignedIn:
    """Held in session state after a good password; `mark` is the matched hash's fingerprint."""

    mark: str


@dataclass(frozen=True)
class Access:
    exposed: str | None      # why the page counts as served beyond loopback; None on loopback
    stored: str | None       # the page password's hash, None if none is set
    signed_in: bool

    @property
    def configured(self) -> bool:
        """A usable page password is stored (an unreadable hash lets nobody in, and counts as
        none for serving beyond loopback, as `posterdb page serve` has it)."""
        return auth.parse_hash(self.stored) is not None


@st.cache_resource
def limiter(store: str) -> auth.AttemptLimiter:
    """Failed sign-ins of this server process, per store."""
    return auth.AttemptLimiter()


def request_exposure() -> str | None:
    """Why this request is beyond loopback (bind address, peer, Host/proxy headers), or None."""
    try:
        headers = dict(st.context.headers)
    except Exception:  # noqa: BLE001 - no request (AppTest): no headers
        headers = {}
    return auth.exposure(st.get_option("server.address"), _client_ip(), headers)


def _client_ip() -> str | None:
    """The peer's address as Streamlit saw it (None: loopback, or no peer at all — under
    AppTest the client is a stand-in object, not an address)."""
    ip = st.context.ip_address
    return ip if isinstance(ip, str) and ip else None


def _client_key() -> str:
    return _client_ip() or "loopback"


def _holds(stored: str | None) -> bool:
    held = st.session_state.get(SESSION_KEY)
    return (stored is not None and isinstance(held, SignedIn)
            and hmac.compare_digest(held.mark, auth.fingerprint(stored)))


def evaluate(db, exposed: str | None) -> Access:
    """This run's access; kept for :func:`current` (the sections draw their controls by it)."""
    stored = auth.stored_hash(db)
    now = Access(exposed, stored, _holds(stored))
    st.session_state[CURRENT_KEY] = now
    return now


def current() -> Access:
    """The access `evaluate` found in this run (signed out if it was not run)."""
    now = st.session_state.get(CURRENT_KEY)
    return now if isinstance(now, Access) else Access(None, None, False)


def refuse(why: str) -> None:
    """The one line a request beyond loopback gets when no password is set."""
    log.error("page refused: served beyond loopback (%s) with no page password set", why)
    st.error(REFUSAL.format(why=why))


def may_write(db, what: str, *, now: bool = False) -> bool:
    """The gate every write calls right before writing: True if this session is signed in
    against the password stored now; else one line — shown at once (`now`, in a script run) or
    left in `flash_error` (in a widget callback) — and False."""
    try:
        ok = _holds(auth.stored_hash(db))
    except Exception:  # noqa: BLE001 - cannot read the store: no write either
        ok = False
    if not ok:
        line = f"Not saved: sign in to {what}."
        if now:
            st.error(line)
        else:
            st.session_state["flash_error"] = line
    return ok


def can_write() -> bool:
    """Whether this run's session may write: draw write controls enabled. (The write itself
    still goes through :func:`may_write`.)"""
    return current().signed_in


def read_only_note(what: str) -> None:
    """A caption beside a disabled write control."""
    now = current()
    if not now.signed_in:
        st.caption(READ_ONLY.format(what=what) if now.configured else NO_PASSWORD)


def sign_in_form(store: str, access: Access, *, key: str = "signin") -> None:
    """Password field + button; on a good password the session is marked and the page reruns."""
    lim = limiter(store)
    client = _client_key()
    with st.form(key=f"{key}-form", clear_on_submit=True, border=False):
        password = st.text_input("Page password", type="password", key=f"{key}-password",
                                 max_chars=auth.MAX_PASSWORD)
        submitted = st.form_submit_button("Sign in", key=f"{key}-submit")
    if not submitted:
        return
    wait = lim.wait(client)
    if wait > 0:
        st.error(f"Too many failed sign-ins: try again in {max(1, round(wait / 60))} min.")
        return
    if access.stored is not None and auth.verify_password(password or "", access.stored):
        lim.succeeded(client)
        st.session_state[SESSION_KEY] = SignedIn(auth.fingerprint(access.stored))
        st.rerun()
    left = lim.failed(client)
    log.warning("page sign-in failed (client %s, %d tries left)", client, left)
    st.error("Wrong password." + (f" {left} tries left." if left else
                                  " No tries left for now."))


def sidebar_controls(store: str, access: Access) -> None:
    """Sign in / sign out, in the sidebar (below the store's counts)."""
    if access.signed_in:
        st.caption("Signed in: changes are allowed.")
        if st.button("Sign out", key="signout"):
            st.session_state.pop(SESSION_KEY, None)
            st.rerun()
    elif access.configured:
        sign_in_form(store, access)
    else:
        st.caption(NO_PASSWORD)


def sign_in_page(store: str, access: Access) -> None:
    """The whole page for a request beyond loopback that is not signed in yet."""
    st.title("posterdb")
    st.caption("This page is served beyond loopback: sign in first.")
    sign_in_form(store, access, key="gate")
