"""The complaint early warning: a customer who is complaining, from what they say and how the
contact goes, in any channel (a call's recognized speech, a chat's or SMS's typed text).

Two parts, both without I/O:

* **Language** (`ComplaintLanguage`): an utterance scores by meaning, through the intent
  classifier (`ivr.nlu.classifier`: sentence embeddings and word alignment) against
  complaints and ordinary requests (a few written here, `COMPLAINT_EXAMPLES` and
  `NEUTRAL_EXAMPLES`, and the labelled customer sentences of `EXAMPLES_FILE`, the tune part
  of the complaint set): the margin of the nearest complaint over the nearest request, plus
  anger and escalation words (`CUES`: "complaint", "ridiculous", "manager", "third time I
  call", "thanks for nothing"...), each adding its weight. At `THRESHOLD` or above it is a
  complaint. The weights and the threshold were chosen on the tune part alone (each of its
  sentences scored against the others: leave-one-out); the held-out part
  (eval/complaint/heldout.csv), never tuned on, measures them (eval/complaint/run.py).
* **Behaviour** (`ComplaintWatch`): one contact's turns (the dialog's `Turn`s, as plain
  fields), watching for repeated no-matches (`NO_MATCH_LIMIT` in the contact), asking for a
  person twice (`AGENT_LIMIT`), and a topic the same customer already contacted us about in
  the last day (`earlier_topics`: the caller of the watch looks them up in the store).

The watch reports a complaint once per contact, the first time a signal fires, with every
reason seen by then; the call or chat layer carries out what follows (a higher callback
priority, the `complaint.detected` webhook, the mark in the console).
"""

from __future__ import annotations

import csv
import re
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ivr.nlu.classifier import IntentClassifier

EXAMPLES_FILE = Path(__file__).with_name("complaint_examples.csv")  # the set's tune part
THRESHOLD = 0.25  # an utterance's score at or above this is a complaint
MEANING_WEIGHT = 2.0  # the meaning margin (about -0.3 .. 0.4) times this
NO_MATCH_LIMIT = 3  # no-matches in one contact
AGENT_LIMIT = 2  # requests for a person in one contact
AGENT_INTENT = "agent"
REPEAT_WINDOW_HOURS = 24
# Meaning alone (no anger or escalation word) flags a sentence, never a menu answer: short
# utterances ("report a fault", "pass word", "my bill") sit near complaints in meaning only
# because they name a problem.
MIN_WORDS_BY_MEANING = 4

REASONS = ("words", "no_matches", "agent_twice", "repeat_contact")
"""Why a contact is a complaint: what the customer said, repeated no-matches, a second
request for a person, the same topic again within a day."""

# How customers complain, written for this detector (never from eval/complaint).
COMPLAINT_EXAMPLES = (
    "I want to make a complaint",
    "I'm very unhappy with your service",
    "this is not good enough",
    "I've been waiting for weeks and nothing has happened",
    "nobody has fixed my problem",
    "I keep calling and nothing gets done",
    "you charged me for something I didn't order",
    "I'm going to cancel my contract",
    "you have let me down",
    "your staff were rude to me",
    "I was promised a call back that never came",
    "this is the worst service",
    "I am really angry",
    "I want a refund",
    "I'm switching to another provider",
    "why is this still not fixed",
    "you keep getting my bill wrong",
    "I've been treated badly",
    "what a waste of my time",
)
NEUTRAL_EXAMPLES = (
    "what's my balance",
    "how much data do I have left",
    "I have a question about my bill",
    "can you explain my bill",
    "my phone has no signal",
    "I'd like to change my plan",
    "I want to talk to someone",
    "can someone call me back",
    "will my phone work abroad",
    "when are you open",
    "where is your nearest store",
    "yes please",
    "no thank you",
    "thanks for your help",
    "can you repeat that",
    "my internet is slow",
    "I need help with my phone",
    "I'd like to pay my bill",
    "I'm calling back because I got cut off",
    "that's okay I can wait",
    "put me through to an agent",
    "can you check a charge on my bill",
)


@dataclass(frozen=True)
class Cue:
    name: str
    pattern: re.Pattern[str]
    weight: float


