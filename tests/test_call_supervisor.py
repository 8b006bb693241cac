"""Every call ends exactly once, whatever happens (issue 10).

The whole service runs in this process (aiohttp TestServer around `create_app`: real
Whisper workers, VAD, dialog, TTS, SQLite store) so that a test can make one stage fail for
one call — the serializer, the VAD, the ASR worker, the dialog, the TTS, the player's send,
the recorder, the store — while callers speak the Twilio protocol over real sockets. After
each, the call's slot is free, its record is closed with a reason, and `call.ended` is in
the webhook outbox. At the end, as many legitimate calls as there are slots all get through:
no failure leaked one.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestServer
from failures import descendants
from speech import flite

from ivr.app import create_app
from ivr.appkeys import SERVICES
from ivr.call.session import CallServices
from ivr.config import load_settings
from ivr.transports.messages import PlayAudio
from ivr.transports.twilio import TwilioClient

pytestmark = pytest.mark.asyncio(loop_scope="module")

MAX_CALLS = 2
FRAME = 320  # 20 ms of 8 kHz PCM


@dataclass
class Server:
    app: web.Application
    url: str
    db: Path
    tmp: Path

    @property
    def services(self) -> CallServices:
        return self.app[SERVICES]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Server]:
    tmp = tmp_path_factory.mktemp("supervisor")
    settings = load_settings(
        data_dir=tmp / "data",
        host="127.0.0.1",
        audiosocket_port=0,
        sip_port=0,  # no SIP: 5060 may be another process's
        max_calls=MAX_CALLS,
        end_silence_ms=500,
        timezone="UTC",
        business_hours="24/7",
        record_calls=True,
    )
    settings.data_dir.mkdir(parents=True)
    app = create_app(settings)
    async with TestServer(app, host="127.0.0.1") as ts:
        yield Server(app, f"ws://127.0.0.1:{ts.port}/v1/media-stream", tmp / "data" / "ivr.db", tmp)


@pytest.fixture(scope="module")
def balance(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = tmp_path_factory.mktemp("speech") / "balance.wav"
    return flite("check my balance", path, voice="slt").tobytes()


# --- a caller ---------------------------------------------------------------------------


@dataclass
class Call:
    sid: str
    bot_frames: int = 0
    closed_after: float | None = None  # s from the start until the server closed the stream
    server_messages: list[str] = field(default_factory=list)


async def place_call(
    server: Server,
    *,
    speech: bytes | None = None,
    speak_at: float = 1.0,
    hang_up_at: float | None = 6.0,
    abort_at: float | None = None,
    sid: str | None = None,
    limit: float = 40.0,
) -> Call:
    """One call: silence, then `speech` at `speak_at`, then silence; `stop` at `hang_up_at`
    or a TCP abort (no close handshake) at `abort_at`. Returns once the server closed it."""
    call = Call(sid or "CA" + uuid.uuid4().hex)
    client = TwilioClient()
    started = time.monotonic()
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(server.url)
        await ws.send_str(client.connected())
        await ws.send_str(client.start(call.sid, "MZ" + uuid.uuid4().hex, {"from": "+15550001111"}))

        async def read() -> None:
            async for msg in ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    break
                call.server_messages.append(msg.data)
                if '"media"' in msg.data:
                    call.bot_frames += 1
            call.closed_after = time.monotonic() - started

        reader = asyncio.create_task(read())
        pending = speech
        t = 0.0
        try:
            while not reader.done() and t < limit:
                if abort_at is not None and t >= abort_at:
                    assert ws._response.connection is not None
                    ws._response.connection.transport.abort()  # type: ignore[union-attr]
                    break
                if hang_up_at is not None and t >= hang_up_at:
                    await ws.send_str(client.stop())
                    hang_up_at = None
                if pending is not None and t >= speak_at:
                    for text in client.media(pending):
                        await ws.send_str(text)
                        await asyncio.sleep(0.02)
                        t += 0.02
                    pending = None
                    continue
                for text in client.media(b"\x00" * FRAME):
                    await ws.send_str(text)
                await asyncio.sleep(0.02)
                t += 0.02
        except (ConnectionError, RuntimeError):
            pass  # the server hung up while we were sending
        await asyncio.wait_for(reader, limit)
    return call


# --- what the server kept of a call -----------------------------------------------------


async def wait_for(check: Callable[[], Any], limit: float = 20.0) -> Any:
    deadline = time.monotonic() + limit
    while True:
        got = check()
        if got:
            return got
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.1)


def record(server: Server, sid: str) -> dict[str, Any] | None:
    with sqlite3.connect(server.db) as db:
        db.row_factory = sqlite3.Row
        row = db.execute("SELECT * FROM calls WHERE provider_call_id = ?", (sid,)).fetchone()
    return dict(row) if row else None


def ended_events(server: Server, call_id: str) -> list[dict[str, Any]]:
    with sqlite3.connect(server.db) as db:
        rows = db.execute("SELECT payload FROM outbox WHERE type = 'call.ended'").fetchall()
    return [p for (text,) in rows if (p := json.loads(text))["call"]["id"] == call_id]


async def ended_record(server: Server, sid: str) -> dict[str, Any]:
    rec: dict[str, Any] = await wait_for(lambda: (r := record(server, sid)) and r["ended_at"] and r)
    return rec


async def assert_ended_cleanly(server: Server, call: Call, reason: str) -> dict[str, Any]:
    """The slot is free, the record closed with `reason`, `call.ended` sent, exactly once."""
    rec = await ended_record(server, call.sid)
    assert rec["end_reason"] == reason, rec
    await wait_for(lambda: server.services.registry.active == 0)
    [event] = ended_events(server, rec["id"])
    assert event["call"]["end_reason"] == reason
    assert event["call"]["provider_call_id"] == call.sid
    assert rec["id"] != call.sid  # the server's own id
    return rec


def turns(server: Server, call_id: str) -> list[tuple[str, str | None]]:
    with sqlite3.connect(server.db) as db:
        return db.execute(
            "SELECT kind, intent FROM turns WHERE call_id = ? ORDER BY seq", (call_id,)
        ).fetchall()


class Injected(Exception):
    """The failure a test injects."""


# --- a failure at every stage ------------------------------------------------------------


async def test_a_healthy_call_first(server: Server, balance: bytes) -> None:
    call = await place_call(server, speech=balance, hang_up_at=9.0)
    rec = await assert_ended_cleanly(server, call, "caller_hangup")
    assert ("recognized", "balance") in turns(server, rec["id"])


async def test_serializer_failure(server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    from ivr.transports import twilio

    parse = twilio.TwilioSerializer.parse

    def failing(self: twilio.TwilioSerializer, text: str | bytes) -> Any:
        if self.stream_sid is not None and '"media"' in str(text):
            raise Injected("a bug in the serializer")  # not a ProtocolError
        return parse(self, text)

    monkeypatch.setattr(twilio.TwilioSerializer, "parse", failing)
    call = await place_call(server, hang_up_at=None)
    assert call.closed_after is not None and call.closed_after < 10
    await assert_ended_cleanly(server, call, "internal_error: receive")


async def test_vad_failure(server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    from ivr.audio.vad import Endpointer

    def failing(self: Endpointer, pcm: bytes) -> Any:
        raise Injected("a bug in the VAD")

    monkeypatch.setattr(Endpointer, "feed", failing)
    call = await place_call(server, hang_up_at=None)
    await assert_ended_cleanly(server, call, "internal_error")


async def test_asr_failure_is_a_no_match(
    server: Server, balance: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ivr.asr import runner

    def failing(*args: Any) -> Any:
        raise Injected("the recognizer failed")

    monkeypatch.setattr(runner, "_recognize_whole", failing)
    call = await place_call(server, speech=balance, hang_up_at=9.0)
    rec = await assert_ended_cleanly(server, call, "caller_hangup")  # the caller went on
    assert ("no_match", None) in turns(server, rec["id"])


def workers_of(pid: int) -> list[int]:
    """The pool workers below `pid`, not multiprocessing's resource tracker."""
    out = []
    for child in descendants(pid):
        try:
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
        except OSError:
            continue
        if b"spawn_main" in cmdline and b"resource_tracker" not in cmdline:
            out.append(child)
    return out


