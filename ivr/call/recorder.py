"""Writes a call and its turns to the store, in order, off the call's hot path.

The pipeline hands records to a queue and carries on; one task per call writes them. A store
failure is logged and never ends the call.

The call's start and end are each written in one transaction with their webhook event
(``call.started`` / ``call.ended``, payload ``{"call": <call_json>}``), so an event is in the
outbox exactly when the record it announces is.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any
from zoneinfo import ZoneInfo

from ivr.callbacks.service import call_json
from ivr.store import Store, StoreError

log = logging.getLogger(__name__)

_STOP = object()
UTC_ZONE = ZoneInfo("UTC")


class CallRecorder:
    def __init__(self, store: Store | None, call_id: str, tz: ZoneInfo = UTC_ZONE) -> None:
        self._store = store
        self._call_id = call_id
        self._tz = tz  # of the times in the events' call_json (the configured zone)
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self.failures = 0

    def start(self, **call: Any) -> None:
        if self._store is None:
            return
        store = self._store

        async def write() -> None:
            async with store.transaction() as tx:
                record = await tx.start_call(self._call_id, **call)
                await tx.add_event("call.started", {"call": call_json(record, self._tz)})

        self._put(write)
        self._task = asyncio.create_task(self._run(), name=f"{self._call_id}:recorder")

    def turn(self, kind: Any, **fields: Any) -> None:
        if self._store is not None:
            store = self._store
            self._put(lambda: store.add_turn(self._call_id, kind, **fields))

    async def finish(self, end_reason: str, limit_s: float = 10.0) -> None:
        """Record the end and wait (bounded) until everything queued is written."""
        if self._store is None or self._task is None:
            return
        store = self._store

        async def write() -> None:
            async with store.transaction() as tx:
                record = await tx.end_call(self._call_id, end_reason)
                await tx.add_event("call.ended", {"call": call_json(record, self._tz)})

        self._put(write)
        self._queue.put_nowait(_STOP)
        try:
            await asyncio.wait_for(asyncio.shield(self._task), limit_s)
        except TimeoutError:
            log.error("call %s: call record not written within %g s", self._call_id, limit_s)
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def _put(self, write: Callable[[], Awaitable[Any]]) -> None:
        self._queue.put_nowait(write)

    async def _run(self) -> None:
        while (write := await self._queue.get()) is not _STOP:
            try:
                await write()
            except (StoreError, OSError, ValueError) as exc:
                self.failures += 1
                log.error("call %s: could not record: %s", self._call_id, exc)
