"""End to end: the agent path before and after business hours, with the service's calendar
started at a chosen instant (IVR_CLOCK_START), so the result is the same whenever the suite
runs. The default hours apply (mon-fri 08:00-20:00, sat 09:00-17:00) in Europe/Berlin.

Sunday 03:00: agents are out; the caller hears when the team works, and "as soon as
possible" is the next opening, Monday 08:00. Monday 10:00: agents are in; "tomorrow
morning" is Tuesday.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from live_server import FEED_TOKEN, LiveServer, live_server
from speech import flite

from ivr.audio.pcm import write_wav

CALLER = "+15551230001"
ZONE = "Europe/Berlin"
SUNDAY_NIGHT = "2030-01-06T03:00:00+01:00"
MONDAY_MORNING = "2030-01-07T10:00:00+01:00"


def dial(server: LiveServer, *turns: str) -> list[dict[str, Any]]:
    args = [sys.executable, "-m", "ivr", "dial", server.media_url, "--token", FEED_TOKEN]
    args += ["--from", CALLER, *turns]
    out = subprocess.run(args, capture_output=True, text=True, timeout=240, check=True)
    return [json.loads(line) for line in out.stdout.splitlines()]


def prompts(events: list[dict[str, Any]]) -> str:
    return " | ".join(e["text"] for e in events if e["event"] == "prompt")


def due_at(tmp: Path) -> str:
    with sqlite3.connect(tmp / "data" / "ivr.db") as db:
        ((due,),) = db.execute("SELECT due_at FROM callbacks").fetchall()
    return str(due)


@pytest.fixture(scope="module")
def calls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("hours")
    agent = root / "agent.wav"
    write_wav(agent, flite("agent", agent, voice="rms"))

    def call(name: str, start: str, time_key: str) -> dict[str, Any]:
        tmp = root / name
        tmp.mkdir()
        env = {"IVR_CLOCK_START": start, "IVR_TIMEZONE": ZONE,
               "IVR_BUSINESS_HOURS": "mon-fri 08:00-20:00, sat 09:00-17:00"}  # fmt: skip
        with live_server(tmp, **env) as server:
            # agent (spoken), yes: the caller's own number, the time by key, yes: book it
            events = dial(server, "--wav", str(agent), "--dtmf", "1", "--dtmf", time_key,
                          "--dtmf", "1")  # fmt: skip
        return {"events": events, "due_at": due_at(tmp)}

    with ThreadPoolExecutor(2) as pool:
        sunday = pool.submit(call, "sunday", SUNDAY_NIGHT, "1")  # as soon as possible
        monday = pool.submit(call, "monday", MONDAY_MORNING, "3")  # tomorrow morning
        yield {"sunday": sunday.result(), "monday": monday.result()}


def test_sunday_night_the_caller_hears_the_hours_and_gets_the_next_opening(
    calls: dict[str, Any],
) -> None:
    events = calls["sunday"]["events"]
    said = prompts(events)
    assert "Our team is available" in said and "I can book a call back for you" in said, said
    assert "I'll arrange for one of our team" not in said
    assert events[-1] == {"event": "hangup", "reason": "callback_booked"}, events
    assert calls["sunday"]["due_at"].startswith("2030-01-07T07:00:00"), calls  # 08:00 Berlin


def test_monday_morning_an_agent_is_in_and_tomorrow_is_tuesday(calls: dict[str, Any]) -> None:
    events = calls["monday"]["events"]
    said = prompts(events)
    assert "I'll arrange for one of our team to call you back" in said, said
    assert "Our team is available" not in said
    assert "tomorrow" in said.split("So that's a call back")[-1], said
    assert events[-1] == {"event": "hangup", "reason": "callback_booked"}, events
    assert calls["monday"]["due_at"].startswith("2030-01-08"), calls  # Tuesday
