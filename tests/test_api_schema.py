"""The API against its own OpenAPI document: property-based requests (schemathesis, positive
and negative data) to a real `ivr serve` with seeded callbacks and calls, every response
checked (no 5xx, status code, content type, headers and body schema conformance); the
document lists exactly the routes served under /v1, validates with openapi-spec-validator,
and its tags, descriptions, examples (each valid against its schema) and webhooks."""

from __future__ import annotations

import asyncio
import json
import re
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import schemathesis
import soundfile as sf
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from live_server import live_server
from openapi_spec_validator import OpenAPIV31SpecValidator, validate
from referencing import Registry
from referencing.jsonschema import DRAFT202012

from ivr.api import API, hash_token
from ivr.api.routes import document
from ivr.app import create_app
from ivr.call.recorder import write_wav
from ivr.call.recording import recording_path, stereo
from ivr.callbacks import CallbackPolicy, Callbacks
from ivr.config import SCOPES, Settings
from ivr.store import open_store
from ivr.webhooks import WEBHOOK_EVENTS

TOKEN = "schemathesis-token-0123456789"
GRAMMARS = Path(__file__).resolve().parent.parent / "grammars"
T0 = datetime(2030, 1, 7, 9, 0, tzinfo=UTC)
# Served under /v1 but not part of the REST API: WebSockets (the media stream, a call's
# live event feed, every call's feed for the console, the browser softphone, the web chat),
# documented in the README.
# (add_get also answers HEAD on them).
NOT_REST = {
    (method, path)
    for method in ("GET", "HEAD")
    for path in (
        "/v1/media-stream",
        "/v1/calls/{call_id}/events",
        "/v1/live",
        "/v1/softphone",
        "/v1/chat",
    )
} | {("POST", "/v1/sms/twilio")}  # Twilio's SMS webhook: form-encoded, signed by Twilio


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
            assert scope in SCOPES
            assert {"401", "403"} <= set(op["responses"])
            for status, response in op["responses"].items():
                if not status.startswith("2"):
                    schema = response["content"]["application/problem+json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/Problem"}


def test_document_validates_with_openapi_spec_validator() -> None:
    doc = json.loads(json.dumps(document()))  # as served
    validate(doc)  # raises on the first error
    assert list(OpenAPIV31SpecValidator(doc).iter_errors()) == []


def _check_at(doc: dict[str, Any], pointer: str, instance: Any) -> None:
    """`instance` against the schema at `pointer` in `doc`, its $refs resolved in `doc`."""
    registry: Registry[Any] = Registry().with_resource(
        "urn:ivr:openapi", DRAFT202012.create_resource(doc)
    )
    validator = Draft202012Validator({"$ref": f"urn:ivr:openapi#{pointer}"}, registry=registry)
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(instance)]
    assert not errors, (pointer, errors)


