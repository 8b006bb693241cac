"""The Store operations, written once for both databases.

A backend supplies connections (`Conn`: `$1`-style parameters, rows as dicts) and units of
work (`_unit()`: one transaction), each run under `_guard()`: its driver's errors (the
backend's `driver_errors`) leave the store as `StoreUnavailable` and are counted in the
store's health (`health.py`), so callers catch only `StoreError`. Dialect differences are
kept to the column types in `migrations.py` and the two claim statements below (`FOR UPDATE
SKIP LOCKED` on PostgreSQL; SQLite has one writer at a time, taken with `BEGIN IMMEDIATE`).
The analytics queries are in `analytics.py`, row conversions in `rows.py`.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from ivr.store.analytics import AnalyticsQueries
from ivr.store.base import (
    CALLBACK_STATUSES,
    OPEN_STATUSES,
    TURN_KINDS,
    Attempt,
    Call,
    Callback,
    CallbackStatus,
    Conflict,
    Event,
    Node,
    NotFound,
    Store,
    StoreUnavailable,
    TurnKind,
    TurnRecord,
)
from ivr.store.health import StoreHealth
from ivr.store.migrations import MIGRATIONS, SCHEMA_MIGRATIONS, TYPES, Dialect
from ivr.store.rows import Conn, Row, call_of, now_or, to_text, ts, ts_opt, turn_of, utc

__all__ = ["Conn", "Row", "SqlStore", "TxStore", "now_or", "to_text", "utc"]

DEFAULT_EVENT_LEASE = timedelta(seconds=30)


def _json_in(value: Any) -> str | None:
    return None if value is None else json.dumps(value, separators=(",", ":"))


def _json_out(value: Any) -> Any:
    return None if value is None else json.loads(value)


def _uuid(kind: str, id: str) -> str:
    """Callback and event ids are UUIDs; anything else cannot exist."""
    try:
        return str(uuid.UUID(str(id)))
    except ValueError:
        raise NotFound(kind, id) from None


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
        transcript=_json_out(r.get("transcript")),
        lease_until=ts_opt(r["lease_until"]),
        created_at=ts(r["created_at"]),
        updated_at=ts(r["updated_at"]),
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


def _event(r: Row) -> Event:
    return Event(
        id=str(r["id"]),
        type=r["type"],
        payload=_json_out(r["payload"]),
        created_at=ts(r["created_at"]),
        attempts=int(r["attempts"]),
        next_attempt_at=ts(r["next_attempt_at"]),
        delivered_at=ts_opt(r["delivered_at"]),
        last_error=r["last_error"],
    )


def _node(r: Row) -> Node:
    return Node(id=r["id"], started_at=ts(r["started_at"]), seen_at=ts(r["seen_at"]))


def encode_cursor(due_at: datetime, id: str) -> str:
    raw = json.dumps([to_text(due_at), id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, uuid_ids: bool = True) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        due, id = json.loads(raw)
        return ts(due), str(uuid.UUID(id)) if uuid_ids else str(id)
    except (ValueError, TypeError, binascii.Error) as e:
        raise ValueError(f"bad cursor {cursor!r}") from e


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
    " lease_until, created_at, updated_at"
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
_DUE_EVENTS = """
    SELECT id FROM outbox
    WHERE delivered_at IS NULL AND next_attempt_at <= $1
    ORDER BY next_attempt_at, id
    LIMIT $2"""
_CLAIM_EVENTS_SET = "next_attempt_at = $3, attempts = outbox.attempts + 1"

# The explicit dialect difference: PostgreSQL locks the chosen rows and skips rows another
# transaction holds; SQLite runs this inside BEGIN IMMEDIATE, so no one else is writing.
CLAIM_SQL: dict[Dialect, dict[str, str]] = {
    "postgresql": {
        "callbacks": f"WITH due AS ({_DUE_CALLBACKS} FOR UPDATE SKIP LOCKED)"
        f" UPDATE callbacks SET {_CLAIM_CALLBACKS_SET}"
        " FROM due WHERE callbacks.id = due.id RETURNING callbacks.*",
        "events": f"WITH due AS ({_DUE_EVENTS} FOR UPDATE SKIP LOCKED)"
        f" UPDATE outbox SET {_CLAIM_EVENTS_SET}"
        " FROM due WHERE outbox.id = due.id RETURNING outbox.*",
        "overdue": f"WITH due AS ({_OVERDUE_CALLBACKS} FOR UPDATE SKIP LOCKED)"
        f" UPDATE callbacks SET {_EXPIRE_SET}"
        " FROM due WHERE callbacks.id = due.id RETURNING callbacks.*",
    },
    "sqlite": {
        "callbacks": f"UPDATE callbacks SET {_CLAIM_CALLBACKS_SET}"
        f" WHERE id IN ({_DUE_CALLBACKS}) RETURNING *",
        "events": f"UPDATE outbox SET {_CLAIM_EVENTS_SET} WHERE id IN ({_DUE_EVENTS}) RETURNING *",
        "overdue": f"UPDATE callbacks SET {_EXPIRE_SET}"
        f" WHERE id IN ({_OVERDUE_CALLBACKS}) RETURNING *",
    },
}


class _Page:
    """One page of a list: a SELECT whose conditions add numbered parameters ($1, $2...) as
    they are written, fetched one row past `limit` to tell whether there is a next page."""

    def __init__(self, select: str, limit: int) -> None:
        if not 1 <= limit <= 1000:
            raise ValueError(f"limit {limit} is not in 1..1000")
        self.select, self.limit = select, limit
        self.args: list[Any] = []
        self.where: list[str] = []

    def param(self, value: Any) -> str:
        self.args.append(value)
        return f"${len(self.args)}"

    async def fetch(self, store: SqlStore, order: str) -> tuple[list[Row], bool]:
        """The page's rows, and whether more follow."""
        sql = self.select
        if self.where:
            sql += " WHERE " + " AND ".join(self.where)
        sql += f" ORDER BY {order} LIMIT {self.param(self.limit + 1)}"
        rows = await store._select(sql, *self.args)
        return rows[: self.limit], len(rows) > self.limit


