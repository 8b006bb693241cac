"""The callback dispatcher: due callbacks become `callback.due` events exactly once, lapsed
leases are redispatched, exhausted/overdue callbacks expire; two `ivr serve` processes on one
PostgreSQL database share the work without duplicates."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast
from zoneinfo import ZoneInfo

import pytest
from live_server import live_server
from pg import PgCluster
from webhook_receiver import Hit, Receiver, wait_until

from ivr.callbacks import CallbackPolicy, Callbacks
from ivr.callbacks.dispatcher import Dispatcher
from ivr.store import Event, Store, open_store
from ivr.webhooks import verify

T0 = datetime(2025, 3, 3, 10, 0, tzinfo=UTC)
FAR = datetime(9000, 1, 1, tzinfo=UTC)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def service(store: Store, clock: Clock, **policy: Any) -> Callbacks:
    return Callbacks(store, CallbackPolicy(tz=ZoneInfo("UTC"), **policy), clock=clock)


async def outbox(store: Store, type: str) -> list[Event]:
    """Undelivered events of `type` (a claim far in the future with no lease: repeatable)."""
    events = await store.claim_due_events(100_000, FAR, timedelta(0))
    return [e for e in events if e.type == type]


async def test_each_due_callback_gets_exactly_one_due_event(store: Store) -> None:
    clock = Clock(T0)
    cbs = service(store, clock)
    due = [
        (await cbs.book(f"+1555000{i:04d}", T0 - timedelta(minutes=1), reason="r"))[0]
        for i in range(120)
    ]
    later = (await cbs.book("+15559999999", T0 + timedelta(hours=1), reason="r"))[0]
    wakes = []
    d = Dispatcher(cbs, interval_s=1, batch=50, on_events=lambda: wakes.append(1))
    assert await d.tick() == (0, 120)  # three batches (50, 50, 20) in one tick
    assert len(wakes) == 3
    events = await outbox(store, "callback.due")
    ids = Counter(e.payload["callback"]["id"] for e in events)
    assert set(ids) == {cb.id for cb in due} and set(ids.values()) == {1}
    assert later.id not in ids
    assert {e.payload["callback"]["status"] for e in events} == {"claimed"}
    assert {e.payload["callback"]["attempts"] for e in events} == {1}
    assert await d.tick() == (0, 0)  # claimed: nothing due until the lease runs out
    assert len(await outbox(store, "callback.due")) == 120
    assert d.stats()["dispatched"] == 120


async def test_a_lapsed_lease_is_dispatched_again(store: Store) -> None:
    clock = Clock(T0)
    cbs = service(store, clock, lease=timedelta(minutes=10))
    cb, _ = await cbs.book("+15550001111", T0, reason="r")
    d = Dispatcher(cbs, interval_s=1)
    assert await d.tick() == (0, 1)
    clock.now = T0 + timedelta(minutes=9)
    assert await d.tick() == (0, 0)  # lease still running: the dialer may report yet
    clock.now = T0 + timedelta(minutes=10, seconds=1)
    assert await d.tick() == (0, 1)
    events = await outbox(store, "callback.due")
    assert sorted(e.payload["callback"]["attempts"] for e in events) == [1, 2]
    assert all(e.payload["callback"]["id"] == cb.id for e in events)
    attempts = await store.list_attempts(cb.id)
    assert [(a.attempt, a.taken_by, a.outcome) for a in attempts] == [
        (1, "dispatcher", "no_report"),
        (2, "dispatcher", None),
    ]


async def test_exhausted_and_overdue_callbacks_expire_with_an_event(store: Store) -> None:
    clock = Clock(T0)
    cbs = service(store, clock, max_attempts=2, lease=timedelta(minutes=10))
    tries, _ = await cbs.book("+15550001111", T0, reason="r")
    stale, _ = await cbs.book("+15550002222", T0 - timedelta(hours=73), reason="r")
    d = Dispatcher(cbs, interval_s=1)
    # the overdue one expires before dispatching: nobody is asked to dial a 3-day-old request
    assert await d.tick() == (1, 1)
    clock.now += timedelta(minutes=11)
    assert await d.tick() == (0, 1)  # second and last attempt
    clock.now += timedelta(minutes=11)
    assert await d.tick() == (1, 0)  # out of attempts, last lease lapsed
    assert await d.tick() == (0, 0)
    due = await outbox(store, "callback.due")
    assert [e.payload["callback"]["id"] for e in due] == [tries.id, tries.id]
    expired = {
        e.payload["callback"]["id"]: e.payload["callback"]
        for e in await outbox(store, "callback.expired")
    }
    assert expired[stale.id]["outcome"] == "overdue" and expired[stale.id]["attempts"] == 0
    assert expired[tries.id]["outcome"] == "max_attempts" and expired[tries.id]["attempts"] == 2
    assert (await store.get_callback(tries.id)).status == "expired"
    assert d.stats() == {"dispatched": 2, "expired": 2, "errors": 0, "last_error": None}


class FlakyCallbacks:
    """dispatch_due fails (database away) the first `failures` times."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0

    async def expire_overdue(self, limit: int = 100) -> list[Any]:
        return []

    async def dispatch_due(self, limit: int = 50) -> list[Any]:
        self.calls += 1
        if self.calls <= self.failures:
            raise ConnectionRefusedError("database is down")
        return [object()] if self.calls == self.failures + 1 else []


