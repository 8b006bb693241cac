"""A new transport is one serializer and one line (the walkthrough in
`ivr/transports/__init__.py`): a tiny wire format written by its steps, registered in a
test-only table, driven by the server's generic legs over real sockets (a WebSocket and
TCP), and answered by a real call session.

The tiny format: newline-terminated text lines, the same on both carriers.
  far end → server: `start <rate> <id>`, `audio <base64 PCM>`, `key <digit>`, `played <mark>`,
  `bye`
  server → far end: `audio <base64 PCM>`, `mark <name>`, `clear`, `end <reason>`
"""

from __future__ import annotations

import asyncio
import base64
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, ClassVar, assert_never, cast

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

import ivr.server.stream
import ivr.server.websocket
from ivr.app import create_app
from ivr.appkeys import SERVICES
from ivr.audio.codecs import Encoding
from ivr.call.leg import Leg
from ivr.call.session import CallServices
from ivr.config import load_settings
from ivr.server.stream import StreamServer, StreamTransport
from ivr.server.websocket import WebSocketTransport
from ivr.transports.base import Serializer, Wire
from ivr.transports.messages import (
    CallerAudio,
    CallerHangup,
    CallStart,
    ClearAudio,
    Dtmf,
    EndCall,
    InboundMessage,
    Mark,
    OutboundMessage,
    PlayAudio,
    ProtocolError,
    SetMark,
)

# --- step 1: the file (ivr/transports/tiny.py) ------------------------------------------


class TinySerializer:
    call_id: str | None = None  # the call session names the call

    def __init__(self) -> None:
        self.rate: int | None = None
        self._buf = ""

    @property
    def ready(self) -> bool:
        return self.rate is not None

    def parse(self, data: Wire) -> list[InboundMessage]:
        self._buf += data.decode("utf-8") if isinstance(data, bytes) else data
        *lines, self._buf = self._buf.split("\n")
        return [self._line(line) for line in lines]

    def _line(self, line: str) -> InboundMessage:
        verb, _, arg = line.partition(" ")
        if verb == "start":
            rate, _, far_id = arg.partition(" ")
            self.rate = int(rate)
            return CallStart(far_id, far_id, None, {}, Encoding.PCM16, self.rate)
        if self.rate is None:
            raise ProtocolError(f"{verb!r} before start")
        if verb == "audio":
            return CallerAudio(base64.b64decode(arg))
        if verb == "key":
            return Dtmf(arg)
        if verb == "played":
            return Mark(arg)
        if verb == "bye":
            return CallerHangup("bye")
        raise ProtocolError(f"unknown line {verb!r}")

    def end(self) -> list[InboundMessage]:
        return []

    def answer(self, start: CallStart) -> list[Wire]:
        return []

    def render(self, msg: OutboundMessage) -> list[Wire]:
        match msg:
            case PlayAudio(pcm):
                return [f"audio {base64.b64encode(pcm).decode()}\n"]
            case SetMark(name):
                return [f"mark {name}\n"]
            case ClearAudio():
                return ["clear\n"]
            case EndCall(reason):
                return [f"end {reason}\n"]
            case _:
                assert_never(msg)


# --- step 2: the line (in ivr/server/transports.py; here a test-only table) -------------

WEBSOCKETS = (WebSocketTransport("/v1/tiny", "tiny", TinySerializer),)
STREAMS = (StreamTransport("tiny", TinySerializer),)


def test_the_tiny_format_is_a_serializer() -> None:
    serializer: Serializer = TinySerializer()  # the type checker holds it to the protocol
    assert not serializer.ready
    assert serializer.parse("start 8000 far-1\nkey") == [
        CallStart("far-1", "far-1", None, {}, Encoding.PCM16, 8000)
    ]
    assert serializer.parse(b" 5\n") == [Dtmf("5")]  # a line cut anywhere waits for its end
    assert serializer.render(EndCall("goodbye")) == ["end goodbye\n"]


# --- the generic legs over real sockets, with a scripted session ------------------------

PIECE = b"\x01\x02" * 160  # what the player hands over: one piece of the ptime (20 ms)


class ScriptedSession:
    """Stands in for CallSession and uses the leg as it does: plays before the start (goes
    nowhere), then after it, sets a mark, hears the caller out, says goodbye, closes."""

    seen: ClassVar[list[tuple[str, str | None, list[InboundMessage]]]] = []

    def __init__(self, leg: Leg, services: Any, call_id: str | None = None) -> None:
        self.leg, self.call_id = leg, call_id

    async def run(self) -> str:
        await self.leg.send(PlayAudio(PIECE))  # not ready: nothing addressed yet
        start = await self.leg.receive()
        assert isinstance(start, CallStart), start
        for _ in range(2):
            await self.leg.send(PlayAudio(PIECE))
        await self.leg.send(SetMark("m1"))
        got: list[InboundMessage] = [start]
        while (msg := await self.leg.receive()) is not None:
            got.append(msg)
            if isinstance(msg, CallerHangup):
                break
        await self.leg.send(EndCall("goodbye"))
        await self.leg.close()
        self.seen.append((self.leg.name, self.call_id, got))
        return "caller_hangup"


