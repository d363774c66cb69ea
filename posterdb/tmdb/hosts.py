"""Where TMDb traffic may go: one check for every URL the client is about to request.

An *origin* is (scheme, host, port). Allowed:
  - the API root's origin (``POSTERDB_TMDB_URL``, default ``https://api.themoviedb.org``);
  - the image host (``POSTERDB_TMDB_IMAGE_HOST``, default ``image.tmdb.org``) over https (443)
    or http (80) — or exactly the scheme/port the setting names (``https://cdn.example:8443``).

Refused before a byte is sent, never retried (:class:`TMDbHostError`, exit 3): a scheme other
than http/https (``file:``, ``ftp:``, a relative URL...), user info (``user:pass@host``), and any
other origin. Hosts are compared as *names* after one normalisation — IDNA ASCII, lower case,
one trailing dot dropped, IP literals in canonical form — and never resolved: DNS may answer
anything, so ``localhost`` is not ``127.0.0.1`` and ``127.1`` is not ``127.0.0.1`` here.
Redirects are followed by the client by hand, each hop through the same check, at most
:data:`MAX_REDIRECTS`, a loop refused.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import httpx

from posterdb.tmdb.errors import TMDbHostError, TMDbUsageError

DEFAULT_PORTS = {"http": 80, "https": 443}
MAX_REDIRECTS = 5
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})

Origin = tuple[str, str, int]


def normal_host(host: str | bytes) -> str:
    """A host as compared: IDNA ASCII, lower case, no trailing dot, IP literals canonical."""
    text = host.decode("ascii", "replace") if isinstance(host, bytes) else str(host)
    text = text.strip().strip("[]").lower()
    if text.endswith("."):
        text = text[:-1]
    try:
        return ipaddress.ip_address(text).compressed
    except ValueError:
        pass
    try:
        return text.encode("idna").decode("ascii")
    except UnicodeError:
        return text


def _shown(scheme: str, host: str, port: int) -> str:
    """'host' or 'host:port' (the port when not the scheme's default), IPv6 in brackets."""
    h = f"[{host}]" if ":" in host else host
    return h if DEFAULT_PORTS.get(scheme) == port else f"{h}:{port}"


def _parse(url: str | httpx.URL) -> httpx.URL | None:
    try:
        return url if isinstance(url, httpx.URL) else httpx.URL(str(url).strip())
    except (httpx.InvalidURL, TypeError, ValueError):
        return None


def origin_of(url: httpx.URL) -> Origin:
    scheme = url.scheme.lower()
    return scheme, normal_host(url.raw_host), url.port or DEFAULT_PORTS.get(scheme, 0)


@dataclass(frozen=True)
class HostPolicy:
    """The origins TMDb traffic may go to; :meth:`check` every URL before it is requested."""

    origins: frozenset[Origin]
    api: str      # shown in messages: the API's host
    images: str   # ... and the image host

    @classmethod
    def for_tmdb(cls, api_base: str, image_host: str) -> HostPolicy:
        api = _parse(api_base)
        if api is None or api.scheme.lower() not in DEFAULT_PORTS or not api.raw_host:
            raise TMDbUsageError(f"TMDb API root {api_base!r}: not an http(s) URL")
        if api.userinfo:
            raise TMDbUsageError("TMDb API root: user info (user:password@) is not accepted; "
                                 "credentials go in TMDB_API_KEY or TMDB_READ_TOKEN")
        origins = {origin_of(api)}
        value = (image_host or "").strip()
        given = _parse(value if "://" in value else f"https://{value}")
        if (given is None or not given.raw_host or given.userinfo
                or given.scheme.lower() not in DEFAULT_PORTS
                or given.path not in ("", "/") or given.query or given.fragment):
            raise TMDbUsageError(f"POSTERDB_TMDB_IMAGE_HOST={value!r}: give a host "
                                 "(image.tmdb.org), host:port, or scheme://host:port")
        host = normal_host(given.raw_host)
        if "://" in value:
            named = origin_of(given)
            origins.add(named)
        else:
            named = ("https", host, given.port or 443)
            for scheme, default in DEFAULT_PORTS.items():
                origins.add((scheme, host, given.port or default))
        return cls(frozenset(origins), _shown(*origin_of(api)), _shown(*named))

    def check(self, url: str | httpx.URL, what: str = "image URL") -> httpx.URL:
        """The parsed URL if it may be requested, else TMDbHostError naming its host."""
        parsed = _parse(url)
        if parsed is None:
            raise TMDbHostError(f"{what}: not a valid URL; refused")
        scheme = parsed.scheme.lower()
        if scheme not in DEFAULT_PORTS:
            kind = f"scheme {scheme}:" if scheme else "a relative URL"
            host = normal_host(parsed.raw_host) if parsed.raw_host else ""
            raise TMDbHostError(f"{what}: {kind} (host {host or 'none'}) is not http(s); "
                                "refused")
        if not parsed.raw_host:
            raise TMDbHostError(f"{what}: no host in the URL; refused")
        o = origin_of(parsed)
        if parsed.userinfo:
            raise TMDbHostError(f"{what}: host {_shown(*o)} with user info (user@) in the URL; "
                                "refused")
        if o not in self.origins:
            raise TMDbHostError(
                f"{what}: host {_shown(*o)} is neither the TMDb API's ({self.api}) nor the "
                f"image host ({self.images}, POSTERDB_TMDB_IMAGE_HOST); refused")
        return parsed
