"""The /v1 REST API in-process (aiohttp TestServer) on a real store, both backends (SQLite and
a throwaway PostgreSQL cluster), with the real callback service behind it."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import aiosqlite
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from pydantic import BaseModel

from ivr.api import API, ApiContext, add_api_routes, hash_token
from ivr.api.models import (
    CallbackDetail,
    CallbackOut,
    CallbackPage,
    CallDetail,
    CallPage,
    Problem,
)
from ivr.api.routes import document
from ivr.callbacks import CallbackPolicy, Callbacks, InvalidNumber
from ivr.config import ApiToken
from ivr.store import Callback, Store, open_store

TZ = ZoneInfo("Europe/Berlin")
T0 = datetime(2030, 1, 7, 9, 0, tzinfo=UTC)
ALL, READER, AGENT = "all-secret", "reader-secret", "agent-secret"
TOKENS = [
    ApiToken(name="admin", sha256=hash_token(ALL), scopes=["*"]),
    ApiToken(name="dashboard", sha256=hash_token(READER), scopes=["callbacks.read", "calls.read"]),
    ApiToken(
        name="agent-7", sha256=hash_token(AGENT), scopes=["callbacks.read", "callbacks.write"]
    ),
]


@dataclass
class Api:
    client: TestClient[web.Request, web.Application]
    store: Store
    callbacks: Callbacks

    async def call(
        self,
        method: str,
        path: str,
        token: str | None = ALL,
        expect: type[BaseModel] | None = None,
        **kwargs: Any,
    ) -> tuple[int, Any]:
        """(status, JSON body); every answer is JSON, and errors are problem details."""
        headers = dict(kwargs.pop("headers", {}))
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        async with self.client.request(method, path, headers=headers, **kwargs) as r:
            kind = "application/problem+json" if r.status >= 400 else "application/json"
            assert r.content_type == kind, await r.text()
            body = await r.json()
        if r.status >= 400:
            Problem.model_validate(body)
            assert body["status"] == body["error"]["status"] == r.status
        elif expect is not None:
            expect.model_validate(body)  # the documented shape, keys exactly
        return r.status, body

    async def book(self, number: str, due: datetime, **kw: Any) -> Callback:
        cb, _ = await self.callbacks.book(number, due, reason=kw.pop("reason", "bill"), **kw)
        return cb

    async def events(self) -> list[tuple[str, str, str]]:
        """(type, callback id, status) of the outbox events not yet taken, in order."""
        got = await self.store.claim_due_events(1000, datetime.now(UTC) + timedelta(days=1))
        return [(e.type, e.payload["callback"]["id"], e.payload["callback"]["status"]) for e in got]


async def _serve(url: str, tokens: list[ApiToken]) -> AsyncIterator[Api]:
    store = await open_store(url)
    policy = CallbackPolicy(tz=TZ, max_attempts=2, retry_after=timedelta(minutes=30))
    callbacks = Callbacks(store, policy)
    app = web.Application()
    app[API] = ApiContext(callbacks, store, tokens, TZ)
    add_api_routes(app)
    try:
        async with TestClient(TestServer(app)) as client:
            yield Api(client, store, callbacks)
    finally:
        await store.close()


@pytest.fixture
async def api(url: str) -> AsyncIterator[Api]:
    async for a in _serve(url, TOKENS):
        yield a


def fields(body: Any) -> list[str]:
    return [f["field"] for f in body["error"]["fields"]]


# --- authentication ---------------------------------------------------------------------------


async def test_missing_or_unknown_token_is_401(api: Api) -> None:
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": f"Basic {ALL}"}):
        async with api.client.get("/v1/callbacks", headers=headers) as r:
            assert r.status == 401
            assert r.headers["WWW-Authenticate"].startswith("Bearer")
            assert (await r.json())["error"]["status"] == 401
    status, _ = await api.call("GET", "/v1/callbacks", token=ALL.upper())
    assert status == 401
    status, _ = await api.call("GET", "/v1/calls", token="\u00e9t\u00e9")  # non-ASCII: still 401
    assert status == 401
    status, _ = await api.call("GET", "/v1/callbacks", token=f"  {ALL} ")  # spaces tolerated
    assert status == 200


async def test_scope_is_checked_per_route(api: Api) -> None:
    cb = await api.book("+4930100", T0)
    async with api.client.post(
        f"/v1/callbacks/{cb.id}/claim", headers={"Authorization": f"Bearer {READER}"}
    ) as r:
        assert r.status == 403
        assert 'scope="callbacks.write"' in r.headers["WWW-Authenticate"]
        assert "callbacks.write" in (await r.json())["error"]["message"]
    assert (await api.call("GET", f"/v1/callbacks/{cb.id}", token=READER))[0] == 200
    assert (await api.call("GET", "/v1/calls", token=AGENT))[0] == 403  # no calls.read
    assert (await api.call("GET", "/v1/calls", token=READER))[0] == 200
    # nothing changed by the refused claim
    assert (await api.store.get_callback(cb.id)).status == "scheduled"


async def test_no_tokens_configured_means_401_except_openapi(tmp_path: Any) -> None:
    async for bare in _serve(f"sqlite:///{tmp_path}/ivr.db", []):
        status, body = await bare.call("GET", "/v1/callbacks", token=ALL)
        assert status == 401 and "no tokens" in body["error"]["message"]
        status, doc = await bare.call("GET", "/v1/openapi.json", token=None)
        assert status == 200 and doc["openapi"].startswith("3.1")


# --- listing ------------------------------------------------------------------------------------


async def test_list_walks_every_page_once_in_due_order(api: Api) -> None:
    booked = []
    for i in range(23):  # pairs share a due time: the cursor must break ties by id
        booked.append(await api.book(f"+49301{i:03}", T0 + timedelta(minutes=i // 2)))
    seen: list[dict[str, Any]] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 5} | ({"cursor": cursor} if cursor else {})
        status, body = await api.call("GET", "/v1/callbacks", expect=CallbackPage, params=params)
        assert status == 200 and len(body["items"]) <= 5
        seen += body["items"]
        pages += 1
        cursor = body["next"]
        if cursor is None:
            break
    assert pages == 5
    ids = [item["id"] for item in seen]
    assert len(ids) == len(set(ids)) == 23 and set(ids) == {cb.id for cb in booked}
    keys = [(datetime.fromisoformat(i["due_at"]), i["id"]) for i in seen]
    assert keys == sorted(keys)
    assert seen[0]["due_at"] == "2030-01-07T10:00:00+01:00"  # in the configured zone


async def test_list_filters(api: Api) -> None:
    a = await api.book("+4930001", T0)
    b = await api.book("+4930002", T0 + timedelta(hours=1))
    c = await api.book("+4930003", T0 + timedelta(hours=2))
    await api.callbacks.cancel(c.id)
    await api.callbacks.claim(b.id, "x")

    async def ids(**params: Any) -> set[str]:
        status, body = await api.call("GET", "/v1/callbacks", expect=CallbackPage, params=params)
        assert status == 200, body
        return {item["id"] for item in body["items"]}

    assert await ids(status="scheduled") == {a.id}
    assert await ids(status="scheduled,cancelled") == {a.id, c.id}
    assert await ids(status=["claimed", "cancelled"]) == {b.id, c.id}  # repeated parameter
    # offsets other than UTC; yarl sends + as %2B
    assert await ids(due_after="2030-01-07T11:00:00+01:00") == {b.id, c.id}
    assert await ids(due_before="2030-01-07T06:00:00-05:00") == {a.id, b.id}
    assert await ids(due_after="2030-01-07T09:30:00Z", due_before="2030-01-07T11:00:00Z") == {b.id}
    assert await ids(number="+4930002") == {b.id}
    assert await ids(number="+4930009") == set()


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("status=done", "status"),
        ("status=scheduled,,claimed", "status"),
        ("due_before=2030-01-07T09:00:00", "due_before"),  # naive
        ("due_after=2030-01-07T09:00:00+02:00", "due_after"),  # + unencoded → a space
        ("due_after=yesterday", "due_after"),
        ("due_after=1893456000", "due_after"),  # no epoch seconds: RFC 3339 only
        ("due_after=9999-12-31T23:59:59-05:00", "due_after"),  # past year 9999 in UTC
        ("limit=0", "limit"),
        ("limit=201", "limit"),
        ("limit=ten", "limit"),
        ("limit=5&limit=6", "limit"),
        ("number=%00", "number"),
        ("statu=scheduled&limit=0", "limit"),  # an unknown parameter is not named
    ],
)
async def test_list_rejects_bad_parameters_by_name(api: Api, query: str, field: str) -> None:
    status, body = await api.call("GET", f"/v1/callbacks?{query}")
    assert status == 422 and fields(body) == [field], body
    assert body["code"] == "invalid_query" and body["title"] == "Invalid query parameters"
    if "2030-01-07T09:00:00" in query and field == "due_before":
        assert "naive" in body["error"]["fields"][0]["message"]


async def test_unknown_query_parameters_are_ignored(api: Api) -> None:
    """A parameter the operation does not take (a typo, a cache buster, one of a later
    version) changes nothing: not a 422, and not a filter."""
    a = await api.book("+4930001", T0)
    await api.book("+4930002", T0 + timedelta(hours=1))
    _, plain = await api.call("GET", "/v1/callbacks", expect=CallbackPage)
    for query in ("statu=cancelled", "_=1712345678", "status_x=1&status_x=2", "%00=%00"):
        status, body = await api.call("GET", f"/v1/callbacks?{query}", expect=CallbackPage)
        assert (status, body) == (200, plain), query
    status, body = await api.call("GET", "/v1/callbacks?number=%2B4930001&colour=red")
    assert status == 200 and [c["id"] for c in body["items"]] == [a.id]
    status, body = await api.call("GET", "/v1/calls?foo=bar", expect=CallPage)
    assert status == 200


async def test_bad_cursor_is_400_naming_cursor(api: Api) -> None:
    for cursor in ("garbage!", "WyJ4Il0", "x" * 300):
        status, body = await api.call("GET", "/v1/callbacks", params={"cursor": cursor})
        assert status == 400 and fields(body) == ["cursor"]
        status, body = await api.call("GET", "/v1/calls", params={"cursor": cursor})
        assert status == 400 and fields(body) == ["cursor"]


# --- one callback and its workflow ----------------------------------------------------------------


async def test_get_has_transcript_and_attempt_log(api: Api) -> None:
    transcript = [{"node": "menu", "said": "my bill is wrong"}]
    cb = await api.book("+4930100", T0, transcript=transcript)
    status, body = await api.call("GET", f"/v1/callbacks/{cb.id}", expect=CallbackDetail)
    assert status == 200
    assert body["transcript"] == transcript and body["attempt_log"] == []
    await api.call("POST", f"/v1/callbacks/{cb.id}/claim", token=AGENT)
    await api.call("POST", f"/v1/callbacks/{cb.id}/complete", json={"outcome": "busy"})
    await api.call("POST", f"/v1/callbacks/{cb.id}/claim", json={"agent": "kim"})
    status, body = await api.call("GET", f"/v1/callbacks/{cb.id}", expect=CallbackDetail)
    assert [(a["attempt"], a["agent"], a["outcome"]) for a in body["attempt_log"]] == [
        (1, "agent-7", "busy"),
        (2, "kim", None),
    ]
    assert body["attempt_log"][0]["taken_by"] == "agent"
    assert body["attempt_log"][0]["ended_at"].endswith("+01:00")


async def test_only_a_telephone_number_is_booked(api: Api) -> None:
    """The booking checks the number as a caller ID is checked: an agent dials it."""
    for bad in ["<script>alert(1)</script>", "", "12", "+1555abc1234", "1" * 16, "+266696687"]:
        with pytest.raises(InvalidNumber, match="not a telephone number"):
            await api.book(bad, T0)
    cb, created = await api.callbacks.book("+49 (30) 100-200", T0, reason="r")
    assert created and cb.number == "+4930100200"  # as dialled: separators dropped
    again, created = await api.callbacks.book("+4930100200", T0, reason="r")
    assert not created and again.id == cb.id  # the same number: its open callback
    status, page = await api.call("GET", "/v1/callbacks", expect=CallbackPage)
    assert status == 200 and [c["number"] for c in page["items"]] == ["+4930100200"]
    assert [e[0] for e in await api.events()] == ["callback.scheduled", "callback.updated"]


LONG = "x" * 501


async def test_book_a_callback_from_a_crm(api: Api) -> None:
    """POST /v1/callbacks: 201 with the callback and its Location, the callback.scheduled
    event a call's booking writes; the number's open callback is a 409 and stays as it was."""
    body = {"number": "+49 (30) 1234-567", "due_at": "2030-01-07T10:00:00+01:00",
            "reason": "billing question\nsecond line"}  # fmt: skip
    async with api.client.post(
        "/v1/callbacks", json=body, headers={"Authorization": f"Bearer {AGENT}"}
    ) as r:
        assert r.status == 201 and r.content_type == "application/json", await r.text()
        got = await r.json()
        assert r.headers["Location"] == f"/v1/callbacks/{got['id']}"
    CallbackOut.model_validate(got)
    assert got["number"] == "+49301234567" and got["status"] == "scheduled"
    assert got["due_at"] == "2030-01-07T10:00:00+01:00" and got["attempts"] == 0
    assert got["reason"] == "billing question\nsecond line"
    status, detail = await api.call("GET", f"/v1/callbacks/{got['id']}", expect=CallbackDetail)
    assert status == 200 and detail["transcript"] is None and detail["attempt_log"] == []
    assert await api.events() == [("callback.scheduled", got["id"], "scheduled")]

    # the same number, written otherwise: the open one stands, untouched, no event
    again = {"number": "+4930 1234567", "due_at": "2030-02-01T10:00:00Z", "reason": "other"}
    status, problem = await api.call("POST", "/v1/callbacks", json=again)
    assert status == 409 and problem["code"] == "callback_open", problem
    assert got["id"] in problem["detail"] and fields(problem) == ["number"]
    cb = await api.store.get_callback(got["id"])
    assert (cb.reason, cb.due_at) == ("billing question\nsecond line", T0)
    assert await api.events() == []
    # once it is closed, the number can be booked again
    await api.callbacks.cancel(got["id"])
    status, new = await api.call("POST", "/v1/callbacks", json=again, expect=CallbackOut)
    assert status == 201 and new["id"] != got["id"] and new["reason"] == "other"
    status, bare = await api.call(
        "POST", "/v1/callbacks", json={"number": "5551234", "due_at": "2030-02-01T10:00:00Z"}
    )
    assert status == 201 and bare["reason"] is None and bare["number"] == "5551234"


async def test_each_spelling_of_a_number_is_one_callback_and_one_filter(api: Api) -> None:
    """E.164 at the API's edges (national numbers: IVR_DEFAULT_REGION, here the US): a CRM's
    booking, then the same number written otherwise is its open callback (409), and every
    spelling filters the lists to it."""
    book = {"number": "(555) 123-0001", "due_at": "2030-02-01T10:00:00Z"}
    status, got = await api.call("POST", "/v1/callbacks", json=book, expect=CallbackOut)
    assert status == 201 and got["number"] == "+15551230001", got
    await api.store.start_call("call-e164", transport="test", caller="+15551230001", started_at=T0)
    for spelling in ("+15551230001", "15551230001", "555.123.0001", "+1 555 123 0001"):
        status, problem = await api.call("POST", "/v1/callbacks", json={**book, "number": spelling})
        assert status == 409 and problem["code"] == "callback_open", problem
        assert got["id"] in problem["detail"] and fields(problem) == ["number"]
        status, page = await api.call("GET", "/v1/callbacks", params={"number": spelling})
        assert status == 200 and [c["id"] for c in page["items"]] == [got["id"]], spelling
        status, page = await api.call("GET", "/v1/calls", params={"caller": spelling})
        assert status == 200 and [c["id"] for c in page["items"]] == ["call-e164"], spelling
    status, page = await api.call("GET", "/v1/callbacks", params={"number": "nobody"})
    assert status == 200 and page["items"] == []  # no number: it finds nothing, as before


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({"number": "call me", "due_at": "2030-01-01T00:00:00Z"}, ["number"]),
        ({"number": "+266696687", "due_at": "2030-01-01T00:00:00Z"}, ["number"]),  # withheld
        ({"number": "12", "due_at": "2030-01-01T00:00:00Z"}, ["number"]),
        ({"number": "+4930100"}, ["due_at"]),
        ({"number": "+4930100", "due_at": "2030-01-01T00:00:00"}, ["due_at"]),  # naive
        ({"number": "+4930100", "due_at": "3000-01-01T00:00:00Z"}, ["due_at"]),
        ({"due_at": "2030-01-01T00:00:00Z"}, ["number"]),
        ({"number": 4930100, "due_at": "2030-01-01T00:00:00Z"}, ["number"]),
        ({"number": "+4930100", "due_at": "2030-01-01T00:00:00Z", "reason": ""}, ["reason"]),
        ({"number": "+4930100", "due_at": "2030-01-01T00:00:00Z", "reason": LONG}, ["reason"]),
        ({"number": "+4930100", "due_at": "2030-01-01T00:00:00Z", "priority": 10}, ["priority"]),
    ],
)
async def test_booking_refuses_bad_bodies_by_field(
    api: Api, body: dict[str, Any], named: list[str]
) -> None:
    status, problem = await api.call("POST", "/v1/callbacks", json=body)
    assert status == 422 and fields(problem) == named, problem
    assert problem["code"] == "invalid_body"
    assert await api.events() == []


async def test_booking_needs_the_callbacks_write_scope(api: Api) -> None:
    body = {"number": "+4930100", "due_at": "2030-01-01T00:00:00Z"}
    assert (await api.call("POST", "/v1/callbacks", token=READER, json=body))[0] == 403
    assert (await api.call("POST", "/v1/callbacks", token=None, json=body))[0] == 401
    assert await api.events() == []


async def test_claim_then_complete(api: Api) -> None:
    cb = await api.book("+4930100", T0)
    path = f"/v1/callbacks/{cb.id}"
    status, body = await api.call("POST", f"{path}/claim", token=AGENT, expect=CallbackOut)
    assert status == 200 and body["status"] == "claimed" and body["agent"] == "agent-7"
    assert body["attempts"] == 1
    status, body = await api.call("POST", f"{path}/claim", token=AGENT)
    assert status == 409 and "claimed" in body["error"]["message"]
    status, body = await api.call(
        "POST", f"{path}/complete", json={"outcome": "resolved"}, expect=CallbackOut
    )
    assert status == 200 and body["status"] == "completed" and body["outcome"] == "resolved"
    status, body = await api.call("POST", f"{path}/complete", json={"outcome": "resolved"})
    assert status == 409
    assert await api.events() == [
        ("callback.scheduled", cb.id, "scheduled"),
        ("callback.claimed", cb.id, "claimed"),
        ("callback.completed", cb.id, "completed"),
    ]


async def test_claim_names_the_agent_or_takes_the_token_name(api: Api) -> None:
    a = await api.book("+4930101", T0)
    b = await api.book("+4930102", T0)
    status, body = await api.call("POST", f"/v1/callbacks/{a.id}/claim", json={"agent": "kim"})
    assert status == 200 and body["agent"] == "kim"
    status, body = await api.call("POST", f"/v1/callbacks/{b.id}/claim", json={"agent": None})
    assert status == 200 and body["agent"] == "admin"
    c = await api.book("+4930103", T0)
    for bad in ({"agent": ""}, {"agent": 7}, {"agent": "a\nb"}, {"agent": "x" * 101}):
        status, body = await api.call("POST", f"/v1/callbacks/{c.id}/claim", json=bad)
        assert status == 422 and fields(body) == ["agent"], (bad, body)


async def test_concurrent_claims_one_wins(api: Api) -> None:
    cb = await api.book("+4930100", T0)
    results = await asyncio.gather(
        *(
            api.call("POST", f"/v1/callbacks/{cb.id}/claim", json={"agent": f"a{i}"})
            for i in range(6)
        )
    )
    assert sorted(status for status, _ in results) == [200] + [409] * 5


async def test_retry_outcome_reschedules_then_expires(api: Api) -> None:
    cb = await api.book("+4930100", T0)
    path = f"/v1/callbacks/{cb.id}"
    await api.call("POST", f"{path}/claim")
    before = datetime.now(UTC)
    status, body = await api.call("POST", f"{path}/complete", json={"outcome": "no_answer"})
    assert status == 200 and body["status"] == "scheduled" and body["agent"] is None
    due = datetime.fromisoformat(body["due_at"])
    assert before + timedelta(minutes=29) < due < datetime.now(UTC) + timedelta(minutes=31)
    await api.call("POST", f"{path}/claim")
    status, body = await api.call("POST", f"{path}/complete", json={"outcome": "busy"})
    assert status == 200 and body["status"] == "expired"  # max_attempts 2
    assert [t for t, _, _ in await api.events()] == [
        "callback.scheduled",
        "callback.claimed",
        "callback.updated",
        "callback.claimed",
        "callback.expired",
    ]


async def test_complete_body_validation(api: Api) -> None:
    cb = await api.book("+4930100", T0)
    await api.callbacks.claim(cb.id, "x")
    path = f"/v1/callbacks/{cb.id}/complete"
    for bad, named in [
        ({}, ["outcome"]),
        ({"outcome": "great"}, ["outcome"]),
        ({"outcome": 3}, ["outcome"]),
        ({"outcome": "resolved", "note": "x"}, ["note"]),
        ([], ["body"]),
    ]:
        status, body = await api.call("POST", path, json=bad)
        assert status == 422 and fields(body) == named, (bad, body)
    status, body = await api.call("POST", path)  # no body at all: outcome is missing
    assert status == 422 and fields(body) == ["outcome"]
    assert (await api.store.get_callback(cb.id)).status == "claimed"


async def test_reschedule_and_its_validation(api: Api) -> None:
    cb = await api.book("+4930100", T0)
    path = f"/v1/callbacks/{cb.id}/reschedule"
    for bad in [
        {"due_at": "2030-02-01T10:00:00"},  # naive
        {"due_at": "next tuesday"},
        {"due_at": "2030-02-30T10:00:00+01:00"},  # no such day
        {"due_at": "0001-01-01T00:00:00Z"},  # stored times: years 1970-2999
        {"due_at": "3000-01-01T00:00:00Z"},
        {"due_at": 1896000000},
        {"due_at": None},
        {},
    ]:
        status, body = await api.call("POST", path, json=bad)
        assert status == 422 and fields(body) == ["due_at"], (bad, body)
    status, body = await api.call("POST", path, json={"due_at": "2030-02-01T10:00:00"})
    assert "offset" in body["error"]["fields"][0]["message"]
    status, body = await api.call("POST", path, json={"due_at": "2030-02-01T10:00:00Z", "x": 1})
    assert status == 422 and fields(body) == ["x"]
    status, body = await api.call(
        "POST", path, json={"due_at": "2030-02-01T10:00:00-05:00"}, expect=CallbackOut
    )
    assert status == 200 and body["status"] == "scheduled"
    assert body["due_at"] == "2030-02-01T16:00:00+01:00"
    assert (await api.store.get_callback(cb.id)).due_at == datetime(2030, 2, 1, 15, tzinfo=UTC)
    assert [t for t, _, _ in await api.events()] == ["callback.scheduled", "callback.updated"]


async def test_bad_json_and_content_type(api: Api) -> None:
    cb = await api.book("+4930100", T0)
    path = f"/v1/callbacks/{cb.id}/reschedule"
    json_ct = {"Content-Type": "application/json"}
    for raw in (b"{", b"{'due_at': 1}", b"\xff\xfe", b'{"due_at": "\\ud800"}'):
        status, body = await api.call("POST", path, data=raw, headers=json_ct)
        assert status == 400, (raw, body)
    status, body = await api.call(
        "POST",
        path,
        data=b'{"due_at": "2030-02-01T10:00:00Z"}',
        headers={"Content-Type": "text/plain"},
    )
    assert status == 415
    status, body = await api.call("POST", path, data=b"due_at=2030-02-01T10:00:00Z")
    assert status == 415  # a form is not JSON
    status, _ = await api.call("POST", path, data=b"x" * (2 << 20), headers=json_ct)
    assert status == 413
    assert (await api.store.get_callback(cb.id)).due_at == T0


async def test_cancel(api: Api) -> None:
    cb = await api.book("+4930100", T0)
    path = f"/v1/callbacks/{cb.id}/cancel"
    status, body = await api.call("POST", path, json={"why": "x"})
    assert status == 422 and fields(body) == ["why"]
    status, body = await api.call("POST", path, expect=CallbackOut)
    assert status == 200 and body["status"] == "cancelled"
    status, body = await api.call("POST", path, json={})
    assert status == 409
    status, _ = await api.call("POST", f"/v1/callbacks/{cb.id}/claim")
    assert status == 409
    status, _ = await api.call(
        "POST", f"/v1/callbacks/{cb.id}/reschedule", json={"due_at": "2030-01-01T00:00:00Z"}
    )
    assert status == 409
    assert [t for t, _, _ in await api.events()] == ["callback.scheduled", "callback.cancelled"]


@pytest.mark.parametrize(
    "id", ["89d5a154-7059-4378-bc30-9747192b1d1f", "not-a-uuid", "%00", "1" * 500, "%ED%A0%80"]
)
async def test_unknown_or_malformed_callback_id_is_404(api: Api, id: str) -> None:
    base = f"/v1/callbacks/{id}"
    assert (await api.call("GET", base))[0] == 404
    assert (await api.call("POST", f"{base}/claim"))[0] == 404
    assert (await api.call("POST", f"{base}/cancel"))[0] == 404
    assert (await api.call("POST", f"{base}/complete", json={"outcome": "resolved"}))[0] == 404
    due = {"due_at": "2030-01-01T00:00:00Z"}
    assert (await api.call("POST", f"{base}/reschedule", json=due))[0] == 404
    assert await api.events() == []


async def test_aiohttp_errors_under_v1_are_in_the_error_shape(api: Api) -> None:
    assert (await api.call("GET", "/v1/nothing-here"))[0] == 404
    async with api.client.delete("/v1/callbacks") as r:
        assert r.status == 405 and "GET" in r.headers["Allow"]
        Problem.model_validate(await r.json())


# --- calls --------------------------------------------------------------------------------------


async def test_calls_list_and_get(api: Api) -> None:
    for i in range(7):
        caller = "+4930555" if i % 2 else "+4930777"
        await api.store.start_call(
            f"call-{i}", transport="test", caller=caller, started_at=T0 + timedelta(minutes=i)
        )
    await api.store.add_turn("call-3", "prompt", node="greeting", text="Hello")
    await api.store.add_turn("call-3", "recognized", node="menu", text="bill", intent="bill",
                             confidence=0.9)  # fmt: skip
    await api.store.end_call("call-3", "hangup", ended_at=T0 + timedelta(minutes=5))
    seen, cursor = [], None
    while True:
        params: dict[str, Any] = {"limit": 3} | ({"cursor": cursor} if cursor else {})
        status, body = await api.call("GET", "/v1/calls", expect=CallPage, params=params)
        assert status == 200
        seen += [c["id"] for c in body["items"]]
        if (cursor := body["next"]) is None:
            break
    assert seen == [f"call-{i}" for i in range(6, -1, -1)]  # newest first
    status, body = await api.call("GET", "/v1/calls", params={"caller": "+4930555"})
    assert [c["id"] for c in body["items"]] == ["call-5", "call-3", "call-1"]
    status, body = await api.call(
        "GET",
        "/v1/calls",
        params={
            "started_after": "2030-01-07T10:02:00+01:00",
            "started_before": "2030-01-07T09:04Z",
        },
    )
    assert [c["id"] for c in body["items"]] == ["call-3", "call-2"]
    status, body = await api.call("GET", "/v1/calls/call-3", expect=CallDetail)
    assert status == 200 and body["end_reason"] == "hangup"
    assert body["ended_at"] == "2030-01-07T10:05:00+01:00"
    assert [(t["seq"], t["kind"], t["intent"]) for t in body["turns"]] == [
        (1, "prompt", None),
        (2, "recognized", "bill"),
    ]
    for missing in ("nope", "%00", "a%0Ab"):
        assert (await api.call("GET", f"/v1/calls/{missing}"))[0] == 404
    status, body = await api.call("GET", "/v1/calls?started_before=2030-01-07")
    assert status == 422 and fields(body) == ["started_before"]


# --- no 500 for bad input -----------------------------------------------------------------------


async def test_garbage_never_gets_a_500(api: Api) -> None:
    cb = await api.book("+4930100", T0)
    ids = [cb.id, "x", "%25", "%FF", "..", "%2F"]
    queries = ["", "?limit=-1", "?limit=1e3", "?cursor=%FF%FE", "?status=", "?number=%FF",
               "?due_after=0000-01-01T00:00:00Z", "?due_after=2030-13-01T00:00:00Z",
               "?started_after=2030-01-01T25:00:00Z", "?caller=" + "9" * 65, "?=&&=x"]  # fmt: skip
    bodies: list[Any] = [b"", b"null", b"1e999", b"[" * 10000, b'{"outcome": {"a": []}}',
                         b'{"due_at": "2030-01-01T00:00:00.1234567891234+00:00"}',
                         '{"agent": "\u0000"}'.encode(), b'{"agent": "\\u0000"}']  # fmt: skip
    json_ct = {"Content-Type": "application/json"}
    for q in queries:
        for path in ("/v1/callbacks", "/v1/calls"):
            status, _ = await api.call("GET", path + q)
            assert status < 500, (path, q)
    for id in ids:
        assert (await api.call("GET", f"/v1/callbacks/{id}"))[0] < 500
        assert (await api.call("GET", f"/v1/calls/{id}"))[0] < 500
        for verb in ("claim", "complete", "reschedule", "cancel"):
            for raw in bodies:
                status, _ = await api.call(
                    "POST", f"/v1/callbacks/{id}/{verb}", data=raw, headers=json_ct
                )
                assert status < 500, (id, verb, raw)


# --- the database failing ----------------------------------------------------------------------


def sqlite_fails(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """SQLite's driver raises on every statement while the flag is set."""
    on = [True]
    for name in ("execute", "execute_fetchall"):
        method = getattr(aiosqlite.Connection, name)

        def fail(self: Any, sql: str, *args: Any, _method: Any = method) -> Any:
            if on[0]:
                raise sqlite3.OperationalError("database or disk is full: /data/ivr.db")
            return _method(self, sql, *args)

        monkeypatch.setattr(aiosqlite.Connection, name, fail)
    return on


