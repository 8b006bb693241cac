"""Built-in English engine on pocketsphinx and the en-us model shipped inside its wheel.

Telephone audio (8 kHz) is upsampled to the model's 16 kHz and low-level noise is added: the
empty 4–8 kHz band otherwise yields log-energy features far from anything the wideband model
saw, and single digits are misread (7 of the 10 Asterisk digit recordings; 9 with the noise).

Grammar mode compiles the grammar to JSGF with a *garbage* alternative of common English words
that sound unlike any grammar word, strongly weighted down: pocketsphinx has no ``[unk]``, so
without it every utterance is forced onto some phrase. Garbage words come back as ``[unk]``.

A decoder costs ~29 MB (grammar) / ~95 MB (free, with the language model) and ~0.13–0.3 s to
create, so decoders live in a small pool and are held only while an utterance is decoded:
`feed` only buffers audio and the decode runs in one batch at `final` (batch cepstral mean
normalisation is also more accurate than the live estimate on short utterances).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from functools import lru_cache
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
import pocketsphinx
from pocketsphinx import Decoder

from ivr.asr.base import Alternative, BufferedRecognizer, RecognitionResult, Recognizer
from ivr.audio.pcm import resample
from ivr.grammar import Grammar, GrammarError
from ivr.workers import die_with_parent

log = logging.getLogger(__name__)

MODEL_RATE = 16000
NOISE_STD = 33.0  # ≈ -60 dBFS: see the module docstring
GRAMMAR_WEIGHT = 1e5  # grammar phrases vs garbage words
SEQUENCE_MIN_WORDS = 3
NBEST_FOR_CONFIDENCE = 20  # see PocketsphinxRecognizer._decode_sequence
_MODEL_DIR = Path(pocketsphinx.__file__).parent / "model" / "en-us"

# Common words used as the out-of-grammar "garbage" alternative.
_GARBAGE_WORDS = (
    "the and of in is you that it for on be with as this have from or by not but what all are "
    "was we when your can said there use each which she how their if will up other about out "
    "many then them these so some her would make like him into time has look more write go see "
    "number way could people my than first water been call who oil its now find long down day "
    "did get come made may part hello goodbye please thanks help sorry what where why weather "
    "today tomorrow money transfer password account message problem question"
).split()


@lru_cache(maxsize=1)
def _dictionary() -> dict[str, list[str]]:
    prons: dict[str, list[str]] = {}
    with open(_MODEL_DIR / "cmudict-en-us.dict", encoding="utf-8") as f:
        for line in f:
            word, *phones = line.split()
            prons.setdefault(word, phones)
    return prons


def _phone_distance(a: list[str], b: list[str]) -> int:
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, y in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (x != y))
    return row[-1]


def build_jsgf(grammar: Grammar, sequence: bool) -> tuple[str, frozenset[str]]:
    """JSGF text for `grammar` and its garbage words. Raises GrammarError for unknown words."""
    prons = _dictionary()
    words = grammar.words()
    missing = sorted(w for w in words if w not in prons)
    if missing:
        raise GrammarError(
            f"{grammar.source}: the built-in English engine has no pronunciation for "
            f"{', '.join(repr(w) for w in missing)}; use other words or a Vosk model"
        )
    garbage = frozenset(
        g
        for g in _GARBAGE_WORDS
        if g not in words and all(_phone_distance(prons[g], prons[w]) >= 2 for w in words)
    )
    body = f"{_trie(grammar.phrases)}+" if sequence else _trie(grammar.phrases)
    lines = ["#JSGF V1.0;", "grammar ivr;"]
    if garbage and not sequence:
        lines.append(f"<garbage> = {' | '.join(sorted(garbage))};")
        lines.append(f"public <utterance> = /{GRAMMAR_WEIGHT:g}/ {body} | /1/ <garbage>;")
    else:
        lines.append(f"public <utterance> = {body};")
    return "\n".join(lines) + "\n", garbage


def _trie(phrases: list[str]) -> str:
    """The phrases as one JSGF alternative with shared prefixes factored out. pocketsphinx
    turns JSGF into a search graph without merging anything, so a flat list of a few
    thousand phrases ("tomorrow at three p m", "tomorrow at four p m"...) decodes many times
    slower than the same language written as a prefix tree."""
    root: dict[str, Any] = {}
    for phrase in phrases:
        node = root
        for word in phrase.split():
            node = node.setdefault(word, {})
        node[""] = {}  # a phrase may end here

    def expr(node: dict[str, Any]) -> str:
        alts = [w if sub.keys() == {""} else f"{w} {expr(sub)}" for w, sub in node.items() if w]
        body = alts[0] if len(alts) == 1 else f"( {' | '.join(alts)} )"
        return f"[ {body} ]" if "" in node else body

    return f"( {expr(root)} )"


class DecoderPool:
    """Idle pocketsphinx decoders, one pool for grammar decoding and one for free speech."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._idle: dict[bool, list[Decoder]] = {False: [], True: []}
        self.created = 0

    @contextmanager
    def decoder(self, free: bool) -> Iterator[Decoder]:
        with self._lock:
            dec = self._idle[free].pop() if self._idle[free] else None
        if dec is None:
            dec = self._create(free)
        try:
            yield dec
        finally:
            with self._lock:
                self._idle[free].append(dec)

    def _create(self, free: bool) -> Decoder:
        kwargs: dict[str, object] = {"loglevel": "FATAL", "bestpath": False}
        if not free:
            kwargs["lm"] = None
        dec = Decoder(**kwargs)
        with self._lock:
            self.created += 1
        return dec


