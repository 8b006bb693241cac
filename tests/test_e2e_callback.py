"""End to end: callers book agent callbacks on a real `ivr serve` with `ivr dial` (real audio
through VAD, ASR, dialog and TTS); the callback is then read and worked through the HTTP API,
and a local webhook receiver gets the signed events.

The slot is said by Allison's telephone recordings "tomorrow" "3" "p-m" joined with sox.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from audio_fixtures import concat, recording
from live_server import FEED_TOKEN, LiveServer, live_server
from speech import flite
from webhook_receiver import Receiver

from ivr.audio.pcm import write_wav
from ivr.grammar import normalize
from ivr.webhooks.signing import verify

VIP = "+15551230003"  # demo account 90210: segment "vip"
TOKEN = "test-agent-token"
SECRET = "whsec-test"
TZ = "Asia/Shanghai"
NOW = "2030-01-07T22:30:00+08:00"  # the service's calendar: "tomorrow" is fixed, not the host's


def said(tmp: Path, text: str, voice: str = "rms") -> Path:
    path = tmp / f"{voice}-{text.replace(' ', '_')}.wav"
    write_wav(path, flite(text, path, voice=voice))
    return path


def dial(server: LiveServer, caller: str, *turns: str) -> list[dict[str, Any]]:
    """`ivr dial` as a user runs it; turns are ("--wav", path) / ("--dtmf", keys) pairs."""
    args = [sys.executable, "-m", "ivr", "dial", server.media_url, "--token", FEED_TOKEN]
    args += ["--from", caller, *turns]
    out = subprocess.run(args, capture_output=True, text=True, timeout=240, check=True)
    return [json.loads(line) for line in out.stdout.splitlines()]


def api(server: LiveServer, method: str, path: str, body: Any = None) -> Any:
    req = urllib.request.Request(
        f"http://127.0.0.1:{server.port}{path}",
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def api_status(server: LiveServer, method: str, path: str, body: Any = None) -> int:
    try:
        api(server, method, path, body)
    except urllib.error.HTTPError as e:
        return e.code
    return 200


def wait_for(check: Any, timeout: float = 20) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := check():
            return found
        time.sleep(0.1)
    raise AssertionError("timed out")


@pytest.fixture(scope="module")
def booked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("callback")
    slot = concat([recording(f"digits/{w}") for w in ("tomorrow", "3", "p-m")], tmp / "slot.wav")
    agent, yes = said(tmp, "agent"), said(tmp, "yes please")
    receiver = Receiver().start()
    digest = hashlib.sha256(TOKEN.encode()).hexdigest()
    env = {
        "IVR_WEBHOOK_URLS": receiver.url(),
        "IVR_WEBHOOK_SECRET": SECRET,
        "IVR_API_TOKENS": f"agent7:{digest}:*",
        "IVR_TIMEZONE": TZ,
        "IVR_BUSINESS_HOURS": "24/7",  # the test must not depend on the hour it runs at
        "IVR_CLOCK_START": NOW,
    }
    try:
        with live_server(tmp, **env) as server:
            started = datetime.fromisoformat(NOW).astimezone(ZoneInfo(TZ))
            speech = dial(server, VIP, "--wav", str(agent), "--wav", str(yes),
                          "--wav", str(slot), "--wav", str(yes))  # fmt: skip
            listed = api(server, "GET", f"/v1/callbacks?number={VIP.replace('+', '%2B')}")
            first = api(server, "GET", f"/v1/callbacks/{listed['items'][0]['id']}")
            # the same caller again, by keypad: agent, yes, "tomorrow afternoon", yes
            keypad = dial(server, VIP, "--dtmf", "0", "--dtmf", "1", "--dtmf", "4", "--dtmf", "1")
            yield {
                "server": server,
                "receiver": receiver,
                "started": started,
                "speech": speech,
                "keypad": keypad,
                "listed": listed,
                "first": first,
            }
    finally:
        receiver.stop()


def test_the_call_books_tomorrow_at_three_pm(booked: dict[str, Any]) -> None:
    events = booked["speech"]
    recognized = [e for e in events if e["event"] in ("recognized", "dtmf")]
    assert [e["intent"] for e in recognized][:2] == ["agent", "yes"], events
    prompts = " | ".join(e["text"] for e in events if e["event"] == "prompt")
    assert "call back tomorrow at 3 PM. Is that right?" in prompts, prompts
    assert "will call you tomorrow at 3 PM" in prompts
    assert events[-1] == {"event": "hangup", "reason": "callback_booked"}


def test_the_callback_is_in_the_api_with_slot_and_transcript(booked: dict[str, Any]) -> None:
    (item,) = booked["listed"]["items"]
    assert booked["listed"]["next"] is None
    tomorrow = (booked["started"] + timedelta(days=1)).date()
    due = datetime.fromisoformat(item["due_at"])
    assert due.utcoffset() == timedelta(hours=8)  # ISO 8601 in the configured zone
    assert (due.date(), due.hour, due.minute) == (tomorrow, 15, 0)
    assert item["number"] == VIP and item["status"] == "scheduled"
    assert item["reason"] == "agent_requested" and item["priority"] == 10  # a VIP caller
    transcript = booked["first"]["transcript"]
    assert transcript["intents"][0] == "agent"
    said = [normalize(t["text"] or "") for t in transcript["turns"] if t["kind"] == "recognized"]
    assert said and said[0] == "agent"
    assert any("tomorrow" in t for t in said), said
    assert transcript["variables"]["callback_at"] == item["due_at"]


def test_webhook_receiver_gets_signed_callback_scheduled(booked: dict[str, Any]) -> None:
    receiver: Receiver = booked["receiver"]
    hits = wait_for(
        lambda: [h for h in receiver.snapshot() if h.doc["type"] == "callback.scheduled"]
    )
    hit = hits[0]
    assert verify(hit.headers["X-IVR-Signature"], hit.body, SECRET)
    assert not verify(hit.headers["X-IVR-Signature"], hit.body, "another secret")
    doc = hit.doc
    assert doc["id"] == hit.headers["X-IVR-Event-Id"]
    assert doc["data"]["callback"]["id"] == booked["listed"]["items"][0]["id"]
    types = {h.doc["type"] for h in receiver.snapshot()}
    assert {"call.started", "call.ended", "callback.scheduled"} <= types


def test_a_repeat_caller_updates_the_open_callback(booked: dict[str, Any]) -> None:
    server: LiveServer = booked["server"]
    assert booked["keypad"][-1]["reason"] == "callback_booked", booked["keypad"]
    listed = api(server, "GET", f"/v1/callbacks?number={VIP.replace('+', '%2B')}")
    (item,) = listed["items"]  # still one open callback for the number
    assert item["id"] == booked["listed"]["items"][0]["id"]
    assert datetime.fromisoformat(item["due_at"]).hour == 14  # tomorrow afternoon
    receiver: Receiver = booked["receiver"]
    wait_for(lambda: [h for h in receiver.snapshot() if h.doc["type"] == "callback.updated"])


def test_an_agent_works_the_callback_through_the_api(booked: dict[str, Any]) -> None:
    server: LiveServer = booked["server"]
    cb_id = booked["listed"]["items"][0]["id"]
    claimed = api(server, "POST", f"/v1/callbacks/{cb_id}/claim", {})
    assert claimed["status"] == "claimed" and claimed["agent"] == "agent7"
    assert api_status(server, "POST", f"/v1/callbacks/{cb_id}/claim", {}) == 409
    done = api(server, "POST", f"/v1/callbacks/{cb_id}/complete", {"outcome": "resolved"})
    assert done["status"] == "completed" and done["outcome"] == "resolved"
    receiver: Receiver = booked["receiver"]
    hit = wait_for(
        lambda: [h for h in receiver.snapshot() if h.doc["type"] == "callback.completed"]
    )[0]
    assert verify(hit.headers["X-IVR-Signature"], hit.body, SECRET)
    calls = api(server, "GET", "/v1/calls?limit=10")
    ended = [c for c in calls["items"] if c["caller"] == VIP]
    assert len(ended) == 2 and all(c["end_reason"] == "callback_booked" for c in ended)
    detail = api(server, "GET", f"/v1/calls/{ended[-1]['id']}")
    assert any(t["kind"] == "recognized" and t["intent"] == "agent" for t in detail["turns"])
