"""What each area's SQL operations get from `SqlStore` (`sql.py`), and what they share.

The areas: `calls.py` (calls and turns), `callbacks.py` (agent callbacks and attempts),
`outbox.py` (webhook events), `nodes.py` (heartbeats) and `analytics.py`. Each is a mixin
of `Queries`, whose `_unit()` and `_select()` `SqlStore` supplies. Shared here: paged lists
with their cursors, UUID ids, JSON columns, and the claim statements' one dialect difference.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from abc import ABC, abstractmethod
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Any

from ivr.store.base import NotFound
from ivr.store.migrations import Dialect
from ivr.store.rows import Conn, Row, to_text, ts
from ivr.store.rows import json_out as json_out  # the JSON columns, for the areas


class Queries(ABC):
    """The base of the area mixins: `SqlStore` supplies these."""

    dialect: Dialect

    @abstractmethod
    def _unit(self, write: bool = True) -> AbstractAsyncContextManager[Conn]:
        """One transaction on one connection (reads may skip the write lock), guarded."""

    @abstractmethod
    async def _select(self, sql: str, *args: Any) -> list[Row]:
        """One SELECT on its own."""


def json_in(value: Any) -> str | None:
    return None if value is None else json.dumps(value, separators=(",", ":"))


def uuid_id(kind: str, id: str) -> str:
    """Callback and event ids are UUIDs; anything else cannot exist."""
    try:
        return str(uuid.UUID(str(id)))
    except ValueError:
        raise NotFound(kind, id) from None


def claim_sql(table: str, due: str, assignments: str) -> dict[Dialect, str]:
    """A claim: set `assignments` on the rows of `table` that `due` selects (their ids),
    returning them. The explicit dialect difference: PostgreSQL locks the chosen rows and
    skips rows another transaction holds; SQLite runs this inside BEGIN IMMEDIATE, so no
    one else is writing."""
    return {
        "postgresql": f"WITH due AS ({due} FOR UPDATE SKIP LOCKED)"
        f" UPDATE {table} SET {assignments}"
        f" FROM due WHERE {table}.id = due.id RETURNING {table}.*",
        "sqlite": f"UPDATE {table} SET {assignments} WHERE id IN ({due}) RETURNING *",
    }


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


class Page:
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

    async def fetch(self, store: Queries, order: str) -> tuple[list[Row], bool]:
        """The page's rows, and whether more follow."""
        sql = self.select
        if self.where:
            sql += " WHERE " + " AND ".join(self.where)
        sql += f" ORDER BY {order} LIMIT {self.param(self.limit + 1)}"
        rows = await store._select(sql, *self.args)
        return rows[: self.limit], len(rows) > self.limit
