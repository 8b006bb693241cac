"""The call feeds need calls.read; clients without a token hold a bounded number of
connections; the live feeds are capped; slow headers are cut. In process (the API's routes
on a real CallRegistry, small limits) and against a real `ivr serve` (the default limits)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, cast
from zoneinfo import ZoneInfo

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from live_server import FEED_TOKEN, LiveServer, live_server

from ivr.api import API, ApiContext, add_api_routes, hash_token, token_entry
from ivr.api.limits import ClientLimits
from ivr.api.live import FEED_MAX_MSG_SIZE
from ivr.auth import PROTOCOL
from ivr.call.registry import CallRegistry
from ivr.config import ApiToken, Settings
from ivr.dial import Caller

FEED = "feed-reader-token-0123456789"  # calls.read
READER = "callbacks-reader-token-0123456789"  # callbacks.read only
KNOWN = "+15551230001"  # a demo account: its balance is read out
TRANSCRIPT = [
    {"event": "call_started", "caller": KNOWN, "transport": "websocket", "at": 1.0},
    {"event": "recognized", "node": "account", "text": "4 4 1 2 7 7", "at": 2.0},
    {"event": "prompt", "node": "balance", "text": "Your balance is 23 dollars.", "at": 3.0},
    {"event": "hangup", "reason": "caller_hangup", "at": 4.0},
]


# --- in process: the API's routes on a registry --------------------------------------------


async def _ok(request: web.Request) -> web.Response:
    return web.Response(text="ok")


@contextlib.asynccontextmanager
async def served(limits: ClientLimits) -> AsyncIterator[tuple[str, CallRegistry]]:
    registry = CallRegistry(max_calls=5)
    app = web.Application()
    tokens = [
        ApiToken(name="feed", sha256=hash_token(FEED), scopes=["calls.read"]),
        ApiToken(name="reader", sha256=hash_token(READER), scopes=["callbacks.read"]),
    ]
    app[API] = ApiContext(cast(Any, None), cast(Any, None), tokens, ZoneInfo("UTC"), calls=registry)
    for path in ("/v1/media-stream", "/healthz", "/readyz", "/console/"):  # stand-ins
        app.router.add_get(path, _ok)
    add_api_routes(app, limits)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield f"127.0.0.1:{server.port}", registry
    finally:
        await server.close()


def finished_call(registry: CallRegistry, call_id: str) -> None:
    for event in TRANSCRIPT:
        registry.publish(call_id, event)
    registry.end(call_id)


async def refused(http: aiohttp.ClientSession, url: str, **kw: Any) -> tuple[int, str]:
    """(status, body) of a WebSocket upgrade the server answers without upgrading."""
    headers = {
        "Connection": "Upgrade",
        "Upgrade": "websocket",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        **kw.pop("headers", {}),
    }
    async with http.get(url, headers=headers, **kw) as r:
        return r.status, await r.text()


async def read_feed(ws: aiohttp.ClientWebSocketResponse) -> list[dict[str, Any]]:
    return [json.loads(msg.data) async for msg in ws if msg.type == aiohttp.WSMsgType.TEXT]


async def test_a_finished_calls_feed_needs_a_token_with_calls_read() -> None:
    async with served(ClientLimits()) as (host, registry), aiohttp.ClientSession() as http:
        finished_call(registry, "call-1")
        url = f"http://{host}/v1/calls/call-1/events"
        for kw, status in [
            ({}, 401),
            ({"params": {"token": "not-a-token"}}, 401),
            ({"headers": {"Sec-WebSocket-Protocol": f"{PROTOCOL}, bearer.not-a-token"}}, 401),
            ({"params": {"token": READER}}, 403),
            ({"headers": {"Sec-WebSocket-Protocol": f"bearer.{READER}"}}, 403),
        ]:
            got, body = await refused(http, url, **kw)
            assert got == status, (kw, body)
            assert json.loads(body)["error"]["status"] == status
            assert KNOWN not in body and "balance" not in body  # nothing of the call
        async with http.get(url) as r:  # not even a plain GET
            assert r.status == 401 and KNOWN not in await r.text()

        ws = await http.ws_connect(url, protocols=(PROTOCOL, f"bearer.{FEED}"))
        assert ws.protocol == PROTOCOL
        assert await read_feed(ws) == TRANSCRIPT
        ws = await http.ws_connect(url, params={"token": FEED})
        assert await read_feed(ws) == TRANSCRIPT


async def test_live_feeds_are_capped_all_kinds_together() -> None:
    async with served(ClientLimits(feed_subscribers=2)) as (host, registry):
        async with aiohttp.ClientSession() as http:
            auth = (PROTOCOL, f"bearer.{FEED}")
            one = await http.ws_connect(f"ws://{host}/v1/calls/live-1/events", protocols=auth)
            every = await http.ws_connect(f"ws://{host}/v1/live", protocols=auth)
            with pytest.raises(aiohttp.WSServerHandshakeError) as full:
                await http.ws_connect(f"ws://{host}/v1/calls/live-2/events", protocols=auth)
            assert full.value.status == 503 and full.value.headers is not None
            assert full.value.headers["Retry-After"]
            await every.close()
            for _ in range(50):  # until the server has seen it go
                try:
                    again = await http.ws_connect(f"ws://{host}/v1/live", protocols=auth)
                    break
                except aiohttp.WSServerHandshakeError:
                    await asyncio.sleep(0.02)
            else:
                raise AssertionError("a freed slot was not given out again")
            registry.publish("live-1", TRANSCRIPT[0])
            assert json.loads((await one.receive(timeout=5)).data) == TRANSCRIPT[0]
            assert json.loads((await again.receive(timeout=5)).data)["call_id"] == "live-1"


async def test_a_big_message_on_a_feed_closes_that_feed_only() -> None:
    """Feed clients send nothing large: over FEED_MAX_MSG_SIZE (it was 1 MiB) the socket is
    refused with 1009, and the other feeds go on."""
    async with served(ClientLimits()) as (host, registry):
        async with aiohttp.ClientSession() as http:
            auth = (PROTOCOL, f"bearer.{FEED}")
            big = await http.ws_connect(f"ws://{host}/v1/live", protocols=auth)
            other = await http.ws_connect(f"ws://{host}/v1/live", protocols=auth)
            one = await http.ws_connect(f"ws://{host}/v1/calls/live-1/events", protocols=auth)
            await big.send_str("x" * (FEED_MAX_MSG_SIZE + 1))
            msg = await big.receive(timeout=5)
            assert msg.type == aiohttp.WSMsgType.CLOSE, msg
            assert big.close_code == aiohttp.WSCloseCode.MESSAGE_TOO_BIG
            registry.publish("live-1", TRANSCRIPT[0])
            assert json.loads((await other.receive(timeout=5)).data)["call_id"] == "live-1"
            assert json.loads((await one.receive(timeout=5)).data) == TRANSCRIPT[0]


async def test_a_small_message_on_a_feed_is_ignored() -> None:
    """A client's text (a keep-alive, a stray "hello") is not a goodbye: the feed goes on
    and still sends the events that follow; only the client's close ends it."""
    async with served(ClientLimits()) as (host, registry):
        async with aiohttp.ClientSession() as http:
            auth = (PROTOCOL, f"bearer.{FEED}")
            feed = await http.ws_connect(f"ws://{host}/v1/live", protocols=auth)
            await feed.send_str("hello")
            await feed.send_bytes(b"ping")
            await asyncio.sleep(0.2)  # the server has read both by now
            registry.publish("live-1", TRANSCRIPT[0])
            msg = await feed.receive(timeout=5)
            assert msg.type == aiohttp.WSMsgType.TEXT, (msg, feed.close_code)
            assert json.loads(msg.data)["call_id"] == "live-1"
            await feed.close()
            assert feed.close_code == aiohttp.WSCloseCode.OK


