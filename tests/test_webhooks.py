"""Webhooks: signatures, and the deliverer against a real local receiver on both stores."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import pytest
from webhook_receiver import HANG, Hit, Receiver, until

from ivr.call.recorder import CallRecorder
from ivr.store import Event, Store
from ivr.webhooks import PARKED_UNTIL, WebhookDeliverer, backoff_s, body_of, sign, verify

SECRET = "s3cret"


# --- signing -------------------------------------------------------------------------------


def test_sign_verify_round_trip() -> None:
    body = b'{"id":"1","type":"x"}'
    t = 1_700_000_000
    header = sign(body, SECRET, t)
    assert header.startswith(f"t={t},v1=") and len(header.split("v1=")[1]) == 64
    assert verify(header, body, SECRET, now=t)
    assert verify(header, body, SECRET, now=t + 299)


def test_verify_rejects_tampering_and_old_or_malformed_headers() -> None:
    body = b'{"id":"1","type":"x"}'
    t = 1_700_000_000
    header = sign(body, SECRET, t)
    assert not verify(header, body + b" ", SECRET, now=t)  # body changed
    assert not verify(header, body, "other", now=t)  # wrong secret
    assert not verify(header.replace(f"t={t}", f"t={t + 1}"), body, SECRET, now=t)  # time changed
    assert not verify(header, body, SECRET, now=t + 301)  # too old: a replay
    assert not verify(header, body, SECRET, now=t - 301)  # from the future
    for bad in ("", "v1=abc", f"t={t}", "t=x,v1=00", f"t={t},v1="):
        assert not verify(bad, body, SECRET, now=t)
    # a second v1 (a sender rotating secrets) is accepted when either matches
    assert verify(f"t={t},v1={'0' * 64},{header.split(',')[1]}", body, SECRET, now=t)


def test_backoff_is_exponential_capped_and_jittered() -> None:
    top = [backoff_s(n, 1.0, 600.0, rand=lambda: 1.0) for n in range(1, 13)]
    assert top[:4] == [1.0, 2.0, 4.0, 8.0]
    assert top[-1] == 600.0 and max(top) == 600.0
    assert backoff_s(3, 1.0, 600.0, rand=lambda: 0.0) == 0.0  # full jitter: down to zero
    assert backoff_s(10_000, 1.0, 600.0, rand=lambda: 1.0) == 600.0  # no overflow


# --- the deliverer -------------------------------------------------------------------------


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def receiver() -> Any:
    with Receiver() as r:
        yield r


Make = Callable[..., WebhookDeliverer]


@pytest.fixture
async def make(store: Store, http: aiohttp.ClientSession) -> AsyncIterator[Make]:
    """Build (and start) deliverers with fast test timings; all are closed at the end."""
    made: list[WebhookDeliverer] = []

    def build(urls: list[str], **kw: Any) -> WebhookDeliverer:
        options: dict[str, Any] = {
            "secret": SECRET,
            "timeout_s": 2.0,
            "max_attempts": 5,
            "poll_s": 0.01,
            "backoff_base_s": 0.05,
            "rand": lambda: 1.0,  # the ceiling: deterministic delays
            **kw,
        }
        d = WebhookDeliverer(
            store,
            http,
            urls,
            options.pop("secret"),
            options.pop("timeout_s"),
            options.pop("max_attempts"),
            **options,
        )
        made.append(d)
        d.start()
        return d

    yield build
    for d in made:
        await d.close()


async def eventually(check: Callable[[], Awaitable[bool]], limit_s: float, what: str) -> None:
    deadline = time.monotonic() + limit_s
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {limit_s} s waiting for {what}")
        await asyncio.sleep(0.02)


def delivered(store: Store, *events: Event) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return all([(await store.get_event(e.id)).delivered_at is not None for e in events])

    return check


async def test_delivers_signed_events_with_the_body_shape(
    store: Store, receiver: Receiver, make: Make
) -> None:
    events = [
        await store.add_event("call.started", {"call": {"id": f"c{i}", "caller": "+1555"}})
        for i in range(3)
    ]
    d = make([receiver.url()])
    await eventually(delivered(store, *events), 10, "3 events delivered")
    hits = {h.event_id: h for h in receiver.snapshot()}
    assert set(hits) == {e.id for e in events} and len(receiver.snapshot()) == 3
    for e in events:
        hit = hits[e.id]
        assert hit.headers["Content-Type"] == "application/json"
        assert hit.headers["X-IVR-Event-Type"] == "call.started"
        assert verify(hit.headers["X-IVR-Signature"], hit.body, SECRET)
        doc = hit.doc
        assert list(doc) == ["id", "type", "created_at", "data"]
        assert doc["id"] == e.id and doc["type"] == e.type and doc["data"] == e.payload
        assert datetime.fromisoformat(doc["created_at"]) == e.created_at
        assert b" " not in hit.body.replace(b'"+1555"', b"")  # compact
        assert hit.body == body_of(e)  # what was signed is exactly what was sent
        stored = await store.get_event(e.id)
        assert stored.attempts == 1 and stored.last_error is None
    assert d.stats() == {
        "enabled": True,
        "urls": 1,
        "delivered": 3,
        "failed_attempts": 0,
        "parked": 0,
        "unsubscribed": 0,
        "in_flight": 0,
        "failing_urls": 0,
    }


async def test_wake_sends_a_new_event_without_waiting_for_the_poll(
    store: Store, receiver: Receiver, make: Make
) -> None:
    d = make([receiver.url()], poll_s=30.0)
    await asyncio.sleep(0.2)  # the loop found nothing and sleeps for up to 30 s
    event = await store.add_event("callback.due", {"callback": {"id": "x"}})
    d.wake()
    await eventually(delivered(store, event), 5, "the woken deliverer to send it")


async def test_retried_with_growing_backoff_until_accepted(
    store: Store, receiver: Receiver, make: Make
) -> None:
    answers = iter([500, 500])
    receiver.respond = lambda hit: next(answers, 200)
    event = await store.add_event("callback.due", {"callback": {"id": "cb1"}})
    d = make([receiver.url()], backoff_base_s=0.2)
    await eventually(delivered(store, event), 10, "delivery on the 3rd attempt")
    hits = receiver.snapshot()
    assert [h.event_id for h in hits] == [event.id] * 3  # the same id every time
    stored = await store.get_event(event.id)
    assert stored.attempts == 3 and stored.last_error is None
    gap1, gap2 = hits[1].mono - hits[0].mono, hits[2].mono - hits[1].mono
    assert gap1 >= 0.2 * 0.9 and gap2 >= 0.4 * 0.9, (gap1, gap2)  # 0.2 s, then 0.4 s
    assert gap2 > gap1
    # each attempt is signed afresh over the same body
    assert all(verify(h.headers["X-IVR-Signature"], h.body, SECRET) for h in hits)
    assert len({h.body for h in hits}) == 1
    assert d.stats()["failed_attempts"] == 2 and d.stats()["delivered"] == 1


async def test_failed_attempt_is_recorded_with_its_error_and_retry_time(
    store: Store, receiver: Receiver, make: Make
) -> None:
    receiver.respond = lambda hit: 503
    event = await store.add_event("callback.due", {"callback": {"id": "cb1"}})
    before = datetime.now(UTC)
    make([receiver.url("/hook?token=abc")], backoff_base_s=60.0)

    async def failed_once() -> bool:
        return (await store.get_event(event.id)).last_error is not None

    await eventually(failed_once, 5, "the first failure recorded")
    stored = await store.get_event(event.id)
    assert stored.delivered_at is None and stored.attempts == 1
    assert "HTTP 503" in (stored.last_error or "")
    assert "token" not in (stored.last_error or "")  # the query (credentials) is not kept
    wait = (stored.next_attempt_at - before).total_seconds()
    assert 55 < wait < 65  # 60 s ceiling (rand = 1)


async def test_hanging_receiver_costs_only_its_timeout(
    store: Store, receiver: Receiver, make: Make
) -> None:
    receiver.respond = lambda hit: HANG if hit.headers["X-IVR-Event-Type"] == "slow" else 200
    slow = await store.add_event("slow", {})
    fast = [await store.add_event("fast", {"n": i}) for i in range(5)]
    started = time.monotonic()
    d = make([receiver.url()], timeout_s=0.5, backoff_base_s=60.0)
    await eventually(delivered(store, *fast), 5, "the other events")
    assert time.monotonic() - started < 0.5  # not queued behind the hanging request

    async def failed() -> bool:
        return (await store.get_event(slow.id)).last_error is not None

    await eventually(failed, 5, "the timeout")
    elapsed = time.monotonic() - started
    assert 0.45 < elapsed < 2.0
    stored = await store.get_event(slow.id)
    assert stored.delivered_at is None and "no response within 0.5 s" in (stored.last_error or "")
    assert d.stats()["failed_attempts"] == 1 and d.stats()["delivered"] == 5


async def test_parked_after_max_attempts_and_kept(
    store: Store, receiver: Receiver, make: Make
) -> None:
    receiver.respond = lambda hit: 500
    event = await store.add_event("callback.due", {"callback": {"id": "cb1"}})
    d = make([receiver.url()], max_attempts=3, backoff_base_s=0.02)

    async def parked() -> bool:
        return (await store.get_event(event.id)).next_attempt_at == PARKED_UNTIL

    await eventually(parked, 10, "the event parked")
    await asyncio.sleep(0.3)  # no further attempts once parked
    stored = await store.get_event(event.id)
    assert stored.attempts == 3 and stored.delivered_at is None
    assert "HTTP 500" in (stored.last_error or "")
    assert len(receiver.snapshot()) == 3
    assert d.stats()["parked"] == 1 and d.stats()["failed_attempts"] == 3
    # kept: still in the outbox, and never due on its own
    assert await store.claim_due_events(10, datetime(9998, 1, 1, tzinfo=UTC)) == []


async def test_delivery_log_has_each_post_and_a_replay_delivers_a_parked_event(
    store: Store, receiver: Receiver, make: Make
) -> None:
    failing = True
    receiver.respond = lambda hit: 500 if failing else 204
    event = await store.add_event("callback.due", {"callback": {"id": "cb1"}})
    make([receiver.url("/hook?token=s3cret")], max_attempts=2, backoff_base_s=0.02)

    async def parked() -> bool:
        return (await store.get_event(event.id)).state == "parked"

    await eventually(parked, 10, "the event parked")
    log = await store.list_deliveries(event.id)
    assert [(d.status, d.error) for d in log] == [(500, "HTTP 500: nope")] * 2
    assert all(d.url == receiver.url("/hook") for d in log)  # no query: no credentials kept
    assert all(0 <= d.duration_ms < 5000 for d in log) and log[0].at <= log[1].at
    failing = False
    assert await store.replay_parked() == 1
    await eventually(delivered(store, event), 10, "the replayed event")
    log = await store.list_deliveries(event.id)
    assert [(d.status, d.error) for d in log][-1] == (204, None) and len(log) == 3
    assert len(receiver.snapshot()) == 3


async def test_two_urls_delivered_only_when_both_accept(
    store: Store, receiver: Receiver, make: Make
) -> None:
    failures = iter([500, 500])

    def respond(hit: Hit) -> int:
        return next(failures, 200) if hit.path == "/b" else 200

    receiver.respond = respond
    event = await store.add_event("callback.due", {"callback": {"id": "cb1"}})
    d = make([receiver.url("/a"), receiver.url("/b")], backoff_base_s=0.1)
    await until(lambda: len(receiver.snapshot("/b")) >= 1, 5, "a first attempt")
    assert (await store.get_event(event.id)).delivered_at is None  # /a took it, /b did not
    await eventually(delivered(store, event), 10, "both URLs accepted")
    assert len(receiver.snapshot("/b")) == 3
    # /a accepted on the first attempt and is not sent it again by this process
    assert [h.event_id for h in receiver.snapshot("/a")] == [event.id]
    assert (await store.get_event(event.id)).attempts == 3
    assert d.stats()["failing_urls"] == 0


async def test_without_urls_the_deliverer_does_not_run(store: Store, make: Make) -> None:
    event = await store.add_event("call.started", {})
    d = make([])
    d.wake()
    await asyncio.sleep(0.1)
    stored = await store.get_event(event.id)
    assert stored.attempts == 0 and stored.delivered_at is None  # kept for a URL added later
    assert d.stats()["enabled"] is False


async def test_close_hands_interrupted_deliveries_back_at_once(
    store: Store, receiver: Receiver, http: aiohttp.ClientSession
) -> None:
    receiver.respond = lambda hit: HANG
    event = await store.add_event("callback.due", {})
    d = WebhookDeliverer(store, http, [receiver.url()], SECRET, 30.0, 5, poll_s=0.01)
    d.start()
    await until(lambda: len(receiver.snapshot()) == 1, 5, "the request in flight")
    started = time.monotonic()
    await d.close(grace_s=0.2)
    assert time.monotonic() - started < 2  # bounded although the receiver never answers
    stored = await store.get_event(event.id)
    assert stored.delivered_at is None and "interrupted" in (stored.last_error or "")
    assert stored.next_attempt_at <= datetime.now(UTC)  # not the 70 s lease: due again now


# --- call.started / call.ended from the call recorder --------------------------------------


async def test_call_start_and_end_are_written_with_their_events(store: Store) -> None:
    paris = ZoneInfo("Europe/Paris")
    rec = CallRecorder(store, "call-1", tz=paris)
    rec.start(transport="websocket", caller="+15551230001", flow="hotline", flow_version="v1")
    rec.turn("prompt", node="welcome", text="Hello")
    await rec.finish("hangup")
    assert rec.failures == 0
    events = await store.claim_due_events(100, datetime(9000, 1, 1, tzinfo=UTC), timedelta(0))
    assert [e.type for e in events] == ["call.started", "call.ended"]
    started, ended = (e.payload["call"] for e in events)
    assert started["id"] == ended["id"] == "call-1"
    assert started["caller"] == "+15551230001" and started["flow_version"] == "v1"
    assert started["ended_at"] is None and ended["end_reason"] == "hangup"
    call = await store.get_call("call-1")
    assert datetime.fromisoformat(ended["ended_at"]) == call.ended_at
    assert (
        datetime.fromisoformat(started["started_at"]).utcoffset()
        == call.started_at.astimezone(paris).utcoffset()
    )  # times in the configured zone, as in the API


async def test_no_call_event_without_its_record(store: Store) -> None:
    await store.start_call("dup", transport="websocket")
    rec = CallRecorder(store, "dup")
    rec.start(transport="websocket")  # the record exists already: the write fails...
    await rec.finish("hangup")
    assert rec.failures == 1
    events = await store.claim_due_events(100, datetime(9000, 1, 1, tzinfo=UTC), timedelta(0))
    assert [e.type for e in events] == ["call.ended"]  # ...and so does its event
