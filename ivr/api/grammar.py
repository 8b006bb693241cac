"""Grammar tuning: validate a flow, test an utterance (text or audio).

The web console's counterparts of ``ivr grammar check`` and ``ivr grammar test``, on the
server's own flow, grammar folder and ASR engine. Validation and matching run in a thread
and recognition on the ASR runner, never on the event loop.
"""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.json_schema import SkipJsonSchema

from ivr.api.context import GrammarTools
from ivr.api.errors import ApiError
from ivr.api.operation import Operation, read_body
from ivr.appkeys import API
from ivr.auth import Principal
from ivr.dialog.flow import MAX_YAML_CHARS
from ivr.tuning.check import check_text
from ivr.tuning.probe import TargetError, decode_base64_audio, hear, judge, node_target

SCOPE = "flows.read"  # nothing is changed: reading what a flow would do
MAX_TEXT = MAX_YAML_CHARS  # what an upload may be: a flow that validates can be uploaded
MAX_UTTERANCE = 1_000  # characters: what a caller says in one turn


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Output(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ValidateRequest(_Input):
    text: str = Field(max_length=MAX_TEXT, description="a flow (or grammar) file's YAML")
    name: str = Field(
        "flow.yaml",
        min_length=1,
        max_length=200,
        pattern=r"^[^\x00-\x1f\x7f]+$",
        description="the file name the problems are reported under",
    )


class ProblemOut(_Output):
    line: int | None = Field(description="1-based line in `text`; null: not at one place")
    where: str = Field(description="node and field, e.g. \"node 'main_menu': choices.a.goto\"")
    message: str


class ValidateResponse(_Output):
    ok: bool
    kind: Literal["flow", "grammar"] | None = Field(description="what the text was read as")
    summary: str = Field(description="what a valid file holds; empty when it has problems")
    problems: list[ProblemOut]
    warnings: list[ProblemOut] = Field(
        description="what works but reads badly: a prompt that makes no sense in a chat or SMS"
    )


def _no_default(schema: dict[str, Any]) -> None:
    schema.pop("default", None)


class ProbeRequest(_Input):
    """Exactly one of `text` and `audio_wav_base64` (neither or both: a 400). The document
    does not say so with a oneOf: generated clients and fuzzers handle that poorly."""

    flow: str | None = Field(None, description="the served flow's name (default: it)")
    node: str | None = Field(
        None, description="a node that listens (default: the first one after the start)"
    )
    # One of the two, given as a string: absent is None, an explicit null is refused (so
    # the documented schema is a string with no default: null would not be one).
    text: str | SkipJsonSchema[None] = Field(
        None,
        max_length=MAX_UTTERANCE,
        description="what the caller says (exactly one of text and audio_wav_base64)",
        json_schema_extra=_no_default,
    )
    audio_wav_base64: str | SkipJsonSchema[None] = Field(
        None,
        description="one utterance as a base64 WAV file: recognized as in a call at the node",
        json_schema_extra=_no_default,
    )

    @field_validator("text", "audio_wav_base64", mode="before")
    @classmethod
    def _not_null(cls, value: object) -> object:
        if value is None:
            raise ValueError("must be a string (leave it out instead)")
        return value


class RunnerUp(_Output):
    intent: str
    score: float


class ProbeResponse(_Output):
    node: str
    text: str = Field(description="the text matched: as sent, or as recognized")
    confidence: float = Field(description="the recognizer's (1.0 for text)")
    intent: str | None = Field(description="null: a no-match")
    score: float = Field(description="similarity of the closest phrase, 0-1")
    phrase: str | None = Field(description="the closest phrase")
    runner_up: RunnerUp | None = Field(description="the best other intent")
    reason: str = Field(description="why: the phrase matched, or why nothing did")


async def validate(request: web.Request, who: Principal) -> Any:
    body = await read_body(request, ValidateRequest)
    tools = _tools(request)
    report = await asyncio.to_thread(
        check_text, body.text, body.name, tools.word_checker(), tools.grammar_dir
    )
    out = {
        "ok": report.ok,
        "kind": report.kind,
        "summary": report.summary,
        "problems": [p.json() for p in report.problems],
        "warnings": [w.json() for w in report.warnings],
    }
    return ValidateResponse.model_validate(out).model_dump(mode="json")


def _tools(request: web.Request) -> GrammarTools:
    tools = request.app[API].grammar
    if tools is None:  # an app that serves the API without a recognizer
        raise ApiError(503, "this server has no recognizer")
    return tools


async def probe(request: web.Request, who: Principal) -> Any:
    body = await read_body(request, ProbeRequest)
    if (body.text is None) == (body.audio_wav_base64 is None):
        error = "send either text or audio_wav_base64"
        raise ApiError(400, error, [("text", error), ("audio_wav_base64", error)])
    tools, served = _tools(request), request.app[API].served_flow()
    if served is None:
        raise ApiError(503, "this server serves no flow")
    flow = served.store.flow  # read once: a reload meanwhile does not mix two versions
    # Names the schema cannot enumerate (they change with the flow) are a 400, like a cursor.
    if body.flow is not None and body.flow != flow.name:
        raise ApiError(400, "unknown flow", [("flow", f"this server serves {flow.name!r}")])
    try:
        target = node_target(flow, body.node)
    except TargetError as exc:
        raise ApiError(400, "not a node that listens", [("node", str(exc))]) from None
    if body.text is not None:
        verdict = await asyncio.to_thread(judge, target, body.text)
    else:
        try:
            audio = await asyncio.to_thread(decode_base64_audio, body.audio_wav_base64 or "")
        except ValueError as exc:
            raise ApiError(400, "unusable audio", [("audio_wav_base64", str(exc))]) from None
        result = await hear(tools.asr, target, audio)
        verdict = await asyncio.to_thread(judge, target, result.text, result.confidence)
    out = {"node": target.node, **verdict.json()}
    return ProbeResponse.model_validate(out).model_dump(mode="json")


OPERATIONS: tuple[Operation, ...] = (
    Operation(
        "POST",
        "/v1/grammar/validate",
        validate,
        "validateGrammar",
        "Check a flow (or grammar) file's text: each problem with its line; also that the"
        " ASR engine can say every phrase (200 with ok false when it has problems)",
        ValidateResponse,
        scope=SCOPE,
        body=ValidateRequest,
        body_required=True,
    ),
    Operation(
        "POST",
        "/v1/grammar/test",
        probe,
        "testGrammar",
        "What an utterance (text, or a WAV recognized as in a call) means at a node of the"
        " served flow: intent, score, closest phrase, runner-up and why (neither or both of"
        " text and audio, a flow or node that does not exist or listen, or audio that cannot"
        " be decoded: a 400)",
        ProbeResponse,
        scope=SCOPE,
        body=ProbeRequest,
        body_required=True,
    ),
)