def _cue(name: str, weight: float, *patterns: str) -> Cue:
    return Cue(name, re.compile(r"\b(?:" + "|".join(patterns) + r")\b", re.IGNORECASE), weight)


CUES: tuple[Cue, ...] = (
    _cue("complaint", 1.0, r"complain\w*", r"complaints?"),
    _cue(
        "anger",
        0.7,
        r"angry",
        r"furious",
        r"livid",
        r"fuming",
        r"annoyed",
        r"frustrat\w+",
        r"disgust\w*",
        r"appall\w*",
        r"outrag\w+",
        r"fed up",
        r"sick (?:and tired|of)",
        r"had enough",
        r"enough is enough",
        r"(?:losing|lost) my patience",
        r"had it with",
        r"end of my tether",
        r"driving me (?:mad|crazy|insane)",
        r"putting up with",
        r"sick to death",
    ),
    _cue(
        "judgement",
        0.6,
        r"ridiculous",
        r"unacceptable",
        r"useless",
        r"hopeless",
        r"pathetic",
        r"disgrace\w*",
        r"shambles",
        r"(?:a|beyond a) joke",
        r"rubbish",
        r"terrible",
        r"awful",
        r"appalling",
        r"worst",
        r"shocking",
        r"scam",
        r"rip(?:ped)? ?off",
        r"nightmare",
        r"incompetent",
        r"not good enough",
        r"treated like",
        r"lied",
        r"wasted? (?:hours|my time|ages|days)",
        r"completely wrong",
        r"waste of time",
    ),
    # a person above the agent: the meaning alone hears "talk to someone"
    _cue(
        "higher_up",
        1.3,
        r"manager",
        r"supervisor",
        r"(?:someone|somebody) (?:in charge|senior)",
        r"your boss",
        r"complaints department",
    ),
    _cue(
        "escalation",
        0.8,
        r"escalat\w+",
        r"I demand",
        r"ombudsman",
        r"regulator",
        r"trading standards",
        r"formal",
        r"official",
        r"compensat\w+",
        r"refund",
        r"money back",
        r"(?:leave|leaving|switch\w*) (?:you|to another)",
        r"another (?:network|provider)",
        r"(?:business|custom) elsewhere",
        r"cancel (?:my contract|everything|my account)",
        r"on record",
    ),
    _cue(
        "repeat",
        0.7,
        r"(?:second|third|fourth|fifth|tenth|\d+(?:st|nd|rd|th)) time",
        r"how many times",
        r"every (?:single )?time",
        r"(?:again|still) (?:not|no)",
        r"(?:no ?one|nobody) (?:ever|has|will|seems|cares|bothered)",
        r"never (?:rang|called"
        r"|came|turned up|showed up|delivered|fixed)",
        r"(?:keep|keeps) (?:promising|charging|"
        r"getting cut|cutting)",
        r"(?:four|five|six|ten) times",
    ),
    _cue(
        "sarcasm",
        0.8,
        r"thanks for nothing",
        r"(?:oh )?(?:great|brilliant|fantastic|wow)\b.*"
        r"\b(?:not|again|another|wasted|thanks a lot)",
        r"thanks a lot",
    ),
    _cue(
        "unhappy",
        0.6,
        r"(?:not|really|very|so|extremely) (?:happy at all|unhappy|pleased)",
        r"unhappy",
        r"(?:really|very|so|extremely) disappointed",
        r"disappointed",
        r"not happy (?:at all|with)",
    ),
)


@dataclass(frozen=True)
class Heard:
    """What one utterance says: its score, whether that is a complaint, the cues found and
    the meaning margin (nearest complaint example minus nearest request)."""

    text: str
    score: float
    complaint: bool
    cues: tuple[str, ...]
    margin: float


Labelled = tuple[str, str]  # (text, "complaint" | "neutral")


def examples() -> list[Labelled]:
    """The labelled customer sentences the meaning is scored against (EXAMPLES_FILE)."""
    with EXAMPLES_FILE.open(newline="") as f:
        return [(r["text"].strip(), r["label"].strip()) for r in csv.DictReader(f)]


