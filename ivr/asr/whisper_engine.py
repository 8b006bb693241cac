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

**Where the code is.** `whisper_model` (the model directory: bundled model, languages),
`whisper_features` (log-mel), `whisper_prompt` (glossary and vocabulary), `whisper_decoder`
(a loaded model and one decode), `whisper_scoring` (repeats, the silence rule, confidence);
here the engine, its worker processes and the recognizer.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from ivr.asr.base import BufferedRecognizer, RecognitionResult, Recognizer
from ivr.asr.models import ModelError, check_whisper_model_dir
from ivr.asr.whisper_decoder import WhisperDecoder
from ivr.asr.whisper_features import MODEL_RATE
from ivr.asr.whisper_model import bundled_model, model_languages
from ivr.asr.whisper_prompt import glossary, vocabulary
from ivr.asr.whisper_scoring import ENGINE, rescored
from ivr.grammar import Grammar, GrammarError
from ivr.nlu.rescore import TOP as RESCORE_TOP
from ivr.workers import die_with_parent

__all__ = ["WhisperEngine", "WhisperRecognizer", "bundled_model"]

log = logging.getLogger(__name__)


# --- worker processes -----------------------------------------------------------------------

_worker: WhisperDecoder | None = None
_worker_error: ModelError | None = None


def _init_worker(model_dir: str) -> None:
    global _worker, _worker_error
    die_with_parent("ASR worker (whisper)")  # a kill -9 of the server takes it along
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

    name = ENGINE
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
            self, language, rate, nbest, glossary(grammar), vocabulary(grammar), grammar
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
    """Buffers an utterance; the engine decodes it at `final`."""

    engine = "whisper"

    def __init__(
        self,
        owner: WhisperEngine,
        language: str,
        rate: int,
        nbest: int,
        context: str = "",
        words: tuple[str, ...] = (),
        grammar: Grammar | None = None,
    ) -> None:
        super().__init__(rate, nbest)
        self._owner = owner
        self._language = language
        self._context = context
        self._words = words
        self._grammar = grammar

    def _decode(self, pcm: bytes, nbest: int) -> RecognitionResult:
        owner, words, grammar = self._owner, self._words, self._grammar
        if grammar is None or not grammar.rescores:
            return owner.decode(pcm, self.rate, self._language, nbest, self._context, words)
        wide = max(nbest, RESCORE_TOP)
        result = owner.decode(pcm, self.rate, self._language, wide, self._context, words)
        return rescored(result, grammar, nbest)
