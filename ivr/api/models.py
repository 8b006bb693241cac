"""Request and response models. The request models validate the API's input and, with the
response models, are the source of every schema in the OpenAPI document (one definition,
so the document and the validation cannot drift)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PlainValidator, WithJsonSchema
from pydantic.json_schema import SkipJsonSchema

from ivr.callbacks import OUTCOMES
from ivr.http_error import PROBLEMS, TYPE_PREFIX
from ivr.store import CallbackStatus, TurnKind

# RFC 3339 (ISO 8601 profile) with seconds optional; the offset is checked separately so that
# a naive time gets its own message. ASCII: \d would also match other scripts' digits.
_DATE_TIME = re.compile(
    r"\d{4}-\d\d-\d\dT\d\d:\d\d(?::\d\d(?:\.\d+)?)?(?P<offset>Z|[+-]\d\d:\d\d)?", re.ASCII
)
EXAMPLE_TIME = "2030-01-01T09:00:00+02:00"


def _instant(value: object) -> datetime:
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str):
        text = value.upper()  # RFC 3339 allows t and z
        match = _DATE_TIME.fullmatch(text)
        if match is None:
            if " " in text and _DATE_TIME.fullmatch(text.replace(" ", "+")):
                raise ValueError("the offset's + arrived as a space: encode it as %2B")
            raise ValueError(f"not an ISO 8601 date-time (e.g. {EXAMPLE_TIME})")
        if match["offset"] is None:
            raise ValueError(
                f"naive date-time: add a UTC offset or Z (e.g. {EXAMPLE_TIME};"
                " in a query string, encode + as %2B)"
            )
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(f"not a valid date-time (e.g. {EXAMPLE_TIME})") from None
    else:
        raise ValueError(f"expected an ISO 8601 date-time string (e.g. {EXAMPLE_TIME})")
    if parsed.tzinfo is None:
        raise ValueError("naive date-time: add a UTC offset or Z")
    try:
        parsed.astimezone(UTC)  # year 1 or 9999 with an offset falls off the calendar
    except OverflowError:
        raise ValueError("date-time out of range") from None
    return parsed


Instant = Annotated[
    datetime,
    PlainValidator(_instant),
    WithJsonSchema({"type": "string", "format": "date-time", "examples": [EXAMPLE_TIME]}),
]
"""A timezone-aware instant, given as RFC 3339 text with an offset (naive → 422). Any year
for filters: 9999-12-31T23:59:59Z makes a fine "no end"."""

# A time to store (and to show in every zone): years 1970-2999. Years near 1 or 9999 fall
# off the calendar in some zones, and before ~1900 zones had second offsets (LMT) that RFC
# 3339 cannot write.
_STORABLE_YEARS = r"^(19[7-9][0-9]|2[0-9]{3})-"


def _storable(value: object) -> datetime:
    instant = _instant(value)
    if not 1970 <= instant.year <= 2999:
        raise ValueError("year must be 1970-2999")
    return instant


DueTime = Annotated[
    datetime,
    PlainValidator(_storable),
    WithJsonSchema(
        {
            "type": "string",
            "format": "date-time",
            "pattern": _STORABLE_YEARS,
            "examples": [EXAMPLE_TIME],
        }
    ),
]
"""An `Instant` in the years 1970-2999 (as written, before any offset is applied)."""

# Control characters never belong in names or numbers (PostgreSQL also refuses NUL in text).
_PRINTABLE = r"^[^\x00-\x1f\x7f]+$"
Name = Annotated[str, Field(min_length=1, max_length=100, pattern=_PRINTABLE)]
Number = Annotated[str, Field(min_length=1, max_length=64, pattern=_PRINTABLE)]
NUMBER_FILTER = (
    "the caller's number, in any spelling: +15551230001, 15551230001 and (555) 123-0001 are"
    " one (national numbers are IVR_DEFAULT_REGION's; numbers are kept in E.164)"
)
# A cursor is base64url text: its alphabet and length keep a request line well inside
# aiohttp's 8190 bytes (a 1000-character cursor of other characters could be 12 kB encoded).
Cursor = Annotated[
    str,
    Field(
        min_length=1,
        max_length=1000,
        pattern=r"^[A-Za-z0-9_-]+$",
        description="`next` of the previous page, as returned; anything else is a 400",
    ),
]
Limit = Annotated[int, Field(ge=1, le=200, description="page size")]


def _outcome(value: str) -> str:
    if value not in OUTCOMES:
        raise ValueError(f"not one of {', '.join(OUTCOMES)}")
    return value


# The outcomes are the service's tuple, not a copy: a new outcome shows up here by itself.
Outcome = Annotated[
    str, AfterValidator(_outcome), WithJsonSchema({"type": "string", "enum": list(OUTCOMES)})
]


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- query strings --------------------------------------------------------------------------
# Optional parameters are `X | SkipJsonSchema[None] = None`: absent means no filter, and the
# documented schema stays X (a query parameter cannot be null).


class CallbackListQuery(_Input):
    status: list[CallbackStatus] | SkipJsonSchema[None] = Field(
        None, description="repeat the parameter or separate with commas: any of these"
    )
    due_after: Instant | SkipJsonSchema[None] = Field(None, description="due at or after")
    due_before: Instant | SkipJsonSchema[None] = Field(None, description="due before")
    number: Number | SkipJsonSchema[None] = Field(None, description=NUMBER_FILTER)
    limit: Limit = 50
    cursor: Cursor | SkipJsonSchema[None] = None


class CallListQuery(_Input):
    caller: Number | SkipJsonSchema[None] = Field(None, description=NUMBER_FILTER)
    started_after: Instant | SkipJsonSchema[None] = Field(None, description="started at or after")
    started_before: Instant | SkipJsonSchema[None] = Field(None, description="started before")
    provider_call_id: str | SkipJsonSchema[None] = Field(
        None, max_length=128, description="the far end's id for the call (e.g. Twilio callSid)"
    )
    limit: Limit = 50
    cursor: Cursor | SkipJsonSchema[None] = None


# --- request bodies -------------------------------------------------------------------------


# What a caller asked for: free text (a CRM form's, newlines included), no NUL (PostgreSQL).
Reason = Annotated[str, Field(min_length=1, max_length=500, pattern=r"^[^\x00]+$")]


class BookRequest(_Input):
    number: Number = Field(
        description="the number to call back, e.g. +4930123456, kept in E.164: spaces,"
        " dashes, dots and brackets are dropped, and a national number is IVR_DEFAULT_REGION's"
        " ((555) 123-0001 is +15551230001 in the US), so each spelling of a number is its one"
        " open callback; a number too short for E.164 (an extension) is kept as given;"
        " anything but an optional + and 3 to 15 digits is a 422",
        examples=["+4930123456"],
    )
    due_at: DueTime = Field(
        description="when to call: RFC 3339 with a UTC offset; years 1970-2999 (a time"
        " already past is due at once)"
    )
    reason: Reason | None = Field(
        None, description="what the caller wants, for the agent", examples=["billing question"]
    )


class ClaimRequest(_Input):
    agent: Name | None = Field(
        None, description="who takes the callback (absent or null: the token's name)"
    )


class CompleteRequest(_Input):
    outcome: Outcome = Field(
        description="how the attempt ended; no_answer, busy, voicemail and failed schedule a"
        " retry while attempts are left (else the callback expires), the others complete it"
    )


class RescheduleRequest(_Input):
    due_at: DueTime = Field(description="RFC 3339 with a UTC offset; years 1970-2999")


class CancelRequest(_Input):
    pass


# --- responses (what callback_json / call_json produce; extra="forbid" pins the keys) ------


class _Output(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AttemptOut(_Output):
    attempt: int
    taken_by: Literal["dispatcher", "agent"]
    agent: str | None
    started_at: datetime
    ended_at: datetime | None
    outcome: str | None


class ComplaintOut(_Output):
    """Why a call or conversation was found to be a complaint (`ivr.nlu.complaint`)."""

    reasons: list[Literal["words", "no_matches", "agent_twice", "repeat_contact"]] = Field(
        description="what the customer said (words), three no-matches, a second request"
        " for a person, the same topic again within a day (repeat_contact)"
    )
    text: str | None = Field(description="what the customer said that was a complaint")
    score: float | None = Field(description="its complaint score (0.25 or more is one)")
    cues: list[str] = Field(description="the anger and escalation words found in it")
    topic: str | None = Field(description="the topic asked about again (repeat_contact)")
    kind: Literal["call", "conversation"]
    id: str = Field(description="the call's or conversation's id")
    channel: str = Field(description="voice, or the conversation's channel (web, sms)")
    detected_at: datetime


class CallbackOut(_Output):
    """The callback as it is now."""

    id: str
    number: str
    due_at: datetime
    status: CallbackStatus
    reason: str | None
    priority: int
    attempts: int
    max_attempts: int
    agent: str | None
    outcome: str | None
    created_at: datetime
    updated_at: datetime
    complaint: ComplaintOut | None = Field(
        description="the complaint of the call or conversation it was booked from, which"
        " raised its priority by 5; null: none"
    )


class CallbackDetail(CallbackOut):
    """The callback with the caller's transcript and every attempt."""

    transcript: Any = Field(description="what the caller said when booking (any JSON)")
    attempt_log: list[AttemptOut]


