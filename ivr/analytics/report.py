"""The analytics figures, from the store's analytics queries, as JSON-ready dicts (the API's
bodies; the shapes are documented by the models in `ivr.api.analytics`).

Everything covers the calls that started in a window ([since, until)) and their turns.

* Containment: an ended call is escalated when it reached a person: a callback was booked
  from it (its transcript's call id), it ended as `callback_booked` / `callback_not_booked` or
  by a handoff (`handoff: …`), or it had a turn on the flow's agent path (`FlowFacts`: e.g. a
  caller who asked for an agent and hung up while the callback was being arranged). Every
  other ended call was abandoned when the caller hung up right after a no-match (`caller_hangup`,
  and its last turn of input, reprompts aside, was the no-match: the IVR did not understand
  and the caller gave up), else contained. The rate is contained / ended. Calls still in
  progress are counted apart.
* Escalation reason: the booked callback's `reason`; else the handoff's; else inferred from
  the input that led onto the agent path (no_input → no_input_max, no_match → no_match_max,
  an intent that declares a reason → it, else caller_request); "unknown" without one.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

from ivr.analytics.channels import CHANNELS, VOICE, has_text, has_voice, text_channel
from ivr.analytics.facts import FlowFacts
from ivr.analytics.window import Bucket, Window, bucket_start, chart
from ivr.callbacks import iso
from ivr.grammar import normalize
from ivr.store.analytics import HANDOFF_PREFIX
from ivr.store.base import Escalation, IntentUse, Store, TurnRecord
from ivr.store.complaints import COMPLAINT_TOPIC

CONFIDENCE_BUCKETS = 10
RISING_MIN_COUNT = 5  # an intent asked for by fewer calls is noise, however fast it grew
RISING_MIN_RATIO = 2.0  # at least this many times its count in the previous window
UNRECOGNIZED_ROWS = 10000  # newest no-match utterances grouped (bounds the work per request)
EXAMPLES = 5  # utterances (with their audio) shown per group
_UNK = "\u2400"  # what `normalize` makes of the recognizers' unknown-word markers


def rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def audio_url(call_id: str, seq: int) -> str:
    """Where the API serves a turn's recording."""
    return f"/v1/calls/{quote(call_id, safe='')}/turns/{seq}/audio"


def _window(window: Window, tz: ZoneInfo) -> dict[str, Any]:
    return {"since": iso(window.since, tz), "until": iso(window.until, tz)}


def _report(window: Window, tz: ZoneInfo) -> dict[str, Any]:
    """A report's head: its window, and the zone its times (and hour or day buckets) are in."""
    return _window(window, tz) | {"timezone": tz.key}


# --- summary --------------------------------------------------------------------------------


@dataclass
class _Figures:
    """One channel's contacts (calls or conversations) in a window."""

    channel: str
    contacts: int = 0
    ended: int = 0
    contained: int = 0
    abandoned: int = 0
    escalated: int = 0
    seconds: float = 0.0  # total handling time of the ended ones
    reasons: Counter[str] = field(default_factory=Counter)
    survey: Counter[int] = field(default_factory=Counter)

    def row(self) -> dict[str, Any]:
        return {
            "channel": self.channel,
            "contacts": self.contacts,
            "ended": self.ended,
            "in_progress": self.contacts - self.ended,
            "contained": self.contained,
            "abandoned": self.abandoned,
            "escalated": self.escalated,
            "containment_rate": rate(self.contained, self.ended),
        }


