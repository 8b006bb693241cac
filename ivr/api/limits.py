"""What one client without a token can take of the server, and how many live feeds it serves.

Anyone can open connections to the HTTP port; only token holders can read anything through
them. So a client address may hold a bounded number of open connections that have carried
no valid API token (`max_anonymous_connections_per_client`); a request over it is a 429 and
its connection is closed. A request with a valid token (any scope) is never counted, and its
connection stops counting. Calls (`/v1/media-stream`, `/v1/softphone`: IVR_MAX_CALLS limits
them, and a provider's calls all come from a few addresses), `/metrics`, `/healthz` and
`/readyz` (a load balancer probes them without a token, from one address) are not counted
either.

Connections that never finish a request are the HTTP server's header timeout's to close
(`ivr/server/http.py`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from aiohttp.web_protocol import RequestHandler

from ivr.api.errors import ApiError
from ivr.appkeys import API, TOKEN_GUARD
from ivr.auth import authenticate, websocket_token
from ivr.config import Settings
from ivr.token_guard import FailedAttempts, TokenGuard

log = logging.getLogger(__name__)

UNCOUNTED = frozenset(
    {"/v1/media-stream", "/v1/softphone", "/metrics", "/livez", "/healthz", "/readyz"}
)
RETRY_AFTER_S = 10
_DEFAULTS = Settings.model_fields


@dataclass(frozen=True, slots=True)
class ClientLimits:
    """The settings' limits (their defaults when an app is built without settings)."""

    anonymous_per_client: int = _DEFAULTS["max_anonymous_connections_per_client"].default
    """Open connections without a token per client address; 0: no limit."""
    feed_subscribers: int = _DEFAULTS["max_feed_subscribers"].default
    """Live-feed WebSockets at once: /v1/live and every call's /v1/calls/{id}/events."""
    token_failures: int = _DEFAULTS["max_token_failures_per_client"].default
    """Failed token attempts per client address before it is locked out; 0: no limit."""
    token_failure_window_s: float = _DEFAULTS["token_failure_window_seconds"].default
    """The window those failures count in, and how long a lock-out lasts."""

    @classmethod
    def from_settings(cls, settings: Settings) -> ClientLimits:
        return cls(
            settings.max_anonymous_connections_per_client,
            settings.max_feed_subscribers,
            settings.max_token_failures_per_client,
            settings.token_failure_window_seconds,
        )

    def token_guard(self) -> TokenGuard:
        return TokenGuard(FailedAttempts(self.token_failures, self.token_failure_window_s))


def has_valid_token(request: web.Request) -> bool:
    """The request presents a configured token, in any of the forms the API takes."""
    api = request.app.get(API)
    if api is None:
        return False
    header = request.headers.get("Authorization")
    if header is None and (token := websocket_token(request)):
        header = f"Bearer {token}"
    guard = request.app.get(TOKEN_GUARD)
    try:
        authenticate(header, api.tokens, guard.revoked if guard is not None else ())
    except ApiError:
        return False
    return True


def _closed(conn: RequestHandler) -> bool:
    return conn.transport is None or conn.transport.is_closing()


class AnonymousConnections:
    """Per client address, its open connections that have carried no valid token."""

    def __init__(self, per_client: int) -> None:
        self.per_client = per_client
        self._open: dict[str, set[RequestHandler]] = {}
        self._sweep_at = 1024
        self.refused = 0
        self._refused_logged = 0
        self._logged_at = float("-inf")

    def admit(self, client: str, conn: RequestHandler) -> bool:
        conns = self._open.setdefault(client, set())
        if conn in conns:
            return True
        conns.difference_update([c for c in conns if _closed(c)])  # gone since
        if len(conns) >= self.per_client:
            self._refuse(client)
            return False
        conns.add(conn)
        if len(self._open) > self._sweep_at:
            self._sweep()
        return True

    def trust(self, client: str, conn: RequestHandler) -> None:
        """`conn` carried a valid token: it no longer counts."""
        conns = self._open.get(client)
        if conns is not None:
            conns.discard(conn)

    def count(self, client: str) -> int:
        return sum(not _closed(c) for c in self._open.get(client, ()))

    def _sweep(self) -> None:
        """Forget closed connections of every address: addresses that never came back."""
        for client in list(self._open):
            conns = {c for c in self._open[client] if not _closed(c)}
            if conns:
                self._open[client] = conns
            else:
                del self._open[client]
        self._sweep_at = max(1024, 2 * len(self._open))

    def _refuse(self, client: str) -> None:
        self.refused += 1
        now = time.monotonic()
        if now - self._logged_at >= 60:  # a flood is one line a minute, not one per request
            log.warning(
                "refused %d requests without a token: over %d open connections from one"
                " address (latest: %s)",
                self.refused - self._refused_logged,
                self.per_client,
                client,
            )
            self._logged_at, self._refused_logged = now, self.refused


def limit_anonymous(connections: AnonymousConnections) -> Middleware:
    """The middleware that applies `connections`' cap to every request it counts."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if connections.per_client and request.path not in UNCOUNTED:
            client, conn = request.remote or "", request.protocol
            if has_valid_token(request):
                connections.trust(client, conn)
            elif not connections.admit(client, conn):
                response = ApiError(
                    429,
                    "too many open connections without a token from this address",
                    headers={"Retry-After": str(RETRY_AFTER_S)},
                ).response()
                response.force_close()  # this connection is not kept either
                return response
        return await handler(request)

    return middleware
