"""Analytics from the recorded calls: containment, nodes, intents, unrecognized speech, surveys.

Every report covers the calls that started in [since, until) (default: the last 24 hours),
or in a named `period` (today in the service's zone, 24h, 7d), and their turns; the figures
are computed by `ivr.analytics` (see there for the rules). Each report is also served as CSV
at its path plus `.csv` (`ivr.analytics.export`). Also: a recorded unrecognized utterance's
audio, and adopting its words into the served flow.
"""

from __future__ import annotations

import asyncio
import weakref
from dataclasses import replace
from datetime import datetime
from typing import Any, Literal

import yaml
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.json_schema import SkipJsonSchema

from ivr import analytics
from ivr.analytics import export
from ivr.analytics.adopt import AdoptError, adopt, clean
from ivr.analytics.channels import Channel
from ivr.analytics.report import RISING_MIN_COUNT, RISING_MIN_RATIO
from ivr.analytics.window import MAX_BUCKETS, Period
from ivr.api.errors import ApiError
from ivr.api.models import Instant, Name
from ivr.api.operation import Operation, OperationHandler, parse_query, read_body
from ivr.appkeys import API
from ivr.auth import Principal
from ivr.dialog.flow import FlowError, version_of
from ivr.dialog.schema import FlowSpec
from ivr.flows_watch import FlowWatcher
from ivr.store import NotFound
from ivr.yamlio import load_yaml

# --- requests -------------------------------------------------------------------------------


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class WindowQuery(_Input):
    since: Instant | SkipJsonSchema[None] = Field(
        None, description="calls that started at or after this (default: 24 hours before until)"
    )
    until: Instant | SkipJsonSchema[None] = Field(
        None, description="calls that started before this (default: now)"
    )
    period: Period | SkipJsonSchema[None] = Field(
        None,
        description="instead of since and until: today (since midnight in the service's"
        " zone, IVR_TIMEZONE), the last 24h or the last 7d, until now",
    )
    channel: Channel | SkipJsonSchema[None] = Field(
        None,
        description="only this channel's contacts: voice (the calls) or a text channel's"
        " conversations (web, app, api, sms); absent: every channel, calls and"
        " conversations together",
    )


class IntentsQuery(WindowQuery):
    bucket: Literal["hour", "day"] = Field(
        "hour", description="the series' step, in the server's time zone"
    )


class UnrecognizedQuery(WindowQuery):
    node: Name | SkipJsonSchema[None] = Field(None, description="only this node's")
    limit: int = Field(10, ge=1, le=100, description="utterance groups per node")


class AdoptRequest(_Input):
    node: Name = Field(description="where callers said it, e.g. main_menu")
    intent: Name = Field(
        description="a choice of that menu, a global intent, or (on an FAQ menu) an FAQ id"
    )
    phrase: str = Field(
        min_length=1,
        max_length=200,
        pattern=r"^[^\x00-\x1f\x7f]*\S[^\x00-\x1f\x7f]*$",
        description="what callers say, as the recognizer writes it (spaces are tidied)",
    )


# --- responses ------------------------------------------------------------------------------


