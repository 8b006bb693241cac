"""Text channels end to end against a real `ivr serve` (tests/live_server.py): a REST chat
and an SMS thread over the Twilio webhook each check a demo customer's balance, ask an FAQ
in their own words and book a callback that GET /v1/callbacks lists; the number's SMS and
chat share its one open callback; a webhook without a valid signature is a 403."""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from typing import Any

import pytest
from live_server import LiveServer, live_server

from ivr.api.conversations import twilio_signature
from ivr.auth import token_entry

TOKEN = "chat-e2e-token-0123456789abcdef"
TWILIO_TOKEN = "twilio-auth-token-0123456789abcd"
DEMO = "+15551230001"  # Alex Smith: balance 23 dollars and 50 cents
SCOPES = ["conversations.read", "conversations.write", "callbacks.read"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    tmp = tmp_path_factory.mktemp("chat")
    with live_server(
        tmp,
        IVR_API_TOKENS=token_entry("chat", TOKEN, SCOPES),
        IVR_TWILIO_AUTH_TOKEN=TWILIO_TOKEN,
        IVR_CLOCK_START="2030-01-07T09:00:00+00:00",  # a Monday: "tomorrow" is Tuesday
    ) as live:
        yield live
        assert live.proc.poll() is None, live.log_text()[-3000:]


def _call(server: LiveServer, method: str, path: str, body: Any = None,
          ) -> tuple[int, dict[str, str], Any]:  # fmt: skip
    req = urllib.request.Request(
        f"http://127.0.0.1:{server.port}{path}",
        data=None if body is None else json.dumps(body).encode(),
        method=method,
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, dict(r.headers), json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), json.loads(e.read())


def _say(server: LiveServer, conversation: str, text: str) -> list[dict[str, Any]]:
    status, _, body = _call(server, "POST", f"/v1/conversations/{conversation}/messages",
                            {"text": text})  # fmt: skip
    assert status == 200, body
    return list(body["messages"])


def _sms(server: LiveServer, text: str, number: str = DEMO, signature: str | None = None,
         ) -> tuple[int, str]:  # fmt: skip
    url = f"http://127.0.0.1:{server.port}/v1/sms/twilio"
    form = {"MessageSid": "SM0123", "From": number, "To": "+15550000000", "Body": text,
            "NumMedia": "0"}  # fmt: skip
    if signature is None:
        signature = twilio_signature(TWILIO_TOKEN, url, form)
    req = urllib.request.Request(
        url,
        data=urllib.parse.urlencode(form).encode(),
        method="POST",
        headers={"X-Twilio-Signature": signature},
    )
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            assert r.headers["Content-Type"].startswith("application/xml")
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def _messages(twiml: str) -> str:
    root = ET.fromstring(twiml)
    assert root.tag == "Response"
    return " | ".join(m.text or "" for m in root.iter("Message"))


def _texts(messages: list[dict[str, Any]]) -> str:
    return " | ".join(m["text"] for m in messages)


def test_a_rest_chat_checks_the_balance_asks_an_faq_and_books_a_callback(
    server: LiveServer,
) -> None:
    status, headers, body = _call(server, "POST", "/v1/conversations",
                                  {"channel": "web", "number": "(555) 123-0001"})  # fmt: skip
    assert status == 201, body
    conversation = body["conversation"]
    assert conversation["number"] == DEMO and conversation["status"] == "open"
    assert headers["Location"] == f"/v1/conversations/{conversation['id']}"
    assert body["messages"][0]["text"] == "Welcome to the Example Telecom hotline."
    assert "balance" in body["messages"][-1]["quick_replies"]
    cid = conversation["id"]
    assert "Your balance is 23 dollars and 50 cents." in _texts(
        _say(server, cid, "how much money is left on my phone?")
    )
    _say(server, cid, "yes")
    assert "Roaming in Europe is included" in _texts(
        _say(server, cid, "will I be able to use my mobile in france")
    )
    asked = _say(server, cid, "could I speak to a real person")
    assert "Shall we call you on +15551230001?" in _texts(asked)
    assert asked[-1]["quick_replies"] == ["yes", "no"]
    _say(server, cid, "yes")
    assert "tomorrow at 3 PM" in _texts(_say(server, cid, "tomorrow at 3pm"))
    assert "will call you tomorrow at 3 PM" in _texts(_say(server, cid, "yes that's right"))
    status, _, ended = _call(server, "POST", f"/v1/conversations/{cid}/messages",
                             {"text": "thanks"})  # fmt: skip
    assert status == 409 and ended["code"] == "conversation_ended"
    status, _, history = _call(server, "GET", f"/v1/conversations/{cid}")
    assert status == 200 and history["status"] == "ended"
    assert history["end_reason"] == "callback_booked"
    said = [(m["sender"], m["text"]) for m in history["messages"]]
    assert ("customer", "how much money is left on my phone?") in said
    assert [m["seq"] for m in history["messages"]] == list(range(1, len(said) + 1))
    status, _, page = _call(server, "GET", "/v1/callbacks?number=%2B15551230001")
    assert status == 200 and len(page["items"]) == 1
    callback = page["items"][0]
    assert callback["status"] == "scheduled" and callback["due_at"].startswith("2030-01-08T15")
    _, _, detail = _call(server, "GET", f"/v1/callbacks/{callback['id']}")
    assert detail["transcript"]["conversation_id"] == cid


def test_an_sms_thread_does_the_same_and_shares_the_numbers_callback(
    server: LiveServer,
) -> None:
    status, twiml = _sms(server, "what's my balance please")
    assert status == 200, twiml
    text = _messages(twiml)
    assert text.startswith("Welcome") and "23 dollars and 50 cents" in text
    assert "opening hours" not in text
    _, twiml = _sms(server, "yes")
    _, twiml = _sms(server, "what time do your shops shut?")
    assert "Monday to Saturday" in _messages(twiml)
    _, twiml = _sms(server, "I want someone to phone me, an agent")
    assert "Shall we call you on +15551230001?" in _messages(twiml)
    _sms(server, "yes")
    _, twiml = _sms(server, "as soon as possible")
    assert re.search(r"call back .*Is that right\?", _messages(twiml))
    _, twiml = _sms(server, "yes")
    assert "One of our team will call you" in _messages(twiml)
    # the chat's callback for the same number, updated: still its one open callback
    _, _, page = _call(server, "GET", "/v1/callbacks?number=%2B15551230001")
    assert len(page["items"]) == 1
    _, _, detail = _call(server, "GET", f"/v1/callbacks/{page['items'][0]['id']}")
    assert detail["transcript"]["channel"] == "sms"
    # the thread ended: the number's next SMS starts a new one
    _, twiml = _sms(server, "hello")
    assert _messages(twiml).startswith("Welcome")


def test_a_webhook_without_a_valid_signature_is_refused(server: LiveServer) -> None:
    status, body = _sms(server, "what's my balance", signature="bm90IGEgc2lnbmF0dXJl")
    assert status == 403 and json.loads(body)["code"] == "invalid_signature"
    status, body = _sms(server, "what's my balance", signature="")
    assert status == 403
    # signed for another body: refused too
    url = f"http://127.0.0.1:{server.port}/v1/sms/twilio"
    other = twilio_signature(TWILIO_TOKEN, url, {"From": DEMO, "Body": "something else"})
    assert _sms(server, "what's my balance", signature=other)[0] == 403
    status, body = _sms(server, "hi", number="ANONYMOUS")
    assert status == 422, body
