"""The callback dispatcher: hands out due callbacks and expires overdue ones, on a timer.

Every tick it first expires what is overdue (so a callback due days ago is not dialled now),
then claims due callbacks in batches until a batch comes back short; each change is written
with its event (``callback.expired``, ``callback.due``) by `Callbacks`, and the webhook
deliverer is woken so the events go out at once. Several processes may run a dispatcher on
one database: the store's claims never hand the same callback to two of them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from ivr.callbacks.service import Callbacks
from ivr.tasks import cancel_and_wait

log = logging.getLogger(__name__)


class Dispatcher:
    """Owns one background task; `start()`, then `close()` (cancels it)."""

    def __init__(
        self,
        callbacks: Callbacks,
        interval_s: float,
        batch: int = 50,
        on_events: Callable[[], None] | None = None,
    ) -> None:
        self.callbacks = callbacks
        self.interval_s = interval_s
        self.batch = batch
        self.on_events = on_events
        self._task: asyncio.Task[None] | None = None
        self.dispatched = 0
        self.expired = 0
        self.errors = 0
        self.last_error: str | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="dispatcher")

    async def close(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None

    def stats(self) -> dict[str, Any]:
        return {
            "dispatched": self.dispatched,
            "expired": self.expired,
            "errors": self.errors,
            "last_error": self.last_error,
        }

    async def tick(self) -> tuple[int, int]:
        """One round: (callbacks expired, callbacks dispatched)."""
        expired = dispatched = 0
        while True:
            gone = await self.callbacks.expire_overdue(self.batch)
            expired += len(gone)
            self.expired += len(gone)
            self._produced(len(gone))
            if len(gone) < self.batch:
                break
        while True:
            due = await self.callbacks.dispatch_due(self.batch)
            dispatched += len(due)
            self.dispatched += len(due)
            self._produced(len(due))
            if len(due) < self.batch:
                break
        if expired or dispatched:
            log.info("dispatcher: %d callbacks due, %d expired", dispatched, expired)
        return expired, dispatched

    def _produced(self, n: int) -> None:
        """`n` events were just committed: have them sent now, not at the next poll."""
        if n and self.on_events is not None:
            self.on_events()

    async def _run(self) -> None:
        while True:
            try:
                await self.tick()
                if self.last_error is not None:
                    log.info("dispatcher: working again")
                    self.last_error = None
            except Exception as exc:  # e.g. the database briefly away: next tick retries
                self.errors += 1
                if self.last_error is None:  # once per outage, not every tick
                    log.error("dispatcher: %s: %s", type(exc).__name__, exc)
                self.last_error = f"{type(exc).__name__}: {exc}"
            await asyncio.sleep(self.interval_s)