@dataclass
class Conn:
    status: int
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter


def _get(path: str, *headers: str) -> str:
    return "".join(
        [f"GET {path} HTTP/1.1\r\nHost: ivr\r\n", *(f"{h}\r\n" for h in headers), "\r\n"]
    )


@contextlib.asynccontextmanager
async def connections(host: str) -> AsyncIterator[Callable[[str], Awaitable[Conn]]]:
    """open(request): a new connection, `request` sent on it, the answer's status read; all
    of them are left open until the end of the block."""
    name, port = host.split(":")
    opened: list[Conn] = []

    async def open_(request: str) -> Conn:
        reader, writer = await asyncio.open_connection(name, int(port))
        writer.write(request.encode())
        status = int((await asyncio.wait_for(reader.readline(), 10)).split()[1])
        opened.append(conn := Conn(status, reader, writer))
        return conn

    try:
        yield open_
    finally:
        for conn in opened:
            conn.writer.close()


async def test_connections_without_a_token_are_capped_per_address() -> None:
    async with served(ClientLimits(anonymous_per_client=3)) as (host, _):
        anon = _get("/v1/calls/x/events")
        async with connections(host) as connect:
            first = [await connect(anon) for _ in range(3)]
            assert [c.status for c in first] == [401, 401, 401]  # kept open (keep-alive)
            over = await connect(_get("/console/"))
            assert over.status == 429  # on any route but the uncounted ones, and closed:
            assert await asyncio.wait_for(over.reader.read(), 5) and over.reader.at_eof()
            # With a valid token (any scope), or to a call or health route, a client at the
            # cap is served.
            for request, status in [
                (_get("/console/", f"Authorization: Bearer {READER}"), 200),
                (_get(f"/v1/calls/x/events?token={READER}"), 403),
                (_get("/v1/media-stream"), 200),
                (_get("/healthz"), 200),
            ]:
                assert (await connect(request)).status == status, request
            # A counted connection that then carries a valid token stops counting.
            await first[0].reader.readuntil(b"}")  # the rest of its 401
            first[0].writer.write(_get("/console/", f"Authorization: Bearer {FEED}").encode())
            assert (await first[0].reader.readline()).split()[1] == b"200"
            assert (await connect(anon)).status == 401
            assert (await connect(anon)).status == 429
            for conn in first[1:]:
                conn.writer.close()
            await asyncio.sleep(0.2)  # the server sees them go
            assert (await connect(anon)).status == 401


