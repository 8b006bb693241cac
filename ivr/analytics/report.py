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
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

from ivr.analytics.facts import FlowFacts
from ivr.analytics.window import Bucket, Window, bucket_start, chart
from ivr.callbacks import iso
from ivr.grammar import normalize
from ivr.store.analytics import HANDOFF_PREFIX
from ivr.store.base import Escalation, IntentUse, Store, TurnRecord

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


async def summary(store: Store, window: Window, facts: FlowFacts, tz: ZoneInfo) -> dict[str, Any]:
    totals = await store.call_totals(window.since, window.until)
    escalated = await store.escalated_calls(window.since, window.until, facts.agent_nodes)
    reached = {e.call_id for e in escalated}
    abandoned = [
        c for c in await store.abandoned_calls(window.since, window.until) if c not in reached
    ]
    contained = totals.ended - len(escalated) - len(abandoned)
    unexplained = [e.call_id for e in escalated if not _known_reason(e)]
    turns: dict[str, list[TurnRecord]] = defaultdict(list)
    for t in await store.turns_of(unexplained):
        turns[t.call_id].append(t)
    reasons = Counter(escalation_reason(e, turns[e.call_id], facts) for e in escalated)
    responses = sum(totals.survey.values())
    scored = sum(score * n for score, n in totals.survey.items())
    seconds = totals.handling_seconds
    return _report(window, tz) | {
        "calls": totals.calls,
        "ended": totals.ended,
        "in_progress": totals.calls - totals.ended,
        "containment": {
            "contained": contained,
            "abandoned": len(abandoned),
            "escalated": len(escalated),
            "rate": rate(contained, totals.ended),
        },
        "escalations": [
            {"reason": reason, "calls": n}
            for reason, n in sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0]))
        ],
        "average_handling_seconds": None if seconds is None else round(seconds, 1),
        "survey": {
            "responses": responses,
            "average": round(scored / responses, 2) if responses else None,
            "distribution": [totals.survey.get(score, 0) for score in range(1, 6)],
        },
    }


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


async def nodes(store: Store, window: Window, tz: ZoneInfo) -> dict[str, Any]:
    """Per node: turns, inputs (recognized speech, keys, silences: each time the node
    listened), no-match and no-input counts and their rates per input, and the recognizer's
    confidence as a histogram of ten buckets ([0, 0.1) … [0.9, 1.0])."""
    counts: dict[str | None, Counter[str]] = defaultdict(Counter)
    for c in await store.turn_counts(window.since, window.until):
        counts[c.node][c.kind] += c.count
    histograms: dict[str | None, list[int]] = defaultdict(lambda: [0] * CONFIDENCE_BUCKETS)
    for h in await store.confidence_counts(window.since, window.until):
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
    return _report(window, tz) | {"nodes": out}


def _inputs(kinds: Counter[str]) -> int:
    return kinds["recognized"] + kinds["dtmf"] + kinds["no_input"]


# --- intents --------------------------------------------------------------------------------


async def intents(
    store: Store, window: Window, bucket: Bucket, facts: FlowFacts, tz: ZoneInfo
) -> dict[str, Any]:
    """How many calls asked for each topic, per hour or day (`chart`: days for a window of
    weeks, the newest buckets of a longer one), and the topics that rose sharply against the
    previous window of the same length."""
    plan = chart(window, bucket, tz)
    now = _calls_per_intent(await store.intent_uses(window.since, window.until), facts)
    before = window.previous()
    prev = _calls_per_intent(await store.intent_uses(before.since, before.until), facts)
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
        "bucket": plan.bucket,
        "buckets": [iso(start, tz) for start in plan.starts],
        "truncated": plan.truncated,
        "series": series,
        "previous": _window(before, tz),
        "rising": rising({k: len(v) for k, v in now.items()}, {k: len(v) for k, v in prev.items()}),
    }


def _calls_per_intent(uses: Iterable[IntentUse], facts: FlowFacts) -> dict[str, list[IntentUse]]:
    """Topic → one use per call that asked for it (a call asking twice counts once)."""
    out: dict[str, dict[str, IntentUse]] = defaultdict(dict)
    for use in uses:
        if facts.is_topic(use.node, use.intent):
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
    store: Store, window: Window, tz: ZoneInfo, node: str | None = None, limit: int = 10
) -> dict[str, Any]:
    """Per node, the most frequent utterances nothing matched (at most `limit` groups), each
    with its count and the newest few examples with their recordings."""
    rows = await store.unrecognized_turns(window.since, window.until, node, UNRECOGNIZED_ROWS)
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
                        "examples": [_example(t, tz) for t in turns[:EXAMPLES]],
                    }
                    for text, turns in ranked[:limit]
                ],
            }
        )
    return _report(window, tz) | {"truncated": len(rows) >= UNRECOGNIZED_ROWS, "nodes": out}


def _total(by_text: dict[str, list[TurnRecord]]) -> int:
    return sum(len(turns) for turns in by_text.values())


def _example(t: TurnRecord, tz: ZoneInfo) -> dict[str, Any]:
    return {
        "call_id": t.call_id,
        "seq": t.seq,
        "at": iso(t.at, tz),
        "text": t.text,
        "confidence": t.confidence,
        "audio_url": audio_url(t.call_id, t.seq) if t.audio else None,
    }
