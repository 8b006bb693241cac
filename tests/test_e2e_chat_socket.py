"""The web chat's WebSocket (/v1/chat) against a real `ivr serve`, over aiohttp's client:
a chat with no number gives its account and hears the balance, taps a quick reply and ends;
a signed number (IVR_CHAT_IDENTITY_SECRET) or a token's holder is served by number; bad
input of every kind (malformed JSON, an unknown type, too big, too deep, binary, before the
start, a choice not offered, an unsigned number, a flood) gets an error naming it and a
clean close, and the conversation is ended in the store; origins outside the allow-list
are refused before the upgrade; the widget's page and embed script are served."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from live_server import LiveServer, live_server

from ivr.auth import PROTOCOL, token_entry
from ivr.chat.identity import sign_number
from ivr.server.chat import RATE_BURST
from ivr.store import open_store
from ivr.transports.chat import MAX_CHAT_MESSAGE

pytestmark = pytest.mark.asyncio(loop_scope="module")

TOKEN = "chat-socket-token-0123456789abcdef"
APP_TOKEN = "chat-app-token-0123456789abcdef"  # conversations.write: an app's back end
SECRET = "chat-identity-secret-0123456789"
SHOP = "http://shop.example:8000"  # a site in IVR_CHAT_ORIGINS
DEMO = "+15551230001"  # Alex Smith, account 1234: balance 23 dollars and 50 cents


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    tmp = tmp_path_factory.mktemp("chat-socket")
    tokens = ",".join([
        token_entry("reader", TOKEN, ["conversations.read"]),
        token_entry("app", APP_TOKEN, ["conversations.write"]),
    ])  # fmt: skip
    with live_server(
        tmp,
        IVR_API_TOKENS=tokens,
        IVR_CHAT_ORIGINS=SHOP,
        IVR_CHAT_IDENTITY_SECRET=SECRET,
        IVR_CLOCK_START="2030-01-07T09:00:00+00:00",
    ) as live:
        yield live
        assert live.proc.poll() is None, live.log_text()[-3000:]


@pytest_asyncio.fixture(loop_scope="module")
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def ws_url(server: LiveServer) -> str:
    return f"ws://127.0.0.1:{server.port}/v1/chat"


async def receive(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    msg = await ws.receive(timeout=60)
    assert msg.type == aiohttp.WSMsgType.TEXT, (msg.type, msg.data, msg.extra)
    data: dict[str, Any] = json.loads(msg.data)
    return data


async def bot_turn(ws: aiohttp.ClientWebSocketResponse) -> list[dict[str, Any]]:
    """The bot's messages of one answer: up to its `last`, or an `ended`."""
    out: list[dict[str, Any]] = []
    while True:
        msg = await receive(ws)
        assert msg["type"] in ("bot", "ended"), msg
        out.append(msg)
        if msg["type"] == "ended" or msg["last"]:
            return out


def texts(messages: list[dict[str, Any]]) -> str:
    return " | ".join(m.get("text", "") for m in messages)


async def start(
    ws: aiohttp.ClientWebSocketResponse, **fields: str
) -> tuple[str, list[dict[str, Any]]]:
    await ws.send_json({"type": "start", **fields})
    started = await receive(ws)
    assert started["type"] == "started", started
    return started["conversation_id"], await bot_turn(ws)


async def conversation(http: aiohttp.ClientSession, server: LiveServer, id: str) -> Any:
    async with http.get(
        f"http://127.0.0.1:{server.port}/v1/conversations/{id}",
        headers={"Authorization": f"Bearer {TOKEN}"},
    ) as r:
        assert r.status == 200, await r.text()
        return await r.json()


async def ended_in_store(
    http: aiohttp.ClientSession, server: LiveServer, id: str, reason: str
) -> Any:
    """The conversation's record, once ended (the client's own close is read a moment
    later than it is sent)."""
    deadline = time.monotonic() + 20
    while (record := await conversation(http, server, id))["status"] != "ended":
        assert time.monotonic() < deadline, record
        await asyncio.sleep(0.1)
    assert record["end_reason"] == reason, record
    return record


async def refused(ws: aiohttp.ClientWebSocketResponse, code: str, close: int) -> dict[str, Any]:
    """The error the server sends, then its close with `close`."""
    error = await receive(ws)
    assert error["type"] == "error" and error["code"] == code, error
    msg = await ws.receive(timeout=30)
    assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == close, (msg.type, msg.data)
    return error


# --- a chat ---------------------------------------------------------------------------------