async def test_readiness_probes_are_not_counted() -> None:
    """A load balancer probes /readyz without a token, from one address, over and over:
    a client at its cap is still answered there (it was a 429, so the node looked down)."""
    async with served(ClientLimits(anonymous_per_client=1)) as (host, _):
        async with connections(host) as connect:
            assert (await connect(_get("/v1/calls/x/events"))).status == 401  # the cap, held
            assert (await connect(_get("/console/"))).status == 429
            for _ in range(3):
                assert (await connect(_get("/readyz"))).status == 200
                assert (await connect(_get("/healthz"))).status == 200


def test_the_limits_are_settings_with_real_defaults() -> None:
    settings = Settings.model_validate({})
    assert ClientLimits.from_settings(settings) == ClientLimits(64, 500)
    assert settings.header_timeout_seconds == 10
    off = Settings.model_validate({"max_anonymous_connections_per_client": 0})
    assert off.max_anonymous_connections_per_client == 0  # no limit (behind a proxy)


# --- a real `ivr serve` ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    tmp = tmp_path_factory.mktemp("feed-auth")
    tokens = token_entry("reader", READER, ["callbacks.read"])
    with live_server(tmp, IVR_API_TOKENS=tokens) as live:
        yield live


async def a_call(server: LiveServer) -> Caller:
    """A caller who listens to the greeting and the menu, then hangs up."""
    caller = Caller(server.media_url, [], KNOWN, out=None, max_seconds=60, token=FEED_TOKEN)
    report = await caller.run()
    assert report.hangup is not None, report.events
    return caller


