"""The complaint early warning's records (`ivr.nlu.complaint`): the mark on a call, a
conversation and the callback booked from one, and what each contact asked about (the
repeat-contact signal), for both databases."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from ivr.store.base import Callback, IntentUse, NotFound
from ivr.store.callbacks import _callback
from ivr.store.queries import Queries, json_in, uuid_id
from ivr.store.rows import now_or, ts, utc

ContactKind = Literal["call", "conversation"]
VOICE = "voice"  # the calls' channel (`ivr.analytics.channels`)
COMPLAINT_TOPIC = "complaint"
"""The topic complaints count as in analytics."""


class ComplaintQueries(Queries):
    """Mixed into `SqlStore`."""

    async def mark_complaint(self, kind: ContactKind, id: str, complaint: Any) -> None:
        """Mark a call or conversation as a complaint (`complaint`: why, JSON). NotFound for
        no such contact."""
        table, key = ("calls", id) if kind == "call" else ("conversations", uuid_id(kind, id))
        async with self._unit() as c:
            rows = await c.fetch(
                f"UPDATE {table} SET complaint = $2 WHERE id = $1 RETURNING id",
                key,
                json_in(complaint),
            )
        if not rows:
            raise NotFound(kind, id)

    async def mark_callback_complaint(
        self, id: str, complaint: Any, boost: int, *, now: datetime | None = None
    ) -> tuple[Callback, bool]:
        """The callback booked from a complaint: its complaint set and its priority raised
        by `boost`, the first time only; (callback, whether this changed it)."""
        at = now_or(now)
        async with self._unit() as c:
            rows = await c.fetch(
                "UPDATE callbacks SET complaint = $2, priority = priority + $3, updated_at = $4"
                " WHERE id = $1 AND complaint IS NULL RETURNING *",
                uuid_id("callback", id),
                json_in(complaint),
                boost,
                at,
            )
            changed = bool(rows)
            if not rows:
                rows = await c.fetch(
                    "SELECT * FROM callbacks WHERE id = $1", uuid_id("callback", id)
                )
        if not rows:
            raise NotFound("callback", id)
        return _callback(rows[0]), changed

    async def add_contact_topic(
        self,
        number: str,
        topic: str,
        *,
        channel: str,
        contact_id: str,
        at: datetime | None = None,
    ) -> None:
        async with self._unit() as c:
            await c.execute(
                "INSERT INTO contact_topics (number, topic, at, channel, contact_id)"
                " VALUES ($1, $2, $3, $4, $5)",
                number,
                topic,
                now_or(at),
                channel,
                contact_id,
            )

    async def recent_topics(
        self, number: str, since: datetime, *, exclude: str | None = None
    ) -> list[str]:
        """The topics `number`'s contacts asked about at or after `since` (but contact
        `exclude`'s), each once, oldest first."""
        rows = await self._select(
            "SELECT topic, MIN(at) AS first FROM contact_topics"
            " WHERE number = $1 AND at >= $2 AND contact_id <> $3"
            " GROUP BY topic ORDER BY first, topic",
            number,
            utc(since),
            exclude or "",
        )
        return [r["topic"] for r in rows]

    async def complaint_uses(
        self, since: datetime, until: datetime, channel: str | None = None
    ) -> list[IntentUse]:
        """The calls and conversations that started in [since, until) and were marked a
        complaint, as uses of the topic COMPLAINT_TOPIC (call_id: the contact's id).
        `channel`: "voice" the calls only, another the conversations on it; None: all."""
        tables = [("calls", "")] if channel in (None, VOICE) else []
        if channel != VOICE:
            tables.append(("conversations", " AND channel = $3" if channel else ""))
        out = []
        for table, on in tables:
            rows = await self._select(
                f"SELECT id, started_at FROM {table} WHERE complaint IS NOT NULL"
                f" AND started_at >= $1 AND started_at < $2{on} ORDER BY started_at, id",
                utc(since),
                utc(until),
                *([channel] if on else []),
            )
            out += [
                IntentUse(str(r["id"]), None, COMPLAINT_TOPIC, ts(r["started_at"])) for r in rows
            ]
        return sorted(out, key=lambda u: (u.started_at, u.call_id))