async def test_a_chat_without_a_number_gives_its_account_taps_a_reply_and_ends(
    server: LiveServer, http: aiohttp.ClientSession
) -> None:
    async with http.ws_connect(ws_url(server)) as ws:
        cid, opening = await start(ws)
        assert opening[0]["text"] == "Welcome to the Example Telecom hotline."
        assert "balance" in opening[-1]["quick_replies"]
        await ws.send_json({"type": "choice", "text": "balance"})
        asked = await bot_turn(ws)
        assert texts(asked) == "Please write your account number."
        await ws.send_json({"type": "message", "text": "1234"})
        answer = await bot_turn(ws)
        assert "Your balance is 23 dollars and 50 cents." in texts(answer)
        await ws.send_json({"type": "end"})
        assert await receive(ws) == {"type": "ended", "reason": "customer_left"}
        msg = await ws.receive(timeout=10)
        assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 1000
    record = await ended_in_store(http, server, cid, "customer_left")
    assert record["channel"] == "web" and record["number"] is None
    said = [(m["sender"], m["text"]) for m in record["messages"]]
    assert ("customer", "balance") in said  # (the account's digits are kept masked)
    assert [s for s, _ in said].count("customer") == 2


async def test_a_signed_number_is_the_customer(
    server: LiveServer, http: aiohttp.ClientSession
) -> None:
    identity = sign_number(SECRET, DEMO, int(time.time()) + 600)
    async with http.ws_connect(ws_url(server), headers={"Origin": SHOP}) as ws:
        await ws.send_json({"type": "start", "number": "(555) 123-0001", "identity": identity})
        started = await receive(ws)
        assert started["type"] == "started" and started["number"] == DEMO
        await bot_turn(ws)
        await ws.send_json({"type": "message", "text": "how much credit is left?"})
        assert "Your balance is 23 dollars and 50 cents." in texts(await bot_turn(ws))
    # the client just went: the conversation ends all the same
    await ended_in_store(http, server, started["conversation_id"], "customer_left")


async def test_a_tokens_holder_names_the_number_without_an_identity(
    server: LiveServer, http: aiohttp.ClientSession
) -> None:
    async with http.ws_connect(ws_url(server), protocols=(PROTOCOL, f"bearer.{APP_TOKEN}")) as ws:
        cid, _ = await start(ws, number=DEMO)
        assert (await conversation(http, server, cid))["number"] == DEMO
    with pytest.raises(aiohttp.WSServerHandshakeError) as exc:  # a wrong token: refused
        await http.ws_connect(ws_url(server), protocols=(PROTOCOL, "bearer.not-a-token"))
    assert exc.value.status == 401


# --- bad input ------------------------------------------------------------------------------


BAD_AFTER_START: list[tuple[str | bytes, str, int]] = [
    ("{not json", "bad_message", 1003),
    ('{"type": "shout", "text": "hi"}', "bad_message", 1003),
    ('["start"]', "bad_message", 1003),
    ('{"type": "message"}', "bad_message", 1003),
    ('{"type": "message", "text": "   "}', "bad_message", 1003),
    ('{"type": "message", "text": 42}', "bad_message", 1003),
    ('{"type": "message", "text": "' + "x" * 2001 + '"}', "bad_message", 1003),
    ("[" * 40 + "]" * 40, "bad_message", 1003),
    ('{"type": "message", "text": "' + "y" * (MAX_CHAT_MESSAGE + 10) + '"}', "too_big", 1009),
    (b"\x00\x01binary", "bad_message", 1003),
    ('{"type": "start"}', "already_started", 1008),
    ('{"type": "choice", "text": "free beer"}', "unknown_choice", 1008),
]


@pytest.mark.parametrize(("data", "code", "close"), BAD_AFTER_START)
async def test_bad_input_is_an_error_a_clean_close_and_an_ended_conversation(
    server: LiveServer, http: aiohttp.ClientSession, data: str | bytes, code: str, close: int
) -> None:
    async with http.ws_connect(ws_url(server)) as ws:
        cid, _ = await start(ws)
        if isinstance(data, bytes):
            await ws.send_bytes(data)
        else:
            await ws.send_str(data)
        error = await refused(ws, code, close)
    assert error["message"]
    await ended_in_store(http, server, cid, "protocol_error")


async def test_errors_name_what_is_wrong(server: LiveServer, http: aiohttp.ClientSession) -> None:
    async with http.ws_connect(ws_url(server)) as ws:
        await ws.send_str('{"type": "shout"}')
        error = await refused(ws, "bad_message", 1003)
    assert error["message"] == "unknown message type 'shout' (known: start, message, choice, end)"
    async with http.ws_connect(ws_url(server)) as ws:
        await ws.send_json({"type": "message", "text": "hello"})
        error = await refused(ws, "not_started", 1008)
    assert "start" in error["message"]


async def test_a_message_over_the_sockets_own_limit_is_closed_1009(
    server: LiveServer, http: aiohttp.ClientSession
) -> None:
    async with http.ws_connect(ws_url(server)) as ws:
        cid, _ = await start(ws)
        await ws.send_str("z" * (8 * MAX_CHAT_MESSAGE))  # refused by aiohttp from its header
        msg = await ws.receive(timeout=30)
        assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 1009
    await ended_in_store(http, server, cid, "protocol_error")


