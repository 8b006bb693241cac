"""Persistence: side effects go through one `Store` (SQLite by default, PostgreSQL to share).

store = await open_store("sqlite:///data/ivr.db")   # or a plain path, or postgresql://…
async with store.transaction() as tx:
    cb = await tx.claim(callback_id, "agent-7")
    await tx.add_event("callback.claimed", {"id": cb.id, "agent": cb.agent})
await store.close()
"""

from __future__ import annotations

from pathlib import Path

from ivr.store.base import (
    CALLBACK_STATUSES,
    EVENT_STATES,
    OPEN_STATUSES,
    PARKED_UNTIL,
    TURN_KINDS,
    AnalyticsStore,
    Attempt,
    Call,
    Callback,
    CallbackCounts,
    CallbackStatus,
    CallbackStore,
    CallStore,
    Conflict,
    Delivery,
    Event,
    EventState,
    Node,
    NodeStore,
    NotFound,
    OutboxCounts,
    OutboxStore,
    Store,
    StoreError,
    StoreUnavailable,
    TurnKind,
    TurnRecord,
)
from ivr.store.conversations import Conversation, Message, Sender
from ivr.store.migrations import MIGRATIONS
from ivr.store.protocols import ConversationStore, TokenStore
from ivr.store.tokens import RevokedToken

__all__ = [
    "CALLBACK_STATUSES",
    "EVENT_STATES",
    "MIGRATIONS",
    "OPEN_STATUSES",
    "PARKED_UNTIL",
    "TURN_KINDS",
    "AnalyticsStore",
    "Attempt",
    "Call",
    "CallStore",
    "Callback",
    "CallbackCounts",
    "CallbackStatus",
    "CallbackStore",
    "Conflict",
    "Conversation",
    "ConversationStore",
    "Delivery",
    "Event",
    "EventState",
    "Message",
    "Node",
    "NodeStore",
    "NotFound",
    "OutboxCounts",
    "OutboxStore",
    "RevokedToken",
    "Sender",
    "Store",
    "StoreError",
    "StoreUnavailable",
    "TokenStore",
    "TurnKind",
    "TurnRecord",
    "open_store",
    "sqlite_path",
]


def sqlite_path(url: str) -> Path:
    """The file of a SQLite URL, as SQLAlchemy reads them: `sqlite:///data/ivr.db` is the
    relative path data/ivr.db, `sqlite:////var/lib/ivr/ivr.db` the absolute one; anything
    without a scheme is a plain path."""
    if url.startswith("sqlite:///"):
        rest = url[len("sqlite:///") :]
    elif "://" in url:
        raise ValueError(f"store URL {url!r}: use postgresql://…, sqlite:///… or a path")
    else:
        rest = url
    if not rest:
        raise ValueError(f"store URL {url!r} names no file")
    return Path(rest).expanduser()


async def open_store(url: str) -> Store:
    """Open (creating and migrating as needed) the store at `url`:
    `postgresql://…` (or `postgres://…`) → PostgreSQL; `sqlite:///…` or a path → SQLite."""
    if url.startswith(("postgresql://", "postgres://")):
        from ivr.store.postgres import PostgresStore

        return await PostgresStore.open(url)
    from ivr.store.sqlite import SQLiteStore

    return await SQLiteStore.open(sqlite_path(url))
