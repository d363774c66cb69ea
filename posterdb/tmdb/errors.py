"""TMDb's errors (re-exported by `posterdb.tmdb.client`): each message names the endpoint or the
host, never a secret."""
from __future__ import annotations

from posterdb.core.errors import RefusedError, UsageError


class TMDbError(RefusedError):
    """TMDb could not be used (after retries): exit 3."""


class TMDbAuthError(TMDbError):
    """401: the API key / read token was refused, or none was given."""


class TMDbUsageError(TMDbError, UsageError):
    """A request that can never succeed as asked (bad option value, 4xx other than 401/429)."""

    exit_code = 2


class TMDbHostError(TMDbError):
    """A URL the client will not request: not http(s), credentials in it, or a host that is
    neither the API's nor the configured image host (a redirect's target included). Refused
    before any byte is sent, never retried; a fetch stops on it."""
