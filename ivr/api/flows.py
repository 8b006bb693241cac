"""Flows as ops edit them: read, upload (validated, hot-reloaded), versions.

An upload is validated exactly as an edit of the file is (see `ivr.flows_watch`); a good one
is written to the flow file (atomic replace) and served to calls that start from then on.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from ivr.api.errors import ApiError
from ivr.api.operation import Operation, read_body
from ivr.appkeys import API
from ivr.auth import Principal
from ivr.callbacks import iso
from ivr.dialog.flow import MAX_YAML_CHARS, FlowError
from ivr.dialog.store import FlowStore, Source
from ivr.flows_watch import FlowWatcher

FLOW_NAME = {"name": {"type": "string", "minLength": 1, "description": "the flow's `name:`"}}


class _Output(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FlowVersionInfo(_Output):
    version: str = Field(description="short SHA-256 of the flow file; call records name it")
    loaded_at: datetime
    source: Source = Field(
        description="startup, file (an edit), grammars (a grammar it uses changed), api (upload)"
    )


class FlowRejection(_Output):
    errors: list[str]
    at: datetime
    source: Source


class FlowInfo(_Output):
    name: str
    version: str = Field(description="the version new calls get")
    loaded_at: datetime
    path: str
    last_rejected: FlowRejection | None = Field(
        description="the last version that failed validation (the old one kept serving)"
    )
    history: list[FlowVersionInfo] = Field(description="versions loaded, newest first")


class FlowList(_Output):
    items: list[FlowInfo]
    next: None = Field(description="always null: every served flow is on this one page")


class FlowText(_Output):
    name: str
    version: str
    text: str = Field(description="the YAML of the served version, as it was loaded")


class FlowSaved(_Output):
    name: str
    version: str


class FlowUpload(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    text: str = Field(
        min_length=1,
        max_length=MAX_YAML_CHARS,
        description="the whole flow file (YAML); same `name:`",
    )


def _watcher(request: web.Request) -> FlowWatcher:
    name = request.match_info["name"]
    try:
        return request.app[API].flows[name]
    except KeyError:
        raise ApiError(404, f"no flow named {name!r} is served") from None


def _message(store: FlowStore, error: str) -> str:
    """An error without the file's path in front (the client knows which flow it sent)."""
    prefix = f"{store.path}: "
    while error.startswith(prefix):
        error = error[len(prefix) :]
    return error


def flow_json(store: FlowStore, request: web.Request) -> dict[str, Any]:
    tz = request.app[API].tz
    rejected = store.last_rejected
    return {
        "name": store.name,
        "version": store.flow.version,
        "loaded_at": iso(store.loaded_at, tz),
        "path": str(store.path),
        "last_rejected": None
        if rejected is None
        else {
            "errors": [_message(store, e) for e in rejected.errors],
            "at": iso(rejected.at, tz),
            "source": rejected.source,
        },
        "history": [
            {"version": v.version, "loaded_at": iso(v.loaded_at, tz), "source": v.source}
            for v in reversed(store.history)
        ],
    }


async def list_flows(request: web.Request, who: Principal) -> Any:
    served = request.app[API].flows
    items = [flow_json(w.store, request) for _, w in sorted(served.items())]
    return {"items": items, "next": None}  # the API's list shape (one page)


async def get_flow(request: web.Request, who: Principal) -> Any:
    store = _watcher(request).store
    return {"name": store.name, "version": store.flow.version, "text": store.text}


async def put_flow(request: web.Request, who: Principal) -> Any:
    watcher = _watcher(request)
    body = await read_body(request, FlowUpload)
    try:
        flow = await watcher.upload(body.text)
    except FlowError as exc:
        fields = [("text", _message(watcher.store, e)) for e in exc.errors]
        raise ApiError(422, "invalid flow: nothing was changed", fields) from None
    except OSError as exc:
        raise ApiError(500, f"cannot write the flow file: {exc.strerror or exc}") from None
    return {"name": flow.name, "version": flow.version}


OPERATIONS: tuple[Operation, ...] = (
    Operation(
        "GET",
        "/v1/flows",
        list_flows,
        "listFlows",
        "The served flows: version, where it came from, recent versions, the last rejection",
        FlowList,
        scope="flows.read",
    ),
    Operation(
        "GET",
        "/v1/flows/{name}",
        get_flow,
        "getFlow",
        "The YAML of a flow's served version",
        FlowText,
        scope="flows.read",
        path_params=FLOW_NAME,
    ),
    Operation(
        "PUT",
        "/v1/flows/{name}",
        put_flow,
        "putFlow",
        "Replace a flow: validated like an edit of its file; if good, written and served to"
        " new calls (calls in progress keep their version); if not, a 422 naming each problem",
        FlowSaved,
        scope="flows.write",
        body=FlowUpload,
        body_required=True,
        path_params=FLOW_NAME,
    ),
)
