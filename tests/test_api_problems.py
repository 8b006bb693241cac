"""The API's errors as RFC 9457 problem details with a stable code (and the deprecated
`error` member beside them), and X-Request-Id on every response and in the log lines of its
request: in-process over a loopback socket (aiohttp TestServer), and an `ivr serve`."""

from __future__ import annotations

import json
import logging
import re
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from live_server import live_server

from ivr.api import API, ApiContext, add_api_routes, hash_token
from ivr.api.models import Problem
from ivr.callbacks import CallbackPolicy, Callbacks
from ivr.config import ApiToken
from ivr.http_error import PROBLEMS, TYPE_PREFIX, ApiError
from ivr.logs import SafeFormatter
from ivr.store import StoreUnavailable, open_store

TZ = ZoneInfo("UTC")
T0 = datetime(2030, 1, 7, 9, 0, tzinfo=UTC)
ADMIN, READER = "problems-admin-token", "problems-reader-token"
TOKENS = [
    ApiToken(name="admin", sha256=hash_token(ADMIN), scopes=["*"]),
    ApiToken(name="reader", sha256=hash_token(READER), scopes=["callbacks.read"]),
]
Client = TestClient[web.Request, web.Application]


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[Client, Callbacks]]:
    store = await open_store(f"sqlite:///{tmp_path}/ivr.db")
    callbacks = Callbacks(store, CallbackPolicy(tz=TZ))
    app = web.Application()
    app[API] = ApiContext(callbacks, store, TOKENS, TZ)
    add_api_routes(app)
    try:
        async with TestClient(TestServer(app)) as client:
            yield client, callbacks
    finally:
        await store.close()


def check_problem(body: Any, status: int, code: str) -> None:
    """The problem members, consistent with each other and with the deprecated shape."""
    Problem.model_validate(body)  # exactly the documented members
    assert body["status"] == status and body["code"] == code, body
    assert body["type"] == TYPE_PREFIX + code
    assert PROBLEMS[code] == (status, body["title"])
    assert body["error"] == {
        "status": status,
        "message": body["detail"],
        "fields": body["fields"],
    }


async def test_every_error_is_a_problem_with_its_code(served: tuple[Client, Callbacks]) -> None:
    client, callbacks = served
    cb, _ = await callbacks.book("+4930100", T0, reason="bill")
    await callbacks.cancel(cb.id)
    auth = {"Authorization": f"Bearer {ADMIN}"}
    json_type = {**auth, "Content-Type": "application/json"}
    reader, text = {"Authorization": f"Bearer {READER}"}, {**auth, "Content-Type": "text/plain"}
    huge, soon = b" " * (2 << 20), b'{"due_at": "soon"}'
    cases: list[tuple[str, str, dict[str, str], Any, int, str]] = [
        ("POST", f"/v1/callbacks/{cb.id}/claim", json_type, b"{", 400, "invalid_json"),
        ("GET", "/v1/callbacks?cursor=zzz", auth, None, 400, "invalid_cursor"),
        ("GET", "/v1/callbacks", {}, None, 401, "unauthorized"),
        ("POST", f"/v1/callbacks/{cb.id}/claim", reader, None, 403, "forbidden"),
        ("GET", f"/v1/callbacks/{uuid.uuid4()}", auth, None, 404, "not_found"),
        ("GET", "/v1/no-such-route", auth, None, 404, "not_found"),  # aiohttp's own
        ("DELETE", "/v1/callbacks", auth, None, 405, "method_not_allowed"),
        ("POST", f"/v1/callbacks/{cb.id}/cancel", auth, None, 409, "conflict"),
        ("POST", f"/v1/callbacks/{cb.id}/claim", json_type, huge, 413, "payload_too_large"),
        ("POST", f"/v1/callbacks/{cb.id}/claim", text, b"x", 415, "unsupported_media_type"),
        ("POST", f"/v1/callbacks/{cb.id}/reschedule", json_type, soon, 422, "invalid_body"),
        ("GET", "/v1/callbacks?limit=0", auth, None, 422, "invalid_query"),
    ]
    for method, path, headers, data, status, code in cases:
        async with client.request(method, path, headers=headers, data=data) as r:
            assert r.status == status, (method, path, await r.text())
            assert r.content_type == "application/problem+json", (method, path)
            check_problem(await r.json(), status, code)
    async with client.post(f"/v1/callbacks/{cb.id}/reschedule", headers=json_type,
                           data=b'{"due_at": "soon", "x": 1}') as r:  # fmt: skip
        body = await r.json()
    assert [f["field"] for f in body["fields"]] == ["due_at", "x"]
    assert body["detail"] == "invalid body" and body["title"] == "Invalid request body"