async def test_a_number_needs_a_valid_identity(
    server: LiveServer, http: aiohttp.ClientSession
) -> None:
    now = int(time.time())
    for fields, why in [
        ({"number": DEMO}, "needs its signed 'identity'"),
        ({"number": DEMO, "identity": sign_number(SECRET, "+15551230002", now + 600)},
         "not signed for this number"),
        ({"number": DEMO, "identity": sign_number("another-secret-0123456789", DEMO, now + 600)},
         "not signed for this number"),
        ({"number": DEMO, "identity": sign_number(SECRET, DEMO, now - 1)}, "expired"),
        ({"number": DEMO, "identity": "forged"}, "EXPIRY.SIGNATURE"),
    ]:  # fmt: skip
        async with http.ws_connect(ws_url(server)) as ws:
            await ws.send_json({"type": "start", **fields})
            error = await refused(ws, "identity_required", 1008)
        assert why in error["message"], (fields, error)
    async with http.ws_connect(ws_url(server)) as ws:
        await ws.send_json({"type": "start", "number": "not a number"})
        await refused(ws, "invalid_number", 1008)


async def test_a_flood_of_messages_is_cut(server: LiveServer, http: aiohttp.ClientSession) -> None:
    async with http.ws_connect(ws_url(server)) as ws:
        cid, _ = await start(ws)
        for _ in range(3 * RATE_BURST):
            await ws.send_json({"type": "message", "text": "main menu"})  # loops
        while (msg := await receive(ws))["type"] != "error":
            assert msg["type"] == "bot", msg
        assert msg["code"] == "too_many_messages", msg
        closing = await ws.receive(timeout=30)
        assert closing.type == aiohttp.WSMsgType.CLOSE and closing.data == 1008
    await ended_in_store(http, server, cid, "protocol_error")


# --- origins and the page -------------------------------------------------------------------


async def test_origins_outside_the_allow_list_are_refused(
    server: LiveServer, http: aiohttp.ClientSession
) -> None:
    own = f"http://127.0.0.1:{server.port}"
    for origin in (own, SHOP):
        async with http.ws_connect(ws_url(server), headers={"Origin": origin}) as ws:
            await start(ws)
    for origin in ("http://evil.example", "http://shop.example", "null"):
        with pytest.raises(aiohttp.WSServerHandshakeError) as exc:
            await http.ws_connect(ws_url(server), headers={"Origin": origin})
        assert exc.value.status == 403, origin
    async with http.get(
        f"http://127.0.0.1:{server.port}/v1/chat", headers={"Origin": "http://evil.example"}
    ) as r:
        assert r.status == 403 and (await r.json())["code"] == "origin_not_allowed"


async def test_the_widget_page_and_embed_script_are_served(
    server: LiveServer, http: aiohttp.ClientSession
) -> None:
    base = f"http://127.0.0.1:{server.port}"
    async with http.get(f"{base}/chat") as r:
        assert r.status == 200 and r.content_type == "text/html"
        csp = r.headers["Content-Security-Policy"]
        assert f"frame-ancestors 'self' {SHOP}" in csp and "default-src 'self'" in csp
        assert 'id="messages"' in await r.text()
    async with http.get(f"{base}/chat/embed.js") as r:
        assert r.status == 200 and r.content_type == "text/javascript"
        assert "ivr-chat-frame" in await r.text()
    for path in ("/chat/static/chat.js", "/chat/static/chat.css"):
        async with http.get(f"{base}{path}") as r:
            assert r.status == 200, path


async def test_the_live_list_shows_open_and_ended_chats_with_their_last_message(
    server: LiveServer, http: aiohttp.ClientSession
) -> None:
    async def live() -> dict[str, Any]:
        async with http.get(
            f"http://127.0.0.1:{server.port}/v1/live/conversations?ended_within=60",
            headers={"Authorization": f"Bearer {TOKEN}"},
        ) as r:
            assert r.status == 200, await r.text()
            return {c["id"]: c for c in (await r.json())["items"]}

    async with http.ws_connect(ws_url(server)) as ws:
        cid, _ = await start(ws)
        await ws.send_json({"type": "message", "text": "what are your opening hours"})
        answer = await bot_turn(ws)
        listed = (await live())[cid]
        assert listed["status"] == "open" and listed["channel"] == "web"
        assert listed["last_message"]["sender"] == "bot"
        assert listed["last_message"]["text"] == answer[-1]["text"]
    await ended_in_store(http, server, cid, "customer_left")
    assert (await live())[cid]["status"] == "ended"


async def test_a_chat_open_at_shutdown_is_told_and_ended(tmp_path: Path) -> None:
    """SIGTERM: the chat hears `ended` (server_shutdown), the socket closes with 1001, and
    the conversation is ended in the store before the server exits."""
    with live_server(tmp_path) as server:
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(ws_url(server)) as ws:
                cid, _ = await start(ws)
                server.proc.send_signal(signal.SIGTERM)
                assert await receive(ws) == {"type": "ended", "reason": "server_shutdown"}
                msg = await ws.receive(timeout=30)
                assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 1001
        assert await asyncio.to_thread(server.proc.wait, 60) == 0, server.log_text()[-3000:]
    store = await open_store(str(tmp_path / "data" / "ivr.db"))
    try:
        record = await store.get_conversation(cid)
    finally:
        await store.close()
    assert record.ended_at is not None and record.end_reason == "server_shutdown"
