"""Examples for the OpenAPI document, made by the code that makes the real thing: records
rendered by `callback_json` / `call_json`, errors by `ApiError.body`, webhook bodies by
`body_of` (tests/test_api_schema.py validates each against its schema)."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel

from ivr.api.models import (
    CallbackDetail,
    CallbackOut,
    CallbackPage,
    CallDetail,
    CallPage,
)
from ivr.callbacks import call_json, callback_json, iso
from ivr.http_error import ApiError
from ivr.store import Attempt, Call, Callback, Event, TurnRecord
from ivr.webhooks import body_of

TZ = ZoneInfo("Europe/Berlin")
T0 = datetime(2030, 1, 7, 8, 15, tzinfo=UTC)
CALLBACK = Callback(
    id="3f2c8a4e-1d7b-4c55-9a0e-8b6f1c2d3e4f",
    number="+4930123456",
    due_at=T0 + timedelta(hours=2),
    status="scheduled",
    reason="billing",
    priority=0,
    attempts=0,
    max_attempts=3,
    agent=None,
    outcome=None,
    transcript=[{"node": "main_menu", "text": "a question about my bill"}],
    lease_until=None,
    created_at=T0,
    updated_at=T0,
)
CLAIMED = replace(
    CALLBACK,
    status="claimed",
    attempts=1,
    agent="kim",
    updated_at=T0 + timedelta(hours=2, minutes=1),
)
ATTEMPT = Attempt(CALLBACK.id, 1, T0 + timedelta(hours=2, minutes=1), "agent", "kim", None, None)
CALL = Call(
    id="c7d1f0a2b3e4",
    caller="+4930123456",
    transport="twilio",
    flow="hotline",
    flow_version="663bcf2f29",
    started_at=T0 - timedelta(minutes=3),
    ended_at=T0,
    end_reason="callback_booked",
    provider_call_id="CA5f1e0c2b9d8a7e6f5a4b3c2d1e0f9a8b",
)
TURNS = [
    TurnRecord(CALL.id, 1, CALL.started_at, "greeting", "prompt", "Welcome.", None, None),
    TurnRecord(
        CALL.id,
        2,
        CALL.started_at + timedelta(seconds=9),
        "main_menu",
        "recognized",
        "a question about my bill",
        "billing",
        0.91,
    ),
]


def _callback(cb: Callback) -> dict[str, Any]:
    return callback_json(cb, TZ)


RESPONSES: dict[type[BaseModel], Any] = {
    CallbackOut: _callback(CLAIMED),
    CallbackDetail: callback_json(CLAIMED, TZ, [ATTEMPT]),
    CallbackPage: {"items": [_callback(CALLBACK)], "next": "MjAzMC0wMS0wN1QxMDoxNTowMFo"},
    CallDetail: call_json(CALL, TZ, TURNS),
    CallPage: {"items": [call_json(CALL, TZ)], "next": None},
}
"""A 2xx body per response model (those the integration uses most)."""

_FIELDS: dict[int, list[tuple[str, str]]] = {
    400: [("cursor", "not a cursor this list returned")],
    422: [("due_at", "naive date-time: add a UTC offset or Z (e.g. 2030-01-01T09:00:00+02:00)")],
}
_CODES = {
    400: "invalid_cursor",
    422: "invalid_body",
    429: "too_many_attempts",
    503: "store_unavailable",
}
_DETAILS = {
    400: "invalid cursor",
    401: "missing bearer token",
    403: "token 'dashboard' lacks the scope callbacks.write",
    404: "callback '3f2c8a4e-1d7b-4c55-9a0e-8b6f1c2d3e4f' not found",
    409: "cannot claim callback '3f2c8a4e-1d7b-4c55-9a0e-8b6f1c2d3e4f': it is completed",
    413: "request body too large",
    415: "send the request body as application/json",
    422: "invalid body",
    429: "too many failed token attempts from this address: try again in 60 s",
    503: "the database is unavailable; try again later",
}


def problem(status: int) -> dict[str, Any]:
    """An error body of `status`, as the server writes one."""
    error = ApiError(
        status, _DETAILS.get(status, "error"), _FIELDS.get(status, ()), code=_CODES.get(status)
    )
    return error.body()


TRANSFER = {
    "target": "sip:agents@pbx.example.com",
    "reason": "agent_requested",
    "intents": ["balance", "agent"],
    "transcript_url": f"https://ivr.example.com/v1/calls/{CALL.id}",
    "timeout_seconds": 30.0,
}


def complaint() -> dict[str, Any]:
    """A complaint as the records keep it (`ivr.callbacks.complaints`)."""
    return {
        "reasons": ["words", "agent_twice"],
        "text": "this is the third time I call about my bill, put me through to a manager",
        "score": 2.31,
        "cues": ["higher_up", "repeat"],
        "topic": None,
        "kind": "call",
        "id": CALL.id,
        "channel": "voice",
        "detected_at": iso(T0 + timedelta(minutes=1), TZ),
    }


def event(kind: str) -> dict[str, Any]:
    """A webhook body of type `kind`."""
    payload = (
        {"call": call_json(CALL, TZ)}
        if kind.startswith("call.")
        else {"callback": _callback(CALLBACK)}
    )
    if kind == "complaint.detected":
        raised = _callback(CALLBACK) | {"priority": 5, "complaint": complaint()}
        details = {"number": CALLBACK.number, "callback": raised}
        payload = {"complaint": complaint() | details}
    if kind == "call.transfer_requested":
        payload["transfer"] = TRANSFER
    stored = Event("9b1deb4d-3b7d-4bad-9bdd-2b0d7b3dcb6d", kind, payload, T0, 0, T0, None, None)
    doc: dict[str, Any] = json.loads(body_of(stored, TZ))
    return doc