class _Decoding:
    """Decoders and compiled searches of one process."""

    def __init__(self) -> None:
        self.pool = DecoderPool()
        self._searches: dict[int, set[str]] = {}
        self._jsgf: dict[tuple[object, bool], tuple[str, str, frozenset[str]]] = {}
        self._lock = threading.Lock()

    def compiled(self, grammar: Grammar, sequence: bool) -> tuple[str, str, frozenset[str]]:
        key = (grammar.key, sequence)
        with self._lock:
            found = self._jsgf.get(key)
        if found is None:
            jsgf, garbage = build_jsgf(grammar, sequence)
            found = (f"g{len(self._jsgf)}", jsgf, garbage)
            with self._lock:
                found = self._jsgf.setdefault(key, found)
        return found

    def activate(self, dec: Decoder, grammar: Grammar | None, sequence: bool) -> frozenset[str]:
        """Switch `dec` to the search for `grammar`, adding it once per decoder."""
        if grammar is None:
            dec.activate_search("_default")
            return frozenset()
        name, jsgf, garbage = self.compiled(grammar, sequence)
        added = self._searches.setdefault(id(dec), set())
        if name not in added:
            dec.add_jsgf_string(name, jsgf)
            added.add(name)
        dec.activate_search(name)
        return garbage


_local: _Decoding | None = None


def _decoding() -> _Decoding:
    global _local
    if _local is None:
        _local = _Decoding()
    return _local


def _warm_worker(grammars: tuple[Grammar, ...] = ()) -> None:
    """Create a worker's decoders (0.1–0.3 s each) and add `grammars` to its grammar decoder
    before its first call: a large one (the callback-time grammar, 2,500 phrases) otherwise
    makes the first caller to reach it in each worker wait for the compilation."""
    die_with_parent("ASR worker (pocketsphinx)")  # a kill -9 of the server takes it along
    decoding = _decoding()
    with decoding.pool.decoder(True):
        pass
    with decoding.pool.decoder(False) as dec:
        for grammar in grammars:
            for sequence in (False, True) if grammar.sequence else (False,):
                try:
                    decoding.activate(dec, grammar, sequence)
                except Exception:  # compiled on first use instead; the pool must start
                    log.exception("ASR worker: could not prepare grammar %s", grammar.source)


def _ready() -> bool:
    return True


def decode(grammar: Grammar | None, pcm: bytes, rate: int, nbest: int) -> RecognitionResult:
    """Decode one utterance in this process (the body of a worker-process job)."""
    return _Utterance(_decoding(), grammar, nbest).decode(pcm, rate)


class PocketsphinxEngine:
    """The engine that needs no download; English only.

    pocketsphinx holds the GIL while it decodes, so a server runs decodes in `processes`
    worker processes (each with its own small decoder pool); the CLI decodes in-process.
    """

    name = "pocketsphinx"
    rate = MODEL_RATE
    constrained = True  # grammar mode restricts the decode to the grammar's phrases

    def __init__(self, processes: int = 0) -> None:
        self._pool: ProcessPoolExecutor | None = None
        self._pool_lock = threading.Lock()
        self._checked: set[tuple[object, ...]] = set()  # grammars known to compile
        self.processes = processes

    def _workers(self, grammars: Sequence[Grammar] = ()) -> ProcessPoolExecutor:
        with self._pool_lock:
            if self._pool is None:
                self._pool = ProcessPoolExecutor(
                    self.processes,
                    mp_context=get_context("spawn"),
                    initializer=_warm_worker,
                    initargs=(tuple(grammars),),
                )
            return self._pool

    def warm(self, grammars: Sequence[Grammar] = ()) -> None:
        """Start every worker process now (the pool starts them lazily, on first use), each
        with `grammars` (the flow's) compiled into its decoder."""
        if self.processes > 0:
            pool = self._workers(grammars)
            for fut in [pool.submit(_ready) for _ in range(self.processes * 2)]:
                fut.result()

    def describe(self) -> str:
        where = f"{self.processes} worker processes" if self.processes > 0 else "in-process"
        return f"pocketsphinx en-us (built-in model at {_MODEL_DIR}, {where})"

    def create(self, grammar: Grammar | None, rate: int = 8000, nbest: int = 1) -> Recognizer:
        if grammar is not None and grammar.key not in self._checked:
            build_jsgf(grammar, sequence=False)  # fail early on words without a pronunciation
            self._checked.add(grammar.key)
        return PocketsphinxRecognizer(self, grammar, rate, nbest)

    def decode(
        self, grammar: Grammar | None, pcm: bytes, rate: int, nbest: int
    ) -> RecognitionResult:
        if self.processes <= 0:
            return decode(grammar, pcm, rate, nbest)
        return self._workers().submit(decode, grammar, pcm, rate, nbest).result()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)


