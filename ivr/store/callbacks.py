"""Agent callbacks and their attempts: the `CallbackStore` operations, for both databases.

A callback changes state in one UPDATE whose WHERE says which states allow the change
(`_transition`); its attempts (`callback_attempts`) open and close in the same transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from ivr.store.base import (
    CALLBACK_STATUSES,
    OPEN_STATUSES,
    Attempt,
    Callback,
    CallbackCounts,
    CallbackStatus,
    Conflict,
    NotFound,
)
from ivr.store.queries import (
    Page,
    Queries,
    claim_sql,
    decode_cursor,
    encode_cursor,
    json_in,
    json_out,
    uuid_id,
)
from ivr.store.rows import Conn, Row, now_or, ts, ts_opt, utc


def _callback(r: Row) -> Callback:
    return Callback(
        id=str(r["id"]),
        number=r["number"],
        due_at=ts(r["due_at"]),
        status=r["status"],
        reason=r["reason"],
        priority=int(r["priority"]),
        attempts=int(r["attempts"]),
        max_attempts=int(r["max_attempts"]),
        agent=r["agent"],
        outcome=r["outcome"],
        transcript=json_out(r.get("transcript")),
        lease_until=ts_opt(r["lease_until"]),
        created_at=ts(r["created_at"]),
        updated_at=ts(r["updated_at"]),
        complaint=json_out(r.get("complaint")),
    )


def _attempt(r: Row) -> Attempt:
    return Attempt(
        callback_id=str(r["callback_id"]),
        attempt=int(r["attempt"]),
        started_at=ts(r["started_at"]),
        taken_by=r["taken_by"],
        agent=r["agent"],
        ended_at=ts_opt(r["ended_at"]),
        outcome=r["outcome"],
    )


async def _end_attempt(c: Conn, callback_id: str, outcome: str, at: datetime) -> None:
    await c.execute(
        "UPDATE callback_attempts SET ended_at = $2, outcome = $3"
        " WHERE callback_id = $1 AND ended_at IS NULL",
        callback_id,
        at,
        outcome,
    )


async def _start_attempt(c: Conn, cb: Callback, taken_by: str, at: datetime) -> None:
    await c.execute(
        "INSERT INTO callback_attempts (callback_id, attempt, started_at, taken_by, agent)"
        " VALUES ($1, $2, $3, $4, $5)",
        cb.id,
        cb.attempts,
        at,
        taken_by,
        cb.agent,
    )


AfterChange = Callable[[Conn, Callback], Awaitable[None]]


def _ending(outcome: str, at: datetime) -> AfterChange:
    """An `after` for `_transition`: end the open attempt with `outcome`."""

    async def after(c: Conn, cb: Callback) -> None:
        await _end_attempt(c, cb.id, outcome, at)

    return after


_OPEN = "(" + ", ".join(f"'{s}'" for s in OPEN_STATUSES) + ")"

_DUE_CALLBACKS = """
    SELECT id FROM callbacks
    WHERE attempts < max_attempts
      AND ((status = 'scheduled' AND due_at <= $1)
           OR (status = 'claimed' AND lease_until <= $1))
    ORDER BY priority DESC, due_at, id
    LIMIT $2"""
_CLAIM_CALLBACKS_SET = (
    "status = 'claimed', agent = NULL, attempts = callbacks.attempts + 1,"
    " lease_until = $3, updated_at = $1"
)
_LIST_COLUMNS = (
    "id, number, due_at, status, reason, priority, attempts, max_attempts, agent, outcome,"
    " lease_until, created_at, updated_at, complaint"
)
_OVERDUE_CALLBACKS = """
    SELECT id FROM callbacks
    WHERE (status = 'scheduled' AND due_at < $3)
       OR (status = 'claimed' AND agent IS NULL AND lease_until <= $1
           AND (attempts >= max_attempts OR due_at < $3))
    ORDER BY due_at, id
    LIMIT $2"""
_EXPIRE_SET = (
    "status = 'expired', lease_until = NULL, updated_at = $1,"
    " outcome = CASE WHEN callbacks.attempts >= callbacks.max_attempts"
    " THEN 'max_attempts' ELSE 'overdue' END"
)
_COUNTS = f"""
    SELECT COUNT(CASE WHEN status = 'scheduled' THEN 1 END) AS scheduled,
           COUNT(CASE WHEN status = 'claimed' THEN 1 END) AS claimed,
           COUNT(CASE WHEN status = 'scheduled' AND due_at < $1 THEN 1 END) AS overdue
    FROM callbacks WHERE status IN {_OPEN}"""  # the index callbacks_status_due answers it
_CLAIM = claim_sql("callbacks", _DUE_CALLBACKS, _CLAIM_CALLBACKS_SET)
_EXPIRE_OVERDUE = claim_sql("callbacks", _OVERDUE_CALLBACKS, _EXPIRE_SET)


class CallbackQueries(Queries):
    """Mixed into `SqlStore`."""

    async def upsert_open_callback(
        self,
        number: str,
        due_at: datetime,
        *,
        reason: str | None = None,
        priority: int = 0,
        max_attempts: int = 3,
        transcript: Any = None,
        now: datetime | None = None,
    ) -> tuple[Callback, bool]:
        new_id = str(uuid.uuid4())
        async with self._unit() as c:
            rows = await c.fetch(
                "INSERT INTO callbacks (id, number, due_at, status, reason, priority, attempts,"
                " max_attempts, transcript, created_at, updated_at)"
                " VALUES ($1, $2, $3, 'scheduled', $4, $5, 0, $6, $7, $8, $8)"
                f" ON CONFLICT (number) WHERE status IN {_OPEN} DO UPDATE SET"
                " due_at = excluded.due_at,"
                " reason = excluded.reason,"
                " priority = CASE WHEN excluded.priority > callbacks.priority"
                " THEN excluded.priority ELSE callbacks.priority END,"
                " transcript = COALESCE(excluded.transcript, callbacks.transcript),"
                " updated_at = excluded.updated_at"
                " RETURNING *",
                new_id,
                number,
                utc(due_at),
                reason,
                priority,
                max_attempts,
                json_in(transcript),
                now_or(now),
            )
        cb = _callback(rows[0])
        return cb, cb.id == new_id

    async def get_callback(self, id: str) -> Callback:
        id = uuid_id("callback", id)
        async with self._unit(write=False) as c:
            rows = await c.fetch("SELECT * FROM callbacks WHERE id = $1", id)
        if not rows:
            raise NotFound("callback", id)
        return _callback(rows[0])

    async def _transition(
        self,
        id: str,
        action: str,
        allowed: str,
        assignments: str,
        *args: Any,
        after: AfterChange | None = None,
    ) -> Callback:
        """UPDATE the callback if `allowed` (an SQL condition) holds, then run `after` in the
        same transaction; NotFound / Conflict otherwise."""
        id = uuid_id("callback", id)
        async with self._unit() as c:
            rows = await c.fetch(
                f"UPDATE callbacks SET {assignments} WHERE id = $1 AND ({allowed}) RETURNING *",
                id,
                *args,
            )
            if not rows:
                found = await c.fetch("SELECT status FROM callbacks WHERE id = $1", id)
                if not found:
                    raise NotFound("callback", id)
                raise Conflict("callback", id, action, found[0]["status"])
            cb = _callback(rows[0])
            if after is not None:
                await after(c, cb)
        return cb

    async def claim(self, id: str, agent: str, *, now: datetime | None = None) -> Callback:
        at = now_or(now)

        async def after(c: Conn, cb: Callback) -> None:
            # A dispatched callback's open attempt becomes the agent's; else a new attempt.
            rows = await c.fetch(
                "UPDATE callback_attempts SET agent = $2 WHERE callback_id = $1"
                " AND ended_at IS NULL RETURNING attempt",
                cb.id,
                agent,
            )
            if not rows:
                await _start_attempt(c, cb, "agent", at)

        return await self._transition(
            id,
            "claim",
            "status = 'scheduled' OR (status = 'claimed' AND agent IS NULL)",
            "attempts = CASE WHEN status = 'scheduled' THEN attempts + 1 ELSE attempts END,"
            " status = 'claimed', agent = $2, lease_until = NULL, updated_at = $3",
            agent,
            at,
            after=after,
        )

    async def complete(
        self, id: str, outcome: str, *, transcript: Any = None, now: datetime | None = None
    ) -> Callback:
        at = now_or(now)
        return await self._transition(
            id,
            "complete",
            "status = 'claimed'",
            "status = 'completed', outcome = $2, transcript = COALESCE($3, transcript),"
            " lease_until = NULL, updated_at = $4",
            outcome,
            json_in(transcript),
            at,
            after=_ending(outcome, at),
        )

    async def fail_attempt(
        self, id: str, outcome: str, retry_at: datetime, *, now: datetime | None = None
    ) -> Callback:
        at = now_or(now)
        return await self._transition(
            id,
            "fail",
            "status = 'claimed'",
            "status = CASE WHEN attempts < max_attempts THEN 'scheduled' ELSE 'expired' END,"
            " due_at = CASE WHEN attempts < max_attempts THEN $3 ELSE due_at END,"
            " outcome = $2, agent = NULL, lease_until = NULL, updated_at = $4",
            outcome,
            utc(retry_at),
            at,
            after=_ending(outcome, at),
        )

    async def list_attempts(self, id: str) -> list[Attempt]:
        id = uuid_id("callback", id)
        async with self._unit(write=False) as c:
            if not await c.fetch("SELECT id FROM callbacks WHERE id = $1", id):
                raise NotFound("callback", id)
            rows = await c.fetch(
                "SELECT * FROM callback_attempts WHERE callback_id = $1 ORDER BY attempt", id
            )
        return [_attempt(r) for r in rows]

    async def reschedule(
        self, id: str, due_at: datetime, *, now: datetime | None = None
    ) -> Callback:
        at = now_or(now)
        return await self._transition(
            id,
            "reschedule",
            f"status IN {_OPEN}",
            "status = 'scheduled', due_at = $2, agent = NULL, lease_until = NULL, updated_at = $3",
            utc(due_at),
            at,
            after=_ending("rescheduled", at),
        )

    async def cancel(self, id: str, *, now: datetime | None = None) -> Callback:
        at = now_or(now)
        return await self._transition(
            id,
            "cancel",
            f"status IN {_OPEN}",
            "status = 'cancelled', lease_until = NULL, updated_at = $2",
            at,
            after=_ending("cancelled", at),
        )

    async def expire(self, id: str, *, now: datetime | None = None) -> Callback:
        at = now_or(now)
        return await self._transition(
            id,
            "expire",
            f"status IN {_OPEN}",
            "status = 'expired', lease_until = NULL, updated_at = $2",
            at,
            after=_ending("expired", at),
        )

    async def expire_overdue(
        self, due_before: datetime, now: datetime, limit: int = 100
    ) -> list[Callback]:
        now = utc(now)
        async with self._unit() as c:
            rows = await c.fetch(_EXPIRE_OVERDUE[self.dialect], now, limit, utc(due_before))
            items = [_callback(r) for r in rows]
            for cb in items:
                await _end_attempt(c, cb.id, "no_report", now)
        return items

    async def list_callbacks(
        self,
        status: CallbackStatus | Sequence[CallbackStatus] | None = None,
        due_before: datetime | None = None,
        due_after: datetime | None = None,
        number: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> tuple[list[Callback], str | None]:
        # Lists leave out the transcripts (every turn of the call: the bulk of a row, and
        # decoding them was most of a list request's cost); get_callback has them.
        q = Page(f"SELECT {_LIST_COLUMNS} FROM callbacks", limit)
        p, where = q.param, q.where
        if status is not None:
            statuses = [status] if isinstance(status, str) else list(status)
            for s in statuses:
                if s not in CALLBACK_STATUSES:
                    raise ValueError(f"callback status {s!r} is not one of {CALLBACK_STATUSES}")
            where.append(f"status IN ({', '.join(p(s) for s in statuses)})" if statuses else "0=1")
        if due_before is not None:
            where.append(f"due_at < {p(utc(due_before))}")
        if due_after is not None:
            where.append(f"due_at >= {p(utc(due_after))}")
        if number is not None:
            where.append(f"number = {p(number)}")
        if cursor is not None:
            after_due, after_id = decode_cursor(cursor)
            where.append(f"(due_at, id) > ({p(after_due)}, {p(after_id)})")
        rows, more = await q.fetch(self, "due_at, id")
        items = [_callback(r) for r in rows]
        return items, encode_cursor(items[-1].due_at, items[-1].id) if more else None

    async def claim_due_callbacks(
        self, limit: int, now: datetime, lease: timedelta
    ) -> list[Callback]:
        now = utc(now)
        async with self._unit() as c:
            rows = await c.fetch(_CLAIM[self.dialect], now, limit, now + lease)
            items = [_callback(r) for r in rows]
            for cb in items:  # a lapsed dispatch nobody reported on ends here
                await _end_attempt(c, cb.id, "no_report", now)
                await _start_attempt(c, cb, "dispatcher", now)
        return sorted(items, key=lambda cb: (-cb.priority, cb.due_at, cb.id))

    async def callback_counts(self, overdue_before: datetime) -> CallbackCounts:
        rows = await self._select(_COUNTS, utc(overdue_before))
        r = rows[0]
        return CallbackCounts(
            scheduled=int(r["scheduled"]), claimed=int(r["claimed"]), overdue=int(r["overdue"])
        )
