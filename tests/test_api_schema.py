"""The API against its own OpenAPI document: property-based requests (schemathesis, positive
and negative data) to a real `ivr serve` with seeded callbacks and calls, every response
checked (no 5xx, status code, content type, headers and body schema conformance); and the
document lists exactly the routes served under /v1."""

from __future__ import annotations

import asyncio
import json
import re
import urllib.request
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from live_server import live_server

from ivr.api import API, hash_token
from ivr.api.routes import document
from ivr.app import create_app
from ivr.callbacks import CallbackPolicy, Callbacks
from ivr.config import Settings
from ivr.store import open_store

TOKEN = "schemathesis-token-0123456789"
T0 = datetime(2030, 1, 7, 9, 0, tzinfo=UTC)
# Served under /v1 but not part of the REST API: WebSockets (the media stream, a call's
# live event feed), documented in the README.
# (add_get also answers HEAD on them).
NOT_REST = {
    (method, path)
    for method in ("GET", "HEAD")
    for path in ("/v1/media-stream", "/v1/calls/{call_id}/events")
}


def test_document_lists_exactly_the_v1_routes(tmp_path: Path) -> None:
    app = create_app(Settings.model_validate({"data_dir": tmp_path}))
    served = {
        (route.method, route.resource.canonical)
        for route in app.router.routes()
        if route.resource is not None and route.resource.canonical.startswith("/v1/")
    }
    documented = {
        (method.upper(), path) for path, item in document()["paths"].items() for method in item
    }
    assert served - NOT_REST == documented
    assert NOT_REST <= served
    assert API not in app  # set when the services start, not before


