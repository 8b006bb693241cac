"""The integration REST API under /v1: callbacks for agents and dialers, call records.

Handlers only parse, call the callback service or the store, and render with
`callback_json` / `call_json` (the representation webhooks use too).
"""

from __future__ import annotations

from functools import cache
from typing import Any

from aiohttp import web
from pydantic import BaseModel

from ivr.api import (
    analytics,
    conversations,
    customers,
    deliveries,
    flows,
    grammar,
    live,
    live_conversations,
)
from ivr.api.errors import ApiError, json_errors
from ivr.api.limits import AnonymousConnections, ClientLimits, limit_anonymous
from ivr.api.models import (
    BookRequest,
    CallbackDetail,
    CallbackListQuery,
    CallbackOut,
    CallbackPage,
    CallDetail,
    CallListQuery,
    CallPage,
    CancelRequest,
    ClaimRequest,
    CompleteRequest,
    RescheduleRequest,
)
from ivr.api.openapi import build_document
from ivr.api.operation import (
    Operation,
    OperationHandler,
    endpoint,
    paged,
    parse_query,
    read_body,
)
from ivr.api.request_id import add_request_ids
from ivr.appkeys import API, FEEDS, TOKEN_GUARD
from ivr.auth import Principal
from ivr.callbacks import AlreadyOpen, InvalidNumber, call_json, callback_json
from ivr.store import NotFound

CALLBACK_ID = {
    "id": {
        "type": "string",
        "format": "uuid",
        "description": "the callback's id; an id that is not a UUID is a 404 like an unknown one",
    }
}
CALL_ID = {"id": {"type": "string", "minLength": 1, "description": "the call's id"}}


async def list_callbacks(request: web.Request, who: Principal) -> Any:
    api = request.app[API]
    q = parse_query(request.query, CallbackListQuery)
    items, next_cursor = await paged(
        api.store.list_callbacks(
            status=q.status,
            due_before=q.due_before,
            due_after=q.due_after,
            number=api.number(q.number),
            limit=q.limit,
            cursor=q.cursor,
        ),
        q.cursor,
    )
    return {"items": [callback_json(cb, api.tz) for cb in items], "next": next_cursor}


async def book_callback(request: web.Request, who: Principal) -> Any:
    """A CRM's "call me back": one open callback per number, as a call's booking (and its
    callback.scheduled webhook); an open one for the number is a 409, not updated."""
    api = request.app[API]
    body = await read_body(request, BookRequest)
    try:
        cb, _ = await api.callbacks.book(
            body.number, body.due_at, reason=body.reason, only_new=True
        )
    except InvalidNumber as exc:
        raise ApiError(422, "invalid body", [("number", str(exc))], code="invalid_body") from None
    except AlreadyOpen as exc:
        detail = [("number", f"has the open callback {exc.callback.id}")]
        raise ApiError(409, str(exc), detail, code="callback_open") from None
    location = str(request.app.router["getCallback"].url_for(id=cb.id))
    return web.json_response(callback_json(cb, api.tz), status=201, headers={"Location": location})


async def get_callback(request: web.Request, who: Principal) -> Any:
    api = request.app[API]
    cb, attempts = await api.callbacks.get(request.match_info["id"])
    return callback_json(cb, api.tz, attempts)


async def claim_callback(request: web.Request, who: Principal) -> Any:
    api = request.app[API]
    body = await read_body(request, ClaimRequest)
    cb = await api.callbacks.claim(request.match_info["id"], body.agent or who.name)
    return callback_json(cb, api.tz)


async def complete_callback(request: web.Request, who: Principal) -> Any:
    api = request.app[API]
    body = await read_body(request, CompleteRequest)
    cb = await api.callbacks.complete(request.match_info["id"], body.outcome)
    return callback_json(cb, api.tz)


async def reschedule_callback(request: web.Request, who: Principal) -> Any:
    api = request.app[API]
    body = await read_body(request, RescheduleRequest)
    cb = await api.callbacks.reschedule(request.match_info["id"], body.due_at)
    return callback_json(cb, api.tz)


async def cancel_callback(request: web.Request, who: Principal) -> Any:
    api = request.app[API]
    await read_body(request, CancelRequest)  # no fields; still refuses unknown ones
    cb = await api.callbacks.cancel(request.match_info["id"])
    return callback_json(cb, api.tz)


async def list_calls(request: web.Request, who: Principal) -> Any:
    api = request.app[API]
    q = parse_query(request.query, CallListQuery)
    items, next_cursor = await paged(
        api.store.list_calls(
            limit=q.limit,
            cursor=q.cursor,
            caller=api.number(q.caller),
            started_after=q.started_after,
            started_before=q.started_before,
            provider_call_id=q.provider_call_id,
        ),
        q.cursor,
    )
    return {"items": [call_json(call, api.tz) for call in items], "next": next_cursor}


