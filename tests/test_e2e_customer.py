"""One customer across channels, end to end against a real `ivr serve`: the same number
makes a phone call (real speech: flite's "balance" over the Twilio media stream) and a REST
chat (written in another spelling of the number) that books a callback; GET
/v1/customers/{number} finds both, newest first, with their transcripts and the callback,
and the analytics' channel parameter tells the call and the chat apart."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from live_server import FEED_TOKEN, LiveServer, live_server
from speech import flite

from ivr.audio.pcm import write_wav
from ivr.auth import token_entry
from ivr.dial import Caller, CallerTurn

TOKEN = "customer-e2e-token-0123456789abcdef"
DEMO = "+15551230001"  # Alex Smith: balance 23 dollars and 50 cents


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    tmp = tmp_path_factory.mktemp("customer")
    with live_server(
        tmp,
        IVR_API_TOKENS=token_entry("ops", TOKEN, ["*"]),
        IVR_CLOCK_START="2030-01-07T09:00:00+00:00",  # a Monday: "tomorrow" is Tuesday
    ) as live:
        yield live
        assert live.proc.poll() is None, live.log_text()[-3000:]


def _api(server: LiveServer, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    req = urllib.request.Request(
        f"http://127.0.0.1:{server.port}{path}",
        data=None if body is None else json.dumps(body).encode(),
        method=method,
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def _say(server: LiveServer, conversation: str, text: str) -> str:
    status, body = _api(server, "POST", f"/v1/conversations/{conversation}/messages",
                        {"text": text})  # fmt: skip
    assert status == 200, body
    return " | ".join(m["text"] for m in body["messages"])


def test_a_call_and_a_chat_are_one_customer(server: LiveServer, tmp_path: Path) -> None:
    balance, yes = tmp_path / "balance.wav", tmp_path / "yes.wav"
    write_wav(balance, flite("balance", balance, voice="rms"))
    # "yes please" answers "Did you say balance?" if the recognizer was unsure, else "Anything
    # else?" (and the call goes on to the main menu): either way the balance is read first
    write_wav(yes, flite("yes please", yes, voice="rms"))
    turns = [CallerTurn(wav=balance), CallerTurn(wav=yes)]
    caller = Caller(server.media_url, turns, DEMO, out=None, max_seconds=120, token=FEED_TOKEN)
    report = asyncio.run(caller.run())
    said = " ".join(e.get("text", "") for e in report.events if e.get("event") == "prompt")
    assert "23 dollars and 50 cents" in said, report.events

    # the same customer writes in, their number spelled nationally
    status, body = _api(server, "POST", "/v1/conversations",
                        {"channel": "web", "number": "(555) 123-0001"})  # fmt: skip
    assert status == 201, body
    chat = body["conversation"]["id"]
    assert body["conversation"]["number"] == DEMO
    assert "23 dollars and 50 cents" in _say(server, chat, "how much money is left on my phone?")
    _say(server, chat, "yes")
    assert "purple" not in _say(server, chat, "purple elephants dancing")  # not understood
    _say(server, chat, "could I speak to a real person")
    _say(server, chat, "yes")
    assert "tomorrow at 3 PM" in _say(server, chat, "tomorrow at 3pm")
    assert "will call you tomorrow at 3 PM" in _say(server, chat, "yes that's right")

    status, customer = _api(server, "GET", "/v1/customers/15551230001")
    assert status == 200, customer
    assert customer["number"] == DEMO
    contacts = customer["contacts"]
    assert [(c["type"], c["channel"]) for c in contacts] == [
        ("conversation", "web"),  # newest first
        ("call", "voice"),
    ]
    conversation, call = contacts
    assert conversation["id"] == chat and conversation["end_reason"] == "callback_booked"
    written = [x for x in conversation["transcript"] if x["sender"] == "customer"]
    assert written[0]["text"] == "how much money is left on my phone?"
    assert written[0]["intent"] == "balance"
    assert [x["kind"] for x in written if x["text"] == "purple elephants dancing"] == ["no_match"]
    assert call["id"] == report.call_id
    spoken = [x for x in call["transcript"] if x["sender"] == "customer"]
    assert spoken[0]["intent"] == "balance" and spoken[0]["kind"] == "recognized"
    assert any("23 dollars" in (x["text"] or "") for x in call["transcript"])
    # the contacts' own records are where the transcript says
    assert _api(server, "GET", call["url"])[1]["caller"] == DEMO
    assert _api(server, "GET", conversation["url"])[1]["id"] == chat
    [callback] = customer["callbacks"]
    assert callback["number"] == DEMO and callback["status"] == "scheduled"

    # analytics: every channel, then the call and the chat apart
    _, every = _api(server, "GET", "/v1/analytics/summary?period=24h")
    assert (every["contacts"], every["calls"], every["conversations"]) == (2, 1, 1)
    _, voice = _api(server, "GET", "/v1/analytics/summary?period=24h&channel=voice")
    assert (voice["contacts"], voice["calls"], voice["conversations"]) == (1, 1, 0)
    assert voice["containment"]["escalated"] == 0
    _, web = _api(server, "GET", "/v1/analytics/summary?period=24h&channel=web")
    assert (web["contacts"], web["calls"], web["conversations"]) == (1, 0, 1)
    assert web["containment"] == {"contained": 0, "abandoned": 0, "escalated": 1, "rate": 0.0}
    assert [r["channel"] for r in every["channels"]] == ["voice", "web", "app", "api", "sms"]

    def topics(channel: str) -> set[str]:
        _, body = _api(server, "GET", f"/v1/analytics/intents?period=24h&channel={channel}")
        return {s["intent"] for s in body["series"]}

    assert topics("voice") == {"balance"}
    assert {"balance", "agent"} <= topics("web")
    assert topics("sms") == set()
    _, nodes = _api(server, "GET", "/v1/analytics/unrecognized?period=24h&channel=web")
    texts = [u["text"] for n in nodes["nodes"] for u in n["utterances"]]
    assert "purple elephants dancing" in texts
