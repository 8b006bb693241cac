"""Standard Webhooks headers beside the X-IVR-* ones (verified with the `standardwebhooks`
library), per-endpoint secrets and event-type subscriptions: the deliverer against a real
local receiver, the settings syntax, and `ivr serve` signing a booking made over the API."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from live_server import live_server
from standardwebhooks import Webhook, WebhookVerificationError
from webhook_receiver import Hit, Receiver, wait_until

from ivr.api import hash_token
from ivr.api.webhook_docs import CallbackEvent
from ivr.config import ConfigError, Settings, load_settings
from ivr.store import Event, Store
from ivr.webhooks import (
    WEBHOOK_EVENTS,
    WebhookDeliverer,
    WebhookEndpoint,
    body_of,
    standard_sign,
    verify,
)

ROOT = Path(__file__).resolve().parent.parent
WHSEC = "whsec_" + base64.b64encode(b"k" * 32).decode()
PLAIN = "s3cret"


Start = Callable[[list[str | WebhookEndpoint], str | None], WebhookDeliverer]


def as_whsec(secret: str) -> str:
    """What a receiver configures in `standardwebhooks` for a secret that is not whsec_."""
    return "whsec_" + base64.b64encode(secret.encode()).decode()


@pytest.fixture
def receiver() -> Any:
    with Receiver() as r:
        yield r


@pytest.fixture
async def deliverers(store: Store) -> AsyncIterator[Start]:
    """Start deliverers on the test's store with fast timings; all closed at the end."""
    made: list[WebhookDeliverer] = []
    async with aiohttp.ClientSession() as http:

        def start(urls: list[str | WebhookEndpoint], secret: str | None) -> WebhookDeliverer:
            d = WebhookDeliverer(store, http, urls, secret, 2.0, 5, poll_s=0.01)
            made.append(d)
            d.start()
            return d

        yield start
        for d in made:
            await d.close()


async def settled(store: Store, *events: Event, limit_s: float = 10) -> None:
    deadline = time.monotonic() + limit_s
    while not all([(await store.get_event(e.id)).delivered_at for e in events]):
        assert time.monotonic() < deadline, "events not settled"
        await asyncio.sleep(0.02)


def lower(hit: Hit) -> dict[str, str]:
    return {k.lower(): v for k, v in hit.headers.items()}


async def test_deliveries_verify_with_the_standardwebhooks_library(
    store: Store, receiver: Receiver, deliverers: Start
) -> None:
    """A whsec_ secret verifies as configured; any other secret as whsec_ + its base64; the
    X-IVR-Signature of the same request verifies with the secret as written."""
    event = await store.add_event("callback.due", {"callback": {"id": "cb-1", "number": "+1"}})
    deliverers(
        [
            WebhookEndpoint(url=receiver.url("/standard"), secret=WHSEC),
            receiver.url("/default"),  # the deliverer's secret
        ],
        PLAIN,
    )
    await settled(store, event)
    for path, secret, receiver_secret in [
        ("/standard", WHSEC, WHSEC),
        ("/default", PLAIN, as_whsec(PLAIN)),
    ]:
        [hit] = receiver.snapshot(path)
        headers = lower(hit)
        assert headers["webhook-id"] == headers["x-ivr-event-id"] == event.id
        assert re.fullmatch(r"v1,[A-Za-z0-9+/]{43}=", headers["webhook-signature"])
        t = int(headers["webhook-timestamp"])
        assert abs(t - time.time()) < 30
        assert headers["x-ivr-signature"].startswith(f"t={t},v1=")  # one attempt, one time
        doc = Webhook(receiver_secret).verify(hit.body, hit.headers)
        assert doc == hit.doc and doc["id"] == event.id and doc["type"] == "callback.due"
        assert verify(hit.headers["X-IVR-Signature"], hit.body, secret)
        assert hit.body == body_of(event)
        for tampered in (hit.body + b" ", hit.body.replace(b"cb-1", b"cb-2")):
            with pytest.raises(WebhookVerificationError):
                Webhook(receiver_secret).verify(tampered, hit.headers)
        with pytest.raises(WebhookVerificationError):  # another endpoint's secret
            Webhook(as_whsec("other")).verify(hit.body, hit.headers)