async def get_call(request: web.Request, who: Principal) -> Any:
    api = request.app[API]
    call_id = request.match_info["id"]
    if not call_id.isprintable():  # control characters: no such call (and PostgreSQL refuses NUL)
        raise NotFound("call", call_id)
    call = await api.store.get_call(call_id)
    return call_json(call, api.tz, await api.store.list_turns(call_id))


async def openapi(request: web.Request, who: Principal) -> Any:
    return document()


def _callback_change(
    verb: str,
    handler: OperationHandler,
    summary: str,
    body: type[BaseModel],
    body_required: bool,
) -> Operation:
    return Operation(
        "POST",
        f"/v1/callbacks/{{id}}/{verb}",
        handler,
        f"{verb}Callback",
        summary,
        CallbackOut,
        scope="callbacks.write",
        body=body,
        body_required=body_required,
        path_params=CALLBACK_ID,
        conflicts=True,
    )


CALLBACK_AND_CALL_OPERATIONS: tuple[Operation, ...] = (
    Operation(
        "GET",
        "/v1/callbacks",
        list_callbacks,
        "listCallbacks",
        "Callbacks by due time (then id), filtered, a page at a time",
        CallbackPage,
        scope="callbacks.read",
        query=CallbackListQuery,
    ),
    Operation(
        "POST",
        "/v1/callbacks",
        book_callback,
        "bookCallback",
        "Book a callback (a CRM's call-me-back form): 201 with it, 409 if the number has an"
        " open one",
        CallbackOut,
        scope="callbacks.write",
        body=BookRequest,
        body_required=True,
        conflicts=True,
        status=201,
    ),
    Operation(
        "GET",
        "/v1/callbacks/{id}",
        get_callback,
        "getCallback",
        "One callback with the caller's transcript and its attempt log",
        CallbackDetail,
        scope="callbacks.read",
        path_params=CALLBACK_ID,
    ),
    _callback_change(
        "claim",
        claim_callback,
        "Take a scheduled callback, or one the dispatcher handed out, as an agent",
        ClaimRequest,
        False,
    ),
    _callback_change(
        "complete",
        complete_callback,
        "End the claimed attempt with an outcome (retry outcomes reschedule or expire it)",
        CompleteRequest,
        True,
    ),
    _callback_change(
        "reschedule",
        reschedule_callback,
        "Schedule an open callback for another time",
        RescheduleRequest,
        True,
    ),
    _callback_change("cancel", cancel_callback, "Cancel an open callback", CancelRequest, False),
    Operation(
        "GET",
        "/v1/calls",
        list_calls,
        "listCalls",
        "Calls, newest first, filtered, a page at a time",
        CallPage,
        scope="calls.read",
        query=CallListQuery,
    ),
    Operation(
        "GET",
        "/v1/calls/{id}",
        get_call,
        "getCall",
        "One call with its turns",
        CallDetail,
        scope="calls.read",
        path_params=CALL_ID,
    ),
)

# Each area keeps its operations in its own module; they are all served and documented.
OPERATIONS: tuple[Operation, ...] = (
    *CALLBACK_AND_CALL_OPERATIONS,
    *live.OPERATIONS,
    *flows.OPERATIONS,
    *grammar.OPERATIONS,
    *analytics.OPERATIONS,
    *deliveries.OPERATIONS,
    *conversations.OPERATIONS,
    *live_conversations.OPERATIONS,
    *customers.OPERATIONS,
    Operation("GET", "/v1/openapi.json", openapi, "getOpenApi", "This document", None),
)


@cache
def document() -> dict[str, Any]:
    """The OpenAPI document of OPERATIONS (built once)."""
    return build_document(OPERATIONS)


def add_api_routes(app: web.Application, limits: ClientLimits | None = None) -> None:
    """Register the /v1 API routes; the middlewares that give every request of the app its
    X-Request-Id (`ivr.api.request_id`), cap what clients without a token can hold open (on
    every route of the app) and answer aiohttp's own errors under /v1 in the API's error
    shape; the live feeds' cap; the failed token attempts' (`app[TOKEN_GUARD]`, unless the app
    has its own). The handlers need `app[API]` set before serving."""
    limits = limits or ClientLimits()
    if TOKEN_GUARD not in app:
        app[TOKEN_GUARD] = limits.token_guard()
    add_request_ids(app)
    app.middlewares.append(limit_anonymous(AnonymousConnections(limits.anonymous_per_client)))
    app.middlewares.append(json_errors)
    app[FEEDS] = live.FeedSlots(limits.feed_subscribers)
    # The live feeds: WebSockets, so outside the operations (their token: see ivr.auth).
    app.router.add_get("/v1/live", live.live_feed)
    app.router.add_get("/v1/calls/{call_id}/events", live.call_events)
    conversations.add_sms_routes(app)  # Twilio's webhook: signed by Twilio, not a token
    for op in OPERATIONS:
        app.router.add_route(op.method, op.path, endpoint(op), name=op.operation_id)
