"""The webhook outbox: the `OutboxStore` operations, for both databases."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from ivr.store.base import (
    EVENT_STATES,
    PARKED_UNTIL,
    Conflict,
    Delivery,
    Event,
    EventState,
    NotFound,
    OutboxCounts,
)
from ivr.store.queries import (
    Page,
    Queries,
    claim_sql,
    decode_cursor,
    encode_cursor,
    json_out,
    uuid_id,
)
from ivr.store.rows import Row, now_or, ts, ts_opt, utc

DEFAULT_EVENT_LEASE = timedelta(seconds=30)


def _event(r: Row) -> Event:
    return Event(
        id=str(r["id"]),
        type=r["type"],
        payload=json_out(r["payload"]),
        created_at=ts(r["created_at"]),
        attempts=int(r["attempts"]),
        next_attempt_at=ts(r["next_attempt_at"]),
        delivered_at=ts_opt(r["delivered_at"]),
        last_error=r["last_error"],
    )


def _delivery(r: Row) -> Delivery:
    return Delivery(
        event_id=str(r["event_id"]),
        url=r["url"],
        at=ts(r["at"]),
        status=None if r["status"] is None else int(r["status"]),
        error=r["error"],
        duration_ms=int(r["duration_ms"]),
    )


_DUE_EVENTS = """
    SELECT id FROM outbox
    WHERE delivered_at IS NULL AND next_attempt_at <= $1
    ORDER BY next_attempt_at, id
    LIMIT $2"""
_CLAIM_EVENTS_SET = "next_attempt_at = $3, attempts = outbox.attempts + 1"
_CLAIM = claim_sql("outbox", _DUE_EVENTS, _CLAIM_EVENTS_SET)
# Reads only the undelivered events (through the partial index outbox_due), not the history.
_COUNTS = """
    SELECT COUNT(CASE WHEN next_attempt_at >= $2 THEN 1 END) AS parked,
           COUNT(CASE WHEN next_attempt_at < $2 AND next_attempt_at <= $1 THEN 1 END) AS due,
           COUNT(CASE WHEN next_attempt_at < $2 AND next_attempt_at > $1 THEN 1 END) AS pending
    FROM outbox WHERE delivered_at IS NULL"""


class OutboxQueries(Queries):
    """Mixed into `SqlStore`."""

    async def add_event(self, type: str, payload: Any, *, now: datetime | None = None) -> Event:
        at = now_or(now)
        async with self._unit() as c:
            rows = await c.fetch(
                "INSERT INTO outbox (id, type, payload, created_at, attempts, next_attempt_at)"
                " VALUES ($1, $2, $3, $4, 0, $4) RETURNING *",
                str(uuid.uuid4()),
                type,
                json.dumps(payload, separators=(",", ":")),
                at,
            )
        return _event(rows[0])

    async def claim_due_events(
        self, limit: int, now: datetime, lease: timedelta = DEFAULT_EVENT_LEASE
    ) -> list[Event]:
        now = utc(now)
        async with self._unit() as c:
            rows = await c.fetch(_CLAIM[self.dialect], now, limit, now + lease)
        return sorted((_event(r) for r in rows), key=lambda e: (e.created_at, e.id))

    async def get_event(self, id: str) -> Event:
        id = uuid_id("event", id)
        async with self._unit(write=False) as c:
            rows = await c.fetch("SELECT * FROM outbox WHERE id = $1", id)
        if not rows:
            raise NotFound("event", id)
        return _event(rows[0])

    async def _set(self, id: str, assignments: str, *args: Any) -> Event:
        """`UPDATE outbox SET assignments` ($2… are `args`) of one event; NotFound if none."""
        id = uuid_id("event", id)
        async with self._unit() as c:
            rows = await c.fetch(
                f"UPDATE outbox SET {assignments} WHERE id = $1 RETURNING *", id, *args
            )
        if not rows:
            raise NotFound("event", id)
        return _event(rows[0])

    async def mark_delivered(self, id: str, *, now: datetime | None = None) -> Event:
        assignments = "delivered_at = COALESCE(delivered_at, $2), last_error = NULL"
        return await self._set(id, assignments, now_or(now))

    async def mark_failed(self, id: str, error: str, retry_at: datetime) -> Event:
        id = uuid_id("event", id)
        async with self._unit() as c:
            rows = await c.fetch(
                "UPDATE outbox SET last_error = $2, next_attempt_at = $3"
                " WHERE id = $1 AND delivered_at IS NULL RETURNING *",
                id,
                error,
                utc(retry_at),
            )
            if not rows:
                if not await c.fetch("SELECT id FROM outbox WHERE id = $1", id):
                    raise NotFound("event", id)
                raise Conflict("event", id, "fail", "delivered")
        return _event(rows[0])

    async def outbox_counts(self, now: datetime, parked_from: datetime) -> OutboxCounts:
        rows = await self._select(_COUNTS, utc(now), utc(parked_from))
        r = rows[0]
        return OutboxCounts(due=int(r["due"]), pending=int(r["pending"]), parked=int(r["parked"]))

    async def list_events(
        self,
        state: EventState | None = None,
        type: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> tuple[list[Event], str | None]:
        q = Page("SELECT * FROM outbox", limit)
        p, where = q.param, q.where
        if state == "delivered":
            where.append("delivered_at IS NOT NULL")
        elif state == "parked":
            where.append(f"delivered_at IS NULL AND next_attempt_at >= {p(PARKED_UNTIL)}")
        elif state == "pending":
            where.append(f"delivered_at IS NULL AND next_attempt_at < {p(PARKED_UNTIL)}")
        elif state is not None:
            raise ValueError(f"event state {state!r} is not one of {EVENT_STATES}")
        if type is not None:
            where.append(f"type = {p(type)}")
        if cursor is not None:
            before_at, before_id = decode_cursor(cursor)
            where.append(f"(created_at, id) < ({p(before_at)}, {p(before_id)})")
        rows, more = await q.fetch(self, "created_at DESC, id DESC")
        items = [_event(r) for r in rows]
        return items, encode_cursor(items[-1].created_at, items[-1].id) if more else None

    async def replay_event(self, id: str, *, now: datetime | None = None) -> Event:
        return await self._set(id, "next_attempt_at = $2, delivered_at = NULL", now_or(now))

    async def replay_parked(self, *, now: datetime | None = None) -> int:
        async with self._unit() as c:
            rows = await c.fetch(
                "UPDATE outbox SET next_attempt_at = $1"
                " WHERE delivered_at IS NULL AND next_attempt_at >= $2 RETURNING id",
                now_or(now),
                PARKED_UNTIL,
            )
        return len(rows)

    async def record_deliveries(self, deliveries: Sequence[Delivery]) -> None:
        if not deliveries:
            return
        async with self._unit() as c:
            for d in deliveries:
                await c.execute(
                    "INSERT INTO webhook_deliveries (event_id, url, at, status, error,"
                    " duration_ms) VALUES ($1, $2, $3, $4, $5, $6)",
                    uuid_id("event", d.event_id),
                    d.url,
                    utc(d.at),
                    d.status,
                    d.error,
                    d.duration_ms,
                )

    async def list_deliveries(self, event_id: str, limit: int = 100) -> list[Delivery]:
        id = uuid_id("event", event_id)
        rows = await self._select(
            "SELECT * FROM (SELECT * FROM webhook_deliveries WHERE event_id = $1"
            " ORDER BY at DESC LIMIT $2) AS last ORDER BY at",
            id,
            limit,
        )
        return [_delivery(r) for r in rows]
