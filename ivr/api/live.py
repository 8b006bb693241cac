"""Calls in progress: the live list, the event feeds (WebSockets: every call's for the
console, one call's for `ivr dial` and tools) and each call's recording. All need calls.read:
a call's events are its transcript (the caller's number, keyed account numbers, balances).

The WebSockets take the API token as a subprotocol or `?token=` (see `ivr.auth`).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web
from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema

from ivr.api.errors import ApiError
from ivr.api.models import NUMBER_FILTER, Name, Number
from ivr.api.operation import Operation, parse_query
from ivr.appkeys import API, FEEDS
from ivr.auth import PROTOCOL, Principal, websocket_principal
from ivr.bus import CallEvents, Event, Overflow
from ivr.callbacks import iso
from ivr.store import NotFound

log = logging.getLogger(__name__)

FEED_MAX_MSG_SIZE = 4 * 1024
"""What a feed client may send: nothing but a close, in practice. A larger message is
refused from its frame header (close 1009) and ends that feed only."""


def websocket(request: web.Request) -> web.WebSocketResponse:
    return web.WebSocketResponse(
        heartbeat=30, protocols=(PROTOCOL,), max_msg_size=FEED_MAX_MSG_SIZE
    )


# --- the list of calls in progress ----------------------------------------------------------


class _Output(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LiveCall(_Output):
    id: str
    caller: str | None
    transport: str | None = Field(description="websocket, audiosocket, browser...")
    flow: str | None
    flow_version: str | None
    started_at: datetime | None
    node: str | None = Field(description="the dialog node the call is at (its latest event's)")
    events: int = Field(description="events so far in the call's feed")
    last_event_at: datetime | None


class LiveCallList(_Output):
    items: list[LiveCall] = Field(description="oldest first")


class LiveCallsQuery(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)  # parse_query drops unknown ones

    caller: Number | SkipJsonSchema[None] = Field(None, description=NUMBER_FILTER)
    transport: Name | SkipJsonSchema[None] = Field(None, description="e.g. browser")


def _calls(request: web.Request) -> CallEvents:
    calls = request.app[API].calls
    if calls is None:  # an app that serves the API without taking calls
        raise ApiError(503, "this server takes no calls")
    return calls


def _time(epoch: float | None, request: web.Request) -> str | None:
    if epoch is None:
        return None
    return iso(datetime.fromtimestamp(epoch, UTC), request.app[API].tz)


async def list_live_calls(request: web.Request, who: Principal) -> Any:
    q = parse_query(request.query, LiveCallsQuery)
    caller = request.app[API].number(q.caller)
    calls = [
        call
        for call in _calls(request).live_calls()
        if caller in (None, call["caller"]) and q.transport in (None, call["transport"])
    ]
    for call in calls:
        call["started_at"] = _time(call["started_at"], request)
        call["last_event_at"] = _time(call["last_event_at"], request)
    return {"items": calls}


# --- a call's recording ---------------------------------------------------------------------


async def get_call_audio(request: web.Request, who: Principal) -> web.StreamResponse:
    call_id = request.match_info["id"]
    recordings = request.app[API].recordings
    path = (
        None if recordings is None else await asyncio.to_thread(recordings.call_recording, call_id)
    )
    if path is None:
        raise NotFound("recording", call_id)
    # FileResponse streams from disk (and answers Range requests, which <audio> seeking uses).
    return web.FileResponse(path, headers={"Content-Type": "audio/wav"})


# --- the live feeds: every call's events, and one call's ---------------------------------


class FeedSlots:
    """Live-feed WebSockets open at once, against a cap: each holds a socket and a queue of
    events, so anyone with a token could otherwise open them until memory runs out."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.open = 0

    def take(self) -> None:
        """One more open; ApiError 503 when all are taken. `give_back()` when it closes."""
        if self.open >= self.limit:
            log.warning("live feeds: all %d in use; a subscriber was refused", self.limit)
            raise ApiError(503, "too many live feed subscribers", headers={"Retry-After": "10"})
        self.open += 1

    def give_back(self) -> None:
        self.open -= 1


async def _feed(
    request: web.Request, subscribe: Callable[[CallEvents], AsyncIterator[Event]]
) -> web.StreamResponse:
    """To a holder of calls.read, on a WebSocket: the events `subscribe(bus)` yields, as
    JSON texts, until they end or the client leaves."""
    slots = request.app[FEEDS]
    try:
        websocket_principal(request, request.app[API].tokens, "calls.read")
        calls = _calls(request)
        slots.take()
    except ApiError as exc:
        return exc.response()  # before the upgrade: the client sees the status
    try:
        ws = websocket(request)
        await ws.prepare(request)

        async def forward() -> None:
            events = subscribe(calls)
            try:
                async for event in events:
                    await ws.send_str(json.dumps(event))
            finally:  # cancelled in send_str: the subscription still ends now, not at GC
                if isinstance(events, AsyncGenerator):
                    await events.aclose()

        task = asyncio.create_task(forward())
        closer = asyncio.create_task(_until_closed(ws))  # the client closing ends it
        await asyncio.wait({task, closer}, return_when=asyncio.FIRST_COMPLETED)
        for t in (task, closer):
            t.cancel()
        outcome, _ = await asyncio.gather(task, closer, return_exceptions=True)
        code, message = WSCloseCode.OK, b""
        if isinstance(outcome, Overflow):
            log.warning("live feed: a client fell too far behind and was disconnected")
            code, message = WSCloseCode.TRY_AGAIN_LATER, b"too far behind: reconnect"
        await ws.close(code=code, message=message)
        return ws
    finally:
        slots.give_back()


async def _until_closed(ws: web.WebSocketResponse) -> None:
    """Until the client closes the socket (or breaks it): whatever else it sends, a
    keep-alive or a stray text, is read and dropped; a message over FEED_MAX_MSG_SIZE has
    aiohttp close the socket with 1009, which ends this too."""
    while True:
        msg = await ws.receive()
        if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
            return


async def live_feed(request: web.Request) -> web.StreamResponse:
    """GET /v1/live (WebSocket): the events so far of the calls in progress, then every
    call's events as they happen; one JSON text each, with its `call_id`."""
    return await _feed(request, lambda calls: calls.watch())


async def call_events(request: web.Request) -> web.StreamResponse:
    """GET /v1/calls/{call_id}/events (WebSocket): the call's events so far (its transcript),
    then live ones until it ends; one JSON text each. The feed may be opened before the call
    starts (a simulator that picks the provider's call id itself)."""
    call_id = request.match_info["call_id"]
    return await _feed(request, lambda calls: calls.subscribe(call_id))


CALL_ID = {"id": {"type": "string", "minLength": 1, "description": "the call's id"}}

OPERATIONS: tuple[Operation, ...] = (
    Operation(
        "GET",
        "/v1/live/calls",
        list_live_calls,
        "listLiveCalls",
        "The calls in progress: caller, transport, flow, the node each is at",
        LiveCallList,
        scope="calls.read",
        query=LiveCallsQuery,
    ),
    Operation(
        "GET",
        "/v1/calls/{id}/audio",
        get_call_audio,
        "getCallAudio",
        "The call's recording: a stereo 8 kHz 16-bit WAV, caller left and bot right",
        None,
        scope="calls.read",
        path_params=CALL_ID,
        media_type="audio/wav",
    ),
)
