"""Outbound audio paced at real time, in pieces of the leg's ptime (whole 20 ms frames).

Pieces are sent on a fixed schedule taken from the loop clock (so delays do not accumulate),
`LEAD_MS` ahead of the far end's playback so its jitter buffer holds a little audio. A piece
sent after the far end would have started playing it is counted as an underrun: its buffer
ran dry. `stop()` drops what is queued and tells the far end to clear its buffer.

A send that fails (the caller dropped the connection) stops the player for good: it reports
the error once through `on_error`, counts as drained, and drops whatever is queued later, so
nothing waiting on playback can hang and `close()` never raises.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable, Callable

from ivr.transports.messages import FRAME_MS, ClearAudio, OutboundMessage, PlayAudio

LEAD_MS = 100  # rides out a busy event loop without the far end running dry


class Player:
    def __init__(
        self,
        send: Callable[[OutboundMessage], Awaitable[None]],
        rate: int,
        ptime_ms: int = FRAME_MS,
    ) -> None:
        if ptime_ms <= 0 or ptime_ms % FRAME_MS:
            raise ValueError(f"ptime must be a whole number of {FRAME_MS} ms frames: {ptime_ms}")
        self._send = send
        self.frame_bytes = rate * FRAME_MS // 1000 * 2
        self.piece_bytes = self.frame_bytes * (ptime_ms // FRAME_MS)
        self._bytes_per_s = rate * 2
        self._queue: deque[bytes] = deque()
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self.underruns = 0
        self.frames_sent = 0  # 20 ms frames, whatever the pieces' size
        self.on_first_frame: Callable[[], None] | None = None
        self.on_drained: Callable[[], None] | None = None
        self.on_error: Callable[[BaseException], None] | None = None
        self.failed: BaseException | None = None  # the send error that stopped the player
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="player")

    async def close(self) -> None:
        """Stop playing. Never raises: it runs in a call's teardown, which must go on."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    @property
    def playing(self) -> bool:
        return not self._idle.is_set()

    def enqueue(self, pcm: bytes) -> None:
        if self.failed is not None:
            return  # nobody to play to any more
        if len(pcm) % self.frame_bytes:  # whole frames: pad the end with silence
            pcm += b"\x00" * (self.frame_bytes - len(pcm) % self.frame_bytes)
        size = self.piece_bytes
        self._queue.extend(pcm[i : i + size] for i in range(0, len(pcm), size))
        if self._queue:
            self._idle.clear()
            self._wake.set()

    async def stop(self) -> None:
        """Barge-in: drop queued audio and clear the far end's buffer at once."""
        had_audio = bool(self._queue) or self.playing
        self._queue.clear()
        self._finish()
        if had_audio and self.failed is None:
            try:
                await self._send(ClearAudio())
            except Exception as exc:
                self._fail(exc)

    async def drained(self) -> None:
        await self._idle.wait()

    def _finish(self) -> None:
        if not self._idle.is_set():
            self._idle.set()
            if self.on_drained is not None:
                self.on_drained()

    def _fail(self, exc: BaseException) -> None:
        if self.failed is not None:
            return
        self.failed = exc
        self._queue.clear()
        self._finish()
        if self.on_error is not None:
            self.on_error(exc)

    async def _run(self) -> None:
        try:
            await self._play()
        except Exception as exc:  # a send failed: the leg is gone (see the module doc)
            self._fail(exc)

    async def _play(self) -> None:
        loop = asyncio.get_running_loop()
        lead = LEAD_MS / 1000
        while True:
            await self._wake.wait()
            self._wake.clear()
            start = loop.time()  # the far end starts playing about now
            played = 0.0  # seconds of audio sent since `start`
            while self._queue:
                piece = self._queue.popleft()
                if played and loop.time() > start + played:
                    self.underruns += 1
                    start = loop.time() - played  # resynchronise; don't burst to catch up
                await self._send(PlayAudio(piece))
                if not played and self.on_first_frame is not None:
                    self.on_first_frame()
                self.frames_sent += len(piece) // self.frame_bytes
                played += len(piece) / self._bytes_per_s
                delay = start + played - lead - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
            self._finish()