async def test_asr_worker_killed_mid_call(server: Server, balance: bytes) -> None:
    """SIGKILL every worker process (ASR and TTS) while a call waits for the caller: the
    call still understands the caller, on workers started anew."""
    before = workers_of(os.getpid())
    assert before, "the engines run in worker processes"
    task = asyncio.create_task(place_call(server, speech=balance, speak_at=2.0, hang_up_at=12.0))
    await asyncio.sleep(1.0)
    for pid in before:
        os.kill(pid, signal.SIGKILL)
    call = await task
    rec = await assert_ended_cleanly(server, call, "caller_hangup")
    assert ("recognized", "balance") in turns(server, rec["id"])


async def test_dialog_failure(
    server: Server, balance: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ivr.dialog.engine import DialogEngine

    handle = DialogEngine.handle

    def failing(self: DialogEngine, state: Any, event: Any) -> Any:
        if type(event).__name__ == "Recognized":
            raise Injected("a bug in the dialog")
        return handle(self, state, event)

    monkeypatch.setattr(DialogEngine, "handle", failing)
    call = await place_call(server, speech=balance, hang_up_at=None)
    await assert_ended_cleanly(server, call, "internal_error")


async def test_tts_failure(server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    from ivr.tts.prompts import PromptRenderer

    async def failing(self: PromptRenderer, *args: Any, **kwargs: Any) -> bytes:
        raise Injected("the synthesizer failed")

    monkeypatch.setattr(PromptRenderer, "render", failing)
    call = await place_call(server, hang_up_at=None)
    await assert_ended_cleanly(server, call, "internal_error")


async def test_player_send_failure(server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    from ivr.server.websocket import WebSocketLeg

    send = WebSocketLeg.send
    sent = 0

    async def failing(self: WebSocketLeg, message: Any) -> None:
        nonlocal sent
        if isinstance(message, PlayAudio):
            sent += 1
            if sent > 10:
                raise ConnectionResetError("injected: the peer reset the connection")
        await send(self, message)

    monkeypatch.setattr(WebSocketLeg, "send", failing)
    call = await place_call(server, hang_up_at=None)
    assert call.closed_after is not None and call.closed_after < 10  # not at max duration
    await assert_ended_cleanly(server, call, "connection_lost")


async def test_caller_drops_tcp_while_the_bot_speaks(server: Server) -> None:
    """No close handshake, in the middle of the greeting (8 of 50 leaked a slot before)."""
    for _ in range(5):
        call = await place_call(server, hang_up_at=None, abort_at=1.0)
        rec = await ended_record(server, call.sid)
        assert rec["end_reason"] in ("caller_hangup", "connection_lost"), rec
        await wait_for(lambda: server.services.registry.active == 0)
        assert len(ended_events(server, rec["id"])) == 1


@pytest.mark.parametrize(
    ("error", "times"),
    [
        # of no expected kind: the recorder's writes go on after it
        (Injected("the recorder failed"), 2),
        # the database refusing writes for a moment (SQLite's own error)
        (sqlite3.OperationalError("attempt to write a readonly database"), 3),
    ],
)
async def test_turns_the_store_cannot_write(
    server: Server, monkeypatch: pytest.MonkeyPatch, error: Exception, times: int
) -> None:
    """The call goes on, and its end is still recorded."""
    from ivr.store.sql import SqlStore

    add_turn = SqlStore.add_turn  # in the writer's batch: the transaction's store
    failed = 0

    async def failing(*args: Any, **kwargs: Any) -> Any:
        nonlocal failed
        if failed < times:
            failed += 1
            raise error
        return await add_turn(*args, **kwargs)

    monkeypatch.setattr(SqlStore, "add_turn", failing)
    call = await place_call(server, hang_up_at=4.0)
    assert failed == times
    await assert_ended_cleanly(server, call, "caller_hangup")


async def test_a_stage_that_hangs_cannot_outlive_the_call_limit(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """TTS never answers: the hard deadline ends the call at IVR_MAX_CALL_SECONDS."""
    from ivr.tts.prompts import PromptRenderer

    async def hangs(self: PromptRenderer, *args: Any, **kwargs: Any) -> bytes:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    services = server.services
    monkeypatch.setattr(services, "limits", replace(services.limits, max_call_s=3.0))
    monkeypatch.setattr(PromptRenderer, "render", hangs)
    call = await place_call(server, hang_up_at=None)
    # 3 s of call, the (hanging) goodbye prompt bounded at 10 s, a second of teardown
    assert call.closed_after is not None and call.closed_after < 16, call.closed_after
    await assert_ended_cleanly(server, call, "max_duration")


# --- identity ---------------------------------------------------------------------------


async def test_a_duplicate_live_call_id_is_refused(server: Server, balance: bytes) -> None:
    """A second stream with the callSid of a call in progress is refused: it neither takes
    a slot, nor writes into the first call, nor ends it."""
    sid = "CA" + uuid.uuid4().hex
    first = asyncio.create_task(
        place_call(server, speech=balance, speak_at=3.0, hang_up_at=10.0, sid=sid)
    )
    await asyncio.sleep(1.0)
    second = await place_call(server, speech=balance, speak_at=0.2, hang_up_at=None, sid=sid)
    assert second.closed_after is not None and second.closed_after < 3
    assert second.bot_frames == 0
    assert server.services.registry.active == 1  # the first call, still going
    call = await first
    rec = await assert_ended_cleanly(server, call, "caller_hangup")
    assert turns(server, rec["id"]).count(("recognized", "balance")) == 1  # only its own
    # once that call is over, its callSid is free again
    again = await place_call(server, hang_up_at=2.0, sid=sid)
    assert again.bot_frames > 0


# --- and after all that -----------------------------------------------------------------


async def test_no_slot_leaked(server: Server, balance: bytes) -> None:
    """Every slot is free: MAX_CALLS calls at once are all served, none is busy."""
    calls = await asyncio.gather(
        *[place_call(server, speech=balance, hang_up_at=9.0) for _ in range(MAX_CALLS)]
    )
    for call in calls:
        rec = await assert_ended_cleanly(server, call, "caller_hangup")
        assert ("recognized", "balance") in turns(server, rec["id"])