class _Output(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Window(_Output):
    since: datetime
    until: datetime


class _Report(_Window):
    timezone: str = Field(
        description="the service's zone (IVR_TIMEZONE): every time in the report has its"
        " offset, and hour and day buckets are its hours and days",
        examples=["Europe/Berlin"],
    )


class Containment(_Output):
    contained: int = Field(
        description="ended contacts that never reached a person and were not abandoned"
    )
    abandoned: int = Field(
        description="ended contacts left right after a no-match (not escalated): a call the"
        " caller hung up on, a conversation that went idle"
    )
    escalated: int = Field(
        description="ended contacts that reached a person: a callback booked from the call or"
        " conversation, an end by callback_booked / callback_not_booked / handoff, or a turn"
        " (a message) on the flow's agent path"
    )
    rate: float | None = Field(description="contained / ended (null without ended contacts)")


class ChannelFigures(_Output):
    channel: str = Field(description="voice (calls), or a text channel (web, app, api, sms)")
    contacts: int = Field(description="calls or conversations that started in the window")
    ended: int
    in_progress: int
    contained: int
    abandoned: int
    escalated: int
    containment_rate: float | None = Field(description="contained / ended")


class EscalationCount(_Output):
    reason: str = Field(
        description="the booked callback's reason, else the handoff's, else inferred from how"
        " the call got there (no_input_max, no_match_max, agent_requested, caller_request...)"
    )
    calls: int


class SurveyResults(_Output):
    responses: int
    average: float | None
    distribution: list[int] = Field(description="how many calls scored 1, 2, 3, 4 and 5")


class Summary(_Report):
    channel: Channel | None = Field(description="the channel asked for; null: every channel")
    contacts: int = Field(description="calls and conversations: every figure below is theirs")
    calls: int = Field(description="of them calls (the voice channel)")
    conversations: int = Field(description="of them text conversations")
    ended: int
    in_progress: int
    containment: Containment
    escalations: list[EscalationCount] = Field(description="most frequent first")
    average_handling_seconds: float | None = Field(description="ended_at - started_at, ended calls")
    survey: SurveyResults
    channels: list[ChannelFigures] = Field(
        description="each channel asked for (every one without `channel`) on its own"
    )


class NodeFigures(_Output):
    node: str | None
    turns: int
    inputs: int = Field(description="times the node listened: speech, keys and silences")
    no_match: int
    no_input: int
    no_match_rate: float | None = Field(description="no_match / inputs")
    no_input_rate: float | None = Field(description="no_input / inputs")
    confidence: list[int] = Field(
        description="recognized speech by recognizer confidence: [0, 0.1), … [0.9, 1.0]"
    )


class NodeReport(_Report):
    channel: Channel | None = Field(description="the channel asked for; null: every channel")
    nodes: list[NodeFigures] = Field(description="most inputs first")


class IntentSeries(_Output):
    intent: str
    total: int = Field(description="calls in the window that asked for it (each call once)")
    counts: list[int] = Field(description="per bucket, as `buckets`")


class RisingIntent(_Output):
    intent: str
    count: int
    previous: int = Field(description="its count in the previous window")
    ratio: float | None = Field(description="count / previous; null when previous is 0")


class IntentReport(_Report):
    channel: Channel | None = Field(description="the channel asked for; null: every channel")
    bucket: Literal["hour", "day"] = Field(
        description=f"the step: as asked, or day where hours would be more than {MAX_BUCKETS}"
    )
    buckets: list[datetime] = Field(description="each bucket's start")
    truncated: bool = Field(
        description=f"the window has more than {MAX_BUCKETS} days: only the newest are buckets"
    )
    series: list[IntentSeries] = Field(description="most asked for first")
    previous: _Window = Field(description="the window of the same length before this one")
    rising: list[RisingIntent] = Field(
        description=f"asked for by at least {RISING_MIN_COUNT} calls and"
        f" {RISING_MIN_RATIO:g} times as many as in the previous window"
    )


class Example(_Output):
    call_id: str | None = Field(description="the call it was said in (null: written)")
    conversation_id: str | None = Field(description="the conversation it was written in")
    seq: int
    at: datetime
    text: str | None = Field(description="as recognized")
    confidence: float | None
    audio_url: str | None = Field(description="the recording (GET, calls.read), if kept")


class Utterance(_Output):
    text: str = Field(description="normalized: lower case, no punctuation or unknown words")
    count: int
    examples: list[Example] = Field(description="newest first")


class UnrecognizedNode(_Output):
    node: str | None
    unrecognized: int
    utterances: list[Utterance] = Field(description="most frequent first")


class UnrecognizedReport(_Report):
    channel: Channel | None = Field(description="the channel asked for; null: every channel")
    truncated: bool = Field(description="only the newest no-matches were grouped")
    nodes: list[UnrecognizedNode]


class Adoption(_Output):
    flow: str
    node: str
    intent: str
    phrase: str
    list: str = Field(description="the phrase list, e.g. nodes.main_menu.choices.balance.phrases")
    added: bool = Field(description="false: the list already had the phrase")
    line: int | None = Field(description="the phrase's line in the flow file")
    version: str = Field(description="the flow file's version, now served")


# --- handlers -------------------------------------------------------------------------------


def _window(request: web.Request, q: WindowQuery) -> analytics.Window:
    if q.period is None:
        return analytics.Window.of(q.since, q.until)  # the query's times are never naive
    if q.since is not None or q.until is not None:
        both = [("period", "give a period, or since and until, not both")]
        raise ApiError(422, "invalid query", both, code="invalid_query")
    return analytics.Window.period(q.period, request.app[API].tz)


def _facts(request: web.Request) -> analytics.FlowFacts:
    """What the served flow says (its agent path, its topics); nothing in an app without calls."""
    served = request.app[API].served_flow()
    if served is None:
        return analytics.FlowFacts()
    return analytics.FlowFacts.from_flow(served.store.flow)


async def get_summary(request: web.Request, who: Principal) -> Any:
    api = request.app[API]
    q = parse_query(request.query, WindowQuery)
    window, facts = _window(request, q), _facts(request)
    return await analytics.summary(api.store, window, facts, api.tz, q.channel)


async def get_nodes(request: web.Request, who: Principal) -> Any:
    api = request.app[API]
    q = parse_query(request.query, WindowQuery)
    return await analytics.nodes(api.store, _window(request, q), api.tz, q.channel)


async def get_intents(request: web.Request, who: Principal) -> Any:
    api = request.app[API]
    q = parse_query(request.query, IntentsQuery)
    return await analytics.intents(
        api.store, _window(request, q), q.bucket, _facts(request), api.tz, q.channel
    )


async def get_unrecognized(request: web.Request, who: Principal) -> Any:
    api = request.app[API]
    q = parse_query(request.query, UnrecognizedQuery)
    window = _window(request, q)
    return await analytics.unrecognized(api.store, window, api.tz, q.node, q.limit, q.channel)


async def get_turn_audio(request: web.Request, who: Principal) -> web.StreamResponse:
    call_id, seq = request.match_info["id"], request.match_info["seq"]
    where = f"{call_id}/{seq}"
    if not call_id.isprintable() or not seq.isascii() or not seq.isdigit():
        raise NotFound("turn", where)
    turns = await request.app[API].store.list_turns(call_id)
    turn = next((t for t in turns if t.seq == int(seq)), None)
    if turn is None or turn.audio is None:
        raise NotFound("recording of turn", where)
    recordings = request.app[API].recordings
    path = (
        None if recordings is None else await asyncio.to_thread(recordings.turn_audio, turn.audio)
    )
    if path is None:
        raise NotFound("recording of turn", where)
    return web.FileResponse(path, headers={"Content-Type": "audio/wav"})


_locks: weakref.WeakKeyDictionary[FlowWatcher, asyncio.Lock] = weakref.WeakKeyDictionary()


async def adopt_phrase(request: web.Request, who: Principal) -> Any:
    body = await read_body(request, AdoptRequest)
    watcher = request.app[API].served_flow()
    if watcher is None:
        raise ApiError(503, "this server serves no flow")
    store = watcher.store
    # One adoption at a time: each edits the file as the previous one left it.
    async with _locks.setdefault(watcher, asyncio.Lock()):
        raw = await asyncio.to_thread(store.read)
        try:
            text = raw.decode("utf-8")
            spec = FlowSpec.model_validate(load_yaml(text))  # bounded: the file may be new
        except (UnicodeDecodeError, yaml.YAMLError, ValidationError) as exc:
            error = [("phrase", f"the flow file does not load now: {exc}")]
            raise ApiError(422, "cannot adopt the phrase", error) from None
        try:
            done = adopt(text, spec, body.node, body.intent, body.phrase)
        except AdoptError as exc:
            raise ApiError(422, "cannot adopt the phrase", [(exc.field, exc.message)]) from None
        version = version_of(raw)
        if done.text is not None:
            try:  # validated first so a refused phrase is not recorded as a rejected version
                await asyncio.to_thread(store.validate, done.text.encode("utf-8"))
                version = (await watcher.upload(done.text)).version
            except FlowError as exc:
                errors = [("phrase", e.removeprefix(f"{store.path}: ")) for e in exc.errors]
                raise ApiError(422, "the flow would not load with it", errors) from None
    return {
        "flow": store.name,
        "node": body.node,
        "intent": body.intent,
        "phrase": clean(body.phrase),
        "list": ".".join(done.target),
        "added": done.text is not None,
        "line": done.line,
        "version": version,
    }


def _as_csv(report: export.Report, handler: OperationHandler) -> OperationHandler:
    """The report's handler, answering CSV (a download named after the report and window)."""

    async def handle(request: web.Request, who: Principal) -> web.StreamResponse:
        data = await handler(request, who)
        disposition = f'attachment; filename="{export.filename(report, data)}"'
        return web.Response(
            text=export.to_csv(report, data),
            content_type="text/csv",
            charset="utf-8",
            headers={"Content-Disposition": disposition},
        )

    return handle


def _csv_operation(report: export.Report, op: Operation) -> Operation:
    """`op` (a report's JSON) at its path plus .csv."""
    return replace(
        op,
        path=f"{op.path}.csv",
        handler=_as_csv(report, op.handler),
        operation_id=f"{op.operation_id}Csv",
        summary=f"The {report} report as CSV (the same query)",
        response=None,
        media_type="text/csv",
    )


WINDOW_NOTE = (
    " (calls and conversations that started in [since, until), or in a period; default the"
    " last 24 hours; of one channel, or every one)"
)

REPORTS: tuple[Operation, ...] = (
    Operation(
        "GET",
        "/v1/analytics/summary",
        get_summary,
        "getAnalyticsSummary",
        "Contacts, containment (per channel too), escalations by reason, handling time, survey"
        + WINDOW_NOTE,
        Summary,
        scope="analytics.read",
        query=WindowQuery,
    ),
    Operation(
        "GET",
        "/v1/analytics/nodes",
        get_nodes,
        "getAnalyticsNodes",
        "Per node: inputs, no-match and no-input rates, confidence histogram" + WINDOW_NOTE,
        NodeReport,
        scope="analytics.read",
        query=WindowQuery,
    ),
    Operation(
        "GET",
        "/v1/analytics/intents",
        get_intents,
        "getAnalyticsIntents",
        "Contacts per intent per hour or day, and intents rising sharply" + WINDOW_NOTE,
        IntentReport,
        scope="analytics.read",
        query=IntentsQuery,
    ),
    Operation(
        "GET",
        "/v1/analytics/unrecognized",
        get_unrecognized,
        "getAnalyticsUnrecognized",
        "Per node, the most frequent utterances nothing matched, with recordings" + WINDOW_NOTE,
        UnrecognizedReport,
        scope="analytics.read",
        query=UnrecognizedQuery,
    ),
)

OPERATIONS: tuple[Operation, ...] = (
    *REPORTS,
    *(_csv_operation(name, op) for name, op in zip(export.REPORTS, REPORTS, strict=True)),
    Operation(
        "POST",
        "/v1/analytics/unrecognized/adopt",
        adopt_phrase,
        "adoptUnrecognizedPhrase",
        "Add a phrase to a menu choice, global intent or FAQ of the served flow (file edited"
        " in place, comments kept; validated first; served at once)",
        Adoption,
        scope="flows.write",
        body=AdoptRequest,
        body_required=True,
    ),
    Operation(
        "GET",
        "/v1/calls/{id}/turns/{seq}/audio",
        get_turn_audio,
        "getTurnAudio",
        "The recording of an utterance nothing matched (mono 16-bit WAV at the call's rate)",
        None,
        scope="calls.read",
        path_params={
            "id": {"type": "string", "minLength": 1, "description": "the call's id"},
            "seq": {"type": "integer", "minimum": 1, "description": "the turn's number"},
        },
        media_type="audio/wav",
    ),
)