async def test_a_failing_database_is_a_503_with_retry_after(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reads and writes the database refuses (its driver's error): 503 in the error shape,
    with Retry-After and without the driver's message (it was a 500 "internal error")."""
    async for api in _serve(f"sqlite:///{tmp_path}/ivr.db", TOKENS):
        cb = await api.book("+4930100", T0)
        failing = sqlite_fails(monkeypatch)
        for method, path in [
            ("GET", "/v1/callbacks"),
            ("GET", f"/v1/callbacks/{cb.id}"),
            ("POST", f"/v1/callbacks/{cb.id}/claim"),
            ("GET", "/v1/calls"),
        ]:
            async with api.client.request(
                method, path, headers={"Authorization": f"Bearer {ALL}"}
            ) as r:
                assert r.status == 503, (method, path, await r.text())
                assert r.headers["Retry-After"] == "5"
                body = await r.json()
            Problem.model_validate(body)
            assert body["error"] == {
                "status": 503,
                "message": "the database is unavailable; try again later",
                "fields": [],
            }
        failing[0] = False  # back: served again, nothing was changed by the refused claim
        status, got = await api.call("GET", f"/v1/callbacks/{cb.id}")
        assert status == 200 and got["status"] == "scheduled"
    op = document()["paths"]["/v1/callbacks"]["get"]["responses"]["503"]
    assert "Retry-After" in op["headers"]


# --- ivr token new ------------------------------------------------------------------------------


def test_token_new_prints_the_token_once_and_its_config_entry(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from ivr.cli import main
    from ivr.config import load_settings

    assert main(["token", "new", "crm", "--scopes", "callbacks.read,callbacks.write"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("token: ") and lines[1].startswith("IVR_API_TOKENS entry: ")
    token = lines[0].removeprefix("token: ")
    entry = lines[1].removeprefix("IVR_API_TOKENS entry: ")
    monkeypatch.setenv("IVR_API_TOKENS", entry)
    (configured,) = load_settings().api_tokens
    assert configured.name == "crm" and configured.sha256 == hash_token(token)
    assert configured.scopes == ["callbacks.read", "callbacks.write"]
    assert token not in entry
    with pytest.raises(SystemExit, match="scopes"):
        main(["token", "new", "crm", "--scopes", "calls.write"])
    with pytest.raises(SystemExit, match="name"):
        main(["token", "new", "bad name", "--scopes", "*"])
