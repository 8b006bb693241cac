"""The Store, written once for both databases: `SqlStore` joins the areas' operations.

A backend supplies connections (`Conn`: `$1`-style parameters, rows as dicts) and units of
work (`_unit()`: one transaction), each run under `_guard()`: its driver's errors (the
backend's `driver_errors`) leave the store as `StoreUnavailable` and are counted in the
store's health (`health.py`), so callers catch only `StoreError`. Dialect differences are
kept to the column types in `migrations.py`, the claim statements (`queries.claim_sql`:
`FOR UPDATE SKIP LOCKED` on PostgreSQL; SQLite has one writer at a time, taken with `BEGIN
IMMEDIATE`) and two expressions of the analytics queries.

The operations by area: `calls.py`, `callbacks.py`, `outbox.py`, `nodes.py`, `tokens.py` and
`analytics.py`, on the shared pieces of `queries.py`; row conversions in `rows.py`. Here:
the units of work, transactions, the schema's migrations and `TxStore`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from datetime import UTC, datetime
from typing import Any

from ivr.store.analytics import AnalyticsQueries
from ivr.store.base import Store, StoreUnavailable
from ivr.store.callbacks import CallbackQueries
from ivr.store.calls import CallQueries
from ivr.store.complaints import ComplaintQueries
from ivr.store.contacts import ContactQueries
from ivr.store.conversations import ConversationQueries
from ivr.store.health import StoreHealth
from ivr.store.migrations import MIGRATIONS, SCHEMA_MIGRATIONS, TYPES, Dialect
from ivr.store.nodes import NodeQueries
from ivr.store.outbox import OutboxQueries
from ivr.store.rows import Conn, Row, now_or, to_text, ts, utc
from ivr.store.tokens import TokenQueries

__all__ = ["Conn", "Row", "SqlStore", "TxStore", "now_or", "to_text", "utc"]


class SqlStore(
    CallQueries,
    CallbackQueries,
    OutboxQueries,
    NodeQueries,
    AnalyticsQueries,
    TokenQueries,
    ConversationQueries,
    ComplaintQueries,
    ContactQueries,
    ABC,
):
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

    def _reached(self) -> None:
        """A write committed: the database takes writes again (see `health.py`)."""
        self.health.reached()


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
