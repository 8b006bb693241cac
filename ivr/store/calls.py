"""Calls and their turns: the `CallStore` operations, for both databases."""

from __future__ import annotations

from datetime import datetime

from ivr.store.base import TURN_KINDS, Call, Conflict, NotFound, TurnKind, TurnRecord
from ivr.store.queries import Page, Queries, decode_cursor, encode_cursor
from ivr.store.rows import call_of, now_or, turn_of, utc


class CallQueries(Queries):
    """Mixed into `SqlStore`."""

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
        q = Page("SELECT * FROM calls", limit)
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
