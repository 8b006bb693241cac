"""PostgreSQL store (asyncpg pool): several server processes can share one database.

Each operation is one transaction on a pooled connection (READ COMMITTED). Claims lock
their rows with `FOR UPDATE SKIP LOCKED`, so concurrent dispatchers never take the same
row; migrations run under a transaction-scoped advisory lock, so processes starting
together apply them once.

asyncpg's errors (the server's, the client's, a lost connection's OSError) leave the store as
StoreUnavailable; at `open()` with the database's address (never its password).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

import asyncpg

from ivr.store.base import StoreUnavailable
from ivr.store.sql import Conn, Row, SqlStore

_MIGRATION_LOCK = "SELECT pg_advisory_xact_lock(7313370001)"


class _PgConn(Conn):
    def __init__(self, conn: Any) -> None:
        self._conn = conn

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        return [dict(r) for r in await self._conn.fetch(sql, *args)]

    async def execute(self, sql: str, *args: Any) -> None:
        await self._conn.execute(sql, *args)


def where(dsn: str) -> str:
    """The database a DSN names, for messages: host, port and name, no credentials."""
    try:
        url = urlsplit(dsn)
        return f"{url.hostname or 'localhost'}:{url.port or 5432}{url.path or '/'}"
    except ValueError:
        return "(unparsable DSN)"


class PostgresStore(SqlStore):
    backend = "postgresql"
    dialect = "postgresql"
    driver_errors = (
        asyncpg.PostgresError,
        asyncpg.InterfaceError,
        asyncpg.InternalClientError,
        OSError,
    )
    record_errors = (asyncpg.IntegrityConstraintViolationError,)

    def __init__(self, pool: Any) -> None:
        super().__init__()
        self._pool = pool

    @classmethod
    async def open(cls, dsn: str, min_size: int = 1, max_size: int = 10) -> PostgresStore:
        try:
            return await cls._open(dsn, min_size, max_size)
        except (StoreUnavailable, *cls.driver_errors) as exc:  # refused, no such database...
            cause = (exc.__cause__ if isinstance(exc, StoreUnavailable) else exc) or exc
            message = f"cannot open the PostgreSQL database {where(dsn)}: {cause}"
            raise StoreUnavailable(message, type(cause).__name__) from cause

    @classmethod
    async def _open(cls, dsn: str, min_size: int, max_size: int) -> PostgresStore:
        pool = await asyncpg.create_pool(dsn, min_size=min_size, max_size=max_size)
        store = cls(pool)
        try:
            async with store._unit() as conn:
                await store._migrate(conn, _MIGRATION_LOCK)
        except BaseException:
            await pool.close()
            raise
        return store

    def _unit(self, write: bool = True) -> AbstractAsyncContextManager[Conn]:
        return self._tx(write)

    async def _select(self, sql: str, *args: Any) -> list[Row]:
        with self._guard():
            async with self._pool.acquire() as conn:  # autocommit: no BEGIN/COMMIT trips
                return await _PgConn(conn).fetch(sql, *args)

    @asynccontextmanager
    async def _tx(self, write: bool) -> AsyncIterator[Conn]:
        with self._guard():
            async with self._pool.acquire() as conn, conn.transaction(readonly=not write):
                yield _PgConn(conn)

    async def close(self) -> None:
        await self._pool.close()
