"""Grammars: ops-editable phrase lists mapped to intents, and matching recognized text to them.

A grammar file (YAML) looks like::

    name: yesno
    intents:
      "yes": [yes, yeah, that's right]
      "no": [no, nope]

With ``sequence: {max: 16, join: ""}`` the caller may say several phrases in a row and the
intent is the items' intents joined (the ``digits`` grammar: "four one two" → ``412``).

Recognized text is scored against every phrase (rapidfuzz), so a near-miss from the decoder
still lands on the right intent, while a weak best match is reported as no-match.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from rapidfuzz import fuzz, process

from ivr.nlu.classifier import IntentClassifier
from ivr.nlu.numbers import digits_as_words, spoken_digits
from ivr.nlu.polarity import polarity
from ivr.nlu.rescore import choose
from ivr.yamlio import YamlLimitError, load_yaml

UNKNOWN_TOKENS = frozenset({"[unk]", "<unk>", "[noise]", "[laughter]"})
_UNK_PLACEHOLDER = "\u2400"  # a character no phrase contains, so unknown words never match
_PUNCT = re.compile(r"[^\w\s'\u2400-]+")


class GrammarError(ValueError):
    """A grammar file or phrase list that cannot be used; the message names file and field.

    `loc` is the field's path in the grammar document (e.g. ("intents", "yes", 2)) so tools
    can point at its line; () when the problem is not in one field."""

    def __init__(self, message: str, loc: tuple[str | int, ...] = ()) -> None:
        super().__init__(message)
        self.loc = loc


class NotAGrammar(GrammarError):
    """The file is a dialog flow (it has nodes), not a grammar: its nodes each listen with
    their own grammar, which `ivr grammar test FLOW` tries."""

    def __init__(self, path: Path) -> None:
        super().__init__(f"{path} is a dialog flow (it has nodes), not a grammar")
        self.path = path


def normalize(text: str) -> str:
    """Lower-case, NFC, punctuation dropped, unknown-word markers kept as a placeholder."""
    words = []
    for word in unicodedata.normalize("NFC", text).lower().split():
        words.append(_UNK_PLACEHOLDER if word in UNKNOWN_TOKENS else word)
    return " ".join(_PUNCT.sub(" ", " ".join(words)).split())


@dataclass(frozen=True)
class Match:
    """Best intent for a text: the phrase that matched, its score in [0, 1] and the runner-up."""

    intent: str | None
    score: float
    phrase: str | None
    runner_up: tuple[str, float] | None = None
    reason: str = ""

    @property
    def matched(self) -> bool:
        return self.intent is not None


@dataclass(frozen=True)
class Sequence:
    max: int = 16
    join: str = ""


MatchBy = Literal["meaning", "spelling"]


@dataclass(frozen=True)
class Grammar:
    """Phrases (with synonyms) mapped to intents.

    `match_by` "meaning" (intents: the phrases are examples; see `ivr.nlu.classifier`, whose
    calibrated rejection applies and `threshold` does not) or "spelling" (the closest phrase
    by edit distance must reach `threshold`: phrase lists such as callback times, where
    "at three" and "at four" mean different things). Sequence grammars (digit strings) are
    matched by spelling, after spoken and written numbers are read as digits."""

    name: str
    intents: dict[str, list[str]]
    sequence: Sequence | None = None
    threshold: float = 0.8  # minimum match score (spelling)
    min_confidence: float = 0.25  # minimum recognizer confidence
    language: str = "en"
    source: str = "<memory>"
    match_by: MatchBy = "meaning"
    negatives: tuple[str, ...] = ()  # out-of-scope examples (meaning): nearest one → no-match
    yes_no: bool = False  # a yes/no question: "yes"/"no" by word rules first (ivr.nlu.polarity)
    _by_phrase: dict[str, str] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.intents:
            raise GrammarError(
                f"{self.source}: intents: a grammar needs at least one intent", ("intents",)
            )
        for intent, phrases in self.intents.items():
            if not phrases:
                raise GrammarError(
                    f"{self.source}: intents.{intent}: no phrases", ("intents", intent)
                )
            for i, phrase in enumerate(phrases):
                norm = normalize(phrase)
                if not norm:
                    raise GrammarError(
                        f"{self.source}: intents.{intent}: empty phrase {phrase!r}",
                        ("intents", intent, i),
                    )
                other = self._by_phrase.get(norm)
                if other is not None and other != intent:
                    raise GrammarError(
                        f"{self.source}: intents.{intent}: phrase {phrase!r} "
                        f"already belongs to intent {other!r}",
                        ("intents", intent, i),
                    )
                self._by_phrase[norm] = intent

    @property
    def key(self) -> tuple[object, ...]:
        """Hashable identity of what an engine compiles: phrases and sequence settings."""
        return (self.name, tuple(self._by_phrase.items()), self.sequence, self.negatives)

    @property
    def phrases(self) -> list[str]:
        """Every phrase, normalized, in file order."""
        return list(self._by_phrase)

    def intent_of(self, phrase: str) -> str:
        """The intent of one of `phrases` (normalized)."""
        return self._by_phrase[phrase]

    def words(self) -> set[str]:
        return {w for p in self._by_phrase for w in p.split()}

    def match(self, text: str, confidence: float = 1.0) -> Match:
        """The intent `text` means, or a no-match (intent None) with the reason."""
        norm = normalize(text)
        if not norm:
            return Match(None, 0.0, None, reason="nothing recognized")
        if self.sequence is not None:
            digits = self._digits(text)
            if digits is not None:
                norm = digits
        elif self.match_by == "spelling":
            norm = normalize(digits_as_words(norm))
        answer = polarity(text) if self.yes_no else None
        if answer is not None and answer in self.intents:
            best = Match(answer, 1.0, answer, None, f"said {answer}")
        elif self._by_meaning:
            best = self._meaning(norm)
        else:
            best = self._best(norm)
        if confidence < self.min_confidence:
            return Match(
                None,
                best.score,
                best.phrase,
                best.runner_up,
                reason=f"confidence {confidence:.2f} below {self.min_confidence:.2f}",
            )
        if self._by_meaning:
            if best.intent is not None and best.score < self.reject:
                return Match(
                    None,
                    best.score,
                    best.phrase,
                    best.runner_up,
                    reason=f"best phrase {best.phrase!r} ({best.intent}) scored "
                    f"{best.score:.2f} below {self.reject:.2f}",
                )
            return best
        if self.sequence is not None and (best.score < self.threshold or len(norm.split()) > 1):
            seq = self._match_sequence(norm)
            if seq is not None and (seq.score > best.score or best.score < self.threshold):
                best = seq
        if best.score < self.threshold:
            return Match(
                None,
                best.score,
                best.phrase,
                best.runner_up,
                reason=f"best phrase {best.phrase!r} scored {best.score:.2f} "
                f"below {self.threshold:.2f}",
            )
        return best

    @property
    def rescores(self) -> bool:
        """A recognizer's hypotheses may be chosen by this grammar (`choose`): it matches by
        meaning and is no yes/no question (word rules decide those)."""
        return self._by_meaning and not self.yes_no

    def choose(self, hypotheses: list[tuple[str, float]]) -> int:
        """Which of the recognizer's hypotheses (text, confidence; best first) to use: see
        `ivr.nlu.rescore`."""
        return choose(classifier_for(self), hypotheses) if self.rescores else 0

    @property
    def reject(self) -> float:
        """The score a match by meaning needs (else a no-match); `threshold` by spelling."""
        return classifier_for(self).reject if self._by_meaning else self.threshold

    @property
    def _by_meaning(self) -> bool:
        # The sentence and word models are English: other languages match by spelling.
        english = self.language.lower().startswith("en")
        return self.match_by == "meaning" and self.sequence is None and english

    def _meaning(self, norm: str) -> Match:
        clf = classifier_for(self)
        ranked = clf.rank(norm)
        if not ranked:
            return Match(None, 0.0, None, reason="no words")
        top = ranked[0]
        other = clf.out_of_scope(norm) if top.score >= clf.reject else None
        if other is not None and other.score >= top.score:
            return Match(
                None,
                top.score,
                top.phrase,
                (top.intent, round(top.score, 3)),
                f"closest to the out-of-scope example {other.phrase!r} ({other.score:.2f})",
            )
        runner_up = (ranked[1].intent, round(ranked[1].score, 3)) if len(ranked) > 1 else None
        return Match(
            top.intent, round(top.score, 3), top.phrase, runner_up, f"closest phrase {top.phrase!r}"
        )

    def _digits(self, text: str) -> str | None:
        """`text` as the words of the digits it spells ("4, 1, 2." → "four one two"), when
        every digit is one of this grammar's intents; None otherwise."""
        digits = spoken_digits(text)
        if digits is None or not set(digits) <= set(self.intents):
            return None
        return digits_as_words(digits) if digits else None

    def _best(self, norm: str) -> Match:
        found = process.extract(norm, self.phrases, scorer=_similarity, limit=None)
        best_phrase, best_score, _ = found[0]
        intent = self._by_phrase[best_phrase]
        runner_up = None
        for phrase, score, _ in found[1:]:
            if self._by_phrase[phrase] != intent:
                runner_up = (self._by_phrase[phrase], round(score / 100, 3))
                break
        return Match(
            intent,
            round(best_score / 100, 3),
            best_phrase,
            runner_up,
            reason=f"closest phrase {best_phrase!r}",
        )

    def _match_sequence(self, norm: str) -> Match | None:
        """Split the text into consecutive phrases greedily (longest phrase first)."""
        assert self.sequence is not None
        words = norm.split()
        longest = max(len(p.split()) for p in self.phrases)
        items: list[tuple[str, str, float]] = []
        i = 0
        while i < len(words):
            best: tuple[str, str, float, int] | None = None
            for n in range(min(longest, len(words) - i), 0, -1):
                chunk = " ".join(words[i : i + n])
                m = self._best(chunk)
                if m.intent is not None and (best is None or m.score > best[2]):
                    best = (m.intent, m.phrase or "", m.score, n)
            if best is None:
                return None
            items.append(best[:3])
            i += best[3]
        if not items or len(items) > self.sequence.max:
            return None
        score = min(s for _, _, s in items)
        return Match(
            self.sequence.join.join(intent for intent, _, _ in items),
            score,
            " ".join(p for _, p, _ in items),
            None,
            reason=f"sequence of {len(items)} phrases",
        )


