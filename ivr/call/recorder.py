"""Writes a call and its turns to the store, in order, off the call's hot path.

The pipeline hands records to a queue and carries on; one task per call writes them. A store
failure is logged and never ends the call.

The call's start and end are each written in one transaction with their webhook event
(``call.started`` / ``call.ended``, payload ``{"call": <call_json>}``), so an event is in the
outbox exactly when the record it announces is.

An utterance nothing matched can be kept for grammar tuning: its audio is written as a WAV
(mono 16-bit at the call's rate) to DATA_DIR/audio/<call_id>/<seq>.wav in a worker thread, and
the turn references it once the file is complete. At most MAX_UTTERANCE_FILES per call.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import wave
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from ivr.call.recording import recording_path
from ivr.callbacks.service import call_json
from ivr.store import Store, StoreError

log = logging.getLogger(__name__)

_STOP = object()
UTC_ZONE = ZoneInfo("UTC")
MAX_UTTERANCE_FILES = 20  # per call (each at most the endpointer's 15 s): bounds disk use


def utterance_path(call_id: str, seq: int) -> Path:
    """Where a turn's audio goes, relative to the data directory. The call's folder is named
    like its whole-call recording: a call id that is not a plain file name is hashed."""
    folder = recording_path(Path("audio"), call_id).with_suffix("")
    return folder / f"{seq}.wav"


def write_wav(path: Path, pcm: bytes, rate: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(pcm)


class CallRecorder:
    def __init__(
        self,
        store: Store | None,
        call_id: str,
        tz: ZoneInfo = UTC_ZONE,
        data_dir: Path | None = None,
    ) -> None:
        self._store = store
        self._call_id = call_id
        self._tz = tz  # of the times in the events' call_json (the configured zone)
        self._data_dir = data_dir  # utterance audio goes under it; None keeps none
        self._utterance_files = 0
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

    def turn(self, kind: Any, *, audio: bytes = b"", rate: int = 8000, **fields: Any) -> None:
        """Record a turn; with `audio` (PCM16 at `rate`), also keep that as the turn's WAV."""
        store, data_dir = self._store, self._data_dir
        if store is None:
            return
        if not audio or data_dir is None or self._utterance_files >= MAX_UTTERANCE_FILES:
            self._put(lambda: store.add_turn(self._call_id, kind, **fields))
            return
        self._utterance_files += 1

        async def write() -> None:
            turn = await store.add_turn(self._call_id, kind, **fields)
            relative = utterance_path(self._call_id, turn.seq)
            await asyncio.to_thread(write_wav, data_dir / relative, audio, rate)
            await store.set_turn_audio(self._call_id, turn.seq, relative.as_posix())

        self._put(write)

    def survey(self, score: int) -> None:
        """The caller's post-call survey score (1-5)."""
        if self._store is not None:
            store = self._store
            self._put(lambda: store.record_survey(self._call_id, score))

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
            except Exception:  # of no expected kind: still the next write, and the end, go on
                self.failures += 1
                log.exception("call %s: could not record", self._call_id)
