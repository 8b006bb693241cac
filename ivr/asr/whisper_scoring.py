"""What comes out of a Whisper decode: repeats dropped, the silence rule, and the
confidences of the hypotheses (see "Confidence" in `whisper_engine`)."""

from __future__ import annotations

import math
import re

from ivr.asr.base import Alternative, RecognitionResult
from ivr.grammar import Grammar

ENGINE = "whisper"
NO_SPEECH_THRESHOLD = 0.8
LOGPROB_THRESHOLD = -1.0
SPEECH_KNEE = 0.5

_DIGIT_WORDS = "zero one two three four five six seven eight nine".split()


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
    """The documented mapping ("Confidence" in `whisper_engine`), in [0, 1]."""
    return round(min(1.0, math.exp(mean_logprob)) * _speech_factor(no_speech_prob), 3)


def is_silence(text: str, avg_logprob: float, no_speech_prob: float) -> bool:
    """Whisper's silence rule with this path's no-speech threshold; or no word at all."""
    if not re.search(r"\w", text):
        return True
    return no_speech_prob > NO_SPEECH_THRESHOLD and avg_logprob < LOGPROB_THRESHOLD


class Hypothesis:
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


def result_of(hyps: list[Hypothesis], no_speech: float, nbest: int) -> RecognitionResult:
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
    return RecognitionResult(best.text, conf, ENGINE, alts, words)


def joined(results: list[RecognitionResult]) -> RecognitionResult:
    """Pieces of a long utterance as one result (confidence: the mean over the words)."""
    words = [w for r in results for w in r.words]
    text = " ".join(r.text for r in results if r.text)
    conf = round(sum(c for _, c in words) / len(words), 3) if words else 0.0
    return RecognitionResult(text, conf, ENGINE, [Alternative(text, conf)], words)


def rescored(result: RecognitionResult, grammar: Grammar, nbest: int) -> RecognitionResult:
    """`result` with the hypothesis the grammar's classifier prefers first (`ivr.nlu.rescore`),
    its own confidence kept, and `nbest` alternatives."""
    alts = result.alternatives
    chosen = grammar.choose([(a.text, a.confidence) for a in alts]) if len(alts) > 1 else 0
    if chosen == 0:
        return RecognitionResult(result.text, result.confidence, ENGINE, alts[:nbest], result.words)
    pick = alts[chosen]
    order = [pick, *(a for i, a in enumerate(alts) if i != chosen)][:nbest]
    words = [(w, pick.confidence) for w in pick.text.split()]
    return RecognitionResult(pick.text, pick.confidence, ENGINE, order, words)
