"""A loaded Whisper model and one decode with it: the utterance encoded with a little
silence, completed to the full window, and a bounded beam search (see "The fast path" in
`whisper_engine`)."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ivr.asr.base import RecognitionResult
from ivr.asr.models import ModelError
from ivr.asr.whisper_features import MODEL_RATE, FloatArray, LogMel
from ivr.asr.whisper_scoring import ENGINE, Hypothesis, is_silence, joined, result_of
from ivr.audio.pcm import resample
from ivr.grammar import GrammarError

log = logging.getLogger(__name__)

WINDOW_FRAMES = 3000  # the encoder's 30 s window
PAD_FRAMES = 50  # silence frames encoded after the utterance
NUMBER_PAD_FRAMES = 150  # ... after a digit string (see "Number questions")
MAX_SECONDS = 28.0  # longer audio is decoded in pieces of this length
TOKENS_PER_SECOND = 5.0  # the decode stops after this many tokens per second of audio ...
TOKEN_SLACK = 10  # ... plus these
COMPUTE_TYPE = "int8"
BEAM_SIZE = 3
MAX_CONTEXT_TOKENS = 120  # Whisper reads at most 223 tokens of previous text
PUNCTUATION = (",", ".", "-", "?", "!", "'")  # kept in a vocabulary-bound decode


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
            return RecognitionResult("", 0.0, ENGINE)
        return results[0] if len(results) == 1 else joined(results)

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
            Hypothesis(self.tokenizer.decode(ids).strip(), ids, float(score), max_new, words)
            for ids, score in zip(result.sequences_ids, result.scores, strict=True)
        ]
        best = hyps[0]
        log.debug(
            "whisper: %r avg_logprob %.3f no_speech %.3f", best.text, best.avg_logprob, no_speech
        )
        if is_silence(best.text, best.avg_logprob, no_speech):
            result = RecognitionResult("", 0.0, ENGINE)
        else:
            result = result_of(hyps, no_speech, nbest)
        return RawDecode(best.text, best.avg_logprob, no_speech, result)


@dataclass(frozen=True)
class RawDecode:
    """One window's decode: the best hypothesis and Whisper's raw values, before the
    silence rule and the confidence mapping, and the result made of them."""

    text: str
    avg_logprob: float
    no_speech_prob: float
    result: RecognitionResult
