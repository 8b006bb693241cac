"""Outbound audio paced at real time, in pieces of the leg's ptime (whole 20 ms frames).

Pieces are sent on a fixed schedule taken from the loop clock (so delays do not accumulate),
`LEAD_MS` ahead of the far end's playback so its jitter buffer holds a little audio. A piece
sent after the far end would have started playing it is counted as an underrun: its buffer
ran dry. `stop()` drops what is queued and tells the far end to clear its buffer.

A mark (`mark()`) waits in the queue behind the audio queued before it and is sent right
after that audio, so a far end that echoes marks as its playback reaches them (Twilio, the
softphone) tells the call what the caller has actually heard.

Audio queued with `barge_in=False` holds barge-in off (`interruptible` is False) until it
has all been sent, and `HOLD_AFTER_MS` more: what the far end may still have buffered when
its last piece left, so a later `clear` cannot cut its end. The hold ends at the latest when
the queue runs dry; `on_interruptible` reports its end.

A send that fails (the caller dropped the connection) stops the player for good: it reports
the error once through `on_error`, counts as drained, and drops whatever is queued later, so
nothing waiting on playback can hang and `close()` never raises.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable, Callable

from ivr.transports.messages import FRAME_MS, ClearAudio, OutboundMessage, PlayAudio, SetMark

LEAD_MS = 100  # rides out a busy event loop without the far end running dry
HOLD_AFTER_MS = 100  # a prompt that must be heard: held this much past its last piece sent


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
        self.bytes_per_s = rate * 2
        self._queue: deque[bytes | SetMark] = deque()
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self.underruns = 0
        self.frames_sent = 0  # 20 ms frames, whatever the pieces' size
        self.frames_queued = 0  # every frame ever queued, sent or dropped since
        self.frames_dropped = 0  # by `stop()` (or a failed send) before they were sent
        # Barge-in is held off until this many frames were sent (see the module doc).
        self._hold_frames = (LEAD_MS + HOLD_AFTER_MS + ptime_ms) // FRAME_MS
        self._hold_until: int | None = None  # a `position`; None: nothing held
        self.on_first_frame: Callable[[], None] | None = None
        self.on_drained: Callable[[], None] | None = None
        self.on_interruptible: Callable[[], None] | None = None  # a barge-in hold ended
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

    @property
    def interruptible(self) -> bool:
        """False while audio queued with barge_in=False (or its hold) is still to be sent."""
        return self._hold_until is None

    @property
    def position(self) -> int:
        """Where the next frame sent is among all frames ever queued (`frames_queued`
        counts them): a `stop()` drops the rest of the queue, so sent and dropped frames
        together are the frames before it."""
        return self.frames_sent + self.frames_dropped

    def enqueue(self, pcm: bytes, *, barge_in: bool = True) -> None:
        """Queue audio to play; with `barge_in` False, a barge-in cannot cut it (nor what
        is queued before it)."""
        if self.failed is not None:
            return  # nobody to play to any more
        if len(pcm) % self.frame_bytes:  # whole frames: pad the end with silence
            pcm += b"\x00" * (self.frame_bytes - len(pcm) % self.frame_bytes)
        size = self.piece_bytes
        self._queue.extend(pcm[i : i + size] for i in range(0, len(pcm), size))
        self.frames_queued += len(pcm) // self.frame_bytes
        if not barge_in and pcm:
            self._hold_until = self.frames_queued + self._hold_frames
        if pcm:
            self._idle.clear()
            self._wake.set()

    def mark(self, name: str) -> None:
        """Send `SetMark(name)` once the audio queued so far has been sent."""
        if self.failed is None:
            self._queue.append(SetMark(name))
            self._wake.set()

    async def stop(self) -> None:
        """Barge-in: drop queued audio and clear the far end's buffer at once."""
        had_audio = self.playing
        self._drop()
        self._finish()
        if had_audio and self.failed is None:
            try:
                await self._send(ClearAudio())
            except Exception as exc:
                self._fail(exc)

    async def drained(self) -> None:
        await self._idle.wait()

    def _drop(self) -> None:
        self.frames_dropped += sum(
            len(item) // self.frame_bytes for item in self._queue if isinstance(item, bytes)
        )
        self._queue.clear()

    def _finish(self) -> None:
        if not self._idle.is_set():
            self._idle.set()
            if self.on_drained is not None:
                self.on_drained()
        self._release()  # nothing left to hold

    def _release(self, position: int | None = None) -> None:
        """End the barge-in hold: when `position` is past it, or whatever it is (None)."""
        if self._hold_until is None:
            return
        if position is None or position >= self._hold_until:
            self._hold_until = None
            if self.on_interruptible is not None:
                self.on_interruptible()

    def _fail(self, exc: BaseException) -> None:
        if self.failed is not None:
            return
        self.failed = exc
        self._drop()
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
                if isinstance(piece, SetMark):
                    await self._send(piece)
                    continue
                if played and loop.time() > start + played:
                    self.underruns += 1
                    start = loop.time() - played  # resynchronise; don't burst to catch up
                await self._send(PlayAudio(piece))
                if not played and self.on_first_frame is not None:
                    self.on_first_frame()
                self.frames_sent += len(piece) // self.frame_bytes
                self._release(self.position)
                played += len(piece) / self.bytes_per_s
                delay = start + played - lead - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
            self._finish()
