"""The complaint early warning end to end on a real `ivr serve`: a caller who complains in
their own words (synthesized speech through VAD, ASR and the dialog, `ivr dial`) and a chat
customer who does (REST conversation) each get their callback's priority raised and a
signed `complaint.detected` webhook at a local receiver, and the call and the conversation
are marked in the API; a neutral call and a neutral chat booking the same way get neither."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
from audio_fixtures import concat, recording
from live_server import LiveServer, live_server
from test_e2e_callback import SECRET, TOKEN, api, dial, said, wait_for
from webhook_receiver import Receiver

from ivr.webhooks.signing import verify

CALLER = "+15551230001"  # demo account 1234: no VIP, priority 0
CALM_CALLER = "+15551230002"
CHATTER = "+15559990002"
CALM_CHATTER = "+15559990003"
NOW = "2030-01-07T09:00:00+00:00"  # a Monday: "tomorrow" is Tuesday


def callbacks_of(server: LiveServer, number: str) -> list[dict[str, Any]]:
    return list(api(server, "GET", f"/v1/callbacks?number={quote(number)}")["items"])


def chat(server: LiveServer, number: str, *texts: str) -> str:
    started = api(server, "POST", "/v1/conversations", {"channel": "web", "number": number})
    id = str(started["conversation"]["id"])
    for text in texts:
        api(server, "POST", f"/v1/conversations/{id}/messages", {"text": text})
    return id


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("complaints")
    slot = concat([recording(f"digits/{w}") for w in ("tomorrow", "3", "p-m")], tmp / "slot.wav")
    yes = said(tmp, "yes please")
    angry = said(tmp, "I want to make a complaint. Put me through to an agent.")
    calm = said(tmp, "I would like to speak to an agent please.")
    receiver = Receiver().start()
    digest = hashlib.sha256(TOKEN.encode()).hexdigest()
    env = {
        "IVR_WEBHOOK_URLS": receiver.url(),
        "IVR_WEBHOOK_SECRET": SECRET,
        "IVR_API_TOKENS": f"agent7:{digest}:*",
        "IVR_TIMEZONE": "UTC",
        "IVR_BUSINESS_HOURS": "24/7",
        "IVR_CLOCK_START": NOW,
    }
    booking = ("agent", "yes", "tomorrow at 3pm", "yes")
    try:
        with live_server(tmp, **env) as server:
            out: dict[str, Any] = {"server": server, "receiver": receiver}
            for name, caller, first in (("angry", CALLER, angry), ("calm", CALM_CALLER, calm)):
                out[f"{name}_call"] = dial(server, caller, "--wav", str(first), "--wav", str(yes),
                                           "--wav", str(slot), "--wav", str(yes))  # fmt: skip
            out["angry_chat"] = chat(server, CHATTER,
                                     "your service is a joke and I want to file a complaint",
                                     *booking)  # fmt: skip
            out["calm_chat"] = chat(server, CALM_CHATTER, "the bill looks a bit high this month,"
                                    " can you explain it", "yes", *booking)  # fmt: skip
            yield out
            assert server.proc.poll() is None, server.log_text()[-3000:]
    finally:
        receiver.stop()


def complaints(run: dict[str, Any], expected: int) -> list[dict[str, Any]]:
    receiver: Receiver = run["receiver"]

    def hits() -> list[Any]:
        found = [h for h in receiver.snapshot() if h.doc["type"] == "complaint.detected"]
        return found if len(found) >= expected else []

    found = wait_for(hits)
    for hit in found:
        assert verify(hit.headers["X-IVR-Signature"], hit.body, SECRET)
    return [h.doc["data"]["complaint"] for h in found]


def test_a_complaint_in_a_call_raises_the_callback_and_sends_the_webhook(
    run: dict[str, Any],
) -> None:
    server: LiveServer = run["server"]
    events = run["angry_call"]
    assert events[-1] == {"event": "hangup", "reason": "callback_booked"}, events
    (cb,) = callbacks_of(server, CALLER)
    assert cb["priority"] == 5 and cb["complaint"]["reasons"] == ["words"], cb
    assert "complaint" in cb["complaint"]["text"].lower()
    (call,) = api(server, "GET", f"/v1/calls?caller={quote(CALLER)}")["items"]
    assert call["complaint"]["kind"] == "call" and call["complaint"]["id"] == call["id"]
    (found,) = [c for c in complaints(run, 2) if c["kind"] == "call"]
    assert found["id"] == call["id"] and found["number"] == CALLER
    assert found["channel"] == "voice" and "complaint" in found["cues"]


def test_a_complaint_in_a_chat_raises_the_callback_and_sends_the_webhook(
    run: dict[str, Any],
) -> None:
    server: LiveServer = run["server"]
    (cb,) = callbacks_of(server, CHATTER)
    assert cb["priority"] == 5 and cb["complaint"]["kind"] == "conversation", cb
    detail = api(server, "GET", f"/v1/conversations/{run['angry_chat']}")
    assert detail["complaint"]["reasons"] == ["words"]
    (found,) = [c for c in complaints(run, 2) if c["kind"] == "conversation"]
    assert found["id"] == run["angry_chat"] and found["channel"] == "web"
    assert found["text"] == "your service is a joke and I want to file a complaint"


def test_neutral_contacts_send_none(run: dict[str, Any]) -> None:
    server: LiveServer = run["server"]
    assert run["calm_call"][-1] == {"event": "hangup", "reason": "callback_booked"}
    for number in (CALM_CALLER, CALM_CHATTER):
        (cb,) = callbacks_of(server, number)
        assert cb["priority"] == 0 and cb["complaint"] is None, cb
    (call,) = api(server, "GET", f"/v1/calls?caller={quote(CALM_CALLER)}")["items"]
    assert call["complaint"] is None
    assert api(server, "GET", f"/v1/conversations/{run['calm_chat']}")["complaint"] is None
    found = complaints(run, 2)  # the two complaints' webhooks only
    receiver: Receiver = run["receiver"]
    assert {h.doc["type"] for h in receiver.snapshot()} >= {"callback.scheduled", "call.ended"}
    assert len(found) == 2
    assert {c["number"] for c in found} == {CALLER, CHATTER}