def test_document_security_and_errors() -> None:
    doc = document()
    assert doc["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    for path, item in doc["paths"].items():
        for method, op in item.items():
            params = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
            assert params == set(re.findall(r"{(\w+)}", path)), (method, path)
            if path == "/v1/openapi.json":
                assert op["security"] == []
                continue
            (scope,) = op["security"][0]["bearerAuth"]
            assert scope in ("calls.read", "callbacks.read", "callbacks.write")
            assert {"401", "403"} <= set(op["responses"])
            for status, response in op["responses"].items():
                if status != "200":
                    schema = response["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/ErrorOut"}


def _seed(db: Path) -> list[str]:
    """Callbacks in every state and a few calls with turns, written to the server's store
    before it starts; returns the callback ids."""

    async def run() -> list[str]:
        store = await open_store(str(db))
        try:
            callbacks = Callbacks(store, CallbackPolicy(tz=ZoneInfo("UTC")))
            ids = []
            for i in range(24):
                cb, _ = await callbacks.book(
                    f"+1555000{i:04}",
                    T0 + timedelta(minutes=17 * i),
                    reason="bill",
                    transcript=[{"node": "menu", "text": "my bill", "n": i}],
                )
                ids.append(cb.id)
                if i % 4 == 1:
                    await callbacks.claim(cb.id, "seed")
                elif i % 4 == 2:
                    await callbacks.claim(cb.id, "seed")
                    await callbacks.complete(cb.id, "resolved" if i % 8 == 2 else "busy")
                elif i % 4 == 3:
                    await callbacks.cancel(cb.id)
            for i in range(12):
                call_id = f"call-{i}"
                await store.start_call(
                    call_id, transport="websocket", caller=f"+1555111{i:04}", flow="hotline",
                    flow_version="1", started_at=T0 + timedelta(minutes=i),
                )  # fmt: skip
                await store.add_turn(call_id, "prompt", node="greeting", text="Welcome")
                await store.add_turn(call_id, "recognized", node="menu", text="balance",
                                     intent="balance", confidence=0.87)  # fmt: skip
                if i % 2:
                    await store.end_call(call_id, "hangup", ended_at=T0 + timedelta(minutes=i + 1))
            return ids
        finally:
            await store.close()

    return asyncio.run(run())


SEEDED: dict[str, list[str]] = {"/v1/callbacks/": [], "/v1/calls/": []}
"""Callback and call ids stored before the server started (filled by the `server` fixture)."""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("api-schema")
    SEEDED["/v1/callbacks/"][:] = _seed(tmp / "data" / "ivr.db")
    SEEDED["/v1/calls/"][:] = [f"call-{i}" for i in range(12)]
    env = {
        "IVR_API_TOKENS": f"fuzz:{hash_token(TOKEN)}:*",
        "IVR_TIMEZONE": "Etc/GMT+5",
        "PYTHONFAULTHANDLER": "1",  # a crash leaves its traceback in the log
    }
    with live_server(tmp, **env) as live:
        yield f"http://127.0.0.1:{live.port}"
        code = live.proc.poll()
        assert code is None, f"ivr serve died (exit {code}):\n{live.log_text()[-3000:]}"


def test_served_document_is_the_generated_one(server: str) -> None:
    with urllib.request.urlopen(f"{server}/v1/openapi.json", timeout=10) as r:
        assert json.loads(r.read()) == json.loads(json.dumps(document()))


# The schema is loaded from the generated document (asserted above to be what the server
# serves) rather than through schemathesis.pytest.from_fixture, whose lazy loading breaks on
# pytest 9 (schemathesis 4.32 sets the removed `Function._nodeid`).
CONFIG = schemathesis.Config.from_dict(
    {
        "auth": {"openapi": {"bearerAuth": {"bearer": TOKEN}}},
        "generation": {"mode": "all", "max-examples": 100, "deterministic": True},
        "checks": {
            # Opaque cursors: any string fits the schema, but only one a list returned is
            # accepted (400 otherwise), which generated "valid" data cannot know.
            "positive_data_acceptance": {
                "expected-statuses": ["2xx", "400", "401", "403", "404", "409"]
            },
        },
    }
)
schema = schemathesis.openapi.from_dict(json.loads(json.dumps(document())), config=CONFIG)


@schema.hook
def flatmap_path_parameters(context: Any, path_parameters: dict[str, Any] | None) -> Any:
    """Random ids only ever find nothing: half the time take a seeded one instead, so claim,
    complete, reschedule and cancel also run on real callbacks in every state."""
    prefix = context.operation.path[: context.operation.path.index("{")] if path_parameters else ""
    if prefix not in SEEDED:
        return st.just(path_parameters)
    generated = path_parameters or {}

    def pick(n: int) -> dict[str, Any]:  # at draw time: SEEDED is empty while collecting
        ids = SEEDED[prefix]
        return {**generated, "id": ids[n % len(ids)]} if ids else generated

    return st.one_of(st.just(generated), st.integers(0, 1000).map(pick))


SEEN: Counter[tuple[str, str, int]] = Counter()
"""(operation, generation mode, status) of every response, for the summary test below."""


@schema.parametrize()
@settings(deadline=None, suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_document(case: Any, server: str) -> None:
    response = case.call_and_validate(base_url=server)
    mode = case.meta.generation.mode.value if case.meta is not None else "explicit"
    SEEN[(case.operation.label, mode, response.status_code)] += 1


def test_fuzzing_reached_every_operation_both_ways(server: str) -> None:
    """Runs after the generated tests (same module, file order): each operation answered
    valid and invalid requests, and the real workflow ran (claims, completions...)."""
    if not SEEN:
        pytest.skip("run together with test_api_conforms_to_its_document")
    by_op: dict[str, set[tuple[str, int]]] = {}
    for (label, mode, status), _ in SEEN.items():
        by_op.setdefault(label, set()).add((mode, status))
    summary = {label: sorted(seen) for label, seen in sorted(by_op.items())}
    print(f"\nschemathesis: {sum(SEEN.values())} requests; (mode, status) per operation:")
    for label, seen in summary.items():
        print(f"  {label}: {seen}")
    assert len(by_op) == len(list(schema.get_all_operations())), summary
    for label, seen in summary.items():
        statuses = {status for _, status in seen}
        # a real record reached: accepted, or refused for its state (a claimed one claimed)
        assert statuses & {200, 409}, (label, seen)
        if label != "GET /v1/openapi.json":
            assert statuses & {400, 404, 415, 422}, (label, seen)
