"""The OpenAPI 3.1 document, generated from the operations and their pydantic models (the
same models validate the requests, so the document cannot drift from the behaviour)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from ivr.api import examples
from ivr.api.models import Problem
from ivr.api.webhook_docs import EVENT_MODELS, webhooks_section
from ivr.config import SCOPES
from ivr.http_error import PROBLEM_JSON

if TYPE_CHECKING:
    from ivr.api.operation import Operation

REF = "#/components/schemas/{model}"
ERROR_TEXT = {
    400: "Bad request: invalid JSON, or a cursor this list did not return",
    401: "Missing or unknown bearer token",
    403: "The token lacks the operation's scope",
    404: "No such record (or an id that cannot exist)",
    409: "The record's current state does not allow this change",
    413: "Request body too large",
    415: "The request body is not application/json",
    422: "Invalid input: each offending field is named in `fields`",
    429: "Too many failed token attempts from this address (`too_many_attempts`): try again"
    " after `Retry-After` seconds",
    503: "The database is unavailable: try again after `Retry-After` seconds",
}
LOCATION = {"schema": {"type": "string"}, "description": "the new record's URL (a path)"}
REQUEST_ID = {
    "schema": {"type": "string"},
    "description": "the request's id: the client's X-Request-Id when it sent a plausible one,"
    " else a new one; the server's log lines of the request end with request_id=<it>",
}
ERROR_HEADERS: dict[int, dict[str, Any]] = {
    401: {"WWW-Authenticate": {"schema": {"type": "string"}, "description": "Bearer"}},
    429: {"Retry-After": {"schema": {"type": "integer"}, "description": "seconds"}},
    503: {"Retry-After": {"schema": {"type": "integer"}, "description": "seconds"}},
}
TAGS = {
    "callbacks": "Agent callbacks: booked by callers or a CRM, worked by agents and dialers",
    "calls": "Call records, their turns and recordings",
    "live": "The calls in progress",
    "flows": "The served dialog flows: read, replace",
    "grammar": "Check flow and grammar files; test what an utterance means at a node",
    "analytics": "Containment, nodes, intents and what callers said that nothing matched",
    "meta": "This document",
    "conversations": "Text chats with the flow (the SMS webhook, /v1/sms/twilio, is Twilio's)",
    "customers": "One customer across channels: a number's calls, conversations, callbacks",
    "webhooks": "Events POSTed to the configured endpoints (the document's `webhooks`)",
}
INFO_TEXT = (
    "Agent callbacks and call records. Errors are RFC 9457 problem details"
    " (`application/problem+json`: `type`, `title`, `status`, `detail`, a stable `code` and"
    " the offending `fields`; the deprecated `error` member keeps the previous shape for one"
    " release). Every response carries `X-Request-Id` (send your own to correlate). Times"
    " are RFC 3339 with a UTC offset (a naive time is a 422). Lists are pages: pass `next`"
    " as `cursor`. Query parameters an operation does not take are ignored. Changes are"
    " also announced as webhooks (`webhooks`), signed per Standard Webhooks."
)
SECURITY_TEXT = (
    "`Authorization: Bearer <token>`. Tokens are configured as their SHA-256 with a name and"
    f" scopes (IVR_API_TOKENS; create one with `ivr token new`). Scopes: {', '.join(SCOPES)}"
    " or * for all; each operation lists the scope it needs. No tokens configured: every"
    " authenticated operation answers 401. A client address that presents unknown or revoked"
    " tokens too often (IVR_MAX_TOKEN_FAILURES_PER_CLIENT within"
    " IVR_TOKEN_FAILURE_WINDOW_SECONDS) is answered 429 `too_many_attempts` for a while."
)


def _clean(schema: dict[str, Any]) -> dict[str, Any]:
    """A property schema as a parameter schema: the title is the parameter's name already."""
    return {k: v for k, v in schema.items() if k not in ("title", "description", "default")} | (
        {"default": schema["default"]} if schema.get("default") is not None else {}
    )