async def summary(
    store: Store, window: Window, facts: FlowFacts, tz: ZoneInfo, channel: str | None = None
) -> dict[str, Any]:
    """The figures of `channel`'s contacts (None: every channel's, calls and conversations
    together), and each channel's containment apart."""
    parts = {c: _Figures(c) for c in CHANNELS if channel in (None, c)}
    if has_voice(channel):
        parts[VOICE] = await _voice(store, window, facts)
    if has_text(channel):
        for f in await _text(store, window, facts, text_channel(channel)):
            parts[f.channel] = f
    every = list(parts.values())
    ended = sum(f.ended for f in every)
    contained = sum(f.contained for f in every)
    reasons: Counter[str] = sum((f.reasons for f in every), Counter())
    survey: Counter[int] = sum((f.survey for f in every), Counter())
    responses = survey.total()
    calls = parts[VOICE].contacts if VOICE in parts else 0
    return _report(window, tz) | {
        "channel": channel,
        "contacts": sum(f.contacts for f in every),
        "calls": calls,
        "conversations": sum(f.contacts for f in every) - calls,
        "ended": ended,
        "in_progress": sum(f.contacts - f.ended for f in every),
        "containment": {
            "contained": contained,
            "abandoned": sum(f.abandoned for f in every),
            "escalated": sum(f.escalated for f in every),
            "rate": rate(contained, ended),
        },
        "escalations": [
            {"reason": reason, "calls": n}
            for reason, n in sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0]))
        ],
        "average_handling_seconds": round(sum(f.seconds for f in every) / ended, 1)
        if ended
        else None,
        "survey": {
            "responses": responses,
            "average": round(sum(s * n for s, n in survey.items()) / responses, 2)
            if responses
            else None,
            "distribution": [survey.get(score, 0) for score in range(1, 6)],
        },
        "channels": [f.row() for f in every],
    }


async def _voice(store: Store, window: Window, facts: FlowFacts) -> _Figures:
    """The calls' figures (see the module's doc for the rules)."""
    totals = await store.call_totals(window.since, window.until)
    escalated = await store.escalated_calls(window.since, window.until, facts.agent_nodes)
    reached = {e.call_id for e in escalated}
    abandoned = [
        c for c in await store.abandoned_calls(window.since, window.until) if c not in reached
    ]
    turns: dict[str, list[TurnRecord]] = defaultdict(list)
    for t in await store.turns_of([e.call_id for e in escalated if not _known_reason(e)]):
        turns[t.call_id].append(t)
    return _Figures(
        VOICE,
        contacts=totals.calls,
        ended=totals.ended,
        contained=totals.ended - len(escalated) - len(abandoned),
        abandoned=len(abandoned),
        escalated=len(escalated),
        seconds=(totals.handling_seconds or 0.0) * totals.ended,
        reasons=Counter(escalation_reason(e, turns[e.call_id], facts) for e in escalated),
        survey=Counter(totals.survey),
    )


async def _text(
    store: Store, window: Window, facts: FlowFacts, channel: str | None
) -> list[_Figures]:
    """The conversations' figures per text channel, by the calls' rules: escalated as a
    call is (a callback booked from it, its end, a message on the agent path), abandoned
    when the customer stopped writing (it ended `idle`) right after a message the bot did
    not understand, else contained."""
    since, until = window.since, window.until
    out = {
        t.channel: _Figures(
            t.channel,
            contacts=t.conversations,
            ended=t.ended,
            seconds=(t.handling_seconds or 0.0) * t.ended,
            survey=Counter(t.survey),
        )
        for t in await store.conversation_totals(since, until, channel)
    }
    escalated = await store.escalated_conversations(since, until, facts.agent_nodes, channel)
    reached = {e.escalation.call_id for e in escalated}
    unexplained = [e.escalation.call_id for e in escalated if not _known_reason(e.escalation)]
    turns: dict[str, list[TurnRecord]] = defaultdict(list)
    for t in await store.conversation_turns(unexplained):
        turns[t.call_id].append(t)
    for e in escalated:
        f = out[e.channel]
        f.escalated += 1
        f.reasons[escalation_reason(e.escalation, turns[e.escalation.call_id], facts)] += 1
    for id, at in await store.abandoned_conversations(since, until, channel):
        if id not in reached:
            out[at].abandoned += 1
    for f in out.values():
        f.contained = f.ended - f.escalated - f.abandoned
    return list(out.values())


def _known_reason(e: Escalation) -> bool:
    return bool(e.callback_reason) or (e.end_reason or "").startswith(HANDOFF_PREFIX)


def escalation_reason(e: Escalation, turns: Sequence[TurnRecord], facts: FlowFacts) -> str:
    if e.callback_reason:
        return e.callback_reason
    if e.end_reason and e.end_reason.startswith(HANDOFF_PREFIX):
        return e.end_reason.removeprefix(HANDOFF_PREFIX)
    last_input: TurnRecord | None = None
    for t in turns:
        if t.node in facts.agent_nodes:
            break
        if t.kind != "prompt":
            last_input = t
    else:
        return "unknown"  # escalated by its end reason alone: nothing shows how it got there
    if last_input is None:
        return "unknown"
    if last_input.kind == "no_input":
        return "no_input_max"
    if last_input.kind == "no_match":
        return "no_match_max"
    return facts.reasons.get(last_input.intent or "", "caller_request")


