"""Whole-call recording: what the caller said and what the bot played, on one timeline, as a
stereo WAV (left: caller, right: bot; 8 kHz 16-bit) in DATA_DIR/recordings/<call_id>.wav.

Audio streams to disk while the call runs: whatever is settled (both sides known) is handed,
every few seconds, to a worker thread that resamples it and appends it to a temporary WAV,
which `finish()` completes and renames into place. Memory per call stays at a few seconds of
audio however long the call lasts, and the event loop never waits on the disk.

The caller's audio is a continuous stream (a phone line carries 20 ms frames whether anyone
speaks or not), so its samples are laid down back to back from the start. The bot's frames
are placed at the moment the player sent them (never overlapping each other), and a barge-in
`ClearAudio` drops what was sent but not yet played: the far end discarded it too.

While a question marked ``sensitive: true`` listens (an account number, a PIN) the recording
is paused (`pause`/`resume`): both sides are written as silence, so the timeline stays whole
(the turns' times still point at their audio) but the keys' tones and the digits said are
not kept.

A server killed mid-call leaves the temporary WAV behind, its header still saying "no audio"
(written at open, completed at close). At start-up, before any call, `recover_partial()`
turns each into the call's recording (header sizes fixed from the file's length: everything
that reached the disk is kept) or removes it when it holds no audio.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import re
import struct
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from ivr.transports.messages import ClearAudio, OutboundMessage, PlayAudio

log = logging.getLogger(__name__)

RATE = 8000  # recordings are telephone audio whatever the leg's rate
SLACK_S = 5.0  # a recording may exceed the call limit by this much (the goodbye prompt)
CHUNK_S = 5.0  # settled audio is written in pieces of about this length
_SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
_PARTIAL = ".*.wav.tmp"  # the temporary name of a recording being written (see _WavSink)


def recording_path(directory: Path, call_id: str) -> Path:
    """The call's WAV. Call ids come from the far end, so one that is not a plain file name
    (a slash, "..", control characters...) is replaced by its SHA-256: never a path escape."""
    if _SAFE_ID.fullmatch(call_id) and ".." not in call_id:
        return directory / f"{call_id}.wav"
    digest = hashlib.sha256(call_id.encode("utf-8", "surrogatepass")).hexdigest()
    return directory / f"_{digest}.wav"


class RecordingFiles:
    """The recordings on disk as the API reads them (`ivr.api.context.Recordings`): whole
    calls under `recordings` (served even with recording off), turns' audio under
    `data_dir`/audio, by the relative path the store keeps."""

    def __init__(self, recordings: Path, data_dir: Path) -> None:
        self.recordings = recordings
        self.data_dir = data_dir

    def call_recording(self, call_id: str) -> Path | None:
        path = recording_path(self.recordings, call_id)
        return path if path.is_file() else None

    def turn_audio(self, stored: str) -> Path | None:
        folder = (self.data_dir / "audio").resolve()
        path = (self.data_dir / stored).resolve()  # the store's path cannot lead elsewhere
        return path if path.is_relative_to(folder) and path.is_file() else None


class CallAudio:
    """The two sides of one call: a few seconds in memory, the rest already on disk."""

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
        self._chunk = int(CHUNK_S * rate) * 2
        # Unwritten tails of both sides. Byte offset `_base` of the timeline is where both
        # begin: everything before it has been handed to the writer.
        self._base = 0
        self._caller = bytearray()
        self._bot = bytearray()  # silence where the bot did not play
        self._sink = _WavSink(path, rate)
        self._pieces: list[tuple[bytes, bytes]] = []
        self._writer: asyncio.Task[None] | None = None
        self.truncated = False
        self.failed = False  # the disk refused a piece: the rest of the call is not kept
        self.paused = False  # a sensitive answer is being given: silence on both sides

    def _now(self) -> int:
        """Byte offset of this moment on the timeline (whole samples)."""
        return round((self._clock() - self._t0) * self.rate) * 2

    @property
    def buffered(self) -> int:
        """Bytes held in memory, both sides (what the writer has not taken yet)."""
        return len(self._caller) + len(self._bot) + sum(len(a) + len(b) for a, b in self._pieces)

    def pause(self) -> None:
        """From now on both sides are recorded as silence (a sensitive answer is given)."""
        self.paused = True

    def resume(self) -> None:
        """Record what is heard again."""
        self.paused = False

    def caller(self, pcm: bytes) -> None:
        if self.failed:
            return
        if self.paused:
            pcm = bytes(len(pcm))
        room = self._limit - (self._base + len(self._caller))
        if len(pcm) > room:
            self._truncate()
            pcm = pcm[: max(0, room)]
        self._caller += pcm
        self._write_settled()

    def sent(self, message: OutboundMessage) -> None:
        """What the player sends the leg: audio is recorded, a clear drops unplayed audio."""
        if self.failed:
            return
        if isinstance(message, PlayAudio):
            self._bot_audio(message.pcm)
        elif isinstance(message, ClearAudio):
            now = self._now() - self._base
            if len(self._bot) > now:
                del self._bot[max(0, now) :]

    def _bot_audio(self, pcm: bytes) -> None:
        if self.paused:
            pcm = bytes(len(pcm))
        at = max(len(self._bot), self._now() - self._base)  # a burst plays back to back
        if self._base + at + len(pcm) > self._limit:
            self._truncate()
            return
        if at > len(self._bot):
            self._bot += bytes(at - len(self._bot))
        self._bot += pcm

    def _truncate(self) -> None:
        if not self.truncated:
            self.truncated = True
            log.warning("recording %s: longer than the call limit, the rest is dropped", self.path)

    def _write_settled(self) -> None:
        """Hand the writer what can no longer change: the caller's stream up to now (the
        bot's audio before now is final; after it, a barge-in may still drop it)."""
        settled = min(len(self._caller), self._now() - self._base)
        if settled >= self._chunk:
            self._take(settled - settled % 2)

    def _take(self, n: int) -> None:
        if n <= 0:
            return
        caller, bot = bytes(self._caller[:n]), bytes(self._bot[:n])
        del self._caller[:n], self._bot[:n]
        self._base += n
        self._pieces.append((caller, bot))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.get_running_loop().create_task(self._write())

    async def _write(self) -> None:
        while self._pieces:
            caller, bot = self._pieces[0]
            try:
                await asyncio.to_thread(self._sink.write, caller, bot)
            except (OSError, RuntimeError, ValueError) as exc:  # disk full, folder gone...
                log.error("recording %s: %s; the rest of the call is not recorded", self.path, exc)
                self.failed = True
                self._pieces.clear()
                self._caller.clear()
                self._bot.clear()
                return
            self._pieces.pop(0)  # after: `buffered` counts it until it is on disk

    async def finish(self) -> Path | None:
        """Write the rest and complete the WAV; None when nothing was heard either way, or
        when the disk refused it (the partial file is removed)."""
        self._take(max(len(self._caller), len(self._bot)))
        writer = self._writer
        if writer is not None:
            await writer
        if self.failed:
            await asyncio.to_thread(self._sink.discard)
            return None
        return await asyncio.to_thread(self._sink.close)


