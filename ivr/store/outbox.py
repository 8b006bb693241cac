"""The webhook outbox: the `OutboxStore` operations, for both databases."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta
from typing import Any

from ivr.store.base import Conflict, Event, NotFound, OutboxCounts
from ivr.store.queries import Queries, claim_sql, json_out, uuid_id
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

    async def mark_delivered(self, id: str, *, now: datetime | None = None) -> Event:
        id = uuid_id("event", id)
        async with self._unit() as c:
            rows = await c.fetch(
                "UPDATE outbox SET delivered_at = COALESCE(delivered_at, $2), last_error = NULL"
                " WHERE id = $1 RETURNING *",
                id,
                now_or(now),
            )
        if not rows:
            raise NotFound("event", id)
        return _event(rows[0])

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
