"""Writes a call and its turns to the store, in order, off the call's hot path.

The pipeline hands records to a queue and carries on. One `StoreWriter` per store writes the
records of every call, in order, as many as are waiting in one transaction: at a hundred
calls, a transaction per turn made the store's one connection the bottleneck (records
written late, callback bookings queued behind them). A batch that fails is written again
one record per transaction, so one bad record loses only itself. A store failure is logged
and never ends the call.

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
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from ivr.call.recording import recording_path
from ivr.callbacks.service import call_json
from ivr.store import Store, StoreError

log = logging.getLogger(__name__)

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


Write = Callable[[Store], Awaitable[Any]]
"""One record's write, given the store (or the batch's transaction) to write it with."""

MAX_BATCH = 200  # records in one transaction


@dataclass
class _Item:
    call_id: str
    write: Write | None  # None: a marker, done when everything queued before it is
    done: asyncio.Future[None] | None = None
    recorder: CallRecorder | None = None  # counts its failures


class StoreWriter:
    """Writes records of many calls, in order, in batched transactions (see the module)."""

    def __init__(self, store: Store, max_batch: int = MAX_BATCH) -> None:
        self.store = store
        self._max_batch = max_batch
        self._queue: asyncio.Queue[_Item] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._followups: set[asyncio.Task[None]] = set()  # utterance WAVs being written
        self.batches = 0
        self.written = 0

    def put(self, item: _Item) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="store-writer")
        self._queue.put_nowait(item)

    def followup(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Work that follows a record (a WAV file, then its path): owned here, like writes."""
        task = asyncio.create_task(coro, name="store-writer:followup")
        self._followups.add(task)
        task.add_done_callback(self._followups.discard)
        return task

    async def close(self) -> None:
        tasks = [t for t in (self._task, *self._followups) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self._max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            await self._write(batch)
            for item in batch:
                if item.done is not None and not item.done.done():
                    item.done.set_result(None)

    async def _write(self, batch: list[_Item]) -> None:
        writes = [item for item in batch if item.write is not None]
        if not writes:
            return
        self.batches += 1
        try:
            async with self.store.transaction() as tx:
                for item in writes:
                    assert item.write is not None
                    await item.write(tx)
            self.written += len(writes)
            return
        except Exception as exc:
            if len(writes) == 1:
                self._failed(writes[0], exc)
                return
        for item in writes:  # one failed: each on its own, so only that one is lost
            assert item.write is not None
            try:
                async with self.store.transaction() as tx:
                    await item.write(tx)
                self.written += 1
            except Exception as exc:
                self._failed(item, exc)

    def _failed(self, item: _Item, exc: Exception) -> None:
        if item.recorder is not None:
            item.recorder.failures += 1
        if isinstance(exc, StoreError | OSError | ValueError):
            log.error("call %s: could not record: %s", item.call_id, exc)
        else:  # of no expected kind: logged whole; the next records go on
            log.error("call %s: could not record", item.call_id, exc_info=exc)


class CallRecorder:
    def __init__(
        self,
        store: Store | None,
        call_id: str,
        tz: ZoneInfo = UTC_ZONE,
        data_dir: Path | None = None,
        writer: StoreWriter | None = None,
    ) -> None:
        self._store = store
        self._call_id = call_id
        self._tz = tz  # of the times in the events' call_json (the configured zone)
        self._data_dir = data_dir  # utterance audio goes under it; None keeps none
        self._utterance_files = 0
        # The server's shared writer; a recorder on its own (tests, tools) has its own.
        self._own_writer = writer is None and store is not None
        self._writer = writer if writer is not None or store is None else StoreWriter(store)
        self._started = False
        self._followups: set[asyncio.Task[None]] = set()
        self.failures = 0

    def _put(self, write: Write) -> None:
        if self._writer is not None:
            self._writer.put(_Item(self._call_id, write, recorder=self))

    def start(self, **call: Any) -> None:
        if self._writer is None:
            return
        self._started = True
        at = datetime.now(UTC)  # now, not when the write gets its turn (a slow store)

        async def write(store: Store) -> None:
            async with store.transaction() as tx:
                record = await tx.start_call(self._call_id, started_at=at, **call)
                await tx.add_event("call.started", {"call": call_json(record, self._tz)})

        self._put(write)

    def turn(self, kind: Any, *, audio: bytes = b"", rate: int = 8000, **fields: Any) -> None:
        """Record a turn; with `audio` (PCM16 at `rate`), also keep that as the turn's WAV."""
        writer, data_dir, call_id = self._writer, self._data_dir, self._call_id
        if writer is None:
            return
        at = datetime.now(UTC)
        if not audio or data_dir is None or self._utterance_files >= MAX_UTTERANCE_FILES:
            self._put(lambda store: store.add_turn(call_id, kind, at=at, **fields))
            return
        self._utterance_files += 1

        async def keep_audio(seq: int) -> None:  # after the commit: no file I/O in a batch
            relative = utterance_path(call_id, seq)
            try:
                await asyncio.to_thread(write_wav, data_dir / relative, audio, rate)
            except OSError as exc:
                log.error("call %s: could not keep an utterance's audio: %s", call_id, exc)
                return
            self._put(lambda store: store.set_turn_audio(call_id, seq, relative.as_posix()))

        async def write(store: Store) -> None:
            turn = await store.add_turn(call_id, kind, at=at, **fields)
            task = writer.followup(keep_audio(turn.seq))
            self._followups.add(task)
            task.add_done_callback(self._followups.discard)

        self._put(write)

    async def _written(self) -> None:
        """Until everything queued so far is written (or failed)."""
        assert self._writer is not None
        done = asyncio.get_running_loop().create_future()
        self._writer.put(_Item(self._call_id, None, done))
        await asyncio.shield(done)

    def transfer_requested(self, transfer: dict[str, Any]) -> bool:
        """The ``call.transfer_requested`` webhook event (payload ``{"call": <call_json>,
        "transfer": ...}``), after the records queued before it; False when this call keeps
        no records (then there is no outbox to send it from)."""
        if self._writer is None or not self._started:
            return False

        async def write(store: Store) -> None:
            async with store.transaction() as tx:
                record = await tx.get_call(self._call_id)
                payload = {"call": call_json(record, self._tz), "transfer": transfer}
                await tx.add_event("call.transfer_requested", payload)

        self._put(write)
        return True

    def later(self, write: Write) -> None:
        """Another part's write about this call (a complaint's records), in order after the
        records queued before it (so after the call's own); nothing when it keeps none."""
        if self._started:
            self._put(write)

    def survey(self, score: int) -> None:
        """The caller's post-call survey score (1-5)."""
        self._put(lambda store: store.record_survey(self._call_id, score))

    async def finish(self, end_reason: str, limit_s: float = 10.0) -> None:
        """Record the end and wait (bounded) until everything queued is written."""
        writer = self._writer
        if writer is None or not self._started:
            return
        at = datetime.now(UTC)

        async def write(store: Store) -> None:
            async with store.transaction() as tx:
                record = await tx.end_call(self._call_id, end_reason, ended_at=at)
                await tx.add_event("call.ended", {"call": call_json(record, self._tz)})

        self._put(write)
        try:
            async with asyncio.timeout(limit_s):
                await self._written()
                if self._followups:  # the utterances' WAVs, then their paths
                    await asyncio.wait(set(self._followups))
                    await self._written()
        except TimeoutError:
            log.error("call %s: call record not written within %g s", self._call_id, limit_s)
        finally:
            if self._own_writer:
                await writer.close()