class PocketsphinxRecognizer(BufferedRecognizer):
    """Buffers an utterance; the engine decodes it at `final`."""

    engine = "pocketsphinx"

    def __init__(self, owner: PocketsphinxEngine, grammar: Grammar | None, rate: int, nbest: int):
        super().__init__(rate, nbest)
        self._owner = owner
        self._grammar = grammar

    def _decode(self, pcm: bytes, nbest: int) -> RecognitionResult:
        return self._owner.decode(self._grammar, pcm, self.rate, nbest)


class _Utterance:
    """One decode of one utterance with the decoders of the current process."""

    engine = "pocketsphinx"

    def __init__(self, decoding: _Decoding, grammar: Grammar | None, nbest: int) -> None:
        self._owner = decoding
        self._grammar = grammar
        self._nbest = max(1, nbest)

    @staticmethod
    def _model_audio(pcm_bytes: bytes, rate: int) -> bytes:
        rng = np.random.default_rng(0)  # fixed: the same audio always decodes the same way
        pcm = np.frombuffer(pcm_bytes, dtype="<i2")
        up = resample(pcm, rate, MODEL_RATE).astype(np.float32)
        up += rng.standard_normal(len(up)).astype(np.float32) * NOISE_STD
        return np.clip(up, -32768, 32767).astype("<i2").tobytes()

    def decode(self, pcm: bytes, rate: int) -> RecognitionResult:
        if not pcm:
            return RecognitionResult("", 0.0, self.engine, [])
        audio = self._model_audio(pcm, rate)
        free = self._grammar is None
        with self._owner.pool.decoder(free) as dec:
            result = self._run(dec, audio, sequence=False)
            in_grammar = result.text and "[unk]" not in result.text
            if in_grammar and self._grammar is not None and self._grammar.sequence:
                seq = self._run(dec, audio, sequence=True)
                # The wideband model splits single telephone-band words into two grammar words
                # when any sequence is allowed, so a sequence wins only when clearly longer.
                if len(seq.text.split()) >= SEQUENCE_MIN_WORDS:
                    result = seq
        return result

    def _run(self, dec: Decoder, audio: bytes, sequence: bool) -> RecognitionResult:
        garbage = self._owner.activate(dec, self._grammar, sequence)
        dec.start_utt()
        dec.process_raw(audio, full_utt=True)
        dec.end_utt()
        hyp = dec.hyp()
        if hyp is None or not hyp.hypstr.strip():
            return RecognitionResult("", 0.0, self.engine, [])
        logmath = dec.get_logmath()
        words = [
            (s.word.split("(")[0], float(logmath.exp(s.prob)))
            for s in dec.seg()
            if s.word.split("(")[0] and not s.word.startswith(("<", "[", "+"))
        ]
        text = " ".join("[unk]" if w in garbage else w for w, _ in words)
        hyps = self._nbest_texts(dec, garbage)
        confidence = _agreement(text, hyps)
        alts = [Alternative(text, confidence)]
        for alt in dict.fromkeys(hyps):
            if alt != text and len(alts) < self._nbest:
                alts.append(Alternative(alt, _agreement(alt, hyps)))
        words = [(w if w not in garbage else "[unk]", c) for w, c in words]
        return RecognitionResult(text, confidence, self.engine, alts, words)

    @staticmethod
    def _nbest_texts(dec: Decoder, garbage: frozenset[str]) -> list[str]:
        texts = []
        for i, hyp in enumerate(dec.nbest()):
            if i >= NBEST_FOR_CONFIDENCE:
                break
            if hyp is None:  # the n-best search can yield None (seen on noise, a big grammar)
                continue
            words = [w.split("(")[0] for w in hyp.hypstr.split() if w.split("(")[0]]
            texts.append(" ".join("[unk]" if w in garbage else w for w in words))
        return texts


def _agreement(text: str, hyps: list[str]) -> float:
    """Confidence as n-best agreement: for each word, the share of the n-best hypotheses that
    contain it, averaged over the words ([unk] counts 0). pocketsphinx's own posteriors are
    flat (1.0) with these models, while words the decoder is unsure of vary across the n-best.
    """
    words = text.split()
    if not words or not hyps:
        return 0.0
    sets = [set(h.split()) for h in hyps]
    unk = "[unk]"
    per_word = [0.0 if w == unk else sum(w in s for s in sets) / len(sets) for w in words]
    return round(sum(per_word) / len(per_word), 3)
