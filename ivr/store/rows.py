"""Rows ↔ records, shared by the store operations (`sql.py`) and its analytics queries
(`analytics.py`): the connection protocol, time conversion, and the call and turn records."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, Protocol, cast

from ivr.store.base import Call, TurnRecord


def json_out(value: Any) -> Any:
    """A JSON column's value (both databases hand it over as text)."""
    return None if value is None else json.loads(value)

Row = dict[str, Any]


class Conn(Protocol):
    async def fetch(self, sql: str, *args: Any) -> list[Row]: ...

    async def execute(self, sql: str, *args: Any) -> None: ...


def utc(value: datetime) -> datetime:
    """`value` in UTC; naive datetimes are refused (their zone is a guess)."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"naive datetime {value!r}: pass a timezone-aware one")
    return value.astimezone(UTC)


def now_or(value: datetime | None) -> datetime:
    return datetime.now(UTC) if value is None else utc(value)


def to_text(value: datetime) -> str:
    """Fixed-width UTC ISO-8601, so that text order is time order (SQLite)."""
    return utc(value).isoformat(timespec="microseconds")


def ts(value: Any) -> datetime:
    """A stored time (text on SQLite, a datetime on PostgreSQL) as an aware UTC datetime."""
    d = datetime.fromisoformat(value) if isinstance(value, str) else cast(datetime, value)
    return utc(d)


def ts_opt(value: Any) -> datetime | None:
    return None if value is None else ts(value)


def call_of(r: Row) -> Call:
    return Call(
        id=r["id"],
        caller=r["caller"],
        transport=r["transport"],
        flow=r["flow"],
        flow_version=r["flow_version"],
        started_at=ts(r["started_at"]),
        ended_at=ts_opt(r["ended_at"]),
        end_reason=r["end_reason"],
        survey=None if r["survey"] is None else int(r["survey"]),
        provider_call_id=r.get("provider_call_id"),
        node_id=r.get("node_id"),
        complaint=json_out(r.get("complaint")),
    )


def turn_of(r: Row) -> TurnRecord:
    return TurnRecord(
        call_id=r["call_id"],
        seq=int(r["seq"]),
        at=ts(r["at"]),
        node=r["node"],
        kind=r["kind"],
        text=r["text"],
        intent=r["intent"],
        confidence=None if r["confidence"] is None else float(r["confidence"]),
        audio=r["audio"],
    )