class ComplaintLanguage:
    """Scores utterances (see the module). Built once (its examples embedded in one batch).
    `labelled`: the sentences to compare with besides the built-in examples (default: the
    EXAMPLES_FILE's)."""

    def __init__(self, labelled: Sequence[Labelled] | None = None) -> None:
        rows = examples() if labelled is None else list(labelled)
        complaints = [*COMPLAINT_EXAMPLES, *(t for t, label in rows if label == "complaint")]
        neutral = [*NEUTRAL_EXAMPLES, *(t for t, label in rows if label == "neutral")]
        self.classifier = IntentClassifier({"complaint": complaints, "neutral": neutral})

    def margin(self, text: str) -> float:
        scores = {s.intent: s.score for s in self.classifier.rank(text)}
        return scores.get("complaint", 0.0) - scores.get("neutral", 0.0)

    def hear(self, text: str) -> Heard:
        cues = [c for c in CUES if c.pattern.search(text)]
        margin = self.margin(text) if text.strip() else 0.0
        score = MEANING_WEIGHT * margin + sum(c.weight for c in cues)
        complaint = score >= THRESHOLD and (bool(cues) or len(text.split()) >= MIN_WORDS_BY_MEANING)
        return Heard(text, round(score, 4), complaint, tuple(c.name for c in cues),
                     round(margin, 4))  # fmt: skip


_default: ComplaintLanguage | None = None
_lock = threading.Lock()


def default_language() -> ComplaintLanguage:
    """The process's one language scorer, built and its examples embedded at the first use
    (callers run that in a worker thread: scoring an utterance on the loop is then cheap)."""
    global _default
    with _lock:
        if _default is None:
            language = ComplaintLanguage()
            language.classifier.warm()
            _default = language
        return _default


@dataclass(frozen=True)
class Complaint:
    """A contact found to be a complaint: why (`REASONS`), and for `words` what was said,
    its score and cues; for `repeat_contact` the topic asked about again."""

    reasons: tuple[str, ...]
    text: str | None = None
    score: float | None = None
    cues: tuple[str, ...] = ()
    topic: str | None = None

    def json(self) -> dict[str, object]:
        return {
            "reasons": list(self.reasons),
            "text": self.text,
            "score": self.score,
            "cues": list(self.cues),
            "topic": self.topic,
        }


@dataclass
class ComplaintWatch:
    """One contact's complaint signal, from its turns (see the module). `is_topic(node,
    intent)`: whether an intent is something asked for (analytics' `FlowFacts.is_topic`);
    `earlier_topics`: those of the customer's contacts in the last REPEAT_WINDOW_HOURS."""

    language: ComplaintLanguage | None
    is_topic: Callable[[str | None, str], bool] = lambda node, intent: True
    earlier_topics: frozenset[str] = frozenset()
    complaint: Complaint | None = None  # once detected
    no_matches: int = 0
    agent_requests: int = 0
    topics: list[str] = field(default_factory=list)  # this contact's, in order, once each
    _heard: Heard | None = None
    _repeated: str | None = None

    def turn(self, node: str | None, kind: str, text: str | None, intent: str | None
             ) -> Complaint | None:  # fmt: skip
        """Take one turn of the contact; the complaint when this turn makes it one (once)."""
        if kind == "no_match":
            self.no_matches += 1
        elif kind in ("recognized", "dtmf"):
            if kind == "recognized" and text and self.language is not None:
                heard = self.language.hear(text)
                if heard.complaint and self._heard is None:
                    self._heard = heard
            if intent == AGENT_INTENT:
                self.agent_requests += 1
            if intent and self.is_topic(node, intent) and intent not in self.topics:
                self.topics.append(intent)
                if intent in self.earlier_topics and self._repeated is None:
                    self._repeated = intent
        return self._check()

    def _check(self) -> Complaint | None:
        if self.complaint is not None:
            return None
        reasons = list(self._reasons())
        if not reasons:
            return None
        heard = self._heard
        self.complaint = Complaint(
            tuple(reasons),
            heard.text if heard else None,
            heard.score if heard else None,
            heard.cues if heard else (),
            self._repeated,
        )
        return self.complaint

    def _reasons(self) -> Iterable[str]:
        if self._heard is not None:
            yield "words"
        if self.no_matches >= NO_MATCH_LIMIT:
            yield "no_matches"
        if self.agent_requests >= AGENT_LIMIT:
            yield "agent_twice"
        if self._repeated is not None:
            yield "repeat_contact"
