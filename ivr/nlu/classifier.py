"""Intents by meaning: an utterance against a grammar's example phrases, with rejection.

Two views of each example, averaged:

* **Sentence meaning**: the cosine of the utterance's and the example's all-MiniLM-L6-v2
  embeddings (`ivr.nlu.encoder`), a model trained on paraphrases: "I've got no bars" lands
  near "no signal".
* **Word alignment**: every token of the example finds its closest token in the utterance and
  every token of the utterance its closest in the example (static token embeddings,
  `ivr.nlu.embeddings`), each weighted by its vector's norm (small for "the", "my", "please";
  large for "balance", "roaming"), and the two directions are averaged — how much of the
  example was said, and how much of what was said the example explains. A phrase said inside
  a longer sentence ("hi, um, it's about my bill from last month") scores well.

An intent scores its best example. The best must reach `REJECT`, and must beat the nearest
out-of-scope example (the flow's `out_of_scope` plus `GENERIC_OUT_OF_SCOPE`), or it is a
no-match: out-of-scope speech gets the no-match path, not a wrong answer. The runner-up is
reported; the dialog asks "Did you mean A, or B?" when the two are close. REJECT was
calibrated on the tune part of the labelled sets in eval/ (see eval/README.md), never on the
held-out part. Without the sentence model installed, word alignment alone decides, against
`REJECT_WORDS_ONLY`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from numpy.typing import NDArray

from ivr.nlu.embeddings import Embeddings, default_embeddings
from ivr.nlu.encoder import SentenceEncoder, default_encoder
from ivr.nlu.numbers import digits_as_words

REJECT = 0.45  # best intent's score below this: no-match
REJECT_WORDS_ONLY = 0.55  # the same, when the sentence model is not installed
# Conversation, not requests: every grammar that matches by meaning rejects speech like this.
GENERIC_OUT_OF_SCOPE = (
    "hold on a second", "wait a moment", "hello hello", "can you hear me", "hello is anyone there",
    "sorry I was talking to someone else", "never mind", "um I forgot what I wanted",
    "hmm let me think", "just a minute I'm driving", "how are you today", "tell me a joke",
    "are you a robot", "what's your name", "what time is it",
)  # fmt: skip
_WORD = re.compile(r"[\w']+")  # any script: a Korean flow's phrases are words too
_SPACE = 29871  # the tokenizer's bare word-start piece: carries nothing


@dataclass(frozen=True)
class Scored:
    intent: str
    score: float
    phrase: str


def words(text: str) -> list[str]:
    return _WORD.findall(digits_as_words(text.lower()))


class IntentClassifier:
    """Built once per grammar (examples embedded in one batch); `rank` costs one sentence
    embedding (cached by text, ~5-20 ms of CPU: the call pipeline computes it in a worker
    thread first, see `prepare`) and ~1 ms more."""

    def __init__(
        self,
        intents: dict[str, list[str]],
        negatives: tuple[str, ...] = (),
        emb: Embeddings | None = None,
        encoder: SentenceEncoder | bool | None = True,
    ) -> None:
        self.emb = emb or default_embeddings()
        self.encoder = default_encoder() if encoder is True else (encoder or None)
        self.reject = REJECT if self.encoder is not None else REJECT_WORDS_ONLY
        negs = [*GENERIC_OUT_OF_SCOPE, *negatives]
        examples: list[tuple[str | None, str]] = [
            (i, " ".join(words(p))) for i, ps in intents.items() for p in ps
        ]
        examples += [(None, " ".join(words(p))) for p in negs]
        tokens = [self._tokens(p) for _, p in examples]
        kept = [k for k, t in enumerate(tokens) if len(t)]
        self.examples: list[tuple[str | None, str]] = [examples[k] for k in kept]
        self._tokens_of = [tokens[k] for k in kept]

    def _tokens(self, text: str) -> NDArray[np.int64]:
        ids = [t for t in self.emb.tokens(text) if t != _SPACE]
        return np.array(ids, dtype=np.int64)

    @cached_property
    def _index(self) -> tuple[NDArray[np.float32], NDArray[np.float32], NDArray[np.int64]]:
        """Unit token vectors of every example, end to end; their weights; where each
        example starts."""
        flat = np.concatenate(self._tokens_of)
        unit, norm = self.emb.unit_tokens(flat)
        starts = np.cumsum([0] + [len(t) for t in self._tokens_of[:-1]])
        return unit, norm, starts.astype(np.int64)

    @cached_property
    def _sentences(self) -> NDArray[np.float32] | None:
        texts = [p for _, p in self.examples]
        return None if self.encoder is None else self.encoder.encode_many(texts)

    def warm(self) -> None:
        """Embed the examples now (start-up, flow reload) rather than at the first caller."""
        _ = self._index, self._sentences

    def _scores(self, text: str) -> NDArray[np.float32] | None:
        said = " ".join(words(text))
        u = self._tokens(said)
        if not len(u) or not self.examples:
            return None
        unit, weight, starts = self._index
        u_unit, u_weight = self.emb.unit_tokens(u)
        sim = unit @ u_unit.T  # example tokens x utterance tokens
        # how much of each example was said: its tokens' best matches, weighted
        covered = np.add.reduceat(sim.max(axis=1) * weight, starts)
        recall = covered / np.add.reduceat(weight, starts)
        # how much of the utterance each example explains
        best_per_said = np.maximum.reduceat(sim, starts, axis=0)  # examples x utterance
        precision = best_per_said @ u_weight / u_weight.sum()
        aligned: NDArray[np.float32] = np.maximum(
            (recall + precision) / 2, self._word_sentences @ self.emb.embed([said])[0]
        )
        sentences = self._sentences
        if sentences is None or self.encoder is None:
            return aligned
        meaning: NDArray[np.float32] = sentences @ self.encoder.encode(said)
        both: NDArray[np.float32] = ((aligned + meaning) / 2).astype(np.float32)
        return both

    @cached_property
    def _word_sentences(self) -> NDArray[np.float32]:
        return self.emb.embed([p for _, p in self.examples])

    def rank(self, text: str) -> list[Scored]:
        """Every intent with its best example's score, best first."""
        scores = self._scores(text)
        if scores is None:
            return []
        best: dict[str, Scored] = {}
        for (intent, phrase), s in zip(self.examples, scores.tolist(), strict=True):
            if intent is not None and (intent not in best or s > best[intent].score):
                best[intent] = Scored(intent, s, phrase)
        return sorted(best.values(), key=lambda s: -s.score)

    def out_of_scope(self, text: str) -> Scored | None:
        """The nearest out-of-scope example, or None when there are none."""
        scores = self._scores(text)
        if scores is None:
            return None
        found = [
            (s, p) for (i, p), s in zip(self.examples, scores.tolist(), strict=True) if i is None
        ]
        if not found:
            return None
        s, p = max(found)
        return Scored("", s, p)


def prepare(text: str) -> None:
    """Compute `text`'s sentence embedding into the encoder's cache (run this in a worker
    thread before the dialog matches the text, so the event loop never waits for it)."""
    enc = default_encoder()
    if enc is not None:
        enc.encode(" ".join(words(text)))
