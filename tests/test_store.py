"""The store, every test on both backends: SQLite in tmp_path and a real PostgreSQL cluster
started by tests/pg.py (which fails, never skips, when PostgreSQL is not installed)."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ivr.store import (
    MIGRATIONS,
    PARKED_UNTIL,
    Callback,
    CallbackCounts,
    Conflict,
    Delivery,
    NotFound,
    OutboxCounts,
    Store,
    open_store,
    sqlite_path,
)

T0 = datetime(2030, 1, 1, 9, 0, tzinfo=UTC)
LEASE = timedelta(minutes=5)


def test_sqlite_urls() -> None:
    assert sqlite_path("sqlite:///data/ivr.db") == Path("data/ivr.db")
    assert sqlite_path("sqlite:////var/lib/ivr/ivr.db") == Path("/var/lib/ivr/ivr.db")
    assert sqlite_path("/srv/ivr.db") == Path("/srv/ivr.db")
    with pytest.raises(ValueError):
        sqlite_path("mysql://x/y")


async def test_migrations_applied_once(url: str) -> None:
    # two processes starting together: both open, the migrations run once
    a, b = await asyncio.gather(open_store(url), open_store(url))
    try:
        first = await a.applied_migrations()
        assert [v for v, _, _ in first] == [m.version for m in MIGRATIONS]
        assert await b.applied_migrations() == first
    finally:
        await a.close()
        await b.close()
    again = await open_store(url)  # reopening is a no-op
    try:
        assert await again.schema_version() == len(MIGRATIONS)
        assert await again.applied_migrations() == first
        assert all(at.tzinfo is not None for _, _, at in first)
    finally:
        await again.close()


async def test_calls_and_turns_round_trip(store: Store) -> None:
    call = await store.start_call(
        "call-1", transport="twilio", caller="+15550100", flow="billing", flow_version="7",
        started_at=T0,
    )  # fmt: skip
    assert call.started_at == T0 and call.started_at.tzinfo is not None and call.ended_at is None
    with pytest.raises(Conflict):
        await store.start_call("call-1", transport="twilio")
    kst = datetime(2030, 1, 1, 18, 0, 1, 250000).astimezone()  # any zone in, UTC out
    await store.add_turn("call-1", "prompt", node="main", text="Welcome", at=T0)
    await store.add_turn(
        "call-1", "recognized", node="main", text="pay my bill", intent="pay",
        confidence=0.87, at=kst,
    )  # fmt: skip
    await store.add_turn("call-1", "dtmf", node="pin", text="1234")
    await store.add_turn("call-1", "no_input", node="pin")
    await store.add_turn("call-1", "no_match", node="pin", text="banana")
    ended = await store.end_call("call-1", "hangup", ended_at=T0 + timedelta(seconds=42))
    assert ended.end_reason == "hangup" and ended.ended_at == T0 + timedelta(seconds=42)
    assert await store.get_call("call-1") == ended

    turns = await store.list_turns("call-1")
    assert [(t.seq, t.kind) for t in turns] == [
        (1, "prompt"), (2, "recognized"), (3, "dtmf"), (4, "no_input"), (5, "no_match"),
    ]  # fmt: skip
    assert turns[1].intent == "pay" and turns[1].confidence == pytest.approx(0.87)
    assert turns[1].at == kst and turns[1].at.utcoffset() == timedelta(0)
    assert turns[0].at == T0 and turns[3].text is None

    with pytest.raises(Conflict):
        await store.end_call("call-1", "again")
    with pytest.raises(NotFound):
        await store.end_call("nope", "hangup")
    with pytest.raises(NotFound):
        await store.get_call("nope")
    with pytest.raises(NotFound):
        await store.add_turn("nope", "prompt")
    with pytest.raises(ValueError):
        await store.add_turn("call-1", "shout")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        await store.start_call("call-2", transport="ws", started_at=datetime(2030, 1, 1))
    assert await store.list_turns("nope") == []


async def test_list_calls_newest_first_with_filters_and_cursor(store: Store) -> None:
    for i in range(7):
        caller = "+15550100" if i % 2 else "+15550199"
        await store.start_call(f"c{i}", transport="test", caller=caller,
                               started_at=T0 + timedelta(minutes=i // 2))  # fmt: skip
    seen: list[str] = []
    cursor = None
    while True:
        page, cursor = await store.list_calls(limit=3, cursor=cursor)
        seen += [c.id for c in page]
        if cursor is None:
            break
    assert seen == ["c6", "c5", "c4", "c3", "c2", "c1", "c0"]  # ties broken by id, newest first
    mine, _ = await store.list_calls(caller="+15550100")
    assert [c.id for c in mine] == ["c5", "c3", "c1"]
    window, _ = await store.list_calls(
        started_after=T0 + timedelta(minutes=1), started_before=T0 + timedelta(minutes=3)
    )
    assert [c.id for c in window] == ["c5", "c4", "c3", "c2"]
    with pytest.raises(ValueError):
        await store.list_calls(cursor="garbage!")


async def test_one_open_callback_per_number(store: Store) -> None:
    first, created = await store.upsert_open_callback(
        "+15550101", T0, reason="billing", priority=2, transcript=[{"who": "caller", "t": "hi"}],
        now=T0 - timedelta(hours=1),
    )  # fmt: skip
    assert created and first.status == "scheduled" and first.attempts == 0
    second, created = await store.upsert_open_callback(
        "+15550101", T0 + timedelta(hours=2), reason="billing again", priority=1, now=T0
    )
    assert not created and second.id == first.id
    assert second.due_at == T0 + timedelta(hours=2) and second.reason == "billing again"
    assert second.priority == 2  # the higher one is kept
    assert second.transcript == [{"who": "caller", "t": "hi"}]  # kept when none given
    assert second.created_at == first.created_at and second.updated_at == T0

    await store.claim(first.id, "agent-1")  # claimed is still open: updated, not duplicated
    third, created = await store.upsert_open_callback("+15550101", T0, transcript={"n": 3})
    assert not created and third.id == first.id and third.status == "claimed"
    assert third.transcript == {"n": 3} and third.agent == "agent-1"

    await store.complete(first.id, "resolved")  # closed: the next request opens a new one
    fresh, created = await store.upsert_open_callback("+15550101", T0)
    assert created and fresh.id != first.id
    items, _ = await store.list_callbacks(number="+15550101", limit=10)
    assert sorted(cb.status for cb in items) == ["completed", "scheduled"]


async def test_concurrent_requests_for_one_number_make_one_callback(url: str) -> None:
    a, b = await open_store(url), await open_store(url)
    try:
        results = await asyncio.gather(
            *(
                s.upsert_open_callback("+15550102", T0 + timedelta(minutes=i), priority=i)
                for i in range(10)
                for s in (a, b)
            )
        )
        assert sum(created for _, created in results) == 1
        assert len({cb.id for cb, _ in results}) == 1
        items, _ = await a.list_callbacks(number="+15550102")
        assert len(items) == 1 and items[0].priority == 9
    finally:
        await a.close()
        await b.close()


async def test_transitions_conflicts_and_not_found(store: Store) -> None:
    cb, _ = await store.upsert_open_callback("+15550103", T0)
    claimed = await store.claim(cb.id, "agent-7", now=T0)
    assert (claimed.status, claimed.agent, claimed.attempts) == ("claimed", "agent-7", 1)
    with pytest.raises(Conflict) as err:
        await store.claim(cb.id, "agent-8")
    assert err.value.status == "claimed" and err.value.action == "claim"

    back = await store.reschedule(cb.id, T0 + timedelta(days=1))
    assert (back.status, back.agent, back.due_at) == ("scheduled", None, T0 + timedelta(days=1))
    with pytest.raises(Conflict):
        await store.complete(cb.id, "talked")  # not claimed
    await store.claim(cb.id.upper(), "agent-8")  # ids are UUIDs, any case
    done = await store.complete(cb.id, "talked", transcript={"summary": "paid"})
    assert (done.status, done.outcome, done.attempts) == ("completed", "talked", 2)
    assert done.transcript == {"summary": "paid"}
    for action in (
        store.complete(cb.id, "twice"),
        store.claim(cb.id, "agent-9"),
        store.reschedule(cb.id, T0),
        store.cancel(cb.id),
        store.expire(cb.id),
    ):
        with pytest.raises(Conflict) as err:
            await action
        assert err.value.status == "completed"

    other, _ = await store.upsert_open_callback("+15550104", T0)
    assert (await store.cancel(other.id)).status == "cancelled"
    with pytest.raises(Conflict):
        await store.cancel(other.id)
    third, _ = await store.upsert_open_callback("+15550105", T0)
    assert (await store.expire(third.id)).status == "expired"

    missing = str(uuid.uuid4())
    for action in (
        store.claim(missing, "a"),
        store.complete(missing, "x"),
        store.reschedule(missing, T0),
        store.cancel(missing),
        store.get_callback(missing),
        store.get_callback("not-a-uuid"),
        store.claim("not-a-uuid", "a"),
    ):
        with pytest.raises(NotFound):
            await action
    assert (await store.get_callback(cb.id)).status == "completed"


async def test_list_filters_and_cursor_pagination(store: Store) -> None:
    made: list[Callback] = []
    for i in range(120):  # three callbacks share each due_at: the cursor breaks ties by id
        cb, _ = await store.upsert_open_callback(f"+1555{i:07d}", T0 + timedelta(minutes=i // 3))
        made.append(cb)
    for cb in made[::10]:
        await store.claim(cb.id, "agent")
    for cb in made[5::10]:
        await store.cancel(cb.id)

    seen: list[Callback] = []
    cursor: str | None = None
    pages = 0
    while True:
        page, cursor = await store.list_callbacks(limit=7, cursor=cursor)
        seen += page
        pages += 1
        if cursor is None:
            break
    assert pages == 18 and len(seen) == 120 and len({cb.id for cb in seen}) == 120
    assert [(cb.due_at, cb.id) for cb in seen] == sorted((cb.due_at, cb.id) for cb in made)

    def ids(items: list[Callback]) -> set[str]:
        return {cb.id for cb in items}

    claimed, cur = await store.list_callbacks(status="claimed", limit=100)
    assert cur is None and ids(claimed) == ids(made[::10])
    open_, _ = await store.list_callbacks(status=["scheduled", "claimed"], limit=200)
    assert len(open_) == 108
    window, _ = await store.list_callbacks(
        due_after=T0 + timedelta(minutes=10), due_before=T0 + timedelta(minutes=20), limit=100
    )
    assert ids(window) == ids(made[30:60])
    one, _ = await store.list_callbacks(number="+15550000042")
    assert ids(one) == {made[42].id}

    # a filtered walk with a cursor: scheduled ones due from minute 5, 4 at a time
    walked: list[Callback] = []
    cursor = None
    while True:
        page, cursor = await store.list_callbacks(
            status="scheduled", due_after=T0 + timedelta(minutes=5), limit=4, cursor=cursor
        )
        walked += page
        if cursor is None:
            break
    expected = [cb for cb in made[15:] if cb not in made[::10] and cb not in made[5::10]]
    assert [cb.id for cb in walked] == [
        cb.id for cb in sorted(expected, key=lambda c: (c.due_at, c.id))
    ]
    with pytest.raises(ValueError):
        await store.list_callbacks(cursor="garbage!")
    with pytest.raises(ValueError):
        await store.list_callbacks(status="bogus")  # type: ignore[arg-type]


async def test_claim_due_callbacks(store: Store) -> None:
    low, _ = await store.upsert_open_callback("+15550201", T0, priority=0, max_attempts=2)
    high, _ = await store.upsert_open_callback("+15550202", T0 + timedelta(minutes=1), priority=5)
    later, _ = await store.upsert_open_callback("+15550203", T0 + timedelta(hours=1))
    agent_held, _ = await store.upsert_open_callback("+15550204", T0)
    await store.claim(agent_held.id, "agent-1")

    now = T0 + timedelta(minutes=2)
    got = await store.claim_due_callbacks(10, now, LEASE)
    assert [cb.id for cb in got] == [high.id, low.id]  # priority first; `later` not due
    assert all(cb.status == "claimed" and cb.lease_until == now + LEASE for cb in got)
    assert all(cb.attempts == 1 and cb.agent is None for cb in got)
    assert await store.claim_due_callbacks(10, now, LEASE) == []  # leased

    await store.complete(high.id, "reached")
    # the lease ran out (the dispatcher died): `low` is taken again; agent claims never lapse
    again = await store.claim_due_callbacks(10, now + LEASE, LEASE)
    assert [(cb.id, cb.attempts) for cb in again] == [(low.id, 2)]
    # out of attempts: not dispatched again; expire it
    assert await store.claim_due_callbacks(10, now + 3 * LEASE, LEASE) == []
    assert (await store.expire(low.id)).status == "expired"
    assert [cb.id for cb in await store.claim_due_callbacks(10, T0 + timedelta(days=1), LEASE)] == [
        later.id
    ]


async def test_attempts_log_agent_claims_and_failed_attempts(store: Store) -> None:
    cb, _ = await store.upsert_open_callback("+15550301", T0, max_attempts=3)
    now = T0 + timedelta(minutes=1)
    assert [c.id for c in await store.claim_due_callbacks(10, now, LEASE)] == [cb.id]
    # the dialer reports no answer: the attempt ends, the callback is due again
    retry = now + timedelta(minutes=30)
    failed = await store.fail_attempt(cb.id, "no_answer", retry, now=now)
    assert (failed.status, failed.due_at, failed.attempts, failed.outcome) == (
        "scheduled",
        retry,
        1,
        "no_answer",
    )
    # an agent takes the re-dispatched attempt: same attempt number, now with an agent
    (again,) = await store.claim_due_callbacks(10, retry, LEASE)
    assert again.attempts == 2
    claimed = await store.claim(cb.id, "agent-7", now=retry)
    assert (claimed.agent, claimed.attempts) == ("agent-7", 2)
    with pytest.raises(Conflict):  # an agent-held one cannot be claimed by another
        await store.claim(cb.id, "agent-8")
    done = await store.complete(cb.id, "resolved", now=retry + timedelta(minutes=5))
    assert (done.status, done.outcome) == ("completed", "resolved")
    log = await store.list_attempts(cb.id)
    assert [(a.attempt, a.taken_by, a.agent, a.outcome) for a in log] == [
        (1, "dispatcher", None, "no_answer"),
        (2, "dispatcher", "agent-7", "resolved"),
    ]
    assert all(a.ended_at is not None for a in log)
    with pytest.raises(NotFound):
        await store.list_attempts(str(uuid.uuid4()))

    # the last attempt failing expires the callback instead of rescheduling it
    one, _ = await store.upsert_open_callback("+15550302", T0, max_attempts=1)
    await store.claim(one.id, "agent-1", now=now)
    out = await store.fail_attempt(one.id, "busy", retry, now=now)
    assert (out.status, out.outcome) == ("expired", "busy")
    assert [a.outcome for a in await store.list_attempts(one.id)] == ["busy"]


async def test_expire_overdue(store: Store) -> None:
    stale, _ = await store.upsert_open_callback("+15550401", T0)
    fresh, _ = await store.upsert_open_callback("+15550402", T0 + timedelta(days=2))
    spent, _ = await store.upsert_open_callback("+15550403", T0 + timedelta(days=2), max_attempts=1)
    held, _ = await store.upsert_open_callback("+15550404", T0)
    await store.claim(held.id, "agent-1", now=T0)
    now = T0 + timedelta(days=2)
    dispatched = await store.claim_due_callbacks(10, now, LEASE)
    assert {cb.id for cb in dispatched} == {stale.id, fresh.id, spent.id}
    overdue_line = T0 + timedelta(days=1)
    assert await store.expire_overdue(overdue_line, now=now) == []  # leases still running
    later = now + LEASE
    got = await store.expire_overdue(overdue_line, now=later)
    # stale is overdue; spent has no attempts left; fresh is re-dispatched later; the
    # agent-held one is its agent's to finish
    assert {cb.id: cb.outcome for cb in got} == {stale.id: "overdue", spent.id: "max_attempts"}
    assert all(cb.status == "expired" for cb in got)
    assert [a.outcome for a in await store.list_attempts(spent.id)] == ["no_report"]
    assert await store.expire_overdue(overdue_line, now=later) == []
    assert (await store.get_callback(held.id)).status == "claimed"


async def test_outbox_add_claim_deliver_fail(store: Store) -> None:
    e1 = await store.add_event("callback.scheduled", {"id": "x", "n": 1}, now=T0)
    e2 = await store.add_event("call.ended", {"call": "c"}, now=T0 + timedelta(seconds=1))
    assert e1.attempts == 0 and e1.delivered_at is None and e1.next_attempt_at == T0
    assert await store.claim_due_events(10, T0 - timedelta(seconds=1)) == []  # not yet

    now = T0 + timedelta(seconds=5)
    got = await store.claim_due_events(10, now, lease=LEASE)
    assert [e.id for e in got] == [e1.id, e2.id]
    assert got[0].payload == {"id": "x", "n": 1} and got[0].attempts == 1
    assert await store.claim_due_events(10, now, lease=LEASE) == []  # leased to us

    delivered = await store.mark_delivered(e1.id, now=now)
    assert delivered.delivered_at == now
    assert (await store.mark_delivered(e1.id, now=now + LEASE)).delivered_at == now  # idempotent
    failed = await store.mark_failed(e2.id, "HTTP 503", retry_at=now + timedelta(minutes=1))
    assert failed.last_error == "HTTP 503" and failed.attempts == 1
    assert await store.claim_due_events(10, now + timedelta(seconds=59)) == []
    retry = await store.claim_due_events(10, now + timedelta(minutes=1))
    assert [(e.id, e.attempts) for e in retry] == [(e2.id, 2)]
    # a lapsed lease (sender died mid-delivery) makes it due again; delivered ones never are
    lapsed = await store.claim_due_events(10, now + timedelta(minutes=1) + LEASE, lease=LEASE)
    assert [(e.id, e.attempts) for e in lapsed] == [(e2.id, 3)]

    with pytest.raises(Conflict):
        await store.mark_failed(e1.id, "late", retry_at=now)
    missing = str(uuid.uuid4())
    for action in (
        store.mark_delivered(missing),
        store.mark_failed(missing, "x", now),
        store.get_event("nope"),
    ):
        with pytest.raises(NotFound):
            await action
    assert (await store.get_event(e2.id)).attempts == 3


async def test_outbox_counts_due_pending_and_parked(store: Store) -> None:
    parked_from = PARKED_UNTIL
    assert await store.outbox_counts(T0, parked_from) == OutboxCounts(0, 0, 0)
    ids = [(await store.add_event("call.ended", {"i": i}, now=T0)).id for i in range(5)]
    now = T0 + timedelta(seconds=1)
    assert await store.outbox_counts(now, parked_from) == OutboxCounts(due=5, pending=0, parked=0)
    await store.claim_due_events(3, now, LEASE)  # 3 in flight (leased), 2 still due
    assert await store.outbox_counts(now, parked_from) == OutboxCounts(due=2, pending=3, parked=0)
    assert len(await store.claim_due_events(10, now, LEASE)) == 2  # all 5 leased
    delivered, retried, parked = ids[0], ids[1], ids[2]
    await store.mark_delivered(delivered, now=now)
    await store.mark_failed(retried, "HTTP 503", retry_at=now + timedelta(minutes=1))
    await store.mark_failed(parked, "HTTP 503", retry_at=parked_from)
    # delivered: gone; parked: its own count, due neither now nor when the leases lapse
    assert await store.outbox_counts(now, parked_from) == OutboxCounts(due=0, pending=3, parked=1)
    later = now + LEASE
    assert await store.outbox_counts(later, parked_from) == OutboxCounts(due=3, pending=0, parked=1)


async def test_delivery_log_lists_events_by_state_and_replays(store: Store) -> None:
    events = [
        await store.add_event(t, {"i": i}, now=T0 + timedelta(seconds=i))
        for i, t in enumerate(["call.ended", "callback.scheduled", "call.ended", "call.ended"])
    ]
    delivered, pending, parked, fresh = (e.id for e in events)
    now = T0 + timedelta(minutes=1)
    assert len(await store.claim_due_events(10, now, LEASE)) == 4
    await store.mark_delivered(delivered, now=now)
    await store.mark_failed(pending, "HTTP 503", retry_at=now + timedelta(minutes=1))
    await store.mark_failed(parked, "HTTP 500: boom", retry_at=PARKED_UNTIL)
    await store.replay_event(fresh, now=now)  # an undelivered event: simply due now
    states = {e.id: e.state for e in (await store.list_events())[0]}
    assert states == {
        delivered: "delivered",
        pending: "pending",
        parked: "parked",
        fresh: "pending",
    }

    everything, _ = await store.list_events()
    assert [e.id for e in everything] == [fresh, parked, pending, delivered]  # newest first
    first, cursor = await store.list_events(limit=3)
    assert [e.id for e in first] == [fresh, parked, pending] and cursor is not None
    rest, end = await store.list_events(limit=3, cursor=cursor)
    assert [e.id for e in rest] == [delivered] and end is None
    assert [e.id for e in (await store.list_events("parked"))[0]] == [parked]
    assert [e.id for e in (await store.list_events("delivered"))[0]] == [delivered]
    assert [e.id for e in (await store.list_events("pending"))[0]] == [fresh, pending]
    assert [e.id for e in (await store.list_events(type="callback.scheduled"))[0]] == [pending]
    with pytest.raises(ValueError, match="not one of"):
        await store.list_events("lost")  # type: ignore[arg-type]

    later = now + timedelta(minutes=5)
    assert await store.replay_parked(now=later) == 1
    assert (await store.get_event(parked)).state == "pending"
    assert parked in [e.id for e in await store.claim_due_events(10, later, LEASE)]
    # a delivered event replayed is sent again, with its id: undelivered, due now
    again = await store.replay_event(delivered, now=later)
    assert again.state == "pending" and again.delivered_at is None and again.id == delivered
    with pytest.raises(NotFound):
        await store.replay_event(str(uuid.uuid4()))


async def test_delivery_log_keeps_each_post(store: Store) -> None:
    event = await store.add_event("call.ended", {}, now=T0)
    posts = [
        Delivery(event.id, "https://crm.example/hook", T0 + timedelta(seconds=i), s, e, 40 + i)
        for i, (s, e) in enumerate([(None, "ClientConnectorError"), (503, "HTTP 503"), (204, None)])
    ]
    await store.record_deliveries(posts)
    await store.record_deliveries([])
    assert await store.list_deliveries(event.id) == posts
    assert await store.list_deliveries(event.id, limit=2) == posts[1:]  # the last ones
    assert await store.list_deliveries(str(uuid.uuid4())) == []
    with pytest.raises(NotFound):
        await store.list_deliveries("nope")


async def test_callback_counts_open_by_status_and_overdue(store: Store) -> None:
    assert await store.callback_counts(T0) == CallbackCounts(0, 0, 0)
    late, _ = await store.upsert_open_callback("+15550501", T0 - timedelta(hours=1))
    await store.upsert_open_callback("+15550502", T0 - timedelta(minutes=1))  # within grace
    await store.upsert_open_callback("+15550503", T0 + timedelta(hours=1))  # not due
    held, _ = await store.upsert_open_callback("+15550504", T0 - timedelta(hours=2))
    await store.claim(held.id, "agent-1", now=T0)  # claimed: not overdue, however old
    done, _ = await store.upsert_open_callback("+15550505", T0 - timedelta(hours=3))
    await store.cancel(done.id, now=T0)  # closed ones are not counted at all
    grace = T0 - timedelta(minutes=5)
    assert await store.callback_counts(grace) == CallbackCounts(scheduled=3, claimed=1, overdue=1)
    (dispatched,) = await store.claim_due_callbacks(1, T0, LEASE)  # the most overdue
    assert dispatched.id == late.id
    assert await store.callback_counts(grace) == CallbackCounts(scheduled=2, claimed=2, overdue=0)


async def test_transaction_commits_or_rolls_back_together(store: Store) -> None:
    cb, _ = await store.upsert_open_callback("+15550301", T0)
    async with store.transaction() as tx:
        claimed = await tx.claim(cb.id, "agent-2")
        await tx.add_event("callback.claimed", {"id": claimed.id, "agent": "agent-2"}, now=T0)
    assert (await store.get_callback(cb.id)).status == "claimed"
    (event,) = await store.claim_due_events(10, T0)
    await store.mark_delivered(event.id)

    with pytest.raises(RuntimeError, match="boom"):
        async with store.transaction() as tx:
            await tx.complete(cb.id, "done")
            await tx.add_event("callback.completed", {"id": cb.id}, now=T0)
            raise RuntimeError("boom")
    assert (await store.get_callback(cb.id)).status == "claimed"  # neither happened
    assert await store.claim_due_events(10, T0 + timedelta(days=1)) == []

    with pytest.raises(Conflict):  # a Conflict inside aborts the whole unit
        async with store.transaction() as tx:
            await tx.add_event("callback.claimed", {"id": cb.id}, now=T0)
            await tx.claim(cb.id, "agent-3")
    assert await store.claim_due_events(10, T0 + timedelta(days=1)) == []


async def test_two_stores_claim_each_due_callback_exactly_once(url: str) -> None:
    """Two Store instances (two server processes) with three dispatchers each, taking due
    callbacks 5 at a time: all 200 are dispatched, none twice."""
    a, b = await open_store(url), await open_store(url)
    try:
        for i in range(200):
            await a.upsert_open_callback(f"+1666{i:07d}", T0 + timedelta(seconds=i), priority=i % 3)
        for i in range(100):
            await b.add_event("callback.due", {"i": i}, now=T0)
        now = T0 + timedelta(hours=1)
        by_store: dict[str, list[str]] = {"a": [], "b": []}
        events: list[str] = []

        async def dispatcher(name: str, s: Store) -> None:
            while batch := await s.claim_due_callbacks(5, now, LEASE):
                by_store[name] += [cb.id for cb in batch]
                await asyncio.sleep(0)

        async def sender(s: Store) -> None:
            while batch := await s.claim_due_events(3, now, LEASE):
                events.extend(e.id for e in batch)
                await asyncio.sleep(0)

        await asyncio.gather(
            *(dispatcher(n, s) for n, s in (("a", a), ("b", b)) for _ in range(3)),
            *(sender(s) for s in (a, b, a, b)),
        )
        claimed = by_store["a"] + by_store["b"]
        assert len(claimed) == 200 and max(Counter(claimed).values()) == 1
        if url.startswith("postgresql"):
            # Both really took part. (SQLite has one writer at a time and its lock is not
            # fair: one connection may win every round, which is still correct.)
            assert by_store["a"] and by_store["b"]
        assert len(events) == 100 and len(set(events)) == 100
        open_, _ = await a.list_callbacks(status="claimed", limit=500)
        assert len(open_) == 200 and all(cb.attempts == 1 for cb in open_)
    finally:
        await a.close()
        await b.close()
