"""On-disk cache of rendered prompts (wire bytes), with a small in-memory LRU in front.

pcm16 entries are stored as WAV so they can be played or reused as recordings; G.711 entries
as raw bytes plus a JSON sidecar with the rate and encoding. Writes are atomic (temp file +
os.replace), so concurrent processes sharing the directory never see a partial entry.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import soundfile as sf

from ivr.audio.codecs import Encoding, decode

_Writer = Callable[[BinaryIO], object]

KEY_VERSION = 1  # bump when rendering changes so old entries are no longer hit


def cache_key(text: str, voice: str, speed: int, rate: int, encoding: Encoding) -> str:
    """sha256 hex digest identifying one rendering of `text`."""
    blob = json.dumps([KEY_VERSION, "espeak-ng", text, voice, speed, rate, str(encoding)])
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class PromptCache:
    """Not thread-safe: use one instance per event loop; the directory may be shared."""

    def __init__(self, dir: Path, max_entries: int = 256, max_bytes: int = 32 << 20) -> None:
        self.dir = Path(dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._lru: OrderedDict[str, bytes] = OrderedDict()
        self._lru_bytes = 0

    def get(self, key: str) -> bytes | None:
        data = self._lru.get(key)
        if data is not None:
            self._lru.move_to_end(key)
            return data
        data = self._read(key)
        if data is not None:
            self._remember(key, data)
        return data

    def put(self, key: str, data: bytes, *, rate: int, encoding: Encoding) -> None:
        if encoding is Encoding.PCM16:
            self._atomic(self._path(key, "wav"), lambda f: _write_wav(f, data, rate))
        else:
            meta = json.dumps({"rate": rate, "encoding": str(encoding)}).encode()
            # Sidecar first: an entry only counts once its data file exists.
            self._atomic(self._path(key, "json"), lambda f: f.write(meta))
            self._atomic(self._path(key, encoding.value), lambda f: f.write(data))
        self._remember(key, data)

    def _read(self, key: str) -> bytes | None:
        wav = self._path(key, "wav")
        try:
            if wav.exists():
                samples, _ = sf.read(str(wav), dtype="int16")
                return bytes(samples.astype("<i2").tobytes())
            meta = json.loads(self._path(key, "json").read_text())
            return self._path(key, Encoding(meta["encoding"]).value).read_bytes()
        except (OSError, ValueError, KeyError, sf.LibsndfileError):
            return None  # absent or unreadable: treat as a miss and re-render

    def _remember(self, key: str, data: bytes) -> None:
        if key in self._lru:
            self._lru_bytes -= len(self._lru.pop(key))
        self._lru[key] = data
        self._lru_bytes += len(data)
        while self._lru and (
            len(self._lru) > self._max_entries or self._lru_bytes > self._max_bytes
        ):
            _, old = self._lru.popitem(last=False)
            self._lru_bytes -= len(old)

    def _path(self, key: str, ext: str) -> Path:
        if len(key) != 64 or any(c not in "0123456789abcdef" for c in key):
            raise ValueError(f"cache keys are sha256 hex digests, got {key!r}")
        return self.dir / key[:2] / f"{key}.{ext}"

    @staticmethod
    def _atomic(path: Path, write: _Writer) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as f:
                write(f)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise


def _write_wav(f: BinaryIO, data: bytes, rate: int) -> None:
    sf.write(f, decode(data, Encoding.PCM16), rate, subtype="PCM_16", format="WAV")
