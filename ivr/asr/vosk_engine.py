"""Vosk (Kaldi) engine: any Vosk model directory; the model is loaded once per process.

Grammar mode passes the phrase list to the recognizer. Vosk then reports confidence 1.0 for
anything, even speech outside the grammar, so ``[unk]`` is added to the phrase list when the
model knows it (out-of-grammar speech decodes to ``[unk]``), and the confidence is the mean of
the word confidences with ``[unk]`` words counting as 0; the grammar's match score and its
minimum confidence then reject weak results.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

from vosk import KaldiRecognizer, Model, SetLogLevel

from ivr.asr.base import Alternative, RecognitionResult, Recognizer
from ivr.asr.models import check_vosk_model_dir
from ivr.grammar import Grammar, GrammarError, normalize

UNK = "[unk]"

_models: dict[Path, Model] = {}
_models_lock = threading.Lock()


def load_model(path: Path) -> Model:
    """The shared Model for `path`, loaded on first use (≈2 s and ≈0.5 GB for a small model)."""
    resolved = path.expanduser().resolve()
    with _models_lock:
        model = _models.get(resolved)
        if model is None:
            check_vosk_model_dir(resolved)
            SetLogLevel(-1)
            try:
                model = Model(str(resolved))
            except Exception as exc:  # vosk raises a bare Exception
                raise ValueError(f"{resolved}: Vosk could not load this model: {exc}") from exc
            _models[resolved] = model
        return model


class VoskEngine:
    name = "vosk"
    constrained = True  # grammar mode restricts the decode to the grammar's phrases

    def __init__(self, model_path: Path) -> None:
        self.model_path = model_path
        self.model = load_model(model_path)
        self.rate = 16000
        self.has_unk = self.model.vosk_model_find_word(UNK) >= 0

    def describe(self) -> str:
        return f"vosk model {self.model_path}"

    def phrase_list(self, grammar: Grammar) -> list[str]:
        missing = sorted(w for w in grammar.words() if self.model.vosk_model_find_word(w) < 0)
        if missing:
            raise GrammarError(
                f"{grammar.source}: words not in the Vosk model's vocabulary "
                f"({self.model_path}): {', '.join(repr(w) for w in missing)}"
            )
        return [*grammar.phrases, UNK] if self.has_unk else list(grammar.phrases)

    def create(self, grammar: Grammar | None, rate: int = 8000, nbest: int = 1) -> Recognizer:
        phrases = self.phrase_list(grammar) if grammar is not None else None
        return VoskRecognizer(self.model, phrases, rate, nbest)


class VoskRecognizer(Recognizer):
    """One Kaldi recognizer per call; a second one runs only when n-best is asked for, because
    Vosk gives word confidences or alternatives from one decode, never both."""

    engine = "vosk"

    def __init__(self, model: Model, phrases: list[str] | None, rate: int, nbest: int) -> None:
        self.rate = rate
        self._model = model
        self._grammar = json.dumps(phrases, ensure_ascii=False) if phrases is not None else None
        self._nbest = max(1, nbest)
        self._main = self._new(alternatives=0)
        self._alts = self._new(alternatives=self._nbest) if self._nbest > 1 else None

    def _new(self, alternatives: int) -> KaldiRecognizer:
        if self._grammar is not None:
            rec = KaldiRecognizer(self._model, float(self.rate), self._grammar)
        else:
            rec = KaldiRecognizer(self._model, float(self.rate))
        if alternatives:
            rec.SetMaxAlternatives(alternatives)
        else:
            rec.SetWords(True)
        return rec

    def feed(self, pcm: bytes) -> None:
        self._main.AcceptWaveform(pcm)
        if self._alts is not None:
            self._alts.AcceptWaveform(pcm)

    def reset(self) -> None:
        self._main.Reset()
        if self._alts is not None:
            self._alts.Reset()

    def final(self) -> RecognitionResult:
        main: dict[str, Any] = json.loads(self._main.FinalResult())
        words = [(str(w["word"]), float(w.get("conf", 0.0))) for w in main.get("result", [])]
        text = " ".join(w for w, _ in words) or str(main.get("text", ""))
        confidence = _confidence(words)
        alts = [Alternative(text, confidence)]
        if self._alts is not None:
            alts += [
                a for a in _alternatives(json.loads(self._alts.FinalResult())) if a.text != text
            ]
        return RecognitionResult(text, confidence, self.engine, alts[: self._nbest], words)


def _confidence(words: list[tuple[str, float]]) -> float:
    if not words:
        return 0.0
    unk = normalize(UNK)
    return round(sum(0.0 if normalize(w) == unk else c for w, c in words) / len(words), 3)


def _alternatives(result: dict[str, Any]) -> list[Alternative]:
    """Vosk's n-best with its total scores turned into posteriors over the list."""
    items = [
        (str(a.get("text", "")), float(a.get("confidence", 0.0)))
        for a in result.get("alternatives", [])
    ]
    items = [(t, s) for t, s in items if t]
    if not items:
        return []
    top = max(s for _, s in items)
    weights = [2.718281828 ** (s - top) for _, s in items]
    total = sum(weights)
    return [Alternative(t, round(w / total, 3)) for (t, _), w in zip(items, weights, strict=True)]
