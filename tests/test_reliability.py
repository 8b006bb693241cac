"""Crash safety of webhooks: `kill -9` a real server while events are pending and in flight,
restart it on the same database, and every event in the outbox still arrives, same ids."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
from failures import descendants
from live_server import LiveServer, live_server
from webhook_receiver import HANG, Hit, Receiver, wait_until

from ivr.callbacks import CallbackPolicy, Callbacks
from ivr.store import open_store, sqlite_path
from ivr.webhooks import verify

SECRET = "s3cret"
N_CALLBACKS = 50


def kill9(server: LiveServer) -> None:
    """SIGKILL the server, then its worker processes (as a container kill would): no
    shutdown code runs anywhere."""
    workers = descendants(server.proc.pid)
    os.kill(server.proc.pid, signal.SIGKILL)
    server.proc.wait(10)
    for pid in workers:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


async def _book(db: str, n: int) -> None:
    store = await open_store(db)
    try:
        cbs = Callbacks(store, CallbackPolicy(tz=ZoneInfo("UTC")))
        now = datetime.now(UTC)
        for i in range(n):
            await cbs.book(f"+1555{i:07d}", now - timedelta(minutes=1), reason="r")
    finally:
        await store.close()


def outbox(db: str) -> list[dict[str, Any]]:
    """The outbox rows as the database has them (read directly, not through the server)."""
    sql = "SELECT id, type, attempts, next_attempt_at, delivered_at, last_error FROM outbox"
    if not db.startswith("postgresql://"):
        with sqlite3.connect(sqlite_path(db)) as conn:
            conn.row_factory = sqlite3.Row
            rows = [dict(r) for r in conn.execute(sql)]
        for r in rows:
            r["next_attempt_at"] = datetime.fromisoformat(r["next_attempt_at"])
        return rows

    async def fetch() -> list[dict[str, Any]]:
        conn = await asyncpg.connect(db)
        try:
            return [dict(r) for r in await conn.fetch(sql)]
        finally:
            await conn.close()

    rows = asyncio.run(fetch())
    for r in rows:
        r["id"] = str(r["id"])
    return rows


def hangs(hit: Hit) -> bool:
    """About one event in six: its request is held open (in flight when the server dies)."""
    return int(hit.event_id[:2], 16) < 40


def test_kill9_with_webhooks_pending_loses_no_event(tmp_path: Path, database: str) -> None:
    asyncio.run(_book(database, N_CALLBACKS))  # 50 × callback.scheduled, then 50 × .due
    env = {
        "IVR_DATA_DIR": str(tmp_path / "data"),
        "IVR_WEBHOOK_SECRET": SECRET,
        "IVR_WEBHOOK_TIMEOUT_SECONDS": "2",  # lease of an event in flight: 14 s
        "IVR_DISPATCH_INTERVAL_SECONDS": "0.1",
        "IVR_ASR_WORKERS": "1",
    }
    if database.startswith("postgresql://"):
        env["IVR_DATABASE_URL"] = database
    receiver = Receiver(lambda hit: HANG if hangs(hit) else 503)
    with receiver:
        env["IVR_WEBHOOK_URLS"] = receiver.url()
        (tmp_path / "run1").mkdir()
        with live_server(tmp_path / "run1", **env) as server:
            # every event has been attempted at least once: some are waiting for a retry,
            # some are in flight on a request the receiver holds open
            wait_until(
                lambda: len({h.event_id for h in receiver.snapshot()}) >= 2 * N_CALLBACKS,
                30,
                "a first attempt of every event",
            )
            killed_at = datetime.now(UTC)
            kill9(server)
        rows = outbox(database)
        before = {r["id"] for r in rows}
        assert len(before) == 2 * N_CALLBACKS
        assert all(r["delivered_at"] is None for r in rows)  # nothing was ever accepted
        in_flight = [r for r in rows if r["next_attempt_at"] > killed_at + timedelta(seconds=9)]
        retrying = [r for r in rows if r["last_error"] and r not in in_flight]
        assert in_flight and retrying, (len(in_flight), len(retrying))

        seen_down = len(receiver.snapshot())
        receiver.respond = lambda hit: 200
        (tmp_path / "run2").mkdir()
        with live_server(tmp_path / "run2", **env):

            def arrived() -> set[str]:
                return {h.event_id for h in receiver.snapshot()[seen_down:]}

            # in-flight ones come back when their lease (14 s) runs out, the others at their
            # retry time; none is later than the latest of those
            latest = max(r["next_attempt_at"] for r in rows)
            limit_s = (latest - datetime.now(UTC)).total_seconds() + 20
            try:
                wait_until(lambda: before <= arrived(), limit_s, "every event after the restart")
            except AssertionError:
                missing = [r for r in outbox(database) if r["id"] not in arrived()]
                raise AssertionError(f"{len(missing)} missing: {missing[:5]}") from None
            wait_until(
                lambda: all(r["delivered_at"] for r in outbox(database)), 10, "all marked delivered"
            )
    hits = receiver.snapshot()
    assert {h.event_id for h in hits[seen_down:]} == before  # nothing lost, nothing invented
    first_body: dict[str, bytes] = {}
    for h in hits:
        assert h.doc["id"] == h.event_id
        assert verify(h.headers["X-IVR-Signature"], h.body, SECRET)
        # a redelivery is the same event: same id, same body (only the signature is new)
        assert first_body.setdefault(h.event_id, h.body) == h.body
    types = {h.headers["X-IVR-Event-Type"] for h in hits}
    assert types == {"callback.scheduled", "callback.due"}
