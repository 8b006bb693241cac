"""Streaming speech endpointer on top of the WebRTC VAD.

Raw 16-bit PCM goes in, in chunks of any size; `SpeechStarted`, `SpeechEnded` and `NoSpeech`
events come out (see `ivr.events`). The WebRTC VAD classifies each frame; this module turns the
noisy per-frame decisions into utterances:

* start: at least `speech_ratio` of the frames in the last `speech_start_ms` (or
  `barge_in_start_ms` while a prompt plays) are speech, and the current frame is speech. The
  onset reported is the first speech frame inside that window, not the moment of detection.
* end: `end_silence_ms` of consecutive non-speech frames, or `max_utterance_ms` after the onset
  (then `truncated=True`). The WebRTC VAD keeps flagging speech for its own hangover after the
  voice stops (100 ms in modes 2-3 with 20 ms frames), so `SpeechEnded.end` lands that much
  after the last audible sound; it cannot be subtracted reliably because the hangover length
  depends on VAD state the Python binding does not expose.
* no-input: VoiceXML semantics. The timer runs from construction / `reset()`, restarts when a
  prompt finishes and after each utterance, is stopped while a prompt plays, and fires at most once
  per period.

All times are seconds from the start of the stream, counted in samples, so they are exact and do
not depend on wall-clock time or on how the caller chunks the audio.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from itertools import islice

import webrtcvad

from ivr.audio.pcm import VALID_FRAME_MS, FrameSplitter
from ivr.events import NoSpeech, SpeechEnded, SpeechStarted, VadEvent

VALID_RATES = (8000, 16000)

__all__ = ["VALID_RATES", "Endpointer", "EndpointerConfig"]


@dataclass(frozen=True)
class EndpointerConfig:
    """Endpointer tuning. Durations are in milliseconds and are rounded up to whole frames."""

    aggressiveness: int = 2  # WebRTC VAD mode: 0 (least) … 3 (most aggressive at rejecting noise)
    frame_ms: int = 20
    speech_start_ms: int = 100  # window for the start rule when no prompt is playing
    speech_ratio: float = 0.8  # fraction of speech frames in the window needed to start
    end_silence_ms: int = 600  # trailing silence that ends an utterance
    no_input_ms: int = 5000
    max_utterance_ms: int = 15000
    preroll_ms: int = 300  # audio kept before the onset so the recognizer gets the first syllable
    barge_in_start_ms: int = 200  # longer start window while a prompt plays: fewer false barge-ins
    # The WebRTC VAD calls the first ~100 ms of any non-silent stream speech while its noise model
    # adapts; decisions in this period are ignored so line noise at call start is not an utterance.
    warmup_ms: int = 200

    def __post_init__(self) -> None:
        _check_int("aggressiveness", self.aggressiveness, 0, 3)
        if self.frame_ms not in VALID_FRAME_MS:
            raise ValueError(
                f"EndpointerConfig.frame_ms must be one of {VALID_FRAME_MS}, got {self.frame_ms!r}"
            )
        for name in (
            "speech_start_ms",
            "end_silence_ms",
            "no_input_ms",
            "max_utterance_ms",
            "barge_in_start_ms",
        ):
            _check_int(name, getattr(self, name), 1, None)
        _check_int("preroll_ms", self.preroll_ms, 0, None)
        _check_int("warmup_ms", self.warmup_ms, 0, None)
        ratio = self.speech_ratio
        if isinstance(ratio, bool) or not isinstance(ratio, int | float) or not 0 < ratio <= 1:
            raise ValueError(f"EndpointerConfig.speech_ratio must be in (0, 1], got {ratio!r}")
        if self.max_utterance_ms <= max(self.speech_start_ms, self.barge_in_start_ms):
            raise ValueError(
                "EndpointerConfig.max_utterance_ms must exceed speech_start_ms and "
                f"barge_in_start_ms, got {self.max_utterance_ms}"
            )

    def frames(self, ms: int) -> int:
        """Whole frames covering `ms` (rounded up, so a limit is never shortened)."""
        return -(-ms // self.frame_ms)


def _check_int(name: str, value: object, low: int, high: int | None) -> None:
    # bool is an int subclass; True as a duration is a bug, not 1 ms.
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"EndpointerConfig.{name} must be an int, got {value!r}")
    if value < low or (high is not None and value > high):
        bounds = f"between {low} and {high}" if high is not None else f">= {low}"
        raise ValueError(f"EndpointerConfig.{name} must be {bounds}, got {value}")


class Endpointer:
    """Turns a PCM stream into speech start/end and no-input events. Not thread-safe."""

    def __init__(self, rate: int, config: EndpointerConfig | None = None) -> None:
        if isinstance(rate, bool) or not isinstance(rate, int) or rate not in VALID_RATES:
            raise ValueError(f"Endpointer rate must be one of {VALID_RATES} Hz, got {rate!r}")
        cfg = config if config is not None else EndpointerConfig()
        if not isinstance(cfg, EndpointerConfig):
            raise ValueError(f"config must be an EndpointerConfig, got {type(cfg).__name__}")
        self.rate = rate
        self.config = cfg
        self._spf = rate * cfg.frame_ms // 1000  # samples per frame
        self._start_n = cfg.frames(cfg.speech_start_ms)
        self._barge_n = cfg.frames(cfg.barge_in_start_ms)
        # Tolerance keeps 0.8 * 5 == 4 from becoming 5 through float rounding.
        self._start_need = max(1, math.ceil(cfg.speech_ratio * self._start_n - 1e-9))
        self._barge_need = max(1, math.ceil(cfg.speech_ratio * self._barge_n - 1e-9))
        self._preroll_n = cfg.frames(cfg.preroll_ms) if cfg.preroll_ms else 0
        self._end_n = cfg.frames(cfg.end_silence_ms)
        self._max_n = cfg.frames(cfg.max_utterance_ms)
        self._warmup_n = cfg.frames(cfg.warmup_ms) if cfg.warmup_ms else 0
        self._no_input_samples = rate * cfg.no_input_ms // 1000
        # Speech history as an int bit mask (bit 0 = newest frame): one shift/or per frame and
        # int.bit_count() for the window, far cheaper than summing a deque of flags.
        self._hist_mask = (1 << max(self._start_n, self._barge_n)) - 1
        self.reset()

    # -- control ---------------------------------------------------------------------------

    def reset(self) -> None:
        """Forget everything: a new stream starting at time 0, no prompt, timer running from 0."""
        # A fresh VAD: its noise model belongs to the previous stream.
        self._vad = webrtcvad.Vad(self.config.aggressiveness)
        self._splitter = FrameSplitter(self.rate, self.config.frame_ms)
        self._bytes_in = 0
        self._frame = 0  # index of the next frame to process
        self._ring: deque[bytes] = deque(maxlen=self._preroll_n + self._hist_mask.bit_length())
        self._hist = 0
        self._in_speech = False
        self._utt = bytearray()
        self._onset = 0
        self._last_speech = 0
        self._prompt = False
        self._set_window()
        self._arm(0)

    def prompt_started(self) -> None:
        """A prompt began playing: speech now counts as barge-in and the no-input timer stops."""
        self._prompt = True
        self._timer_on = False
        self._set_window()

    def prompt_finished(self) -> None:
        """The prompt ended (or was cut by barge-in): the no-input timer restarts from now."""
        self._prompt = False
        self._set_window()
        self._arm(self._bytes_in // 2)

    def set_no_input_ms(self, ms: int) -> None:
        """Change the no-input timeout (each dialog state may set its own); applies from the
        next time the timer is armed."""
        if ms < 1:
            raise ValueError(f"no_input_ms must be >= 1, got {ms}")
        self._no_input_samples = self.rate * ms // 1000

    def set_end_silence_ms(self, ms: int | None) -> None:
        """The silence that ends an utterance (None: the configured one): longer while the
        caller reads out a number, who pauses between groups of digits."""
        ms = self.config.end_silence_ms if ms is None else ms
        if ms < self.config.frame_ms:
            raise ValueError(f"end_silence_ms must be >= {self.config.frame_ms}, got {ms}")
        self._end_n = self.config.frames(ms)

    def cancel_no_input_timer(self) -> None:
        """Stop the no-input timer until the next prompt end, utterance end or `reset()`."""
        self._timer_on = False

    @property
    def time(self) -> float:
        """Seconds of audio processed into whole frames so far."""
        return self._frame * self._spf / self.rate

    @property
    def in_speech(self) -> bool:
        return self._in_speech

    @property
    def prompt_playing(self) -> bool:
        return self._prompt

    # -- streaming -------------------------------------------------------------------------

    def feed(self, pcm: bytes) -> list[VadEvent]:
        """Process 16-bit little-endian mono PCM of any length; return the events it completes."""
        self._bytes_in += len(pcm)
        events: list[VadEvent] = []
        # Hot loop: attributes read once into locals; state written back only when it changes.
        is_speech = self._vad.is_speech
        rate = self.rate
        spf = self._spf
        ring = self._ring
        i = self._frame
        warmup = self._warmup_n
        for frame in self._splitter.push(pcm):
            speech = is_speech(frame, rate) and i >= warmup
            if self._in_speech:
                self._utt += frame
                if speech:
                    self._last_speech = i
                if i - self._last_speech >= self._end_n:
                    events.append(self._end(i, truncated=False))
                elif i + 1 - self._onset >= self._max_n:
                    events.append(self._end(i, truncated=True))
            else:
                ring.append(frame)
                hist = self._hist = ((self._hist << 1) | speech) & self._hist_mask
                if speech and (hist & self._win_mask).bit_count() >= self._need:
                    events.append(self._start(i, hist & self._win_mask))
                elif self._timer_on and (i + 1) * spf - self._since >= self._no_input_samples:
                    self._timer_on = False  # once per listening period
                    events.append(NoSpeech(at=(i + 1) * spf / rate, since=self._since / rate))
            i += 1
            self._frame = i
        return events

    # -- internals -------------------------------------------------------------------------

    def _set_window(self) -> None:
        if self._prompt:
            self._win_mask, self._need = (1 << self._barge_n) - 1, self._barge_need
        else:
            self._win_mask, self._need = (1 << self._start_n) - 1, self._start_need

    def _arm(self, since_sample: int) -> None:
        self._since = since_sample
        # VoiceXML: the no-input timer does not run while a prompt plays.
        self._timer_on = not self._prompt

    def _start(self, i: int, window: int) -> SpeechStarted:
        back = window.bit_length() - 1  # frames from the onset (oldest speech frame) to now
        onset = i - back
        first = max(0, len(self._ring) - 1 - back - self._preroll_n)
        self._utt = bytearray(b"".join(islice(self._ring, first, None)))
        self._ring.clear()
        self._onset = onset
        self._last_speech = i
        self._in_speech = True
        return SpeechStarted(at=onset * self._spf / self.rate, barge_in=self._prompt)

    def _end(self, i: int, *, truncated: bool) -> SpeechEnded:
        spf, rate = self._spf, self.rate
        event = SpeechEnded(
            start=self._onset * spf / rate,
            end=(self._last_speech + 1) * spf / rate,
            audio=bytes(self._utt),
            rate=rate,
            truncated=truncated,
        )
        self._utt = bytearray()
        self._in_speech = False
        self._hist = 0  # a truncated talker must trigger a fresh start window
        self._arm((i + 1) * spf)
        return event