async def test_a_failing_store_is_a_store_unavailable_problem(
    served: tuple[Client, Callbacks], monkeypatch: pytest.MonkeyPatch
) -> None:
    client, callbacks = served

    async def down(*args: Any, **kwargs: Any) -> Any:
        raise StoreUnavailable("connection refused: db.internal:5432", "OSError")

    monkeypatch.setattr(callbacks.store, "list_callbacks", down)
    async with client.get("/v1/callbacks", headers={"Authorization": f"Bearer {ADMIN}"}) as r:
        assert r.status == 503 and r.headers["Retry-After"] == "5"
        body = await r.json()
    check_problem(body, 503, "store_unavailable")
    assert "db.internal" not in json.dumps(body)


def test_codes_default_by_status_and_unlisted_statuses_still_have_one() -> None:
    assert ApiError(404, "no such thing").code == "not_found"
    assert (
        ApiError(409, "busy", code="callback_open").body()["title"] == PROBLEMS["callback_open"][1]
    )
    teapot = ApiError(418, "short and stout").body()
    assert teapot["code"] == "http_418" and teapot["title"] == "I'm a Teapot"
    for code, (status, title) in PROBLEMS.items():  # stable identifiers: snake_case words
        assert re.fullmatch(r"[a-z]+(_[a-z]+)*", code) and 400 <= status < 600 and title


# --- X-Request-Id -----------------------------------------------------------------------------


async def test_every_response_has_a_request_id(served: tuple[Client, Callbacks]) -> None:
    client, _ = served
    auth = {"Authorization": f"Bearer {ADMIN}"}
    seen = set()
    for path, headers in [
        ("/v1/callbacks", auth),  # a success
        ("/v1/callbacks", {}),  # an API error
        ("/v1/openapi.json", {}),
        ("/not-the-api", {}),  # aiohttp's own 404, outside /v1
    ]:
        async with client.get(path, headers=headers) as r:
            rid = r.headers["X-Request-Id"]
            assert re.fullmatch(r"[0-9a-f]{32}", rid), (path, rid)
            seen.add(rid)
    assert len(seen) == 4  # one per request
    for mine in ("crm-7f3a-0001", "b7e0c0d2-6a43-4d0e-9a36-1c1b2f6f5a10", "a:b/c+d=e@f~g"):
        async with client.get("/v1/callbacks", headers={**auth, "X-Request-Id": mine}) as r:
            assert r.status == 200 and r.headers["X-Request-Id"] == mine
    for implausible in ("", "x" * 129, "two words", "caf\u00e9", "<script>"):
        headers = {**auth, "X-Request-Id": implausible}
        async with client.get("/v1/callbacks", headers=headers) as r:
            assert re.fullmatch(r"[0-9a-f]{32}", r.headers["X-Request-Id"]), implausible


async def test_log_lines_of_a_request_carry_its_id(
    served: tuple[Client, Callbacks],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    client, callbacks = served

    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a bug")

    monkeypatch.setattr(callbacks.store, "list_callbacks", broken)
    headers = {"Authorization": f"Bearer {ADMIN}", "X-Request-Id": "req-42"}
    with caplog.at_level(logging.INFO):
        async with client.get("/v1/callbacks", headers=headers) as r:
            assert r.status == 500 and r.headers["X-Request-Id"] == "req-42"
            check_problem(await r.json(), 500, "internal_error")
    [failed] = [rec for rec in caplog.records if "failed" in rec.getMessage()]
    assert failed.request_id == "req-42"  # type: ignore[attr-defined]
    line = SafeFormatter().format(failed).split("\n")[0]
    assert line.endswith(" request_id=req-42"), line
    outside = logging.getLogger("test").makeRecord("test", logging.INFO, __file__, 1, "x", (), None)
    assert outside.request_id is None  # type: ignore[attr-defined]
    assert "request_id" not in SafeFormatter().format(outside)


def test_ivr_serve_logs_and_answers_the_request_id(tmp_path: Path) -> None:
    """The real server: the access log line of a request ends with the id its client got
    (its own, or a new one), and the console and health routes answer one too."""
    with live_server(tmp_path) as server:
        base = f"http://127.0.0.1:{server.port}"
        req = urllib.request.Request(f"{base}/v1/callbacks", headers={"X-Request-Id": "crm-abc"})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(req, timeout=10)
        assert refused.value.code == 401 and refused.value.headers["X-Request-Id"] == "crm-abc"
        assert refused.value.headers.get_content_type() == "application/problem+json"
        with urllib.request.urlopen(f"{base}/healthz", timeout=10) as r:
            probe = r.headers["X-Request-Id"]  # (a probe: not in the access log by default)
        with urllib.request.urlopen(f"{base}/console/", timeout=10) as r:
            made = r.headers["X-Request-Id"]
            assert made not in (None, probe)
        deadline = time.monotonic() + 10
        lines: list[str] = []
        while time.monotonic() < deadline:
            lines = server.log_text().splitlines()
            if any(line.endswith(f"request_id={made}") for line in lines):
                break
            time.sleep(0.1)
        mine = [line for line in lines if line.endswith(" request_id=crm-abc")]
        assert mine and "GET /v1/callbacks" in mine[-1] and " 401 " in mine[-1], mine
        assert [line for line in lines if line.endswith(f"request_id={made}")]
