"""The OpenAPI document's ``webhooks``: one entry per event type (`WEBHOOK_EVENTS`), the
request the server POSTs to each subscribed endpoint (its headers, its body's schema and an
example) and what the endpoint's answer means."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ivr.api.examples import event
from ivr.api.models import CallbackOut, CallOut, ComplaintOut
from ivr.webhooks import WEBHOOK_EVENTS
from ivr.webhooks.endpoints import EVENT_DESCRIPTIONS


class _Output(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CallbackEventData(_Output):
    callback: CallbackOut = Field(description="the callback as it is after the change")


class CallEventData(_Output):
    call: CallOut = Field(description="the call record as it is after the change")


class _Event(_Output):
    id: str = Field(
        description="the event's id, the same on every redelivery (deduplicate on it);"
        " also in the webhook-id and X-IVR-Event-Id headers"
    )
    type: str = Field(description="the event type; also in X-IVR-Event-Type")
    created_at: datetime = Field(description="when the change was committed")


class TransferOut(_Output):
    target: str = Field(description="where to put the caller through (IVR_AGENT_URI, or the"
                        " flow's transfer node's own target)")  # fmt: skip
    reason: str = Field(description="why the caller goes to a person, e.g. agent_requested")
    intents: list[str] = Field(description="the call's intent history, oldest first")
    transcript_url: str = Field(description="the call and its turns, for the agent's desktop"
                                " (GET /v1/calls/{id}, scope calls.read)")  # fmt: skip
    timeout_seconds: float = Field(description="how long the call holds for the transfer")


class CallTransferEventData(CallEventData):
    transfer: TransferOut


class CallTransferEvent(_Event):
    """The body of a `call.transfer_requested` webhook."""

    data: CallTransferEventData


class CallbackEvent(_Event):
    """The body of a `callback.*` webhook."""

    data: CallbackEventData


class CallEvent(_Event):
    """The body of a `call.*` webhook."""

    data: CallEventData


class ComplaintDetected(ComplaintOut):
    number: str | None = Field(description="the customer's number (E.164); null: unknown")
    callback: CallbackOut | None = Field(
        description="the callback booked in the contact by then, its priority raised"
    )


class ComplaintEventData(_Output):
    complaint: ComplaintDetected


class ComplaintEvent(_Event):
    """The body of a `complaint.detected` webhook."""

    data: ComplaintEventData


EVENT_MODELS: tuple[type[BaseModel], ...] = (
    CallbackEvent,
    CallEvent,
    CallTransferEvent,
    ComplaintEvent,
)

_HEADERS: tuple[tuple[str, bool, str], ...] = (
    ("webhook-id", True, "the event id (Standard Webhooks)"),
    ("webhook-timestamp", True, "unix seconds when this attempt was sent"),
    (
        "webhook-signature",
        False,
        "`v1,<base64 HMAC-SHA256 of <webhook-id>.<webhook-timestamp>.<raw body>>`, keyed"
        " with a whsec_ secret's decoded bytes (else the secret's UTF-8 bytes); only when"
        " the endpoint has a secret",
    ),
    ("X-IVR-Event-Id", True, "the event id"),
    ("X-IVR-Event-Type", True, "the event type"),
    (
        "X-IVR-Signature",
        False,
        "`t=<unix seconds>,v1=<hex HMAC-SHA256 of <t>.<raw body>>`, keyed with the secret as"
        " written; only when the endpoint has a secret",
    ),
)
PARAMETERS = [
    {"name": name, "in": "header", "required": required, "description": text,
     "schema": {"type": "string"}}
    for name, required, text in _HEADERS
]  # fmt: skip
RESPONSES = {
    "2XX": {"description": "Accepted: delivered to this endpoint (the body is not read)"},
    "default": {
        "description": "Anything else (a redirect, an error, no answer within"
        " IVR_WEBHOOK_TIMEOUT_SECONDS): retried with backoff, parked after"
        " IVR_WEBHOOK_MAX_ATTEMPTS"
    },
}


def _operation_id(kind: str) -> str:
    group, action = kind.split(".")
    return group + "".join(word.capitalize() for word in action.split("_")) + "Webhook"


def _model(kind: str) -> type[BaseModel]:
    if kind == "call.transfer_requested":
        return CallTransferEvent
    if kind == "complaint.detected":
        return ComplaintEvent
    return CallEvent if kind.startswith("call.") else CallbackEvent


def webhooks_section(ref: Callable[[type[BaseModel]], str]) -> dict[str, Any]:
    """The document's ``webhooks``; `ref(model)` is a model's schema reference."""
    out: dict[str, Any] = {}
    for kind in WEBHOOK_EVENTS:
        model = _model(kind)
        schema = {
            "allOf": [{"$ref": ref(model)}, {"properties": {"type": {"const": kind}}}],
        }
        out[kind] = {
            "post": {
                "operationId": _operation_id(kind),
                "summary": EVENT_DESCRIPTIONS[kind],
                "description": "POSTed to every endpoint subscribed to this type (see"
                " IVR_WEBHOOK_URLS): at least once, signed when the endpoint has a secret.",
                "tags": ["webhooks"],
                "parameters": PARAMETERS,
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": schema, "example": event(kind)}},
                },
                "responses": RESPONSES,
            }
        }
    return out
