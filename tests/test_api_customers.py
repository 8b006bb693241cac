"""GET /v1/customers/{number} on both databases: one number's calls, conversations (each
with its transcript) and callbacks, newest first, found in any spelling of the number; a
number that is none is a 422 problem; the scope is customers.read. And the analytics routes'
channel parameter (JSON and CSV), with a channel that is none a 422."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from ivr.api import API, ApiContext, add_api_routes, hash_token
from ivr.api.customers import Customer
from ivr.callbacks import CallbackPolicy, Callbacks
from ivr.config import ApiToken
from ivr.store import Store, open_store

TZ = ZoneInfo("UTC")
T0 = datetime(2030, 1, 7, 9, 0, tzinfo=UTC)
ALL, CALLS = "all-secret", "calls-secret"
TOKENS = [
    ApiToken(name="admin", sha256=hash_token(ALL), scopes=["*"]),
    ApiToken(name="calls", sha256=hash_token(CALLS), scopes=["calls.read", "analytics.read"]),
]
NUMBER = "+15551230001"

Client = TestClient[web.Request, web.Application]


@pytest.fixture
async def api(url: str) -> AsyncIterator[tuple[Client, Store]]:
    store = await open_store(url)
    app = web.Application()
    app[API] = ApiContext(Callbacks(store, CallbackPolicy(tz=TZ)), store, TOKENS, TZ)
    add_api_routes(app)
    try:
        async with TestClient(TestServer(app)) as client:
            yield client, store
    finally:
        await store.close()


async def seed(store: Store) -> str:
    await store.start_call("call-old", transport="sip", caller=NUMBER, started_at=T0)
    await store.add_turn("call-old", "prompt", node="main_menu", text="Welcome", at=T0)
    await store.add_turn(
        "call-old", "recognized", node="main_menu", text="my balance", intent="balance",
        confidence=0.9, at=T0 + timedelta(seconds=2),
    )  # fmt: skip
    await store.add_turn("call-old", "no_input", node="anything_else", text="")
    await store.end_call("call-old", "caller_hangup", ended_at=T0 + timedelta(minutes=1))
    await store.start_call("call-other", transport="sip", caller="+15559999999", started_at=T0)
    chat = await store.start_conversation(
        channel="web", number=NUMBER, started_at=T0 + timedelta(hours=1)
    )
    await store.add_message(chat.id, "bot", "Welcome", node="main_menu")
    await store.add_message(
        chat.id, "customer", "a person please", node="main_menu", kind="recognized",
        intent="agent",
    )  # fmt: skip
    await store.end_conversation(chat.id, "callback_booked")
    await store.upsert_open_callback(
        NUMBER, T0 + timedelta(days=1), reason="agent_requested",
        transcript={"conversation_id": chat.id, "channel": "web", "turns": []},
    )  # fmt: skip
    return chat.id


async def get(client: Client, path: str, token: str = ALL) -> tuple[int, Any]:
    async with client.get(path, headers={"Authorization": f"Bearer {token}"}) as r:
        if r.content_type == "text/csv":
            return r.status, await r.text()
        return r.status, await r.json()


async def test_one_customer_across_channels(api: tuple[Client, Store]) -> None:
    client, store = api
    chat = await seed(store)
    for spelling in (NUMBER, "15551230001", "(555)%20123-0001", "%2B15551230001"):
        status, body = await get(client, f"/v1/customers/{spelling}")
        assert status == 200, body
        Customer.model_validate(body)  # the documented shape, keys exactly
        assert body["number"] == NUMBER
        assert [(c["type"], c["channel"], c["id"]) for c in body["contacts"]] == [
            ("conversation", "web", chat),  # newest first
            ("call", "voice", "call-old"),
        ]
    conversation, call = body["contacts"]
    assert conversation["url"] == f"/v1/conversations/{chat}"
    assert [(x["sender"], x["text"], x["intent"]) for x in conversation["transcript"]] == [
        ("bot", "Welcome", None),
        ("customer", "a person please", "agent"),
    ]
    assert conversation["end_reason"] == "callback_booked"
    assert call["url"] == "/v1/calls/call-old"
    assert [(x["sender"], x["kind"]) for x in call["transcript"]] == [
        ("bot", "prompt"),
        ("customer", "recognized"),
        ("system", "no_input"),
    ]
    assert [cb["reason"] for cb in body["callbacks"]] == ["agent_requested"]
    # a later callback for the number (the first one completed): the newest comes first
    [old] = (await store.list_callbacks(number=NUMBER))[0]
    await store.claim(old.id, "kim")
    await store.complete(old.id, "resolved")
    await store.upsert_open_callback(NUMBER, T0 + timedelta(days=3), reason="bill")  # due later
    status, body = await get(client, f"/v1/customers/{NUMBER}")
    assert [cb["reason"] for cb in body["callbacks"]] == ["bill", "agent_requested"]
    status, body = await get(client, f"/v1/customers/{NUMBER}?limit=1")
    assert [c["id"] for c in body["contacts"]] == [chat, "call-old"]  # one of each kind
    assert [cb["reason"] for cb in body["callbacks"]] == ["bill"]
    status, body = await get(client, "/v1/customers/+15550000000")
    assert status == 200 and body["contacts"] == [] and body["callbacks"] == []


async def test_bad_numbers_and_scopes(api: tuple[Client, Store]) -> None:
    client, _ = api
    for bad in ("hello", "12", "%2B" + "1" * 20):
        status, body = await get(client, f"/v1/customers/{bad}")
        assert status == 422, body
        assert body["code"] == "invalid_input" and body["fields"][0]["field"] == "number"
        assert "not a telephone number" in body["fields"][0]["message"]
    status, body = await get(client, f"/v1/customers/{NUMBER}?limit=0")
    assert status == 422 and body["code"] == "invalid_query"
    status, body = await get(client, f"/v1/customers/{NUMBER}", token=CALLS)
    assert status == 403 and "customers.read" in body["detail"]


async def test_analytics_channel_parameter(api: tuple[Client, Store]) -> None:
    client, store = api
    await seed(store)
    window = "since=2030-01-07T00:00:00Z&until=2030-01-08T00:00:00Z"
    _, every = await get(client, f"/v1/analytics/summary?{window}", token=CALLS)
    assert (every["contacts"], every["calls"], every["conversations"]) == (3, 2, 1)
    _, web_only = await get(client, f"/v1/analytics/summary?{window}&channel=web", token=CALLS)
    assert (web_only["channel"], web_only["contacts"], web_only["calls"]) == ("web", 1, 0)
    assert web_only["containment"]["escalated"] == 1
    _, voice = await get(client, f"/v1/analytics/summary?{window}&channel=voice", token=CALLS)
    assert (voice["contacts"], voice["conversations"]) == (2, 0)
    _, topics = await get(client, f"/v1/analytics/intents?{window}&channel=web", token=CALLS)
    assert [s["intent"] for s in topics["series"]] == ["agent"]
    status, text = await get(client, f"/v1/analytics/summary.csv?{window}&channel=web", token=CALLS)
    assert status == 200
    rows = dict(line.split(",", 1) for line in text.strip().split("\r\n")[1:])
    assert rows["channel"] == "web" and rows["contacts"] == "1" and rows["calls"] == "0"
    assert rows["web: escalated"] == "1" and "voice: contacts" not in rows
    status, text = await get(client, f"/v1/analytics/summary.csv?{window}", token=CALLS)
    rows = dict(line.split(",", 1) for line in text.strip().split("\r\n")[1:])
    assert rows["channel"] == "" and rows["voice: contacts"] == "2" and rows["web: contacts"] == "1"
    for path in ("summary", "nodes", "intents", "unrecognized", "summary.csv"):
        status, body = await get(client, f"/v1/analytics/{path}?channel=fax", token=CALLS)
        assert status == 422 and body["fields"][0]["field"] == "channel", (path, body)