def _escape(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


def test_document_has_tags_descriptions_examples_and_webhooks() -> None:
    doc = json.loads(json.dumps(document()))
    tags = {t["name"] for t in doc["tags"]}
    assert all(t.get("description") for t in doc["tags"])
    examples = 0
    for path, item in doc["paths"].items():
        for method, op in item.items():
            assert op["tags"] and set(op["tags"]) <= tags, (method, path)
            for status, response in op["responses"].items():
                assert response["description"], (method, path, status)
                assert "X-Request-Id" in response["headers"], (method, path, status)
                for kind, content in response.get("content", {}).items():
                    if "example" in content:
                        base = f"/paths/{_escape(path)}/{method}/responses/{status}/content"
                        _check_at(doc, f"{base}/{_escape(kind)}/schema", content["example"])
                        examples += 1
                if not status.startswith("2"):
                    assert "example" in response["content"]["application/problem+json"]
    assert examples > 60  # every error response, and the callbacks' and calls' bodies
    assert (
        "example"
        in doc["paths"]["/v1/callbacks/{id}"]["get"]["responses"]["200"]["content"][
            "application/json"
        ]
    )
    # every event type, its payload's schema and an example body that fits it
    assert list(doc["webhooks"]) == list(WEBHOOK_EVENTS)
    op_ids = [op["operationId"] for item in doc["paths"].values() for op in item.values()]
    for kind, item in doc["webhooks"].items():
        post = item["post"]
        assert post["summary"] and post["tags"] == ["webhooks"]
        op_ids.append(post["operationId"])
        headers = {p["name"] for p in post["parameters"] if p["in"] == "header"}
        assert {"webhook-id", "webhook-timestamp", "webhook-signature"} <= headers
        body = post["requestBody"]["content"]["application/json"]
        assert body["example"]["type"] == kind
        _check_at(doc, f"/webhooks/{kind}/post/requestBody/content/application~1json/schema",
                  body["example"])  # fmt: skip
        wrong = {**body["example"], "type": "callback.nope"}
        with pytest.raises(AssertionError):
            _check_at(doc, f"/webhooks/{kind}/post/requestBody/content/application~1json/schema",
                      wrong)  # fmt: skip
    assert len(op_ids) == len(set(op_ids))  # operation ids are unique, webhooks' included


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
                if i % 2 == 0:  # a recording, as the server keeps one (GET …/audio)
                    wav = recording_path(db.parent / "recordings", call_id)
                    wav.parent.mkdir(parents=True, exist_ok=True)
                    sf.write(wav, stereo(b"\x01\x00" * 800, b"\x02\x00" * 400), 8000)
                await store.add_turn(call_id, "recognized", node="menu", text="balance",
                                     intent="balance", confidence=0.87)  # fmt: skip
                if i == 0:  # an unrecognized utterance with its audio (GET …/turns/{seq}/audio)
                    audio = f"audio/{call_id}/3.wav"
                    write_wav(db.parent / audio, b"\x01\x00" * 800, 8000)
                    await store.add_turn(call_id, "recognized", node="main_menu", text="purple",
                                         confidence=0.4, audio=audio)  # fmt: skip
                if i % 2:
                    await store.end_call(call_id, "hangup", ended_at=T0 + timedelta(minutes=i + 1))
            for i in range(4):  # chats: their dialogs are not this server's (409 on messages)
                c = await store.start_conversation(channel="web", number=f"+1555222{i:04}")
                await store.add_message(c.id, "bot", "Welcome", node="greeting")
                await store.add_message(c.id, "customer", "my balance", node="main_menu")
                if i % 2:
                    await store.end_conversation(c.id, "caller_goodbye", survey=4)
                CONVERSATIONS.append({"id": c.id})
            events, _ = await store.list_events(limit=200)  # the bookings' webhook events
            EVENTS.extend({"id": e.id} for e in events)
            return ids
        finally:
            await store.close()

    return asyncio.run(run())


EVENTS: list[dict[str, Any]] = []
"""The seeded callbacks' outbox events (path parameters of the delivery log's operations)."""
CONVERSATIONS: list[dict[str, Any]] = []
"""The seeded conversations (path parameters of the conversations' operations)."""
SEEDED: dict[str, list[dict[str, Any]]] = {}
"""Path parameters of records stored before the server started, by operation path (filled by
the `server` fixture)."""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("api-schema")
    callbacks = [{"id": id} for id in _seed(tmp / "data" / "ivr.db")]
    calls = [{"id": f"call-{i}"} for i in range(12)]
    for op in schema.get_all_operations():
        path = op.ok().path  # type: ignore[union-attr]  # Err: one it cannot parse
        if path.startswith("/v1/callbacks/{id}"):
            SEEDED[path] = callbacks
        elif path in ("/v1/calls/{id}", "/v1/calls/{id}/audio"):
            SEEDED[path] = calls
        elif path.startswith("/v1/webhooks/events/{id}"):
            SEEDED[path] = EVENTS
        elif path.startswith("/v1/conversations/{id}"):
            SEEDED[path] = CONVERSATIONS
    SEEDED["/v1/calls/{id}/turns/{seq}/audio"] = [{"id": "call-0", "seq": 3}]
    SEEDED["/v1/flows/{name}"] = [{"name": "hotline"}]
    # a caller's calls, a chat's customer, a callback's number; and one in another spelling
    SEEDED["/v1/customers/{number}"] = [
        {"number": "+15551110001"}, {"number": "+15552220001"}, {"number": "+15550000003"},
        {"number": "(555) 111-0002"},
    ]  # fmt: skip
    # Uploads and adopted phrases rewrite the served flow: serve a copy, never the repo's.
    flow = tmp / "hotline.yaml"
    flow.write_text((GRAMMARS / "hotline.yaml").read_text())
    env = {
        "IVR_FLOW": str(flow),
        "IVR_API_TOKENS": f"fuzz:{hash_token(TOKEN)}:*",
        "IVR_TIMEZONE": "Etc/GMT+5",
        "PYTHONFAULTHANDLER": "1",  # a crash leaves its traceback in the log
        # Negative data sends wrong tokens on purpose, all from one address: no lock-out
        # here (tests/test_token_guard.py and test_cli_tokens.py show it).
        "IVR_MAX_TOKEN_FAILURES_PER_CLIENT": "0",
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
            # 422 too: a flow upload or an adopted phrase that fits the schema can still be a
            # flow that does not validate (the hooks below also send real ones: 200).
            "positive_data_acceptance": {
                "expected-statuses": ["2xx", "400", "401", "403", "404", "409", "422"]
            },
            # The default rejections plus 413: a generated body can exceed the server's 1 MB
            # limit (documented for every operation with a body), rejected before parsing.
            "negative_data_rejection": {
                "expected-statuses": "400 401 403 404 405 406 409 413 415 422 428 429 5xx".split()
            },
        },
    }
)
schema = schemathesis.openapi.from_dict(json.loads(json.dumps(document())), config=CONFIG)