_CLASSIFIERS: dict[tuple[object, ...], IntentClassifier] = {}


def classifier_for(grammar: Grammar) -> IntentClassifier:
    """The grammar's classifier, built once per process for each set of phrases (Grammar
    objects are rebuilt on every flow load and pickled to ASR workers: the cache stays out
    of them)."""
    key = grammar.key
    found = _CLASSIFIERS.get(key)
    if found is None:
        if len(_CLASSIFIERS) > 256:  # flows reloaded many times: drop the oldest
            del _CLASSIFIERS[next(iter(_CLASSIFIERS))]
        intents: dict[str, list[str]] = {}
        for phrase, intent in grammar._by_phrase.items():
            intents.setdefault(intent, []).append(phrase)
        found = _CLASSIFIERS[key] = IntentClassifier(intents, grammar.negatives)
    return found


def warm_meaning(grammars: Iterable[Grammar]) -> None:
    """Build the classifiers of the grammars that match by meaning, examples embedded."""
    for grammar in grammars:
        if grammar._by_meaning:
            classifier_for(grammar).warm()


def _similarity(a: str, b: str, **_: Any) -> float:
    return max(fuzz.ratio(a, b), fuzz.token_sort_ratio(a, b))


def from_phrases(phrases: list[str], name: str = "phrases") -> Grammar:
    """A grammar where each phrase is its own intent, named by the phrase."""
    cleaned = [p.strip() for p in phrases if p.strip()]
    if not cleaned:
        raise GrammarError("--phrases: give at least one non-empty phrase")
    return Grammar(name=name, intents={p: [p] for p in cleaned}, source="--phrases")