class CallbackPage(_Output):
    """A page of callbacks, by due time."""

    items: list[CallbackOut]
    next: str | None = Field(description="cursor of the next page; null on the last")


class TurnOut(_Output):
    seq: int
    at: datetime
    node: str | None
    kind: TurnKind
    text: str | None
    intent: str | None
    confidence: float | None


class CallOut(_Output):
    """A call record."""

    id: str = Field(description="the server's id for the call")
    provider_call_id: str | None = Field(
        description="the far end's id for the call (Twilio callSid, AudioSocket UUID)"
    )
    caller: str | None
    transport: str
    flow: str | None
    flow_version: str | None
    started_at: datetime
    ended_at: datetime | None
    end_reason: str | None
    complaint: ComplaintOut | None = Field(description="why the call is a complaint; null: none")


class CallDetail(CallOut):
    """The call record with its turns, in order."""

    turns: list[TurnOut]


class CallPage(_Output):
    """A page of calls, newest first."""

    items: list[CallOut]
    next: str | None = Field(description="cursor of the next page; null on the last")


class FieldError(_Output):
    field: str = Field(description="the offending input: a body field or query parameter")
    message: str


class ErrorDetail(_Output):
    """The error shape before problem details (deprecated: removed in the next release)."""

    status: int
    message: str = Field(description="as `detail`")
    fields: list[FieldError]


class Problem(_Output):
    """An error, as RFC 9457 problem details (`application/problem+json`)."""

    type: str = Field(
        description="the problem type as a URI (a tag URI: it names, it does not link);"
        " the same as `code`",
        examples=[TYPE_PREFIX + "invalid_body"],
    )
    title: str = Field(description="the problem type's fixed summary")
    status: int = Field(description="the HTTP status")
    detail: str = Field(description="what went wrong this time, for people")
    code: str = Field(
        description="stable and machine-readable (new codes may come, none changes): "
        + ", ".join(f"`{code}` ({status})" for code, (status, _) in PROBLEMS.items())
        + "; `http_<status>` for another status",
    )
    fields: list[FieldError] = Field(description="each offending input (empty when none is)")
    error: ErrorDetail = Field(
        deprecated=True,
        description="the error shape before problem details, kept for one release: read"
        " `detail` and `fields` instead",
    )
