"""The webhook delivery log and replay in the API: in-process on both stores (states,
pages, each POST, replay of one event and of every parked one, scopes, bad input), and
`ivr serve` whose receiver was down: its parked event is listed with the failed POST and,
replayed once the receiver is back, arrives with the same webhook-id."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from live_server import live_server
from test_api import ALL, READER, TOKENS, Api, _serve
from webhook_receiver import Receiver, wait_until

from ivr.api import hash_token
from ivr.api.deliveries import EventDetail, EventOut, EventPage, Replayed
from ivr.config import ApiToken
from ivr.store import PARKED_UNTIL, Delivery

OPS, OPS_TOKEN = "ops", "webhook-ops-secret"


@pytest.fixture
async def api(url: str) -> AsyncIterator[Api]:
    ops = ApiToken(name=OPS, sha256=hash_token(OPS_TOKEN), scopes=["webhooks.read"])
    async for a in _serve(url, [*TOKENS, ops]):
        yield a


async def _outbox(api: Api) -> dict[str, str]:
    """Four events: delivered (one POST logged), pending, parked (two failed POSTs), fresh."""
    now = datetime.now(UTC)
    ids = {}
    for i, name in enumerate(["delivered", "pending", "parked", "fresh"]):
        event = await api.store.add_event("call.ended", {"n": i}, now=now + timedelta(seconds=i))
        ids[name] = event.id
    await api.store.claim_due_events(10, now + timedelta(seconds=3))
    await api.store.mark_delivered(ids["delivered"])
    await api.store.mark_failed(ids["pending"], "HTTP 503", now + timedelta(hours=1))
    await api.store.mark_failed(ids["parked"], "crm: HTTP 500: down", PARKED_UNTIL)
    await api.store.replay_event(ids["fresh"], now=now + timedelta(hours=2))
    at = now + timedelta(seconds=5)
    url = "https://crm.example/hook"
    await api.store.record_deliveries(
        [
            Delivery(ids["delivered"], url, at, 204, None, 12),
            Delivery(ids["parked"], url, at, None, "ClientConnectorError", 3),
            Delivery(ids["parked"], url, at + timedelta(seconds=1), 500, "HTTP 500: down", 7),
        ]
    )
    return ids


async def test_the_log_lists_events_by_state_a_page_at_a_time(api: Api) -> None:
    ids = await _outbox(api)
    status, page = await api.call("GET", "/v1/webhooks/events", expect=EventPage)
    assert status == 200 and page["next"] is None
    order = [ids[n] for n in ("fresh", "parked", "pending", "delivered")]
    assert [e["id"] for e in page["items"]] == order  # newest first
    by_id = {e["id"]: e for e in page["items"]}
    assert by_id[ids["parked"]]["state"] == "parked"
    assert by_id[ids["parked"]]["next_attempt_at"] is None  # parked: not "year 9999"
    assert by_id[ids["parked"]]["last_error"] == "crm: HTTP 500: down"
    assert by_id[ids["pending"]]["next_attempt_at"] is not None
    assert by_id[ids["delivered"]]["delivered_at"] is not None
    assert by_id[ids["delivered"]]["created_at"].endswith(("+01:00", "+02:00"))  # the API's zone

    _, parked = await api.call("GET", "/v1/webhooks/events?state=parked")
    assert [e["id"] for e in parked["items"]] == [ids["parked"]]
    _, first = await api.call("GET", "/v1/webhooks/events?limit=3")
    assert len(first["items"]) == 3 and first["next"]
    _, rest = await api.call("GET", f"/v1/webhooks/events?limit=3&cursor={first['next']}")
    assert [e["id"] for e in rest["items"]] == [ids["delivered"]] and rest["next"] is None
    _, none = await api.call("GET", "/v1/webhooks/events?type=callback.due")
    assert none["items"] == []


async def test_one_event_has_its_data_and_each_post(api: Api) -> None:
    ids = await _outbox(api)
    status, event = await api.call(
        "GET", f"/v1/webhooks/events/{ids['parked']}", token=OPS_TOKEN, expect=EventDetail
    )
    assert status == 200 and event["data"] == {"n": 2}
    posts = [(d["status"], d["error"]) for d in event["deliveries"]]
    assert posts == [(None, "ClientConnectorError"), (500, "HTTP 500: down")]
    assert event["deliveries"][0]["url"] == "https://crm.example/hook"
    status, problem = await api.call("GET", f"/v1/webhooks/events/{uuid.uuid4()}")
    assert status == 404, problem
    status, problem = await api.call("GET", "/v1/webhooks/events/not-an-id")
    assert status == 404, problem


async def test_replay_one_event_or_every_parked_one(api: Api) -> None:
    ids = await _outbox(api)
    status, again = await api.call(
        "POST", f"/v1/webhooks/events/{ids['delivered']}/replay", expect=EventOut
    )
    assert status == 200 and again["state"] == "pending" and again["delivered_at"] is None
    status, body = await api.call("POST", "/v1/webhooks/parked/replay", expect=Replayed)
    assert status == 200 and body == {"replayed": 1}
    assert (await api.store.get_event(ids["parked"])).state == "pending"
    _, body = await api.call("POST", "/v1/webhooks/parked/replay")
    assert body == {"replayed": 0}  # nothing parked any more
    due = await api.store.claim_due_events(10, datetime.now(UTC) + timedelta(seconds=1))
    assert {ids["delivered"], ids["parked"]} <= {e.id for e in due}
    status, problem = await api.call("POST", f"/v1/webhooks/events/{uuid.uuid4()}/replay")
    assert status == 404, problem


async def test_scopes_and_bad_queries(api: Api) -> None:
    ids = await _outbox(api)
    status, problem = await api.call("GET", "/v1/webhooks/events", token=READER)
    assert status == 403, problem  # calls and callbacks readers do not see deliveries
    status, problem = await api.call("POST", "/v1/webhooks/parked/replay", token=OPS_TOKEN)
    assert status == 403 and "webhooks.write" in problem["detail"], problem
    path = f"/v1/webhooks/events/{ids['parked']}/replay"
    assert (await api.call("POST", path, token=OPS_TOKEN))[0] == 403
    assert (await api.call("POST", path, token=None))[0] == 401
    status, problem = await api.call("GET", "/v1/webhooks/events?state=lost")
    assert status == 422 and [f["field"] for f in problem["fields"]] == ["state"], problem
    status, problem = await api.call("GET", "/v1/webhooks/events?cursor=abc")
    assert status == 400 and problem["code"] == "invalid_cursor", problem
    assert (await api.call("GET", "/v1/webhooks/events?limit=0"))[0] == 422
    assert ALL  # the admin token (`*`) was the default of every call above


# --- a real server ----------------------------------------------------------------------------

TOKEN = "delivery-log-ops-token"
SCOPES = "webhooks.read+webhooks.write+callbacks.write"


def request(base: str, method: str, path: str) -> tuple[int, Any]:
    req = urllib.request.Request(
        base + path, method=method, headers={"Authorization": f"Bearer {TOKEN}"}
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_ivr_serve_logs_a_failed_delivery_and_replays_it(tmp_path: Path) -> None:
    down = True
    with Receiver(lambda hit: 503 if down else 200) as receiver:
        env = {
            "IVR_API_TOKENS": f"ops:{hash_token(TOKEN)}:{SCOPES}",
            "IVR_WEBHOOK_URLS": f"{receiver.url('/crm?key=hidden')} events=callback.*",
            "IVR_WEBHOOK_MAX_ATTEMPTS": "1",  # parked at the first failure
        }
        with live_server(tmp_path, **env) as server:
            base = f"http://127.0.0.1:{server.port}"
            req = urllib.request.Request(
                base + "/v1/callbacks",
                data=json.dumps(
                    {"number": "+15550109876", "due_at": "2030-01-02T15:00:00Z"}
                ).encode(),
                method="POST",
                headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
            )
            with urllib.request.urlopen(req, timeout=30) as r:
                assert r.status == 201

            def parked() -> list[Any]:
                items: list[Any] = request(base, "GET", "/v1/webhooks/events?state=parked")[1][
                    "items"
                ]
                return items

            wait_until(lambda: bool(parked()), 20, "the booking's event parked")
            [event] = parked()
            assert event["type"] == "callback.scheduled" and "HTTP 503" in event["last_error"]
            _, detail = request(base, "GET", f"/v1/webhooks/events/{event['id']}")
            [post] = detail["deliveries"]
            assert post["status"] == 503 and post["url"] == receiver.url("/crm"), post
            assert detail["data"]["callback"]["number"] == "+15550109876"

            down = False
            status, body = request(base, "POST", "/v1/webhooks/parked/replay")
            assert status == 200 and body == {"replayed": 1}
            wait_until(lambda: len(receiver.snapshot("/crm")) == 2, 20, "the replayed event")
            first, second = receiver.snapshot("/crm")
            assert first.headers["webhook-id"] == second.headers["webhook-id"] == event["id"]
            _, detail = request(base, "GET", f"/v1/webhooks/events/{event['id']}")
            assert detail["state"] == "delivered", detail
            assert [d["status"] for d in detail["deliveries"]] == [503, 200]
