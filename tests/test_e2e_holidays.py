"""End to end on a real `ivr serve` whose calendar starts on Thanksgiving 2030, Thursday
28 November, 10:00 in Los Angeles (IVR_CLOCK_START): a weekday inside the hours, but a public
holiday (IVR_HOLIDAYS_COUNTRY=US, IVR_HOLIDAYS_SUBDIVISION=CA), with a dated closure on the
Saturday (IVR_CLOSURES).

Two callers at once, by keypad (pressed half a second into each prompt, so the calls are
short): one whose caller ID comes without its + (15551230001) takes the callback on that
number; an anonymous one keys a national number (5551230002). Both are told the team is out
for Thanksgiving and offered the callback, which is due at the next opening: not Friday (the
day after Thanksgiving, in California), Saturday (the closure) or Sunday, but Monday 08:00.
Then the API, given the numbers spelt otherwise, finds those callbacks and their calls and
books none beside them (409).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from live_server import FEED_TOKEN, LiveServer, live_server

from ivr.dial import Caller, CallerTurn

TOKEN = "holiday-test-token"
THANKSGIVING = "2030-11-28T10:00:00-08:00"
MONDAY = "2030-12-02T08:00:00-08:00"


async def call(server: LiveServer, caller: str | None, keys: str) -> dict[str, Any]:
    turns = [CallerTurn(dtmf=k) for k in keys.split()]
    dialer = Caller(server.media_url, turns, caller, out=None, max_seconds=120,
                    token=FEED_TOKEN, barge_in_after=0.5)  # fmt: skip
    report = await dialer.run()
    said = " | ".join(e["text"] for e in report.events if e.get("event") == "prompt")
    return {"sid": dialer.call_sid, "said": said, "hangup": report.hangup}


def api(server: LiveServer, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    req = urllib.request.Request(
        f"http://127.0.0.1:{server.port}{path}",
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def query(path: str, **params: str) -> str:
    return f"{path}?{urllib.parse.urlencode(params)}"


@pytest.fixture(scope="module")
def holiday(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("holiday")
    env = {
        "IVR_CLOCK_START": THANKSGIVING,
        "IVR_TIMEZONE": "America/Los_Angeles",
        "IVR_BUSINESS_HOURS": "mon-fri 08:00-20:00, sat 09:00-17:00",
        "IVR_HOLIDAYS_COUNTRY": "US",
        "IVR_HOLIDAYS_SUBDIVISION": "CA",
        "IVR_CLOSURES": "2030-11-30",
        "IVR_DEFAULT_REGION": "US",
        "IVR_API_TOKENS": f"crm:{hashlib.sha256(TOKEN.encode()).hexdigest()}:*",
    }
    with live_server(tmp, **env) as server:

        async def both() -> tuple[dict[str, Any], dict[str, Any]]:
            return await asyncio.gather(
                call(server, "15551230001", "0 1 1 1"),  # agent; this number; asap; yes
                call(server, None, "0 5551230002# 1 1"),  # agent; keyed number; asap; yes
            )

        caller_id, keyed = asyncio.run(both())
        yield {"server": server, "caller_id": caller_id, "keyed": keyed}


@pytest.mark.parametrize("who", ["caller_id", "keyed"])
def test_on_a_holiday_the_caller_is_told_agents_are_out_and_offered_the_callback(
    holiday: dict[str, Any], who: str
) -> None:
    said = holiday[who]["said"]
    assert "Our team is out today for Thanksgiving Day." in said, said
    assert "except public holidays. I can book a call back for you." in said, said
    assert "put you through" not in said, said  # no transfer while agents are out
    assert "One of our team will call you Monday the 2nd at 8 AM." in said, said
    assert holiday[who]["hangup"] == "callback_booked", holiday[who]


def test_caller_ids_and_keyed_numbers_are_kept_in_e164(holiday: dict[str, Any]) -> None:
    server = holiday["server"]
    for number, spellings in [
        ("+15551230001", ["+15551230001", "15551230001", "(555) 123-0001"]),
        ("+15551230002", ["+1 555 123 0002", "5551230002", "555.123.0002"]),
    ]:
        for spelling in spellings:
            status, page = api(server, "GET", query("/v1/callbacks", number=spelling))
            assert status == 200 and len(page["items"]) == 1, (spelling, page)
            (cb,) = page["items"]
            assert cb["number"] == number and cb["due_at"] == MONDAY, cb
            assert cb["reason"] == "after_hours" and cb["status"] == "scheduled", cb
    status, calls = api(server, "GET", query("/v1/calls", caller="(555) 123-0001"))
    assert status == 200 and [c["provider_call_id"] for c in calls["items"]] == [
        holiday["caller_id"]["sid"]
    ], calls
    assert calls["items"][0]["caller"] == "+15551230001"


def test_the_api_books_no_second_callback_for_another_spelling(holiday: dict[str, Any]) -> None:
    server = holiday["server"]
    status, page = api(server, "GET", "/v1/callbacks")
    ids = {cb["number"]: cb["id"] for cb in page["items"]}
    assert status == 200 and len(page["items"]) == 2, page
    for spelling, number in [("+15551230001", "+15551230001"), ("(555) 123-0001", "+15551230001"),
                             ("1-555-123-0002", "+15551230002")]:  # fmt: skip
        booking = {"number": spelling, "due_at": "2030-12-03T10:00:00-08:00", "reason": "crm"}
        status, problem = api(server, "POST", "/v1/callbacks", booking)
        assert status == 409 and problem["code"] == "callback_open", problem
        assert ids[number] in problem["detail"], problem
    status, problem = api(server, "POST", "/v1/callbacks", {"number": "call me", "due_at": MONDAY})
    assert status == 422 and [f["field"] for f in problem["error"]["fields"]] == ["number"]
    status, page = api(server, "GET", "/v1/callbacks")
    assert {cb["id"] for cb in page["items"]} == set(ids.values())  # none added, none changed
    assert {cb["due_at"] for cb in page["items"]} == {MONDAY}