def _parameters(op: Operation, components: dict[str, Any]) -> list[dict[str, Any]]:
    params: list[dict[str, Any]] = []
    for name in re.findall(r"{(\w+)}", op.path):
        schema = dict(op.path_params[name])
        description = schema.pop("description", None)
        param = {"name": name, "in": "path", "required": True, "schema": schema}
        params.append(param | ({"description": description} if description else {}))
    if op.query is not None:
        schema = op.query.model_json_schema(ref_template=REF)
        components.update(schema.get("$defs", {}))
        required = set(schema.get("required", ()))
        for name, prop in schema["properties"].items():
            param = {"name": name, "in": "query", "required": name in required}
            if prop.get("type") == "array":
                param |= {"style": "form", "explode": True}
            if prop.get("description"):
                param["description"] = prop["description"]
            params.append(param | {"schema": _clean(prop)})
    return params


def _json(ref: str) -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": ref}}}


Refs = Mapping[tuple[Any, JsonSchemaMode], str]


def tag_of(path: str) -> str:
    """An operation's tag: the first segment of its path under /v1 (the document's: meta)."""
    segment = path.removeprefix("/v1/").split("/")[0]
    return "meta" if segment == "openapi.json" else segment


def _success(op: Operation, refs: Refs) -> dict[str, Any]:
    """The 2xx response: its description (the model's docstring), content and example."""
    if op.media_type != "application/json":
        content = {op.media_type: {"schema": {"type": "string", "format": "binary"}}}
    elif op.response is not None:
        content = _json(refs[(op.response, "serialization")])
        if op.response in examples.RESPONSES:
            content["application/json"]["example"] = examples.RESPONSES[op.response]
    else:
        content = {"application/json": {"schema": {"type": "object"}}}
    doc = (op.response.__doc__ or "").strip() if op.response is not None else ""
    ok: dict[str, Any] = {"description": doc or op.summary, "content": content}
    ok["headers"] = {"X-Request-Id": REQUEST_ID}
    if op.status == 201:
        ok["headers"]["Location"] = LOCATION
    return ok


def _error(status: int, refs: Refs) -> dict[str, Any]:
    problem = {"schema": {"$ref": refs[(Problem, "serialization")]}}
    problem["example"] = examples.problem(status)
    out: dict[str, Any] = {
        "description": ERROR_TEXT[status],
        "headers": {"X-Request-Id": REQUEST_ID} | ERROR_HEADERS.get(status, {}),
        "content": {PROBLEM_JSON: problem},
    }
    return out


def _operation(op: Operation, refs: Refs) -> dict[str, Any]:
    out: dict[str, Any] = {
        "operationId": op.operation_id,
        "summary": op.summary,
        "tags": [tag_of(op.path)],
    }
    responses: dict[str, Any] = {str(op.status): _success(op, refs)}
    for status in op.error_statuses():
        responses[str(status)] = _error(status, refs)
    out["responses"] = responses
    if op.body is not None:
        out["requestBody"] = {
            "required": op.body_required,
            "content": _json(refs[(op.body, "validation")]),
        }
    if op.scope is None:
        out["security"] = []
    else:
        # OpenAPI 3.1: for a non-OAuth scheme the list names the roles (here: scopes) needed.
        out["security"] = [{"bearerAuth": [op.scope]}]
        out["description"] = f"Scope: `{op.scope}` (or `*`)."
    return out


def build_document(operations: Sequence[Operation]) -> dict[str, Any]:
    models: list[tuple[type[BaseModel], JsonSchemaMode]] = [(Problem, "serialization")]
    models += [(model, "serialization") for model in EVENT_MODELS]
    for op in operations:
        if op.response is not None:
            models.append((op.response, "serialization"))
        if op.body is not None:
            models.append((op.body, "validation"))
    keys, defs = models_json_schema(list(dict.fromkeys(models)), ref_template=REF)
    refs: Refs = {key: value["$ref"] for key, value in keys.items()}
    components: dict[str, Any] = dict(defs.get("$defs", {}))

    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        item = _operation(op, refs)
        params = _parameters(op, components)
        if params:
            item["parameters"] = params
        paths.setdefault(op.path, {})[op.method.lower()] = item
    used = {tag for item in paths.values() for op in item.values() for tag in op["tags"]}
    return {
        "openapi": "3.1.0",
        "info": {"title": "ivr integration API", "version": "1", "description": INFO_TEXT},
        "tags": [
            {"name": name, "description": text}
            for name, text in TAGS.items()
            if name in used or name == "webhooks"
        ],
        "paths": paths,
        "webhooks": webhooks_section(lambda model: refs[(model, "serialization")]),
        "components": {
            "schemas": components,
            "securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer", "description": SECURITY_TEXT}
            },
        },
    }