def parse_grammar(data: Any, source: str) -> Grammar:
    """Build a grammar from parsed YAML, naming file and field in every error."""
    if not isinstance(data, dict):
        raise GrammarError(f"{source}: expected a mapping with 'name' and 'intents'")
    unknown = set(data) - {"name", "intents", "sequence", "threshold", "min_confidence", "language"}
    if unknown:
        names = sorted(map(str, unknown))
        raise GrammarError(f"{source}: unknown field(s): {', '.join(names)}", (names[0],))
    name = data.get("name") or Path(source).stem
    if not isinstance(name, str):
        raise GrammarError(f"{source}: name: must be a string", ("name",))
    raw = data.get("intents")
    if not isinstance(raw, dict) or not raw:
        raise GrammarError(
            f"{source}: intents: must be a non-empty mapping of intent → phrases", ("intents",)
        )
    intents: dict[str, list[str]] = {}
    for intent, phrases in raw.items():
        if isinstance(phrases, str):
            phrases = [phrases]
        if not isinstance(phrases, list) or not all(isinstance(p, str | int) for p in phrases):
            raise GrammarError(
                f"{source}: intents.{intent}: must be a list of phrases", ("intents", str(intent))
            )
        intents[str(intent)] = [str(p) for p in phrases]
    sequence = None
    if "sequence" in data:
        seq = data["sequence"] or {}
        if not isinstance(seq, dict):
            raise GrammarError(
                f"{source}: sequence: must be a mapping with 'max' and 'join'", ("sequence",)
            )
        try:
            sequence = Sequence(max=int(seq.get("max", 16)), join=str(seq.get("join", "")))
        except (TypeError, ValueError) as exc:
            loc = ("sequence", "max")
            raise GrammarError(f"{source}: sequence.max: must be an integer", loc) from exc
        if sequence.max < 1:
            raise GrammarError(f"{source}: sequence.max: must be at least 1", ("sequence", "max"))
    kwargs: dict[str, Any] = {}
    for key in ("threshold", "min_confidence"):
        if key in data:
            value = data[key]
            if not isinstance(value, int | float) or not 0 <= value <= 1:
                raise GrammarError(f"{source}: {key}: must be a number between 0 and 1", (key,))
            kwargs[key] = float(value)
    return Grammar(
        name=name,
        intents=intents,
        sequence=sequence,
        language=str(data.get("language", "en")),
        source=source,
        **kwargs,
    )