@schema.hook
def flatmap_path_parameters(context: Any, path_parameters: dict[str, Any] | None) -> Any:
    """Random ids only ever find nothing: half the time take a seeded record instead, so
    claim, complete, reschedule and cancel also run on real callbacks in every state."""
    path = context.operation.path
    if not path_parameters:
        return st.just(path_parameters)
    generated = path_parameters

    def pick(n: int) -> dict[str, Any]:  # at draw time: SEEDED is empty while collecting
        records = SEEDED.get(path, [])
        return {**generated, **records[n % len(records)]} if records else generated

    return st.one_of(st.just(generated), st.integers(0, 1000).map(pick))


SEEN: Counter[tuple[str, str, int]] = Counter()
"""(operation, generation mode, status) of every response, for the summary test below."""


@schema.parametrize()
@settings(deadline=None, suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_document(case: Any, server: str) -> None:
    response = case.call_and_validate(base_url=server)
    mode = case.meta.generation.mode.value if case.meta is not None else "explicit"
    SEEN[(case.operation.label, mode, response.status_code)] += 1


def test_real_flow_uploads_and_adoptions_are_accepted(server: str) -> None:
    """A generated flow text or phrase is almost never a valid flow (422, as the document
    says): these two operations also get real bodies, which must be accepted."""
    real = {
        ("PUT", "/v1/flows/hotline", "PUT /v1/flows/{name}"): {
            "text": (GRAMMARS / "hotline.yaml").read_text()
        },
        ("POST", "/v1/analytics/unrecognized/adopt", "POST /v1/analytics/unrecognized/adopt"): {
            "node": "main_menu",
            "intent": "balance",
            "phrase": "how much do i owe",
        },
    }
    # A generated number is seldom a telephone number: book a real one (201), then again (409).
    book = ("POST", "/v1/callbacks", "POST /v1/callbacks")
    booking = {"number": "+15550009999", "due_at": "2030-01-02T15:00:00+00:00", "reason": "x"}
    # A generated due_at must match a date-time format and a years pattern at once, which
    # hypothesis seldom manages: reschedule seeded callbacks with a real time too.
    for seeded in SEEDED["/v1/callbacks/{id}/reschedule"][:4]:
        path = f"/v1/callbacks/{seeded['id']}/reschedule"
        real[("POST", path, "POST /v1/callbacks/{id}/reschedule")] = {
            "due_at": "2030-01-02T15:00:00+00:00"
        }
    requests = [(key, body, {200}) for key, body in real.items()]
    # A chat with a real number, then a message to it (a seeded one's dialog is not held)
    start = ("POST", "/v1/conversations", "POST /v1/conversations")
    requests.append((start, {"channel": "web", "number": "+15551230001"}, {201}))
    requests += [(book, booking, {201}), (book, booking, {409})]
    for (method, path, label), body, expected in requests:
        req = urllib.request.Request(
            server + path,
            data=json.dumps(body).encode(),
            method=method,
            headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                status = r.status
                if label == start[2]:  # and a message to the chat just started
                    chat = json.loads(r.read())["conversation"]["id"]
                    path = f"/v1/conversations/{chat}/messages"
                    requests.append(
                        ((method, path, "POST /v1/conversations/{id}/messages"),
                         {"text": "what's my balance"}, {200})
                    )  # fmt: skip
        except urllib.error.HTTPError as e:
            status = e.code
        # a seeded callback may be closed already: refused for its state is right too
        ok = status in expected or (status == 409 and "reschedule" in path)
        assert ok, (label, status)
        SEEN[(label, "explicit", status)] += 1


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
        assert statuses & {200, 201, 409}, (label, seen)
        method, path = label.split(" ", 1)
        op = document()["paths"][path][method.lower()]
        if op.get("parameters") or op.get("requestBody"):  # it takes input: bad input seen
            assert statuses & {400, 404, 415, 422}, (label, seen)
