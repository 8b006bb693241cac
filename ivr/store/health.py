"""How the database has been answering: the store's health, for readiness (``GET /readyz``).

Every store operation reports here: a driver error marks the store failing (its time and
the error's kind are kept: no message, which may name files or hosts). Only a write known to
reach the database clears that: the node's heartbeat (`Store.node_seen`), which `StoreProbe`
writes every few seconds. Other successes do not: on a disk that refuses writes, reads and
writes that change nothing (an idle dispatcher's poll) still succeed, and readiness would
flap between each failed call record and the next poll.

Recovery needs no restart: the first heartbeat that gets through makes the store healthy.
A heartbeat that hangs (a lock held by another process, a server that stopped answering)
makes it unready too, before the driver's own timeout turns it into an error.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from ivr.store.base import Store, StoreError

log = logging.getLogger(__name__)


def _iso(t: float | None) -> str | None:
    return None if t is None else datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds")


class StoreHealth:
    """One store's recent answers (see the module). Updated on the event loop's thread."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self.failing = False
        self.errors = 0  # driver errors since the store opened
        self.last_success: float | None = None
        self.last_failure: float | None = None
        self.last_error: str | None = None  # the driver error's class name

    def succeeded(self) -> None:
        self.last_success = self._clock()

    def failed(self, exc: BaseException) -> None:
        self.errors += 1
        self.last_failure = self._clock()
        self.last_error = type(exc).__name__
        if not self.failing:  # once per outage; each failed operation logs its own line
            self.failing = True
            log.error("store: the database is failing (%s: %s)", self.last_error, exc)

    def reached(self) -> None:
        """A write reached the database (the heartbeat): earlier failures are over."""
        self.succeeded()
        if self.failing:
            self.failing = False
            log.warning("store: the database answers again")

    def status(self) -> dict[str, Any]:
        return {
            "healthy": not self.failing,
            "errors": self.errors,
            "last_success": _iso(self.last_success),
            "last_failure": _iso(self.last_failure),
            "last_error": self.last_error,
        }


class StoreProbe:
    """Writes this node's heartbeat every `interval` seconds (every second while the store
    fails): a broken database is noticed without traffic, a mended one is ready again."""

    def __init__(self, store: Store, node_id: str, interval: float) -> None:
        self.store = store
        self.node_id = node_id
        self.interval = interval
        # Slower than this is a database that does not answer (SQLite waits 30 s for a lock).
        self.stall_s = max(5.0, 2 * interval)
        self._since: float | None = None  # when the heartbeat in flight began
        self._task: asyncio.Task[None] | None = None

    @property
    def stalled(self) -> bool:
        return self._since is not None and time.monotonic() - self._since > self.stall_s

    @property
    def ready(self) -> bool:
        return not self.store.health.failing and not self.stalled

    def status(self) -> dict[str, Any]:
        return {**self.store.health.status(), "healthy": self.ready, "stalled": self.stalled}

    async def beat(self) -> None:
        self._since = time.monotonic()
        try:
            await self.store.node_seen(self.node_id)
        except Exception as exc:  # the health has it (a store error) or the log (a bug)
            if not isinstance(exc, StoreError):
                log.error("store: heartbeat failed", exc_info=exc)
        finally:
            self._since = None

    async def _run(self) -> None:
        while True:
            await self.beat()
            failing = self.store.health.failing
            await asyncio.sleep(min(self.interval, 1.0) if failing else self.interval)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="store-probe")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