def _is_flow(path: Path) -> bool:
    """Flow files share the grammar folder; they have nodes."""
    try:
        return any(line.startswith("nodes:") for line in path.read_text("utf-8").splitlines())
    except (OSError, UnicodeDecodeError):
        return False


def known_grammars(grammar_dir: Path) -> list[str]:
    """The names of the grammars (not flows) in `grammar_dir`."""
    return sorted(p.stem for p in grammar_dir.glob("*.yaml") if not _is_flow(p))


def load_grammar(name_or_path: str | Path, grammar_dir: Path) -> Grammar:
    """Load a grammar by file path or by name from `grammar_dir` (``NAME.yaml``)."""
    path = Path(name_or_path)
    if not path.is_file():
        candidate = grammar_dir / f"{name_or_path}.yaml"
        if not candidate.is_file():
            known = known_grammars(grammar_dir)
            raise GrammarError(
                f"grammar {str(name_or_path)!r} not found: no such file, and no {candidate} "
                f"(known grammars: {', '.join(known) or 'none'})"
            )
        path = candidate
    try:
        data = load_yaml(path.read_text(encoding="utf-8"))
    except YamlLimitError as exc:  # says which bound, and where
        raise GrammarError(f"{path}: {exc}") from None
    except yaml.YAMLError as exc:
        raise GrammarError(f"{path}: not valid YAML: {exc}") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise GrammarError(f"{path}: cannot read: {exc}") from exc
    if isinstance(data, dict) and "nodes" in data and "intents" not in data:
        raise NotAGrammar(path)
    return parse_grammar(data, str(path))