async def test_ivr_serve_replays_a_finished_call_only_to_calls_read(server: LiveServer) -> None:
    caller = await a_call(server)
    url = server.events_url(caller.report.call_id).split("?")[0]
    async with aiohttp.ClientSession() as http:
        for kw, status in [({}, 401), ({"params": {"token": READER}}, 403)]:
            got, body = await refused(http, url.replace("ws://", "http://"), **kw)
            assert got == status and KNOWN not in body
        ws = await http.ws_connect(url, protocols=(PROTOCOL, f"bearer.{FEED_TOKEN}"))
        events = await read_feed(ws)
    assert events[0]["event"] == "call_started" and events[0]["caller"] == KNOWN
    assert events[-1]["event"] == "hangup"
    assert any(e["event"] == "prompt" for e in events)
    # `ivr dial` sent its token as a subprotocol; tests' events_url as ?token=: redacted.
    log = server.log_text()
    assert FEED_TOKEN not in log and READER not in log


async def test_1500_connections_without_a_token_from_one_address(server: LiveServer) -> None:
    host, cap = f"127.0.0.1:{server.port}", 64  # IVR_MAX_ANONYMOUS_CONNECTIONS_PER_CLIENT
    anon = _get(f"/v1/calls/CA{uuid.uuid4().hex}/events")
    async with connections(host) as connect:
        statuses: list[int] = []
        for _ in range(15):  # 100 at a time: the listen backlog is 128
            statuses += [
                c.status for c in await asyncio.gather(*(connect(anon) for _ in range(100)))
            ]
        assert statuses.count(401) == cap and statuses.count(429) == 1500 - cap
        # With the cap full, the address still makes a call and reads its feed (with a
        # token), and the server still answers health checks.
        call = asyncio.create_task(a_call(server))
        assert (await connect(anon)).status == 429
        assert (await asyncio.to_thread(server.health))["status"] == "ok"
        await call
    await asyncio.sleep(0.5)  # the server sees them go: the address may connect again
    async with connections(host) as connect:
        assert (await connect(anon)).status == 401


async def test_slow_headers_are_cut_at_the_header_timeout(server: LiveServer) -> None:
    timeout = 10.0  # IVR_HEADER_TIMEOUT_SECONDS's default

    async def slow(first: bytes, trickle: bool) -> float:
        """Seconds until the server closes a connection whose headers never end."""
        started = time.monotonic()
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(first)

        async def drip() -> None:
            while trickle:
                await asyncio.sleep(0.5)
                writer.write(b"x")  # a header a byte at a time, never finished

        dripping = asyncio.create_task(drip())
        try:
            with contextlib.suppress(ConnectionResetError):  # a drip after it closed: RST
                assert await asyncio.wait_for(reader.read(), timeout + 10) == b""
        finally:
            dripping.cancel()
            writer.close()
        return time.monotonic() - started

    async with aiohttp.ClientSession() as http:
        # A feed (authenticated) opened for a call yet to come: a handler at work is no
        # connection waiting for headers, and is not cut.
        feed = await http.ws_connect(
            server.events_url(f"CA{uuid.uuid4().hex}"), protocols=(PROTOCOL,)
        )
        cut = await asyncio.gather(
            slow(b"GET /healthz HTTP/1.1\r\nHost: ivr\r\nX-Slow: ", trickle=True),
            slow(b"", trickle=False),  # connects, says nothing
        )
        assert all(timeout - 1 < t < timeout + 3 for t in cut), cut
        assert not feed.closed
        with pytest.raises(TimeoutError):
            await feed.receive(timeout=0.5)
        await feed.close()