CALLER = ["start 8000 far-1\n", "key 5\n", f"audio {base64.b64encode(PIECE).decode()}\n"]
AUDIO = f"audio {base64.b64encode(PIECE).decode()}\n"
WANT_IN = [
    CallStart("far-1", "far-1", None, {}, Encoding.PCM16, 8000),
    Dtmf("5"),
    CallerAudio(PIECE),
    Mark("m1"),
    CallerHangup("bye"),
]
WANT_OUT = [AUDIO, AUDIO, "mark m1\n", "end goodbye\n"]  # a piece a message: cut once


@pytest.fixture
def scripted(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str | None, list[Any]]]:
    seen: list[tuple[str, str | None, list[Any]]] = []
    monkeypatch.setattr(ScriptedSession, "seen", seen)
    monkeypatch.setattr(ivr.server.websocket, "CallSession", ScriptedSession)
    monkeypatch.setattr(ivr.server.stream, "CallSession", ScriptedSession)
    return seen


async def test_a_websocket_transport_from_its_line(
    scripted: list[tuple[str, str | None, list[Any]]],
) -> None:
    app = web.Application()
    app[SERVICES] = cast(CallServices, None)  # the scripted session needs none
    for transport in WEBSOCKETS:
        app.router.add_get(transport.path, transport.handle)
    async with (
        asyncio.timeout(10),
        TestServer(app, host="127.0.0.1") as ts,
        aiohttp.ClientSession() as http,
    ):
        ws = await http.ws_connect(f"ws://127.0.0.1:{ts.port}/v1/tiny")
        for line in CALLER:
            await ws.send_str(line)
        out: list[str] = []
        async for msg in ws:
            out.append(msg.data)
            if msg.data == "mark m1\n":
                await ws.send_str("played m1\n")
                await ws.send_str("bye\n")
        assert ws.closed  # the server closed it after EndCall
    assert out == WANT_OUT
    assert scripted == [("tiny", None, WANT_IN)]


async def test_a_tcp_transport_from_its_line(
    scripted: list[tuple[str, str | None, list[Any]]],
) -> None:
    server = StreamServer(cast(CallServices, None), STREAMS[0])
    port = await server.start("127.0.0.1", 0)
    try:
        async with asyncio.timeout(10):
            out = await tiny_tcp_call(port)
    finally:
        await server.close()
    assert out == WANT_OUT
    assert scripted == [("tiny", None, WANT_IN)]


async def tiny_tcp_call(port: int) -> list[str]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write("".join(CALLER).encode()[:7])  # TCP cuts where it likes
    await writer.drain()
    writer.write("".join(CALLER).encode()[7:])
    out: list[str] = []
    while line := (await reader.readline()).decode():
        out.append(line)
        if line == "mark m1\n":
            writer.write(b"played m1\nbye\n")
    writer.close()
    return out


# --- and a real call on it --------------------------------------------------------------


@pytest.fixture
async def ivr_app(tmp_path: Path) -> AsyncIterator[tuple[str, Path]]:
    settings = load_settings(
        data_dir=tmp_path / "data",
        host="127.0.0.1",
        audiosocket_port=0,
        sip_port=0,  # no SIP: 5060 may be another process's
        timezone="UTC",
        business_hours="24/7",
    )
    settings.data_dir.mkdir(parents=True)
    app = create_app(settings)
    for transport in WEBSOCKETS:  # what the line in ivr/server/transports.py makes of it
        app.router.add_get(transport.path, transport.handle)
    async with TestServer(app, host="127.0.0.1") as ts:
        yield f"ws://127.0.0.1:{ts.port}/v1/tiny", settings.data_dir / "ivr.db"


async def wait_for(check: Callable[[], Any], limit: float = 20.0) -> Any:
    deadline = time.monotonic() + limit
    while not (got := check()):
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.1)
    return got


async def test_a_real_call_over_the_tiny_transport(ivr_app: tuple[str, Path]) -> None:
    """The greeting comes in pieces of 20 ms, one message each; the caller hangs up; the
    record names the transport and keeps the far end's id."""
    url, db = ivr_app
    far_id = f"tiny-{uuid.uuid4().hex}"
    pieces: list[int] = []
    async with asyncio.timeout(60), aiohttp.ClientSession() as http:
        ws = await http.ws_connect(url)
        await ws.send_str(f"start 8000 {far_id}\n")
        async for msg in ws:
            verb, _, arg = msg.data.partition(" ")
            if verb == "audio":
                pieces.append(len(base64.b64decode(arg)))
            if len(pieces) == 50:  # a second of the greeting
                await ws.send_str("bye\n")
        assert ws.closed
    assert len(pieces) >= 50 and set(pieces) == {320}, pieces

    def ended() -> dict[str, Any] | None:
        with sqlite3.connect(db) as conn:
            conn.row_factory = sqlite3.Row
            row = conn.execute("SELECT * FROM calls WHERE provider_call_id = ?", (far_id,))
            found = row.fetchone()
        return dict(found) if found and found["ended_at"] else None

    rec = await wait_for(ended)
    assert rec["transport"] == "tiny" and rec["end_reason"] == "caller_hangup", rec
    assert rec["id"] != far_id  # the server's own id
