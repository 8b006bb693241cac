"""Render prompts as wire bytes for a call: a recorded WAV when one exists, else cached TTS."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

from ivr.audio.codecs import Encoding, encode
from ivr.audio.pcm import Audio, read_wav
from ivr.tts.cache import PromptCache, cache_key
from ivr.tts.engine import TtsEngine

_KEY_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")  # no separators: keys cannot escape the dir


class PromptRenderer:
    """Turns prompt text (or a recorded prompt's key) into audio in a call's rate and encoding.

    A recording at `<prompts_dir>/<key>.wav` wins over TTS, so studio prompts can replace
    synthetic ones one at a time without code changes.
    """

    def __init__(
        self,
        engine: TtsEngine,
        cache: PromptCache | None = None,
        prompts_dir: Path | None = None,
    ) -> None:
        self.engine = engine
        self.cache = cache
        self.prompts_dir = prompts_dir

    async def render(
        self,
        text: str,
        *,
        key: str | None = None,
        rate: int = 8000,
        encoding: Encoding = Encoding.ULAW,
        voice: str | None = None,
        speed: int | None = None,
    ) -> bytes:
        recorded = self.recording(key)
        if recorded is not None:
            # Off the loop: reading and resampling a long recording can take a while.
            return await asyncio.to_thread(_convert_file, recorded, rate, encoding)
        ckey = self._key(text, voice, speed, rate, encoding)
        if self.cache is not None and (hit := self.cache.get(ckey)) is not None:
            return hit
        audio = await self.engine.synthesize(text, voice, speed)
        return self._store(ckey, _convert(audio, rate, encoding), rate, encoding)

    def recording(self, key: str | None) -> Path | None:
        """Path of the recorded prompt for `key`, if there is one."""
        if key is None or self.prompts_dir is None:
            return None
        if not _KEY_RE.fullmatch(key):
            raise ValueError(f"invalid prompt key {key!r}")
        path = self.prompts_dir / f"{key}.wav"
        return path if path.is_file() else None

    def _key(
        self, text: str, voice: str | None, speed: int | None, rate: int, encoding: Encoding
    ) -> str:
        # Resolve defaults first so a change of engine defaults is a cache miss, not stale audio.
        return cache_key(
            text.strip(),
            voice or self.engine.default_voice,
            self.engine.default_speed if speed is None else speed,
            rate,
            encoding,
        )

    def _store(self, ckey: str, data: bytes, rate: int, encoding: Encoding) -> bytes:
        if self.cache is not None:
            self.cache.put(ckey, data, rate=rate, encoding=encoding)
        return data


def _convert(audio: Audio, rate: int, encoding: Encoding) -> bytes:
    return encode(audio.to_rate(rate).samples, encoding)


def _convert_file(path: Path, rate: int, encoding: Encoding) -> bytes:
    return encode(read_wav(path, rate).samples, encoding)