def test_standard_signature_is_the_specified_hmac() -> None:
    """Against the library's own signer: same id, time, body and key, same value."""
    body = b'{"id":"e1","type":"call.ended"}'
    for secret, key in [(WHSEC, WHSEC), (PLAIN, as_whsec(PLAIN))]:
        ours = standard_sign("e1", 1_700_000_000, body, secret)
        theirs = Webhook(key).sign("e1", datetime.fromtimestamp(1_700_000_000, UTC), body.decode())
        assert ours == theirs


async def test_per_endpoint_secrets_and_unsigned_endpoints(
    store: Store, receiver: Receiver, deliverers: Start
) -> None:
    event = await store.add_event("call.started", {"call": {"id": "c1"}})
    deliverers(
        [
            WebhookEndpoint(url=receiver.url("/own"), secret="own-secret"),
            WebhookEndpoint(url=receiver.url("/unsigned"), secret=""),
            receiver.url("/default"),
        ],
        None,  # no default secret: /default is unsigned too
    )
    await settled(store, event)
    [own] = receiver.snapshot("/own")
    assert verify(own.headers["X-IVR-Signature"], own.body, "own-secret")
    Webhook(as_whsec("own-secret")).verify(own.body, own.headers)
    for path in ("/unsigned", "/default"):
        [hit] = receiver.snapshot(path)
        headers = lower(hit)
        assert headers["webhook-id"] == event.id and "webhook-timestamp" in headers
        assert "webhook-signature" not in headers and "x-ivr-signature" not in headers


async def test_event_type_subscriptions(
    store: Store, receiver: Receiver, deliverers: Start
) -> None:
    """Each endpoint gets the types it subscribes to; an event nobody subscribes to is
    settled without a request."""
    events = {
        kind: await store.add_event(kind, {"n": i})
        for i, kind in enumerate(["call.started", "call.ended", "callback.due"])
    }
    d = deliverers(
        [
            WebhookEndpoint(url=receiver.url("/callbacks"), events=("callback.*",)),
            WebhookEndpoint(url=receiver.url("/ended"), events=("call.ended", "callback.due")),
        ],
        PLAIN,
    )
    await settled(store, *events.values())
    got = {path: sorted(h.doc["type"] for h in receiver.snapshot(path)) for path in
           ("/callbacks", "/ended")}  # fmt: skip
    assert got == {"/callbacks": ["callback.due"], "/ended": ["call.ended", "callback.due"]}
    assert d.stats()["unsubscribed"] == 1 and d.stats()["delivered"] == 2
    assert (await store.get_event(events["call.started"].id)).attempts == 1  # claimed once


def test_endpoint_subscription_patterns() -> None:
    everything = WebhookEndpoint(url="https://a.example/")
    assert all(everything.wants(t) for t in WEBHOOK_EVENTS)
    calls = WebhookEndpoint(url="https://a.example/", events=("call.*",))
    assert calls.wants("call.ended") and not calls.wants("callback.due")
    for bad in ("callback.schedule", "calls.*", "callback", "", "*.due"):
        with pytest.raises(ValueError, match="unknown webhook event type"):
            WebhookEndpoint(url="https://a.example/", events=(bad,))


# --- settings ---------------------------------------------------------------------------------


def test_settings_syntax_for_endpoints(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "IVR_WEBHOOK_URLS",
        f"https://crm.example/hooks secret={WHSEC} events=callback.*,"
        " https://bi.example/ivr  events=call.ended+callback.completed ,"
        "https://audit.example/all secret=",
    )
    monkeypatch.setenv("IVR_WEBHOOK_SECRET", PLAIN)
    s = Settings.model_validate({})
    assert s.webhook_urls == [
        WebhookEndpoint(url="https://crm.example/hooks", secret=WHSEC, events=("callback.*",)),
        WebhookEndpoint(url="https://bi.example/ivr", events=("call.ended", "callback.completed")),
        WebhookEndpoint(url="https://audit.example/all", secret=""),
    ]
    assert s.webhook_secret == PLAIN


