"""An API operation as data (method, path, scope, input models, response model) and the
plumbing every handler shares: authentication, query and body parsing, error mapping.

The same `Operation` values register the routes and generate the OpenAPI document.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any, TypeVar

from aiohttp import web
from multidict import MultiMapping
from pydantic import BaseModel, ValidationError

from ivr.api.errors import ApiError, invalid
from ivr.appkeys import API
from ivr.auth import ANONYMOUS, Principal, request_principal
from ivr.store import Conflict, NotFound, StoreUnavailable

log = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")
STORE_RETRY_AFTER_S = 5
"""Retry-After of a 503 for a failing database: about the store's heartbeat, which finds
it answering again (/readyz)."""
OperationHandler = Callable[[web.Request, Principal], Awaitable[Any]]


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    handler: OperationHandler
    operation_id: str
    summary: str
    response: type[BaseModel] | None
    """The 200 body's model; None for a free-form object (the OpenAPI document itself)."""
    scope: str | None = None
    """None: no authentication (only the OpenAPI document)."""
    query: type[BaseModel] | None = None
    body: type[BaseModel] | None = None
    body_required: bool = False
    path_params: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """Each path parameter's JSON schema (and description)."""
    conflicts: bool = False
    """The operation changes a callback's state: 409 when its current state forbids it."""
    status: int = 200
    """The success status (201: the handler returns its web.Response, with a Location)."""
    media_type: str = "application/json"
    """The 200 body's type. Other than JSON, the handler returns its own web.StreamResponse
    (e.g. a call's recording, audio/wav)."""

    def error_statuses(self) -> list[int]:
        """Every error status the operation can answer with (documented as such)."""
        out = set()
        if self.scope is not None:
            # 429: locked out after failed token attempts; 503: the database failed
            out |= {401, 403, 429, 503}
        if self.query is not None:
            out |= {400, 422}  # 400: a cursor this list did not hand out
        if self.body is not None:
            out |= {400, 413, 415, 422}
        if self.path_params:
            out.add(404)
        if self.conflicts:
            out.add(409)
        return sorted(out)


@cache
def list_fields(model: type[BaseModel]) -> frozenset[str]:
    """Query parameters of `model` that take several values."""
    props = model.model_json_schema()["properties"]
    return frozenset(name for name, prop in props.items() if prop.get("type") == "array")


@cache
def known_fields(model: type[BaseModel]) -> frozenset[str]:
    """Query parameters `model` takes (by the names clients send)."""
    return frozenset(f.alias or name for name, f in model.model_fields.items())


OPAQUE = frozenset({"cursor"})
"""Parameters only the server makes up: a bad one was not handed out, a 400 (not a 422)."""


def parse_query(query: MultiMapping[str], model: type[M]) -> M:
    """Query parameters → `model`. A list parameter may repeat and/or hold comma-separated
    values; any other given twice or a bad value is a 422 naming it (a 400 when only opaque
    ones are bad). Parameters the operation does not take are ignored (a client may send
    its own, e.g. a cache buster, or one a later version of the API takes)."""
    lists, known = list_fields(model), known_fields(model)
    data: dict[str, Any] = {}
    repeated = []
    for name in dict.fromkeys(query.keys()):
        if name not in known:
            continue
        values = query.getall(name)
        if name in lists:
            data[name] = [part for value in values for part in value.split(",")]
        elif len(values) > 1:
            repeated.append((name, "given more than once"))
        else:
            data[name] = values[0]
    try:
        parsed = model.model_validate(data)
    except ValidationError as exc:
        error = invalid(exc, "query")
        error.fields = repeated + error.fields
        if {name for name, _ in error.fields} <= OPAQUE:
            error.status, error.message, error.code = 400, "invalid cursor", "invalid_cursor"
        raise error from None
    if repeated:
        raise ApiError(422, "invalid query", repeated, code="invalid_query")
    return parsed


async def read_body(request: web.Request, model: type[M]) -> M:
    """The JSON body → `model`. No body at all validates as {} (so a required field is
    reported missing by name); a body that is not application/json is 415, bad JSON 400."""
    raw = await request.read()
    if not raw.strip():
        raw = b"{}"
    elif request.content_type != "application/json":
        raise ApiError(415, "send the request body as application/json")
    try:
        # strict: JSON types as they are (no "5" for 5); dates are text by their own validator
        return model.model_validate_json(raw, strict=True)
    except ValidationError as exc:
        bad_json = [e for e in exc.errors(include_url=False) if e["type"] == "json_invalid"]
        if bad_json:
            detail = f"request body: {bad_json[0]['msg']}"
            raise ApiError(400, detail, code="invalid_json") from None
        raise invalid(exc, "body") from None


def store_unavailable() -> ApiError:
    """The answer while the database fails: the driver's message stays in the log (it may
    name files or hosts)."""
    return ApiError(
        503,
        "the database is unavailable; try again later",
        headers={"Retry-After": str(STORE_RETRY_AFTER_S)},
        code="store_unavailable",
    )


def endpoint(op: Operation) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """The aiohttp handler of `op`: authenticate, run, answer JSON; store errors → 404/409,
    the store failing → 503."""

    async def handle(request: web.Request) -> web.StreamResponse:
        try:
            who = ANONYMOUS
            if op.scope is not None:
                header = request.headers.get("Authorization")
                who = request_principal(request, header, request.app[API].tokens, op.scope)
            result = await op.handler(request, who)
            if isinstance(result, web.StreamResponse):
                return result  # a body that is not JSON (see media_type)
            return web.json_response(result)
        except ApiError as exc:
            return exc.response()
        except NotFound as exc:
            return ApiError(404, str(exc)).response()
        except Conflict as exc:
            return ApiError(409, str(exc)).response()
        except StoreUnavailable as exc:  # an outage, not a bug: clients retry, probes see it
            log.warning("%s %s: %s", request.method, request.path, exc)
            return store_unavailable().response()
        except web.HTTPException:
            raise  # aiohttp's own (e.g. 413 from read()): json_errors renders it
        except Exception:
            log.exception("%s %s failed", request.method, request.path)
            return ApiError(500, "internal error").response()  # still in the one error shape

    handle.__name__ = handle.__qualname__ = op.operation_id
    return handle


async def paged(result: Awaitable[T], cursor: str | None) -> T:
    """A store list's ValueError for a cursor it did not hand out → 400 naming `cursor`
    (limit and filters are validated before, so with no cursor it is a bug: let it raise)."""
    try:
        return await result
    except ValueError:
        if cursor is None:
            raise
        error = [("cursor", "not a cursor this list returned")]
        raise ApiError(400, "invalid cursor", error, code="invalid_cursor") from None