# --- nodes ----------------------------------------------------------------------------------


async def nodes(
    store: Store, window: Window, tz: ZoneInfo, channel: str | None = None
) -> dict[str, Any]:
    """Per node: turns, inputs (recognized speech, keys, silences: each time the node
    listened; a customer's message), no-match and no-input counts and their rates per input,
    and the recognizer's confidence as a histogram of ten buckets ([0, 0.1) … [0.9, 1.0]):
    calls only, typed text has none."""
    since, until = window.since, window.until
    found = await store.turn_counts(since, until) if has_voice(channel) else []
    if has_text(channel):
        found += await store.message_counts(since, until, text_channel(channel))
    counts: dict[str | None, Counter[str]] = defaultdict(Counter)
    for c in found:
        counts[c.node][c.kind] += c.count
    histograms: dict[str | None, list[int]] = defaultdict(lambda: [0] * CONFIDENCE_BUCKETS)
    for h in await store.confidence_counts(since, until) if has_voice(channel) else []:
        histograms[h.node][h.bucket] += h.count
    out = []
    order = sorted(counts, key=lambda n: (-_inputs(counts[n]), -counts[n].total(), n or ""))
    for node in order:
        kinds = counts[node]
        inputs = _inputs(kinds)
        out.append(
            {
                "node": node,
                "turns": sum(kinds.values()),
                "inputs": inputs,
                "no_match": kinds["no_match"],
                "no_input": kinds["no_input"],
                "no_match_rate": rate(kinds["no_match"], inputs),
                "no_input_rate": rate(kinds["no_input"], inputs),
                "confidence": histograms[node],
            }
        )
    return _report(window, tz) | {"channel": channel, "nodes": out}


def _inputs(kinds: Counter[str]) -> int:
    return kinds["recognized"] + kinds["dtmf"] + kinds["no_input"]


# --- intents --------------------------------------------------------------------------------


