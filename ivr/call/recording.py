"""Whole-call recording: what the caller said and what the bot played, on one timeline, as a
stereo WAV (left: caller, right: bot; 8 kHz 16-bit) in DATA_DIR/recordings/<call_id>.wav.

Audio is buffered in memory while the call runs (bounded by the longest call allowed) and
written once, in a worker thread, when it ends: the event loop never waits on the disk.

The caller's audio is a continuous stream (a phone line carries 20 ms frames whether anyone
speaks or not), so its samples are laid down back to back from the start. The bot's frames
are placed at the moment the player sent them (never overlapping each other), and a barge-in
`ClearAudio` drops what was sent but not yet played: the far end discarded it too.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import re
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import soundfile as sf

from ivr.audio.pcm import resample
from ivr.transports.messages import ClearAudio, OutboundMessage, PlayAudio

log = logging.getLogger(__name__)

RATE = 8000  # recordings are telephone audio whatever the leg's rate
SLACK_S = 5.0  # buffers may exceed the call limit by this much (the goodbye prompt)
_SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


def recording_path(directory: Path, call_id: str) -> Path:
    """The call's WAV. Call ids come from the far end, so one that is not a plain file name
    (a slash, "..", control characters...) is replaced by its SHA-256: never a path escape."""
    if _SAFE_ID.fullmatch(call_id) and ".." not in call_id:
        return directory / f"{call_id}.wav"
    digest = hashlib.sha256(call_id.encode("utf-8", "surrogatepass")).hexdigest()
    return directory / f"_{digest}.wav"


class CallAudio:
    """The two sides of one call, in memory until `finish()`."""

    def __init__(
        self,
        path: Path,
        rate: int,
        max_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = path
        self.rate = rate
        self._clock = clock
        self._t0 = clock()
        self._limit = int((max_seconds + SLACK_S) * rate) * 2  # bytes per side
        self._caller = bytearray()
        self._bot = bytearray()  # silence where the bot did not play
        self.truncated = False

    def _now(self) -> int:
        """Byte offset of this moment on the timeline (whole samples)."""
        return round((self._clock() - self._t0) * self.rate) * 2

    def caller(self, pcm: bytes) -> None:
        room = self._limit - len(self._caller)
        if len(pcm) > room:
            self._truncate()
            pcm = pcm[: max(0, room)]
        self._caller += pcm

    def sent(self, message: OutboundMessage) -> None:
        """What the player sends the leg: audio is recorded, a clear drops unplayed audio."""
        if isinstance(message, PlayAudio):
            self._bot_audio(message.pcm)
        elif isinstance(message, ClearAudio):
            now = self._now()
            if len(self._bot) > now:
                del self._bot[now:]

    def _bot_audio(self, pcm: bytes) -> None:
        at = max(len(self._bot), self._now())  # a burst of frames plays back to back
        if at + len(pcm) > self._limit:
            self._truncate()
            return
        if at > len(self._bot):
            self._bot += bytes(at - len(self._bot))
        self._bot += pcm

    def _truncate(self) -> None:
        if not self.truncated:
            self.truncated = True
            log.warning("recording %s: longer than the call limit, the rest is dropped", self.path)

    async def finish(self) -> Path | None:
        """Write the WAV (in a thread); None when nothing was heard either way."""
        caller, bot = bytes(self._caller), bytes(self._bot)
        self._caller, self._bot = bytearray(), bytearray()
        if not caller and not bot:
            return None
        await asyncio.to_thread(write_stereo, self.path, caller, bot, self.rate)
        return self.path


def write_stereo(path: Path, left: bytes, right: bytes, rate: int) -> None:
    """Two 16-bit PCM channels (padded to the longer) as an 8 kHz stereo WAV, replaced
    atomically: a reader never sees half a file."""
    n = max(len(left), len(right)) // 2
    frames = np.zeros((n, 2), dtype=np.int16)
    for channel, pcm in enumerate((left, right)):
        samples = np.frombuffer(pcm[: len(pcm) // 2 * 2], dtype="<i2")
        frames[: len(samples), channel] = samples
    if rate != RATE:
        frames = np.stack([resample(frames[:, c], rate, RATE) for c in (0, 1)], axis=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    sf.write(str(tmp), frames, RATE, subtype="PCM_16", format="WAV")
    os.replace(tmp, path)
