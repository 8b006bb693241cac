"""Intents by meaning: an utterance against a grammar's example phrases, with rejection.

Each example phrase is compared with the utterance token by token (static token embeddings,
`ivr.nlu.embeddings`): every token of the example finds its closest token in the utterance
and every token of the utterance its closest in the example, each weighted by its vector's
norm (small for "the", "my", "please"; large for "balance", "roaming"). The score is the mean
of the two directions — how much of the example was said, and how much of what was said
the example explains — or the cosine of the two sentence vectors when that is higher. So a
phrase said inside a longer sentence ("hi, um, it's about my bill from last month") scores
well, paraphrases land near their examples ("how much credit is left" ~ "how much credit do
I have"), and unrelated speech scores low. An intent scores its best example.

The best intent must reach `REJECT` (else no-match: out-of-scope speech gets the no-match
path, not a wrong answer); the runner-up is reported, and the dialog asks "Did you mean A,
or B?" when the two are close. REJECT was calibrated on the tune part of the labelled sets
in eval/ (see eval/README.md), never on the held-out part.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from numpy.typing import NDArray

from ivr.nlu.embeddings import Embeddings, default_embeddings
from ivr.nlu.numbers import digits_as_words

REJECT = 0.55  # best intent's score below this: no-match
_WORD = re.compile(r"[a-z0-9']+")
_SPACE = 29871  # the tokenizer's bare word-start piece: carries nothing


@dataclass(frozen=True)
class Scored:
    intent: str
    score: float
    phrase: str


def words(text: str) -> list[str]:
    return _WORD.findall(digits_as_words(text.lower()))


class IntentClassifier:
    """Built once per grammar (examples tokenized in one pass); `rank` takes ~1 ms."""

    def __init__(self, intents: dict[str, list[str]], emb: Embeddings | None = None) -> None:
        self.emb = emb or default_embeddings()
        examples = [(i, " ".join(words(p))) for i, ps in intents.items() for p in ps]
        tokens = [self._tokens(p) for _, p in examples]
        kept = [k for k, t in enumerate(tokens) if len(t)]
        self.examples = [examples[k] for k in kept]
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
    def _sentences(self) -> NDArray[np.float32]:
        return self.emb.embed([p for _, p in self.examples])

    def rank(self, text: str) -> list[Scored]:
        """Every intent with its best example's score, best first."""
        said = " ".join(words(text))
        u = self._tokens(said)
        if not len(u) or not self.examples:
            return []
        unit, weight, starts = self._index
        u_unit, u_weight = self.emb.unit_tokens(u)
        sim = unit @ u_unit.T  # example tokens x utterance tokens
        # how much of each example was said: its tokens' best matches, weighted
        covered = np.add.reduceat(sim.max(axis=1) * weight, starts)
        recall = covered / np.add.reduceat(weight, starts)
        # how much of the utterance each example explains
        best_per_said = np.maximum.reduceat(sim, starts, axis=0)  # examples x utterance
        precision = best_per_said @ u_weight / u_weight.sum()
        cosine = self._sentences @ self.emb.embed([said])[0]
        score = np.maximum((recall + precision) / 2, cosine)
        best: dict[str, Scored] = {}
        for (intent, phrase), s in zip(self.examples, score.tolist(), strict=True):
            if intent not in best or s > best[intent].score:
                best[intent] = Scored(intent, s, phrase)
        return sorted(best.values(), key=lambda s: -s.score)