class SqlStore(AnalyticsQueries, ABC):
    """Implements `Store` on top of `_unit()`; subclasses provide connections."""

    backend: str = ""
    dialect: Dialect = "sqlite"
    driver_errors: tuple[type[BaseException], ...] = (OSError,)
    """What the backend's driver raises when the database fails an operation."""
    record_errors: tuple[type[BaseException], ...] = ()
    """Driver errors about one record (a constraint), not the database: not a failure."""

    def __init__(self, health: StoreHealth | None = None) -> None:
        self.health = health or StoreHealth()

    @contextmanager
    def _guard(self) -> Iterator[None]:
        """Around every unit of work: a driver error → StoreUnavailable, noted in health."""
        try:
            yield
        except self.driver_errors as exc:
            if not isinstance(exc, self.record_errors):
                self.health.failed(exc)
            raise StoreUnavailable(f"{self.backend} database: {exc}", type(exc).__name__) from exc
        self.health.succeeded()

    @abstractmethod
    def _unit(self, write: bool = True) -> AbstractAsyncContextManager[Conn]:
        """One transaction on one connection (reads may skip the write lock), guarded."""

    async def _select(self, sql: str, *args: Any) -> list[Row]:
        """One SELECT on its own. A single statement reads one consistent snapshot anyway,
        so backends may run it without BEGIN/COMMIT (two round trips fewer; most of what a
        list request costs the event loop besides HTTP)."""
        async with self._unit(write=False) as c:
            return await c.fetch(sql, *args)

    def transaction(self) -> AbstractAsyncContextManager[Store]:
        return self._transaction()

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[Store]:
        async with self._unit() as conn:
            yield TxStore(conn, self)

    @abstractmethod
    async def close(self) -> None: ...

    async def __aenter__(self) -> SqlStore:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # schema

    async def _migrate(self, conn: Conn, lock_sql: str | None = None) -> None:
        if lock_sql:
            await conn.execute(lock_sql)
        await conn.execute(SCHEMA_MIGRATIONS.format(**TYPES[self.dialect]))
        rows = await conn.fetch("SELECT version FROM schema_migrations")
        done = {int(r["version"]) for r in rows}
        for m in MIGRATIONS:
            if m.version in done:
                continue
            for statement in m.sql(self.dialect):
                await conn.execute(statement)
            await conn.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
                m.version,
                m.name,
                datetime.now(UTC),
            )

    async def schema_version(self) -> int:
        async with self._unit(write=False) as c:
            rows = await c.fetch("SELECT MAX(version) AS v FROM schema_migrations")
        return int(rows[0]["v"] or 0)

    async def applied_migrations(self) -> list[tuple[int, str, datetime]]:
        async with self._unit(write=False) as c:
            rows = await c.fetch(
                "SELECT version, name, applied_at FROM schema_migrations ORDER BY version"
            )
        return [(int(r["version"]), r["name"], ts(r["applied_at"])) for r in rows]

    # calls and turns

    async def start_call(
        self,
        id: str,
        *,
        transport: str,
        caller: str | None = None,
        flow: str | None = None,
        flow_version: str | None = None,
        started_at: datetime | None = None,
        provider_call_id: str | None = None,
        node_id: str | None = None,
    ) -> Call:
        async with self._unit() as c:
            rows = await c.fetch(
                "INSERT INTO calls (id, caller, transport, flow, flow_version, started_at,"
                " provider_call_id, node_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
                " ON CONFLICT (id) DO NOTHING RETURNING *",
                id,
                caller,
                transport,
                flow,
                flow_version,
                now_or(started_at),
                provider_call_id,
                node_id,
            )
        if not rows:
            raise Conflict("call", id, "start", "already started")
        return call_of(rows[0])

    async def end_call(self, id: str, end_reason: str, *, ended_at: datetime | None = None) -> Call:
        async with self._unit() as c:
            rows = await c.fetch(
                "UPDATE calls SET ended_at = $2, end_reason = $3"
                " WHERE id = $1 AND ended_at IS NULL RETURNING *",
                id,
                now_or(ended_at),
                end_reason,
            )
            if not rows:
                if not await c.fetch("SELECT id FROM calls WHERE id = $1", id):
                    raise NotFound("call", id)
                raise Conflict("call", id, "end", "ended")
        return call_of(rows[0])

    async def get_call(self, id: str) -> Call:
        async with self._unit(write=False) as c:
            rows = await c.fetch("SELECT * FROM calls WHERE id = $1", id)
        if not rows:
            raise NotFound("call", id)
        return call_of(rows[0])

    async def open_calls(self, node_id: str, limit: int = 1000) -> list[Call]:
        rows = await self._select(
            "SELECT * FROM calls WHERE node_id = $1 AND ended_at IS NULL"
            " ORDER BY started_at, id LIMIT $2",
            node_id,
            limit,
        )
        return [call_of(r) for r in rows]

    async def add_turn(
        self,
        call_id: str,
        kind: TurnKind,
        *,
        node: str | None = None,
        text: str | None = None,
        intent: str | None = None,
        confidence: float | None = None,
        at: datetime | None = None,
        audio: str | None = None,
    ) -> TurnRecord:
        if kind not in TURN_KINDS:
            raise ValueError(f"turn kind {kind!r} is not one of {TURN_KINDS}")
        async with self._unit() as c:
            rows = await c.fetch(
                "SELECT (SELECT COALESCE(MAX(seq), 0) + 1 FROM turns WHERE call_id = $1) AS seq"
                " FROM calls WHERE id = $1",
                call_id,
            )
            if not rows:
                raise NotFound("call", call_id)
            rows = await c.fetch(
                "INSERT INTO turns (call_id, seq, at, node, kind, text, intent, confidence, audio)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING *",
                call_id,
                int(rows[0]["seq"]),
                now_or(at),
                node,
                kind,
                text,
                intent,
                confidence,
                audio,
            )
        return turn_of(rows[0])

    async def set_turn_audio(self, call_id: str, seq: int, audio: str | None) -> TurnRecord:
        async with self._unit() as c:
            rows = await c.fetch(
                "UPDATE turns SET audio = $3 WHERE call_id = $1 AND seq = $2 RETURNING *",
                call_id,
                seq,
                audio,
            )
        if not rows:
            raise NotFound("turn", f"{call_id}/{seq}")
        return turn_of(rows[0])

    async def record_survey(self, call_id: str, score: int) -> Call:
        if isinstance(score, bool) or not 1 <= score <= 5:
            raise ValueError(f"survey score {score!r} is not 1-5")
        async with self._unit() as c:
            rows = await c.fetch(
                "UPDATE calls SET survey = $2 WHERE id = $1 RETURNING *", call_id, score
            )
        if not rows:
            raise NotFound("call", call_id)
        return call_of(rows[0])

    async def list_calls(
        self,
        limit: int = 50,
        cursor: str | None = None,
        caller: str | None = None,
        started_after: datetime | None = None,
        started_before: datetime | None = None,
        provider_call_id: str | None = None,
    ) -> tuple[list[Call], str | None]:
        q = _Page("SELECT * FROM calls", limit)
        p = q.param
        if caller is not None:
            q.where.append(f"caller = {p(caller)}")
        if provider_call_id is not None:
            q.where.append(f"provider_call_id = {p(provider_call_id)}")
        if started_after is not None:
            q.where.append(f"started_at >= {p(utc(started_after))}")
        if started_before is not None:
            q.where.append(f"started_at < {p(utc(started_before))}")
        if cursor is not None:
            before_at, before_id = decode_cursor(cursor, uuid_ids=False)
            q.where.append(f"(started_at, id) < ({p(before_at)}, {p(before_id)})")
        rows, more = await q.fetch(self, "started_at DESC, id DESC")
        items = [call_of(r) for r in rows]
        return items, encode_cursor(items[-1].started_at, items[-1].id) if more else None

    async def list_turns(self, call_id: str) -> list[TurnRecord]:
        rows = await self._select("SELECT * FROM turns WHERE call_id = $1 ORDER BY seq", call_id)
        return [turn_of(r) for r in rows]

    # callbacks

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
                _json_in(transcript),
                now_or(now),
            )
        cb = _callback(rows[0])
        return cb, cb.id == new_id

    async def get_callback(self, id: str) -> Callback:
        id = _uuid("callback", id)
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
        id = _uuid("callback", id)
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
            _json_in(transcript),
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
        id = _uuid("callback", id)
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
            rows = await c.fetch(CLAIM_SQL[self.dialect]["overdue"], now, limit, utc(due_before))
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
        q = _Page(f"SELECT {_LIST_COLUMNS} FROM callbacks", limit)
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
            rows = await c.fetch(CLAIM_SQL[self.dialect]["callbacks"], now, limit, now + lease)
            items = [_callback(r) for r in rows]
            for cb in items:  # a lapsed dispatch nobody reported on ends here
                await _end_attempt(c, cb.id, "no_report", now)
                await _start_attempt(c, cb, "dispatcher", now)
        return sorted(items, key=lambda cb: (-cb.priority, cb.due_at, cb.id))

    # webhook outbox

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
            rows = await c.fetch(CLAIM_SQL[self.dialect]["events"], now, limit, now + lease)
        return sorted((_event(r) for r in rows), key=lambda e: (e.created_at, e.id))

    async def get_event(self, id: str) -> Event:
        id = _uuid("event", id)
        async with self._unit(write=False) as c:
            rows = await c.fetch("SELECT * FROM outbox WHERE id = $1", id)
        if not rows:
            raise NotFound("event", id)
        return _event(rows[0])

    async def mark_delivered(self, id: str, *, now: datetime | None = None) -> Event:
        id = _uuid("event", id)
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
        id = _uuid("event", id)
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

    # nodes

    async def node_seen(
        self, node_id: str, *, started: bool = False, now: datetime | None = None
    ) -> Node:
        at = now_or(now)
        async with self._unit() as c:
            rows = await c.fetch(
                "INSERT INTO nodes (id, started_at, seen_at) VALUES ($1, $2, $2)"
                " ON CONFLICT (id) DO UPDATE SET seen_at = excluded.seen_at"
                + (", started_at = excluded.started_at" if started else "")
                + " RETURNING *",
                node_id,
                at,
            )
        self._reached()
        return _node(rows[0])

    def _reached(self) -> None:
        """A write committed: the database takes writes again (see `health.py`)."""
        self.health.reached()

    async def get_node(self, id: str) -> Node:
        rows = await self._select("SELECT * FROM nodes WHERE id = $1", id)
        if not rows:
            raise NotFound("node", id)
        return _node(rows[0])


class TxStore(SqlStore):
    """A Store bound to one open transaction (what `transaction()` yields). Its operations
    are guarded too (a caller inside the block catches StoreError), against the outer
    store's health."""

    def __init__(self, conn: Conn, outer: SqlStore) -> None:
        super().__init__(outer.health)
        self._conn = conn
        self.backend = outer.backend
        self.dialect = outer.dialect
        self.driver_errors = outer.driver_errors
        self.record_errors = outer.record_errors

    @asynccontextmanager
    async def _bound(self) -> AsyncIterator[Conn]:
        with self._guard():
            yield self._conn

    def _reached(self) -> None:
        pass  # nothing is committed before the outer store's unit ends

    def _unit(self, write: bool = True) -> AbstractAsyncContextManager[Conn]:
        return self._bound()

    def transaction(self) -> AbstractAsyncContextManager[Store]:
        return self._nested()

    @asynccontextmanager
    async def _nested(self) -> AsyncIterator[Store]:
        yield self  # nested blocks join the outer transaction

    async def close(self) -> None:
        raise RuntimeError("close the store, not the transaction")
