"""The webhook delivery log: the outbox's events with each POST to each endpoint, and
replay (an integrator whose receiver was down gets the parked events again, same ids).

A replayed event is due at once: the deliverer, polling the outbox, sends it within its
poll interval, to every endpoint subscribed to its type now.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema

from ivr.api.models import Cursor, Limit
from ivr.api.operation import Operation, paged, parse_query
from ivr.appkeys import API
from ivr.auth import Principal
from ivr.callbacks import iso
from ivr.store import PARKED_UNTIL, Delivery, Event, EventState
from ivr.webhooks import WEBHOOK_EVENTS

EVENT_ID = {
    "id": {"type": "string", "format": "uuid", "description": "the event's id (`webhook-id`)"}
}


class EventListQuery(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    state: EventState | SkipJsonSchema[None] = Field(
        None, description="pending (to be sent or retried), delivered, or parked (out of attempts)"
    )
    type: str | SkipJsonSchema[None] = Field(
        None, max_length=100, description=f"one event type: {', '.join(WEBHOOK_EVENTS)}"
    )
    limit: Limit = 50
    cursor: Cursor | SkipJsonSchema[None] = None


class _Output(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EventOut(_Output):
    id: str
    type: str
    state: EventState
    created_at: datetime
    attempts: int = Field(description="POST rounds so far (each to every subscriber)")
    next_attempt_at: datetime | None = Field(description="null when delivered or parked")
    delivered_at: datetime | None
    last_error: str | None


class DeliveryOut(_Output):
    url: str = Field(description="the endpoint, without credentials or query")
    at: datetime
    status: int | None = Field(description="the HTTP status; null when nothing answered")
    error: str | None = Field(description="null when the endpoint accepted it (2xx)")
    duration_ms: int


class EventDetail(EventOut):
    data: Any = Field(description="the event's `data`, as POSTed")
    deliveries: list[DeliveryOut] = Field(description="each POST, oldest first (the last 100)")


class EventPage(_Output):
    items: list[EventOut]
    next: str | None


class Replayed(_Output):
    replayed: int = Field(description="parked events due again now")


def event_json(event: Event, request: web.Request) -> dict[str, Any]:
    tz = request.app[API].tz
    waiting = event.state == "pending" and event.next_attempt_at < PARKED_UNTIL
    return {
        "id": event.id,
        "type": event.type,
        "state": event.state,
        "created_at": iso(event.created_at, tz),
        "attempts": event.attempts,
        "next_attempt_at": iso(event.next_attempt_at, tz) if waiting else None,
        "delivered_at": iso(event.delivered_at, tz),
        "last_error": event.last_error,
    }


def _delivery_json(d: Delivery, request: web.Request) -> dict[str, Any]:
    at = iso(d.at, request.app[API].tz)
    return {
        "url": d.url,
        "at": at,
        "status": d.status,
        "error": d.error,
        "duration_ms": d.duration_ms,
    }


async def list_events(request: web.Request, who: Principal) -> Any:
    store = request.app[API].store
    q = parse_query(request.query, EventListQuery)
    items, next_cursor = await paged(
        store.list_events(state=q.state, type=q.type, limit=q.limit, cursor=q.cursor), q.cursor
    )
    return {"items": [event_json(e, request) for e in items], "next": next_cursor}


async def get_event(request: web.Request, who: Principal) -> Any:
    store = request.app[API].store
    event = await store.get_event(request.match_info["id"])
    deliveries = await store.list_deliveries(event.id)
    return {
        **event_json(event, request),
        "data": event.payload,
        "deliveries": [_delivery_json(d, request) for d in deliveries],
    }


async def replay_event(request: web.Request, who: Principal) -> Any:
    event = await request.app[API].store.replay_event(request.match_info["id"])
    return event_json(event, request)


async def replay_parked(request: web.Request, who: Principal) -> Any:
    return {"replayed": await request.app[API].store.replay_parked()}


OPERATIONS: tuple[Operation, ...] = (
    Operation(
        "GET",
        "/v1/webhooks/events",
        list_events,
        "listWebhookEvents",
        "The delivery log: webhook events newest first, by state and type, a page at a time",
        EventPage,
        scope="webhooks.read",
        query=EventListQuery,
    ),
    Operation(
        "GET",
        "/v1/webhooks/events/{id}",
        get_event,
        "getWebhookEvent",
        "One event with its data and each POST to each endpoint (status, error, duration)",
        EventDetail,
        scope="webhooks.read",
        path_params=EVENT_ID,
    ),
    Operation(
        "POST",
        "/v1/webhooks/events/{id}/replay",
        replay_event,
        "replayWebhookEvent",
        "Send an event again now, with the same id (parked: one more attempt; delivered: again)",
        EventOut,
        scope="webhooks.write",
        path_params=EVENT_ID,
    ),
    Operation(
        "POST",
        "/v1/webhooks/parked/replay",
        replay_parked,
        "replayParkedWebhookEvents",
        "Every parked event due again now (after a receiver's outage)",
        Replayed,
        scope="webhooks.write",
    ),
)
