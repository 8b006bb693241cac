"""SQLite store: one file in a data directory, WAL mode, one writer at a time.

Each store has one connection; its operations take turns on it (an asyncio lock), and every
write runs in `BEGIN IMMEDIATE`, which takes the database's write lock up front. Several
stores (or processes) on the same file therefore serialize their writes, waiting up to
`busy_timeout` for each other, and a claim can never hand the same row to two of them.

Any sqlite3 error (disk I/O, disk full, read-only file, a lock held past the busy timeout, a
corrupt file) leaves the store as StoreUnavailable; at `open()` with the file's path.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import sqlite3
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import aiosqlite

from ivr.store.base import StoreUnavailable
from ivr.store.sql import Conn, Row, SqlStore, to_text

_PARAM = re.compile(r"\$(\d+)")


def _sql(sql: str) -> str:
    return _PARAM.sub(r"?\1", sql)  # $1 → ?1: SQLite's numbered parameters


def _param(value: Any) -> Any:
    return to_text(value) if isinstance(value, datetime) else value


class _SQLiteConn(Conn):
    def __init__(self, db: aiosqlite.Connection) -> None:
        self._db = db

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        # One trip to the connection's thread (execute, fetch and close are three): under
        # load each trip waits for a turn of the event loop, and writes take turns.
        rows = await self._db.execute_fetchall(_sql(sql), [_param(a) for a in args])
        return [dict(r) for r in rows]

    async def execute(self, sql: str, *args: Any) -> None:
        await self._db.execute(_sql(sql), [_param(a) for a in args])


async def _wal(db: aiosqlite.Connection, timeout_s: float) -> None:
    """Switch to WAL. Another process opening the same new file at the same moment holds a
    lock that SQLite's busy handler does not wait for on this pragma: retry until timeout."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        try:
            await db.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.05)


class SQLiteStore(SqlStore):
    backend = "sqlite"
    dialect = "sqlite"

    driver_errors = (sqlite3.Error, OSError)
    record_errors = (sqlite3.IntegrityError,)

    def __init__(self, db: aiosqlite.Connection, path: Path) -> None:
        super().__init__()
        self._db = db
        self._conn = _SQLiteConn(db)
        self.path = path
        self._lock = asyncio.Lock()
        self._owner: asyncio.Task[Any] | None = None

    @classmethod
    async def open(cls, path: str | Path, busy_timeout_s: float = 30.0) -> SQLiteStore:
        path = Path(path)
        try:
            return await cls._open(path, busy_timeout_s)
        except (StoreUnavailable, *cls.driver_errors) as exc:  # "file is not a database"...
            cause = exc.__cause__ if isinstance(exc, StoreUnavailable) else exc
            cause = cause or exc
            message = f"cannot open the SQLite database {path}: {cause}"
            raise StoreUnavailable(message, type(cause).__name__) from cause

    @classmethod
    async def _open(cls, path: Path, busy_timeout_s: float) -> SQLiteStore:
        await asyncio.to_thread(path.parent.mkdir, parents=True, exist_ok=True)
        # isolation_level=None: no implicit transactions; _unit() says BEGIN/COMMIT itself.
        db = await aiosqlite.connect(path, timeout=busy_timeout_s, isolation_level=None)
        try:
            db.row_factory = sqlite3.Row
            await db.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
            await _wal(db, busy_timeout_s)
            await db.execute("PRAGMA synchronous = NORMAL")
            await db.execute("PRAGMA foreign_keys = ON")
            store = cls(db, path)
            async with store._unit() as conn:
                await store._migrate(conn)
        except BaseException:
            await db.close()
            raise
        return store

    def _unit(self, write: bool = True) -> AbstractAsyncContextManager[Conn]:
        return self._locked(write)

    def _not_inside_transaction(self) -> asyncio.Task[Any] | None:
        """The current task; an error if it holds the connection (it would wait on itself)."""
        task = asyncio.current_task()
        if task is not None and self._owner is task:
            raise RuntimeError("inside store.transaction(): use the store it yields")
        return task

    async def _select(self, sql: str, *args: Any) -> list[Row]:
        self._not_inside_transaction()
        with self._guard():
            async with self._lock:  # autocommit: the statement is its own read transaction
                return await self._conn.fetch(sql, *args)

    @asynccontextmanager
    async def _locked(self, write: bool) -> AsyncIterator[Conn]:
        task = self._not_inside_transaction()
        with self._guard():
            async with self._lock:
                self._owner = task
                try:
                    await self._db.execute("BEGIN IMMEDIATE" if write else "BEGIN")
                    try:
                        yield self._conn
                        await self._db.execute("COMMIT")
                    except BaseException:
                        await self._rollback()
                        raise
                finally:
                    self._owner = None

    async def _rollback(self) -> None:
        """After a failure: SQLite has rolled back itself after some (an I/O error in
        COMMIT) and not after others (SQLITE_BUSY in COMMIT). A transaction left open would
        make every later BEGIN fail; the first error is the one to report."""
        if self._db.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                await self._db.execute("ROLLBACK")

    async def close(self) -> None:
        await self._db.close()