def test_the_single_url_and_secret_settings_keep_working(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IVR_WEBHOOK_URLS", "http://127.0.0.1:9/hook,http://127.0.0.1:9/other")
    monkeypatch.setenv("IVR_WEBHOOK_SECRET", "anything, even with spaces")
    s = Settings.model_validate({})
    assert [(e.url, e.secret, e.events) for e in s.webhook_urls] == [
        ("http://127.0.0.1:9/hook", None, ("*",)),
        ("http://127.0.0.1:9/other", None, ("*",)),
    ]
    assert s.webhook_secret == "anything, even with spaces"


def test_yaml_endpoints_as_mappings(tmp_path: Path) -> None:
    config = tmp_path / "ivr.yaml"
    config.write_text(
        "webhook_urls:\n"
        "  - https://simple.example/hook\n"
        "  - url: https://crm.example/hooks\n"
        f"    secret: {WHSEC}\n"
        "    events: [callback.scheduled, callback.due]\n"
    )
    s = load_settings(config)
    assert s.webhook_urls[0] == WebhookEndpoint(url="https://simple.example/hook")
    assert s.webhook_urls[1].events == ("callback.scheduled", "callback.due")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("ftp://x.example/", "is not http:// or https://"),
        ("https://x.example/ events=callback.schedule", "unknown webhook event type"),
        ("https://x.example/ colour=red", "secret=… and events=a+b, once each"),
        ("https://x.example/ events=call.ended events=call.started", "once each"),
        ("https://x.example/ secret=whsec_!!!", "whsec_ and base64"),
        ("https://x.example/ secret=whsec_", "needs key bytes"),
        ("https://x.example/ events=call.ended, https://x.example/", "listed twice, differently"),
    ],
)
def test_bad_endpoint_settings_are_refused(value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_settings(webhook_urls=value)


def test_a_bad_whsec_default_secret_is_refused() -> None:
    with pytest.raises(ConfigError, match="whsec_ and base64"):
        load_settings(webhook_secret="whsec_not base64")


def test_the_event_types_are_every_one_the_code_writes() -> None:
    """WEBHOOK_EVENTS (subscriptions, the OpenAPI webhooks) lists every type written to the
    outbox: the literal add_event types and the callback service's computed kinds."""
    written: set[str] = set()
    for path in (ROOT / "ivr").rglob("*.py"):
        text = path.read_text()
        written |= set(re.findall(r"add_event\(\s*\"([a-z_.]+)\"", text))
        written |= (
            set(re.findall(r"\"(callback\.[a-z_]+)\"", text)) if "add_event" in text else set()
        )
    assert written and written <= set(WEBHOOK_EVENTS), written - set(WEBHOOK_EVENTS)
    assert {"call.started", "call.ended", "callback.due"} <= written


# --- a real server ----------------------------------------------------------------------------

CRM_TOKEN = "standard-webhooks-crm-token"


def post_json(url: str, body: Any, token: str) -> tuple[int, Any]:
    req = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_ivr_serve_signs_an_api_booking_per_endpoint(tmp_path: Path) -> None:
    """`ivr serve` with two endpoints, each its own secret and event types: a CRM books a
    callback (POST /v1/callbacks); its callback.scheduled reaches the callbacks endpoint,
    verifiable with the standardwebhooks library, and not the calls one."""
    with Receiver() as receiver:
        env = {
            "IVR_API_TOKENS": f"crm:{hash_token(CRM_TOKEN)}:callbacks.write",
            "IVR_WEBHOOK_SECRET": PLAIN,
            "IVR_WEBHOOK_URLS": f"{receiver.url('/crm')} secret={WHSEC} events=callback.*,"
            f" {receiver.url('/bi')} events=call.*",
        }
        with live_server(tmp_path, **env) as server:
            url = f"http://127.0.0.1:{server.port}/v1/callbacks"
            booking = {"number": "+1 555 010 9999", "due_at": "2030-01-02T15:00:00Z"}
            status, cb = post_json(url, booking, CRM_TOKEN)
            assert status == 201 and cb["number"] == "+15550109999", cb
            wait_until(lambda: bool(receiver.snapshot("/crm")), 20, "the booking's webhook")
            [hit] = receiver.snapshot("/crm")
            doc = Webhook(WHSEC).verify(hit.body, hit.headers)
            assert doc["type"] == "callback.scheduled" and doc["data"]["callback"] == cb
            CallbackEvent.model_validate(doc)  # the body the document's webhooks describe
            assert verify(hit.headers["X-IVR-Signature"], hit.body, WHSEC)
            status, problem = post_json(url, booking, CRM_TOKEN)
            assert status == 409 and problem["code"] == "callback_open", problem
            time.sleep(1)  # nothing more comes: the 409 wrote no event
            assert len(receiver.snapshot("/crm")) == 1
            assert all(h.doc["type"].startswith("call.") for h in receiver.snapshot("/bi"))
            assert server.health()["webhooks"]["urls"] == 2
