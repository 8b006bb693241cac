"""PostgreSQL store (asyncpg pool): several server processes can share one database.

Each operation is one transaction on a pooled connection (READ COMMITTED). Claims lock
their rows with `FOR UPDATE SKIP LOCKED`, so concurrent dispatchers never take the same
row; migrations run under a transaction-scoped advisory lock, so processes starting
together apply them once.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import asyncpg

from ivr.store.sql import Conn, Row, SqlStore

_MIGRATION_LOCK = "SELECT pg_advisory_xact_lock(7313370001)"


class _PgConn(Conn):
    def __init__(self, conn: Any) -> None:
        self._conn = conn

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        return [dict(r) for r in await self._conn.fetch(sql, *args)]

    async def execute(self, sql: str, *args: Any) -> None:
        await self._conn.execute(sql, *args)


class PostgresStore(SqlStore):
    backend = "postgresql"
    dialect = "postgresql"

    def __init__(self, pool: Any) -> None:
        self._pool = pool

    @classmethod
    async def open(cls, dsn: str, min_size: int = 1, max_size: int = 10) -> PostgresStore:
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
        async with self._pool.acquire() as conn:  # autocommit: no BEGIN/COMMIT round trips
            return await _PgConn(conn).fetch(sql, *args)

    @asynccontextmanager
    async def _tx(self, write: bool) -> AsyncIterator[Conn]:
        async with self._pool.acquire() as conn, conn.transaction(readonly=not write):
            yield _PgConn(conn)

    async def close(self) -> None:
        await self._pool.close()