async def intents(
    store: Store,
    window: Window,
    bucket: Bucket,
    facts: FlowFacts,
    tz: ZoneInfo,
    channel: str | None = None,
) -> dict[str, Any]:
    """How many contacts (calls, conversations) of `channel` (None: every one) asked for
    each topic, per hour or day (`chart`: days for a window of weeks, the newest buckets of
    a longer one), and the topics that rose sharply against the previous window of the
    same length on the same channel."""
    plan = chart(window, bucket, tz)
    now = _calls_per_intent(await _uses(store, window, channel), facts)
    before = window.previous()
    prev = _calls_per_intent(await _uses(store, before, channel), facts)
    index = {start: i for i, start in enumerate(plan.starts)}
    series = []
    for intent, uses in sorted(now.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        counts = [0] * len(plan.starts)
        for use in uses:
            i = index.get(bucket_start(use.started_at, plan.bucket, tz))
            if i is not None:  # None: before the buckets shown (truncated)
                counts[i] += 1
        series.append({"intent": intent, "total": len(uses), "counts": counts})
    return _report(window, tz) | {
        "channel": channel,
        "bucket": plan.bucket,
        "buckets": [iso(start, tz) for start in plan.starts],
        "truncated": plan.truncated,
        "series": series,
        "previous": _window(before, tz),
        "rising": rising({k: len(v) for k, v in now.items()}, {k: len(v) for k, v in prev.items()}),
    }


async def _uses(store: Store, window: Window, channel: str | None) -> list[IntentUse]:
    """The calls' and conversations' intents on `channel` (None: all of them)."""
    uses = await store.intent_uses(window.since, window.until) if has_voice(channel) else []
    if has_text(channel):
        text = await store.conversation_intent_uses(
            window.since, window.until, text_channel(channel)
        )
        uses += text  # a conversation's id is never a call's: each contact counts once
    # complaints (`ivr.nlu.complaint`) are a topic of their own: once per contact found one
    return uses + await store.complaint_uses(window.since, window.until, channel)


def _calls_per_intent(uses: Iterable[IntentUse], facts: FlowFacts) -> dict[str, list[IntentUse]]:
    """Topic → one use per call that asked for it (a call asking twice counts once)."""
    out: dict[str, dict[str, IntentUse]] = defaultdict(dict)
    for use in uses:
        if use.intent == COMPLAINT_TOPIC or facts.is_topic(use.node, use.intent):
            out[use.intent].setdefault(use.call_id, use)
    return {intent: list(calls.values()) for intent, calls in out.items()}


def rising(now: dict[str, int], before: dict[str, int]) -> list[dict[str, Any]]:
    """Intents asked for by at least RISING_MIN_COUNT calls and RISING_MIN_RATIO times as
    many as in the previous window (ratio None: none then), steepest first."""
    up = [
        (intent, count, before.get(intent, 0))
        for intent, count in now.items()
        if count >= RISING_MIN_COUNT and count >= RISING_MIN_RATIO * before.get(intent, 0)
    ]
    # new topics (nothing before) first, then by ratio, count and name
    up.sort(key=lambda u: (u[2] > 0, -(u[1] / u[2] if u[2] else 0), -u[1], u[0]))
    return [
        {"intent": i, "count": n, "previous": p, "ratio": round(n / p, 2) if p else None}
        for i, n, p in up
    ]


# --- unrecognized ---------------------------------------------------------------------------


def utterance_key(text: str | None) -> str:
    """How unrecognized utterances are grouped: normalized words, unknown-word markers
    dropped ("" for speech the recognizer made nothing of)."""
    return " ".join(normalize(text or "").replace(_UNK, " ").split())


async def unrecognized(
    store: Store,
    window: Window,
    tz: ZoneInfo,
    node: str | None = None,
    limit: int = 10,
    channel: str | None = None,
) -> dict[str, Any]:
    """Per node, the most frequent utterances (said or written, on `channel`; None: every
    one) nothing matched (at most `limit` groups), each with its count and the newest few
    examples with their recordings (calls only)."""
    since, until = window.since, window.until
    said = (
        await store.unrecognized_turns(since, until, node, UNRECOGNIZED_ROWS)
        if has_voice(channel)
        else []
    )
    written: list[TurnRecord] = []
    if has_text(channel):
        written = await store.unrecognized_messages(
            since, until, text_channel(channel), node, UNRECOGNIZED_ROWS
        )
    conversations = {id(t) for t in written}
    rows = sorted(said + written, key=lambda t: t.at, reverse=True)
    groups: dict[str | None, dict[str, list[TurnRecord]]] = defaultdict(lambda: defaultdict(list))
    for t in rows:  # newest first: so are each group's examples
        groups[t.node][utterance_key(t.text)].append(t)
    out = []
    order = sorted(groups, key=lambda n: (-_total(groups[n]), n or ""))
    for at_node in order:
        by_text = groups[at_node]
        ranked = sorted(by_text.items(), key=lambda kv: (-len(kv[1]), kv[0]))
        out.append(
            {
                "node": at_node,
                "unrecognized": _total(by_text),
                "utterances": [
                    {
                        "text": text,
                        "count": len(turns),
                        "examples": [
                            _example(t, tz, id(t) in conversations) for t in turns[:EXAMPLES]
                        ],
                    }
                    for text, turns in ranked[:limit]
                ],
            }
        )
    truncated = max(len(said), len(written)) >= UNRECOGNIZED_ROWS
    return _report(window, tz) | {"channel": channel, "truncated": truncated, "nodes": out}


def _total(by_text: dict[str, list[TurnRecord]]) -> int:
    return sum(len(turns) for turns in by_text.values())


def _example(t: TurnRecord, tz: ZoneInfo, conversation: bool = False) -> dict[str, Any]:
    """A call's utterance, or a conversation's message (`t.call_id` its conversation's)."""
    return {
        "call_id": None if conversation else t.call_id,
        "conversation_id": t.call_id if conversation else None,
        "seq": t.seq,
        "at": iso(t.at, tz),
        "text": t.text,
        "confidence": t.confidence,
        "audio_url": audio_url(t.call_id, t.seq) if t.audio else None,
    }
