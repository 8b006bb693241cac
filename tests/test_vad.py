"""Endpointer tests on real recorded speech (Asterisk prompts) padded with silence and noise."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TypeVar, cast

import audio_fixtures as af
import pytest

from ivr.audio.vad import Endpointer, EndpointerConfig
from ivr.events import NoSpeech, SpeechEnded, SpeechStarted, VadEvent

CFG = EndpointerConfig()
FRAME = CFG.frame_ms / 1000
# The decision window: a start is declared once enough of the last speech_start_ms is speech, so
# the reported onset can be off by at most that window plus one frame of quantisation.
DECISION_WINDOW = (CFG.speech_start_ms + CFG.frame_ms) / 1000
BARGE_IN_WINDOW = (CFG.barge_in_start_ms + CFG.frame_ms) / 1000
# The WebRTC VAD itself keeps saying "speech" for a fixed hangover after speech stops
# (kOverHangMax2AGG/VAG in webrtc vad_core.c: 5 frames of 20 ms in modes 2 and 3), so the end is
# late by up to that much on top of the decision window.
VAD_HANGOVER = 0.100

NOISE_LEVELS = (0.02, 0.1)  # white-noise peak: about -39 and -25 dBFS RMS (speech ~ -19 dBFS)
RECORDINGS = ("digits/5", "goodbye", "transfer")


def near(value: float, tolerance: float) -> float:
    """pytest.approx where a dataclass field wants a float (it compares equal as one)."""
    return cast(float, pytest.approx(value, abs=tolerance))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("vad_audio")


def run(ep: Endpointer, pcm: bytes, chunk: int = 320) -> list[VadEvent]:
    events: list[VadEvent] = []
    for i in range(0, len(pcm), chunk):
        events += ep.feed(pcm[i : i + chunk])
    return events


T = TypeVar("T")


def of_type(events: list[VadEvent], kind: type[T]) -> list[T]:
    return [e for e in events if isinstance(e, kind)]


# -- endpoints against the energy-threshold truth ------------------------------------------------


@pytest.mark.parametrize("noise_vol", NOISE_LEVELS)
@pytest.mark.parametrize("name", RECORDINGS)
def test_endpoints_match_truth(workdir: Path, name: str, noise_vol: float) -> None:
    utt = af.noisy_utterance(workdir, name, before=1.0, after=1.5, noise_vol=noise_vol)
    events = run(Endpointer(af.RATE), utt.audio().tobytes())

    assert [type(e) for e in events] == [SpeechStarted, SpeechEnded], events
    started, ended = events
    assert isinstance(started, SpeechStarted) and isinstance(ended, SpeechEnded)
    assert not started.barge_in
    assert abs(started.at - utt.onset) <= DECISION_WINDOW, (started.at, utt.onset)
    assert ended.start == started.at
    assert utt.offset - DECISION_WINDOW <= ended.end <= utt.offset + VAD_HANGOVER + DECISION_WINDOW
    assert not ended.truncated
    assert ended.rate == af.RATE


def test_endpoints_at_16khz(workdir: Path) -> None:
    utt = af.noisy_utterance(workdir, "goodbye", noise_vol=0.02, rate=16000)
    events = run(Endpointer(16000), utt.audio().tobytes(), chunk=640)
    started, ended = of_type(events, SpeechStarted), of_type(events, SpeechEnded)
    assert len(started) == 1 and len(ended) == 1 and not of_type(events, NoSpeech)
    assert abs(started[0].at - utt.onset) <= DECISION_WINDOW
    late = VAD_HANGOVER + DECISION_WINDOW
    assert utt.offset - DECISION_WINDOW <= ended[0].end <= utt.offset + late
    assert ended[0].rate == 16000
    assert len(ended[0].audio) % 2 == 0


def test_two_utterances_in_one_stream(workdir: Path) -> None:
    first = af.noisy_utterance(workdir, "goodbye", before=1.0, after=1.5)
    second = af.noisy_utterance(workdir, "digits/5", before=1.0, after=1.5)
    pcm = first.audio().tobytes() + second.audio().tobytes()
    ends = of_type(run(Endpointer(af.RATE), pcm), SpeechEnded)
    assert len(ends) == 2
    assert abs(ends[0].start - first.onset) <= DECISION_WINDOW
    assert abs(ends[1].start - (first.duration + second.onset)) <= DECISION_WINDOW


# -- no-input ------------------------------------------------------------------------------------


@pytest.mark.parametrize("noise_vol", [0.0, *NOISE_LEVELS])
def test_no_input_fires_once(workdir: Path, noise_vol: float) -> None:
    if noise_vol:
        path = af.noise(workdir / f"noise6_{noise_vol}.wav", 6.0, noise_vol)
    else:
        path = af.silence(workdir / "silence6.wav", 6.0)
    events = run(Endpointer(af.RATE), af.read_wav(path).tobytes())
    assert events == [NoSpeech(at=near(CFG.no_input_ms / 1000, FRAME), since=0.0)]


def test_no_input_waits_for_prompt_end(workdir: Path) -> None:
    pcm = af.read_wav(af.noise(workdir / "noise12.wav", 12.0, 0.02)).tobytes()
    ep = Endpointer(af.RATE)
    ep.prompt_started()
    assert run(ep, pcm[: 6 * 16000]) == []  # the timer does not run while a prompt plays
    ep.prompt_finished()
    events = run(ep, pcm[6 * 16000 :])
    assert events == [NoSpeech(at=near(6.0 + CFG.no_input_ms / 1000, FRAME), since=6.0)]


def test_no_input_restarts_after_utterance(workdir: Path) -> None:
    utt = af.noisy_utterance(workdir, "goodbye", before=1.0, after=6.0)
    events = run(Endpointer(af.RATE), utt.audio().tobytes())
    assert [type(e) for e in events] == [SpeechStarted, SpeechEnded, NoSpeech]
    ended, no_input = events[1], events[2]
    assert isinstance(ended, SpeechEnded) and isinstance(no_input, NoSpeech)
    # The timer restarts at the frame where the end was detected: end + end_silence.
    assert no_input.since == pytest.approx(ended.end + CFG.end_silence_ms / 1000)
    assert no_input.at == pytest.approx(no_input.since + CFG.no_input_ms / 1000, abs=FRAME)


# -- barge-in ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["goodbye", "transfer"])
def test_barge_in_near_onset(workdir: Path, name: str) -> None:
    utt = af.noisy_utterance(workdir, name, before=1.0, after=1.5, noise_vol=0.02)
    pcm = utt.audio().tobytes()
    ep = Endpointer(af.RATE)
    ep.prompt_started()
    events: list[VadEvent] = []
    for i in range(0, len(pcm), 320):
        new = ep.feed(pcm[i : i + 320])
        events += new
        if any(isinstance(e, SpeechStarted) for e in new):
            ep.prompt_finished()  # what the call does: stop playback on barge-in
    assert [type(e) for e in events] == [SpeechStarted, SpeechEnded]
    started = events[0]
    assert isinstance(started, SpeechStarted)
    assert started.barge_in
    assert abs(started.at - utt.onset) <= BARGE_IN_WINDOW, (started.at, utt.onset)


@pytest.mark.parametrize("noise_vol", NOISE_LEVELS)
def test_noise_does_not_barge_in(workdir: Path, noise_vol: float) -> None:
    path = af.noise(workdir / f"noise6_{noise_vol}.wav", 6.0, noise_vol)
    ep = Endpointer(af.RATE)
    ep.prompt_started()
    assert run(ep, af.read_wav(path).tobytes()) == []


def test_warmup_hides_vad_startup_transient(workdir: Path) -> None:
    # The WebRTC VAD calls the first ~80 ms of noise speech; without the warm-up that is an
    # utterance at t=0. This pins the reason for the warmup_ms default.
    pcm = af.read_wav(af.noise(workdir / "noise6_0.02.wav", 6.0, 0.02)).tobytes()
    raw = run(Endpointer(af.RATE, replace(CFG, warmup_ms=0)), pcm)
    assert raw and isinstance(raw[0], SpeechStarted) and raw[0].at == 0.0
    assert not of_type(run(Endpointer(af.RATE), pcm), SpeechStarted)


# -- utterance audio -----------------------------------------------------------------------------


@pytest.mark.parametrize("preroll_ms", [300, 0])
def test_utterance_audio_has_preroll(workdir: Path, preroll_ms: int) -> None:
    utt = af.noisy_utterance(workdir, "transfer", before=1.0, after=1.5, noise_vol=0.02)
    pcm = utt.audio().tobytes()
    cfg = replace(CFG, preroll_ms=preroll_ms)
    (ended,) = of_type(run(Endpointer(af.RATE, cfg), pcm), SpeechEnded)

    expected = preroll_ms / 1000 + (ended.end - ended.start) + cfg.end_silence_ms / 1000
    assert len(ended.audio) / 2 / af.RATE == pytest.approx(expected, abs=FRAME)
    # Exactly the stream from onset - preroll onwards.
    first = round((ended.start - preroll_ms / 1000) * af.RATE) * 2
    assert ended.audio == pcm[first : first + len(ended.audio)]


# -- max utterance -------------------------------------------------------------------------------


def test_max_utterance_truncates(workdir: Path) -> None:
    parts = [af.recording(n) for n in ("transfer", "goodbye", "transfer", "hello", "transfer")]
    joined = af.concat(parts, workdir / "joined.wav")
    utt_path = af.pad(joined, workdir / "joined_padded.wav", 1.0, 1.5)
    hiss = af.noise(workdir / "joined_noise.wav", af.duration(utt_path), 0.02)
    pcm = af.read_wav(af.mix(utt_path, hiss, workdir / "joined_noisy.wav")).tobytes()
    assert af.duration(joined) > 6.0

    cfg = replace(CFG, max_utterance_ms=3000)
    events = run(Endpointer(af.RATE, cfg), pcm)
    ends = of_type(events, SpeechEnded)
    assert len(ends) >= 2
    cut = ends[0]
    assert cut.truncated
    assert cut.end - cut.start == pytest.approx(3.0, abs=FRAME)
    assert len(cut.audio) / 2 / af.RATE == pytest.approx(cfg.preroll_ms / 1000 + 3.0, abs=FRAME)
    # The talker keeps going: a new utterance starts right after the cut.
    assert of_type(events, SpeechStarted)[1].at >= cut.end
    assert isinstance(events[-1], SpeechEnded) and not of_type(events, NoSpeech)

    # With the default 15 s limit the same talk is one untruncated utterance.
    (whole,) = of_type(run(Endpointer(af.RATE), pcm), SpeechEnded)
    assert not whole.truncated and whole.start == cut.start


# -- streaming mechanics -------------------------------------------------------------------------


@pytest.mark.parametrize("chunk", [1, 7, 333, 1001, 16001])
def test_chunking_does_not_change_events(workdir: Path, chunk: int) -> None:
    first = af.noisy_utterance(workdir, "goodbye", before=1.0, after=1.5)
    # Same noise level for both halves: a step up in noise reads as seconds of speech to the
    # WebRTC VAD until its noise model adapts, which is not what this test is about.
    second = af.noisy_utterance(workdir, "digits/5", before=1.0, after=7.0)
    pcm = first.audio().tobytes() + second.audio().tobytes()
    whole = run(Endpointer(af.RATE), pcm, chunk=320)
    assert [type(e) for e in whole] == [SpeechStarted, SpeechEnded] * 2 + [NoSpeech]
    assert run(Endpointer(af.RATE), pcm, chunk=chunk) == whole


def test_reset_starts_a_new_stream(workdir: Path) -> None:
    utt = af.noisy_utterance(workdir, "goodbye", noise_vol=0.02)
    pcm = utt.audio().tobytes()
    ep = Endpointer(af.RATE)
    fresh = run(ep, pcm)
    ep.prompt_started()
    run(ep, pcm[: len(pcm) // 2 + 1])  # mid-utterance, odd byte pending
    assert ep.in_speech
    ep.reset()
    assert ep.time == 0.0 and not ep.in_speech and not ep.prompt_playing
    assert run(ep, pcm) == fresh


# -- validation ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("aggressiveness", 4),
        ("aggressiveness", -1),
        ("aggressiveness", True),
        ("frame_ms", 15),
        ("speech_start_ms", 0),
        ("speech_ratio", 0.0),
        ("speech_ratio", 1.5),
        ("end_silence_ms", -1),
        ("no_input_ms", 0),
        ("max_utterance_ms", 0),
        ("max_utterance_ms", 150),
        ("preroll_ms", -20),
        ("barge_in_start_ms", 0),
        ("warmup_ms", -1),
        ("end_silence_ms", 600.0),
    ],
)
def test_invalid_config(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        EndpointerConfig(**{field: value})  # type: ignore[arg-type]


@pytest.mark.parametrize("rate", [0, 11025, 32000, 44100, 48000, 8000.0])
def test_invalid_rate(rate: int) -> None:
    with pytest.raises(ValueError, match="rate"):
        Endpointer(rate)


def test_missing_sounds_fail_with_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(af, "SOUNDS_DIR", Path("/nonexistent/sounds"))
    with pytest.raises(pytest.fail.Exception, match="asterisk-core-sounds-en-wav"):
        af.recording("goodbye")


def test_the_end_silence_can_change_between_utterances() -> None:
    """A number question waits longer: two digits 1 s apart are two utterances at 600 ms of
    end silence, one at 1300 ms."""
    rate = 8000
    digit = af.read_wav(af.recording("digits/5"), rate).tobytes()
    quiet = b"\0\0" * rate  # 1 s
    stream = quiet + digit + quiet + digit + quiet * 2
    ends: dict[int, int] = {}
    for ms in (600, 1300):
        ep = Endpointer(rate)
        ep.set_end_silence_ms(ms)
        ends[ms] = sum(isinstance(e, SpeechEnded) for e in ep.feed(stream))
    assert ends == {600: 2, 1300: 1}
    with pytest.raises(ValueError, match="end_silence_ms"):
        Endpointer(rate).set_end_silence_ms(5)
