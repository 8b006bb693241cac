"""Failed token attempts are limited per client address, across the API, the console's use
of it and the WebSockets (live feeds, softphone); revoked tokens are refused. The counting on
a fake clock, then in process: the API's routes and the call WebSockets on one app, tokens
sent as the console sends them (an Authorization header, a `bearer.` subprotocol)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast
from zoneinfo import ZoneInfo

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from ivr.api import API, ApiContext, add_api_routes, hash_token
from ivr.api.limits import ClientLimits
from ivr.appkeys import METRICS, SERVICES, SETTINGS, TOKEN_GUARD
from ivr.auth import PROTOCOL
from ivr.call.registry import CallRegistry
from ivr.config import ApiToken, load_settings
from ivr.metrics import Metrics
from ivr.server.transports import add_call_routes
from ivr.store import Store, open_store
from ivr.token_guard import FailedAttempts, TokenGuard, client_key

FEED = "feed-token-0123456789abcdef"  # calls.read
READER = "reader-token-0123456789abcdef"  # callbacks.read only
TOKENS = [
    ApiToken(name="feed", sha256=hash_token(FEED), scopes=["calls.read"]),
    ApiToken(name="reader", sha256=hash_token(READER), scopes=["callbacks.read"]),
]


# --- the counting, on a fake clock --------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_n_failures_within_the_window_lock_the_address_for_the_window() -> None:
    clock = Clock()
    attempts = FailedAttempts(3, 60, clock=clock)
    for _ in range(2):
        attempts.failed("203.0.113.7", "unknown")
        clock.now += 25
    assert attempts.retry_after("203.0.113.7") is None
    clock.now += 20  # the first failure is out of the window now: 2 in it
    attempts.failed("203.0.113.7", "unknown")
    assert attempts.retry_after("203.0.113.7") is None
    attempts.failed("203.0.113.7", "revoked")  # the third within 60 s
    assert attempts.retry_after("203.0.113.7") == 60
    assert attempts.retry_after("203.0.113.8") is None  # another address is not touched
    clock.now += 59.5
    assert attempts.retry_after("203.0.113.7") == pytest.approx(0.5)
    clock.now += 1
    assert attempts.retry_after("203.0.113.7") is None  # over, and counting afresh:
    attempts.failed("203.0.113.7", "unknown")
    assert attempts.retry_after("203.0.113.7") is None
    assert attempts.counts.failures == {"unknown": 4, "revoked": 1}
    assert attempts.counts.lockouts == 1


def test_no_limit_when_the_maximum_is_0() -> None:
    attempts = FailedAttempts(0, 60)
    for _ in range(100):
        attempts.failed("a", "unknown")
    assert attempts.retry_after("a") is None and attempts.tracked() == 0
    assert attempts.counts.failures == {"unknown": 100}  # still counted for /metrics


def test_a_flood_of_addresses_costs_a_bounded_table() -> None:
    clock = Clock()
    attempts = FailedAttempts(3, 60, max_clients=100, clock=clock)
    for i in range(10_000):
        for _ in range(3):
            attempts.failed(f"10.{i // 65536}.{i // 256 % 256}.{i % 256}", "unknown")
    assert attempts.tracked() == 100
    assert attempts.counts.lockouts == 10_000 and attempts.counts.evicted == 9_900
    assert attempts.locked() == 100  # the latest hundred
    # Entries whose failures and lock-out are over go first, before anyone is evicted.
    clock.now += 61
    attempts.failed("198.51.100.1", "unknown")
    assert attempts.tracked() == 1 and attempts.counts.evicted == 9_900


def test_an_ipv6_client_is_its_64() -> None:
    assert client_key("2001:db8:1:2:aaaa::1") == client_key("2001:db8:1:2:ffff::9")
    assert client_key("2001:db8:1:2::1") == "2001:db8:1:2::/64"
    assert client_key("2001:db8:1:3::1") != client_key("2001:db8:1:2::1")
    assert client_key("::ffff:192.0.2.1") == "192.0.2.1"
    assert client_key("192.0.2.1") == "192.0.2.1"
    assert client_key(None) == "" and client_key("unix-socket") == "unix-socket"


def test_a_lockout_logs_one_line_and_a_flood_few(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    attempts = FailedAttempts(2, 60, clock=clock)
    with caplog.at_level(logging.WARNING, "ivr.token_guard"):
        for i in range(50):
            attempts.failed(f"192.0.2.{i}", "unknown", "GET /v1/callbacks")
            attempts.failed(f"192.0.2.{i}", "unknown", "GET /v1/callbacks")
        clock.now += 11
        attempts.failed("198.51.100.1", "unknown")
        attempts.failed("198.51.100.1", "unknown")
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2
    assert "2 failed from 192.0.2.0 within 60 s" in lines[0]
    assert "refused (429 too_many_attempts) for 60 s; the last: GET /v1/callbacks" in lines[0]
    assert "198.51.100.1" in lines[1] and "(and 49 more addresses" in lines[1]


# --- in process: the API, the feeds and the softphone on one app ----------------------------


@dataclass
class Served:
    base: str
    guard: TokenGuard
    metrics: Metrics
    http: aiohttp.ClientSession

    async def api(self, token: str | None, path: str = "/v1/calls") -> Any:
        """A REST call with the token as the console sends it (an Authorization header)."""
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        return await self.http.get(self.base + path, headers=headers)

    async def tool(self, path: str, token: str) -> Any:
        """A WebSocket handshake with the token as tools send it (`?token=`)."""
        return await self.http.get(self.base + path, params={"token": token})

    async def socket(self, path: str, token: str | None) -> aiohttp.ClientResponse:
        """A WebSocket handshake with the token as the console sends it (a subprotocol)."""
        protocols = PROTOCOL + (f", bearer.{token}" if token else "")
        headers = {
            "Connection": "Upgrade",
            "Upgrade": "websocket",
            "Sec-WebSocket-Version": "13",
            "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
            "Sec-WebSocket-Protocol": protocols,
        }
        return await self.http.get(self.base + path, headers=headers)


async def _ok(request: web.Request) -> web.Response:
    return web.Response(text="ok")


@contextlib.asynccontextmanager
async def served(failures: int = 3, window: float = 60) -> AsyncIterator[Served]:
    with tempfile.TemporaryDirectory() as tmp:
        store = await open_store(str(Path(tmp) / "ivr.db"))
        try:
            async with _app(store, failures, window) as s:
                yield s
        finally:
            await store.close()


@contextlib.asynccontextmanager
async def _app(store: Store, failures: int, window: float) -> AsyncIterator[Served]:
    app = web.Application()
    app[SETTINGS] = load_settings(api_tokens=TOKENS)
    app[METRICS] = metrics = Metrics()
    app[SERVICES] = cast(Any, None)  # no call gets past the softphone's token check here
    registry = CallRegistry(max_calls=5)
    app[API] = ApiContext(cast(Any, None), store, TOKENS, ZoneInfo("UTC"), calls=registry)
    app.router.add_get("/console/", _ok)
    add_call_routes(app)  # /v1/media-stream, /v1/softphone
    add_api_routes(app, ClientLimits(token_failures=failures, token_failure_window_s=window))
    metrics.token_guard = app[TOKEN_GUARD]
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    registry.publish("call-1", {"event": "call_started", "caller": "+15551230001"})
    try:
        async with aiohttp.ClientSession() as http:
            yield Served(f"http://127.0.0.1:{server.port}", app[TOKEN_GUARD], metrics, http)
    finally:
        await server.close()


def exposition(metrics: Metrics) -> str:
    return metrics.render("text/plain")[0].decode()


async def test_wrong_tokens_on_api_feeds_and_softphone_lock_the_address_out() -> None:
    async with served(failures=3) as s:
        feed = "/v1/calls/call-1/events"
        # Neither a missing token nor a valid one lacking the scope is a guess.
        for _ in range(5):
            assert (await s.api(None)).status == 401
            assert (await s.api(READER)).status == 403
            assert (await s.socket("/v1/softphone", None)).status == 401
            assert (await s.tool(feed, READER)).status == 403
        assert (await s.api(FEED)).status == 200
        # One wrong token on each: the API, a live feed, the softphone.
        assert (await s.api("wrong-1")).status == 401
        assert (await s.socket("/v1/live", "wrong-2")).status == 401
        assert (await s.socket("/v1/softphone", "wrong-3")).status == 401
        # Locked out: the right token too, on every kind, until Retry-After.
        for attempt in (
            s.api(FEED),
            s.socket("/v1/live", FEED),
            s.socket("/v1/softphone", FEED),
            s.tool(feed, FEED),
        ):
            r = await attempt
            assert r.status == 429, await r.text()
            assert r.content_type == "application/problem+json"
            assert 59 <= int(r.headers["Retry-After"]) <= 60
            body = await r.json()
            assert body["code"] == "too_many_attempts" and body["status"] == 429
            assert body["type"].endswith("/too_many_attempts")
            assert "try again in" in body["detail"]
            assert "call_started" not in await r.text()
        # The console's page is no token check: it still loads (its API calls are 429).
        assert (await s.http.get(s.base + "/console/")).status == 200
        text = exposition(s.metrics)
        assert 'ivr_token_failures_total{reason="unknown"} 3.0' in text
        assert "ivr_token_lockouts_total 1.0" in text
        assert "ivr_token_refused_total 4.0" in text
        assert "ivr_token_locked_clients 1.0" in text


async def test_successes_neither_count_nor_clear_failures() -> None:
    async with served(failures=3) as s:
        for _ in range(20):
            async with await s.socket("/v1/live", FEED) as r:  # upgraded: 101
                assert r.status == 101
        assert (await s.api("wrong")).status == 401
        assert (await s.tool("/v1/live", "wrong")).status == 401
        async with await s.socket("/v1/live", FEED) as r:
            assert r.status == 101  # 2 failures: not locked, and a success...
        assert (await s.api(FEED)).status == 200
        assert (await s.api("wrong")).status == 401  # ... did not reset them
        assert (await s.api(FEED)).status == 429


async def test_the_lockout_ends_after_the_window() -> None:
    async with served(failures=2, window=1.0) as s:
        for _ in range(2):
            assert (await s.api("wrong")).status == 401
        r = await s.api(FEED)
        assert r.status == 429 and r.headers["Retry-After"] == "1"
        await asyncio.sleep(1.1)
        async with await s.socket("/v1/calls/call-1/events", FEED) as r:
            assert r.status == 101


async def test_a_revoked_token_is_refused_and_counts_as_a_failure() -> None:
    async with served(failures=3) as s:
        async with await s.socket("/v1/live", FEED) as r:
            assert r.status == 101
        s.guard.set_revoked([hash_token(FEED)])
        r = await s.api(FEED)
        assert r.status == 401
        assert (await r.json())["detail"] == "bearer token 'feed' has been revoked"
        assert 'error="invalid_token"' in r.headers["WWW-Authenticate"]
        assert (await s.socket("/v1/softphone", FEED)).status == 401
        assert (await s.api(READER, "/v1/callbacks")).status == 200  # others still work
        text = exposition(s.metrics)
        assert 'ivr_token_failures_total{reason="revoked"} 2.0' in text
        assert "ivr_tokens_revoked 1.0" in text
        assert (await s.tool("/v1/live", FEED)).status == 401  # the third: locked out
        assert (await s.api(READER, "/v1/callbacks")).status == 429