async def test_errors_are_logged_and_retried_next_tick(caplog: pytest.LogCaptureFixture) -> None:
    flaky = FlakyCallbacks(failures=3)
    d = Dispatcher(cast(Callbacks, flaky), interval_s=0.01)
    d.start()
    try:
        for _ in range(500):
            if d.dispatched:
                break
            await asyncio.sleep(0.01)
    finally:
        await d.close()
    assert d.dispatched == 1 and d.errors == 3 and d.last_error is None
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "database is down" in errors[0].getMessage()  # once per outage


# --- two real server processes on one PostgreSQL database ----------------------------------


async def _book(dsn: str, n: int) -> list[str]:
    """n callbacks, not due for a day (so neither server takes any while starting)."""
    store = await open_store(dsn)
    try:
        cbs = Callbacks(store, CallbackPolicy(tz=ZoneInfo("UTC")))
        later = datetime.now(UTC) + timedelta(days=1)
        return [(await cbs.book(f"+1555{i:07d}", later, reason="r"))[0].id for i in range(n)]
    finally:
        await store.close()


async def _make_due(dsn: str, ids: list[str]) -> None:
    """In one transaction: half due at once (a burst both servers race for), half falling
    due over the next 2 s (so both servers' ticks find work)."""
    store = await open_store(dsn)
    try:
        now = datetime.now(UTC)
        async with store.transaction() as tx:
            for i, id in enumerate(ids):
                due = now if i % 2 else now + timedelta(seconds=2 * i / len(ids))
                await tx.reschedule(id, due, now=now)
    finally:
        await store.close()


def test_two_servers_on_one_postgresql_dispatch_each_callback_once(
    tmp_path: Path, pg_cluster: PgCluster
) -> None:
    dsn = asyncio.run(pg_cluster.create_database())
    ids = asyncio.run(_book(dsn, 200))
    env = {
        "IVR_DATABASE_URL": dsn,
        "IVR_DISPATCH_INTERVAL_SECONDS": "0.05",
        "IVR_WEBHOOK_SECRET": "s3cret",
        "IVR_ASR_WORKERS": "1",
    }
    with Receiver() as receiver, ExitStack() as stack:
        env["IVR_WEBHOOK_URLS"] = receiver.url()
        servers = []
        for name in ("a", "b"):
            (tmp_path / name).mkdir()
            servers.append(stack.enter_context(live_server(tmp_path / name, **env)))

        def due_hits() -> list[Hit]:
            return [
                h for h in receiver.snapshot() if h.headers["X-IVR-Event-Type"] == "callback.due"
            ]

        # the 200 callback.scheduled events from booking go out first (shared by both)
        wait_until(lambda: len(receiver.snapshot()) >= 200, 30, "the scheduled events")
        assert due_hits() == []
        asyncio.run(_make_due(dsn, ids))
        wait_until(lambda: len(due_hits()) >= 200, 60, "200 callback.due events")
        time.sleep(1.0)  # anything extra (a duplicate) would arrive by now
        hits = due_hits()
        per_callback = Counter(h.doc["data"]["callback"]["id"] for h in hits)
        assert set(per_callback) == set(ids)  # none missed
        assert len(hits) == 200 and set(per_callback.values()) == {1}  # none twice
        assert len({h.event_id for h in hits}) == 200
        assert all(verify(h.headers["X-IVR-Signature"], h.body, "s3cret") for h in hits)
        # the deliverers too shared the outbox: every event arrived exactly once
        assert len({h.event_id for h in receiver.snapshot()}) == len(receiver.snapshot()) == 400
        counts = [s.health()["dispatcher"]["dispatched"] for s in servers]
        delivered = [s.health()["webhooks"]["delivered"] for s in servers]
    assert sum(counts) == 200 and min(counts) > 0, counts  # both servers did part of it
    assert sum(delivered) == 400, delivered
