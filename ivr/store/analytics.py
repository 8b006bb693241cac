"""The analytics queries of `Store` (`AnalyticsStore`), written once for both databases.

Every query covers the calls that started in [since, until) (the `calls_started_at` index)
and reaches their turns by the turns' primary key. Dialect differences are two expressions:
a callback's call id inside its JSON transcript (the same one `migrations.py` indexes) and
the seconds between two timestamps. Confidence buckets are a CASE ladder rather than
FLOOR/CAST, which round differently on the two databases.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Any

from ivr.store.base import (
    CallTotals,
    ConfidenceCount,
    Escalation,
    IntentUse,
    NodeCount,
    TurnRecord,
)
from ivr.store.migrations import TYPES, Dialect
from ivr.store.queries import Queries
from ivr.store.rows import Row, ts, turn_of, utc

ESCALATION_END_REASONS = ("callback_booked", "callback_not_booked")
"""End reasons of calls that went through the agent-callback flow (the hotline's hangups)."""
CALLER_HANGUP = "caller_hangup"
"""How a call ends when the caller hangs up (not by the flow's goodbye)."""
HANDOFF_PREFIX = "handoff: "
"""How a call handed to a person ends (the session's end reason for a Handoff)."""

_SECONDS: dict[Dialect, str] = {
    # julianday() reads the stored ISO text; its millisecond precision is plenty for calls.
    "sqlite": "(julianday(ended_at) - julianday(started_at)) * 86400.0",
    "postgresql": "EXTRACT(EPOCH FROM (ended_at - started_at))",
}
_BUCKET = (
    "CASE "
    + " ".join(f"WHEN t.confidence < {(i + 1) / 10:.1f} THEN {i}" for i in range(9))
    + " ELSE 9 END"
)
_IN_WINDOW = "c.started_at >= $1 AND c.started_at < $2"
_CHUNK = 500  # ids per IN (...) list: far below either database's parameter limit


class AnalyticsQueries(Queries):
    """Mixed into `SqlStore`."""

    async def _rows(self, sql: str, *args: Any) -> list[Row]:
        async with self._unit(write=False) as c:
            return await c.fetch(sql, *args)

    async def turn_counts(self, since: datetime, until: datetime) -> list[NodeCount]:
        rows = await self._rows(
            "SELECT t.node, t.kind, COUNT(*) AS n FROM calls c JOIN turns t ON t.call_id = c.id"
            f" WHERE {_IN_WINDOW} GROUP BY t.node, t.kind ORDER BY t.node, t.kind",
            utc(since),
            utc(until),
        )
        return [NodeCount(r["node"], r["kind"], int(r["n"])) for r in rows]

    async def confidence_counts(self, since: datetime, until: datetime) -> list[ConfidenceCount]:
        rows = await self._rows(
            f"SELECT t.node, {_BUCKET} AS bucket, COUNT(*) AS n"
            " FROM calls c JOIN turns t ON t.call_id = c.id"
            f" WHERE {_IN_WINDOW} AND t.kind = 'recognized' AND t.confidence IS NOT NULL"
            " GROUP BY 1, 2 ORDER BY 1, 2",
            utc(since),
            utc(until),
        )
        return [ConfidenceCount(r["node"], int(r["bucket"]), int(r["n"])) for r in rows]

    async def call_totals(self, since: datetime, until: datetime) -> CallTotals:
        window = (utc(since), utc(until))
        totals = await self._rows(
            f"SELECT COUNT(*) AS calls, COUNT(ended_at) AS ended,"
            f" AVG({_SECONDS[self.dialect]}) AS seconds FROM calls c WHERE {_IN_WINDOW}",
            *window,
        )
        scores = await self._rows(
            "SELECT survey, COUNT(*) AS n FROM calls c"
            f" WHERE {_IN_WINDOW} AND survey IS NOT NULL GROUP BY survey",
            *window,
        )
        t = totals[0]
        return CallTotals(
            calls=int(t["calls"]),
            ended=int(t["ended"]),
            handling_seconds=None if t["seconds"] is None else float(t["seconds"]),
            survey={int(r["survey"]): int(r["n"]) for r in scores},
        )

    async def escalated_calls(
        self, since: datetime, until: datetime, agent_nodes: Collection[str] = ()
    ) -> list[Escalation]:
        args: list[Any] = [utc(since), utc(until), *ESCALATION_END_REASONS, f"{HANDOFF_PREFIX}%"]
        reached = ""
        if agent_nodes:
            first = len(args) + 1
            args += sorted(agent_nodes)
            marks = ", ".join(f"${i}" for i in range(first, len(args) + 1))
            reached = (
                f" OR EXISTS (SELECT 1 FROM turns t WHERE t.call_id = c.id AND t.node IN ({marks}))"
            )
        # The indexed expression as written in the index (`transcript` is only a callbacks
        # column). `|| ''` strips c.id's column affinity, which would otherwise keep SQLite
        # from looking the call up in that index.
        call_id = TYPES[self.dialect]["transcript_call_id"]
        rows = await self._rows(
            "SELECT c.id, c.end_reason, cb.reason AS callback_reason"
            f" FROM calls c LEFT JOIN callbacks cb ON {call_id} = c.id || ''"
            f" WHERE {_IN_WINDOW} AND c.ended_at IS NOT NULL"
            f" AND (cb.id IS NOT NULL OR c.end_reason IN ($3, $4) OR c.end_reason LIKE $5{reached})"
            " ORDER BY c.id",
            *args,
        )
        # A caller may have booked more than one callback (several numbers): one row per call.
        out: dict[str, Escalation] = {}
        for r in rows:
            seen = out.get(r["id"])
            if seen is None or (seen.callback_reason is None and r["callback_reason"]):
                out[r["id"]] = Escalation(r["id"], r["end_reason"], r["callback_reason"])
        return list(out.values())

    async def abandoned_calls(self, since: datetime, until: datetime) -> list[str]:
        # The last turn that is not a prompt: a reprompt after the no-match does not count.
        rows = await self._rows(
            "SELECT c.id FROM calls c JOIN turns t ON t.call_id = c.id"
            f" WHERE {_IN_WINDOW} AND c.ended_at IS NOT NULL AND c.end_reason = $3"
            " AND t.kind = 'no_match' AND t.seq = (SELECT MAX(l.seq) FROM turns l"
            " WHERE l.call_id = c.id AND l.kind <> 'prompt') ORDER BY c.id",
            utc(since),
            utc(until),
            CALLER_HANGUP,
        )
        return [r["id"] for r in rows]

    async def turns_of(self, call_ids: Collection[str]) -> list[TurnRecord]:
        ids = sorted(set(call_ids))
        out: list[TurnRecord] = []
        for i in range(0, len(ids), _CHUNK):
            chunk = ids[i : i + _CHUNK]
            marks = ", ".join(f"${n}" for n in range(1, len(chunk) + 1))
            rows = await self._rows(
                f"SELECT * FROM turns WHERE call_id IN ({marks}) ORDER BY call_id, seq", *chunk
            )
            out += [turn_of(r) for r in rows]
        return out

    async def intent_uses(self, since: datetime, until: datetime) -> list[IntentUse]:
        rows = await self._rows(
            "SELECT DISTINCT c.id, c.started_at, t.node, t.intent"
            " FROM calls c JOIN turns t ON t.call_id = c.id"
            f" WHERE {_IN_WINDOW} AND t.intent IS NOT NULL AND t.kind IN ('recognized', 'dtmf')"
            " ORDER BY c.started_at, c.id, t.node, t.intent",
            utc(since),
            utc(until),
        )
        return [IntentUse(r["id"], r["node"], r["intent"], ts(r["started_at"])) for r in rows]

    async def unrecognized_turns(
        self, since: datetime, until: datetime, node: str | None = None, limit: int = 10000
    ) -> list[TurnRecord]:
        if limit < 1:
            raise ValueError(f"limit {limit} is not positive")
        args: list[Any] = [utc(since), utc(until)]
        at_node = ""
        if node is not None:
            args.append(node)
            at_node = f" AND t.node = ${len(args)}"
        args.append(limit)
        rows = await self._rows(
            "SELECT t.* FROM calls c JOIN turns t ON t.call_id = c.id"
            " JOIN turns n ON n.call_id = t.call_id AND n.seq = t.seq + 1"
            f" WHERE {_IN_WINDOW} AND t.kind = 'recognized' AND t.intent IS NULL"
            f" AND n.kind = 'no_match'{at_node}"
            f" ORDER BY t.at DESC, t.call_id, t.seq LIMIT ${len(args)}",
            *args,
        )
        return [turn_of(r) for r in rows]