class _WavSink:
    """An 8 kHz stereo WAV written piece by piece (in a worker thread) to a temporary name,
    renamed into place when complete: a reader never sees half a file."""

    def __init__(self, path: Path, rate: int) -> None:
        self.path = path
        self._tmp = path.with_name(f".{path.name}.tmp")
        self._file: sf.SoundFile | None = None
        self._fed = False  # the resampler was given audio (it holds some back until `last`)
        # One stream for the whole call: no clicks or lost samples at the pieces' seams.
        self._resampler = (
            soxr.ResampleStream(rate, RATE, 2, dtype="int16", quality="HQ")
            if rate != RATE
            else None
        )

    def write(self, left: bytes, right: bytes, last: bool = False) -> None:
        frames = stereo(left, right)
        self._fed = self._fed or len(frames) > 0
        if self._resampler is not None:
            frames = self._resampler.resample_chunk(frames, last=last)
        if self._file is None:
            if not len(frames):
                return
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = sf.SoundFile(
                str(self._tmp), "w", samplerate=RATE, channels=2, subtype="PCM_16", format="WAV"
            )
        self._file.write(frames)

    def discard(self) -> None:
        if self._file is not None:
            with contextlib.suppress(Exception):  # it failed already; the file is what matters
                self._file.close()
            self._file = None
        with contextlib.suppress(OSError):  # e.g. never created: its folder is not there
            self._tmp.unlink(missing_ok=True)

    def close(self) -> Path | None:
        if self._resampler is not None and self._fed:
            self.write(b"", b"", last=True)  # what the resampler still holds
        if self._file is None:
            return None
        self._file.close()
        os.replace(self._tmp, self.path)
        return self.path


def _wav_layout(head: bytes) -> tuple[int, int] | None:
    """(offset of the data chunk's size field, bytes per frame) of a RIFF/WAVE header, or
    None when `head` is not one."""
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    at, block = 12, 0
    while at + 8 <= len(head):
        chunk, size = head[at : at + 4], struct.unpack_from("<I", head, at + 4)[0]
        if chunk == b"fmt " and at + 22 <= len(head):
            block = struct.unpack_from("<H", head, at + 20)[0]  # block align
        elif chunk == b"data":
            return (at + 4, block) if block else None
        at += 8 + size + size % 2
    return None


def _finalize(tmp: Path) -> Path | None:
    """Complete one partial recording in place and give it its final name; None (and the
    file removed) when it holds no whole frame of audio or is not a WAV at all."""
    final = tmp.with_name(tmp.name[1 : -len(".tmp")])  # ".CA1.wav.tmp" → "CA1.wav"
    with open(tmp, "r+b") as f:
        layout = _wav_layout(f.read(4096))
        length = os.fstat(f.fileno()).st_size
        if layout is not None:
            size_at, block = layout
            start = size_at + 4
            audio = (length - start) // block * block  # a frame cut by the crash is dropped
            if audio > 0 and not final.exists():  # a complete file of that name stays
                f.truncate(start + audio)
                f.seek(4)
                f.write(struct.pack("<I", start + audio - 8))
                f.seek(size_at)
                f.write(struct.pack("<I", audio))
                f.close()
                os.replace(tmp, final)
                return final
    tmp.unlink()
    return None


def recover_partial(directory: Path) -> tuple[int, int]:
    """Recordings a crash left half-written in `directory`: (completed, removed). Only for
    start-up: a data directory is one node's, and no call of this process has begun yet."""
    done = removed = 0
    for tmp in sorted(directory.glob(_PARTIAL)) if directory.is_dir() else []:
        try:
            if _finalize(tmp) is None:
                removed += 1
            else:
                done += 1
        except OSError as exc:  # one unreadable file does not stop the others
            log.error("recording %s: cannot recover it: %s", tmp.name, exc)
    return done, removed


def stereo(left: bytes, right: bytes) -> np.ndarray:
    """Two 16-bit PCM channels (padded to the longer) as (samples, 2) int16."""
    n = max(len(left), len(right)) // 2
    frames = np.zeros((n, 2), dtype=np.int16)
    for channel, pcm in enumerate((left, right)):
        samples = np.frombuffer(pcm[: len(pcm) // 2 * 2], dtype="<i2")
        frames[: len(samples), channel] = samples
    return frames
