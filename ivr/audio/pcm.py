"""Linear PCM helpers: float/int16 conversion, resampling (soxr), framing and WAV I/O."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import soundfile as sf
import soxr

Int16Array = npt.NDArray[np.int16]
FloatArray = npt.NDArray[np.float32]

VALID_FRAME_MS = (10, 20, 30)


@dataclass(frozen=True)
class Audio:
    """Mono 16-bit PCM at a known sample rate."""

    samples: Int16Array
    rate: int

    @property
    def duration(self) -> float:
        return len(self.samples) / self.rate

    def to_rate(self, rate: int) -> Audio:
        return self if rate == self.rate else Audio(resample(self.samples, self.rate, rate), rate)

    def tobytes(self) -> bytes:
        return self.samples.astype("<i2").tobytes()


def pcm16_to_float(samples: Int16Array) -> FloatArray:
    return (np.asarray(samples, dtype=np.float32) / 32768.0).astype(np.float32)


def float_to_pcm16(samples: npt.ArrayLike) -> Int16Array:
    x = np.asarray(samples, dtype=np.float32)
    return np.clip(np.round(x * 32768.0), -32768, 32767).astype(np.int16)


def resample(samples: Int16Array, from_rate: int, to_rate: int) -> Int16Array:
    """Resample int16 PCM with soxr (high quality); identity when the rates match."""
    if from_rate == to_rate or len(samples) == 0:
        return np.asarray(samples, dtype=np.int16)
    if from_rate <= 0 or to_rate <= 0:
        raise ValueError(f"sample rates must be positive, got {from_rate} → {to_rate}")
    out = soxr.resample(np.asarray(samples, dtype=np.int16), from_rate, to_rate, quality="HQ")
    return np.asarray(out, dtype=np.int16)


def frame_bytes(rate: int, frame_ms: int, sample_width: int = 2) -> int:
    """Bytes in one frame of `frame_ms` at `rate`."""
    if frame_ms not in VALID_FRAME_MS:
        raise ValueError(f"frame length must be one of {VALID_FRAME_MS} ms, got {frame_ms}")
    return rate * frame_ms // 1000 * sample_width


class FrameSplitter:
    """Cuts a byte stream of 16-bit PCM into fixed frames, keeping the remainder for next time."""

    def __init__(self, rate: int, frame_ms: int) -> None:
        self.rate = rate
        self.frame_ms = frame_ms
        self.size = frame_bytes(rate, frame_ms)
        self._pending = bytearray()

    def push(self, data: bytes) -> list[bytes]:
        self._pending += data
        n = len(self._pending) // self.size
        frames = [bytes(self._pending[i * self.size : (i + 1) * self.size]) for i in range(n)]
        del self._pending[: n * self.size]
        return frames

    def flush(self) -> bytes | None:
        """The last partial frame padded with silence, or None when nothing is pending."""
        if not self._pending:
            return None
        frame = bytes(self._pending) + b"\x00" * (self.size - len(self._pending))
        self._pending.clear()
        return frame


def read_wav(path: str | Path, rate: int | None = None) -> Audio:
    """Read a sound file as mono int16, down-mixing and resampling to `rate` if given."""
    try:
        data, file_rate = sf.read(str(path), dtype="int16", always_2d=True)
    except sf.LibsndfileError as exc:
        raise ValueError(f"{path}: cannot read audio: {exc}") from exc
    if data.shape[1] > 1:
        mono = np.mean(data.astype(np.int32), axis=1).astype(np.int16)
    else:
        mono = data[:, 0].astype(np.int16)
    audio = Audio(mono, int(file_rate))
    return audio.to_rate(rate) if rate else audio


def write_wav(path: str | Path, audio: Audio) -> None:
    sf.write(str(path), audio.samples, audio.rate, subtype="PCM_16", format="WAV")
