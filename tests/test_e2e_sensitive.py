"""End to end against a real `ivr serve`: the hotline's account question is marked
``sensitive: true``, and DTMF type-ahead.

* A caller keys an account number at it: the call's feed, the call record (the calls API),
  the callback booked afterwards (its transcript's turns and variables), every webhook and
  the server's log show the number masked, while the lookup used the real one (the
  account's balance is read out); the call's recording is silent on both sides from the
  question's prompt until the number is keyed (the caller sent audio all along).
* A caller who keys ``1`` and the account number ``90210#`` in one go during the greeting
  gets the balance of that account: the keys that came while the balance lookup ran (no
  question listening) are kept for the account question, not dropped; ``2``, ``12#`` (too
  short: a no-match) and at once ``5678#``: that account's data usage, ``5678#`` one entry.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
import urllib.request
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from live_server import FEED_TOKEN, LiveServer, live_server
from webhook_receiver import Receiver

from ivr.dial import FRAME, Caller, CallerTurn, CallReport
from ivr.transports.messages import FRAME_MS

UNKNOWN = "+15550009999"  # no demo account: the flow asks for the account number
TOKEN = "sensitive-test-token"
NOISE = 40  # the caller's line noise: low, steady (no speech), never digital silence


class NoisyCaller(Caller):
    """A caller whose line is never silent: between utterances it sends low noise, so the
    recording's caller side is zero only where the server blanked it."""

    async def _send_audio(self) -> None:
        loop = asyncio.get_running_loop()
        rng = np.random.default_rng(7)
        start, n = loop.time(), 0
        while True:
            noise = rng.integers(NOISE // 2, NOISE, FRAME // 2, dtype=np.int16)
            noise *= rng.choice(np.array([-1, 1], dtype=np.int16), FRAME // 2)
            frame = noise.tobytes()
            self._sent.append(frame)
            await self._send_frame(frame)
            n += 1
            await asyncio.sleep(max(0.0, start + n * FRAME_MS / 1000 - loop.time()))


async def until(check: Callable[[], bool], limit: float) -> bool:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if check():
            return True
        await asyncio.sleep(0.02)
    return False


class TypeAheadCaller(Caller):
    """Keys `keys` back to back, as a caller who knows the menus types, as soon as the
    greeting is heard (without waiting for any question); hangs up once `entries` entries
    were taken (dtmf events) and the bot listens again, or after `limit` seconds."""

    def __init__(self, url: str, keys: str, entries: int, limit: float = 30) -> None:
        super().__init__(url, [], UNKNOWN, out=None, max_seconds=90, token=FEED_TOKEN)
        self.keys, self.entries, self.limit = keys, entries, limit

    async def _converse(self) -> None:
        await until(lambda: self._answered, self.limit)  # the greeting is playing
        for key in self.keys:
            await self._send_key(key)
        await until(lambda: len(dtmf(self.report)) >= self.entries, self.limit)
        await asyncio.wait_for(self._wait_for_turn(), self.limit)
        self._emit({"event": "caller_hangup"})
        await self._hang_up()


def api(server: LiveServer, path: str) -> Any:
    req = urllib.request.Request(
        f"http://127.0.0.1:{server.port}{path}", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read()) if r.headers.get_content_type() == "application/json" else r


def audio(server: LiveServer, call_id: str, out: Path) -> Path:
    req = urllib.request.Request(
        f"http://127.0.0.1:{server.port}/v1/calls/{call_id}/audio",
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        out.write_bytes(r.read())
    return out


def wait_for(check: Any, timeout: float = 20) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := check():
            return found
        time.sleep(0.1)
    raise AssertionError("timed out")


def dtmf(report: CallReport) -> list[dict[str, Any]]:
    return [e for e in report.events if e.get("event") == "dtmf"]


def prompts(report: CallReport) -> str:
    return " | ".join(e["text"] for e in report.events if e.get("event") == "prompt")


@pytest.fixture(scope="module")
def calls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("sensitive")
    receiver = Receiver().start()
    digest = hashlib.sha256(TOKEN.encode()).hexdigest()
    env = {
        "IVR_WEBHOOK_URLS": receiver.url(),
        "IVR_WEBHOOK_SECRET": "whsec-sensitive",
        "IVR_API_TOKENS": f"ops:{digest}:*",
    }
    try:
        with live_server(tmp, **env) as server:
            # balance; the account number keyed once asked; agent (no agent address: the
            # callback), on this number, as soon as possible, confirmed
            keyed = [CallerTurn(dtmf=k) for k in ("1", "90210#", "0", "1", "1", "1")]
            masked = NoisyCaller(
                server.media_url, keyed, UNKNOWN, out=None, max_seconds=150, token=FEED_TOKEN
            )
            # balance and account 90210; data usage, a too short number, then account 5678
            typed = TypeAheadCaller(server.media_url, "190210#", entries=2)
            reprompted = TypeAheadCaller(server.media_url, "212#5678#", entries=3)

            async def run() -> list[CallReport]:
                return list(await asyncio.gather(masked.run(), typed.run(), reprompted.run()))

            reports = asyncio.run(run())
            call_id = reports[0].call_id
            record = wait_for(lambda: api(server, f"/v1/calls/{call_id}").get("ended_at") and
                              api(server, f"/v1/calls/{call_id}"))  # fmt: skip
            hits = wait_for(lambda: [h for h in receiver.snapshot()
                                     if h.doc["type"] == "callback.scheduled"])  # fmt: skip
            wait_for(lambda: [h for h in receiver.snapshot() if h.doc["type"] == "call.ended"
                              and h.doc["data"]["call"]["id"] == call_id])  # fmt: skip
            callback = api(server, f"/v1/callbacks/{hits[0].doc['data']['callback']['id']}")
            yield {
                "server": server,
                "masked": reports[0],
                "typed": reports[1],
                "reprompted": reports[2],
                "record": record,
                "callback": callback,
                "hits": receiver.snapshot(),
                "recording": audio(server, call_id, tmp / "call.wav"),
            }
    finally:
        receiver.stop()


def test_the_lookup_used_the_real_number(calls: dict[str, Any]) -> None:
    r: CallReport = calls["masked"]
    assert "Your balance is 0 dollars." in prompts(r), r.events  # account 90210's balance
    assert r.hangup == "callback_booked", r.events


def test_the_feed_shows_the_keyed_number_masked(calls: dict[str, Any]) -> None:
    r: CallReport = calls["masked"]
    keyed = [e for e in dtmf(r) if e["node"] == "ask_account_balance"]
    assert keyed == [
        {"event": "dtmf", "node": "ask_account_balance", "digits": "•••••#", "intent": "•••••"}
    ], r.events
    assert "90210" not in json.dumps(r.events)


def test_the_call_record_and_the_callback_keep_it_masked(calls: dict[str, Any]) -> None:
    turns = calls["record"]["turns"]
    account = [t for t in turns if t["node"] == "ask_account_balance" and t["kind"] == "dtmf"]
    assert [(t["text"], t["intent"]) for t in account] == [("•••••#", "•••••")], turns
    transcript = calls["callback"]["transcript"]
    assert transcript["variables"]["account"] == "•••••", transcript["variables"]
    assert "90210" not in json.dumps(calls["record"]) + json.dumps(calls["callback"])


def test_no_webhook_and_no_log_line_holds_the_number(calls: dict[str, Any]) -> None:
    hits = calls["hits"]
    types = {h.doc["type"] for h in hits}
    assert {"call.started", "call.ended", "callback.scheduled"} <= types, types
    assert not [h.doc for h in hits if b"90210" in h.body]
    server: LiveServer = calls["server"]
    log = server.log_text()
    assert "recording paused (sensitive question ask_account_balance)" in log
    assert "90210" not in log


def test_the_recording_is_silent_while_the_number_is_keyed(calls: dict[str, Any]) -> None:
    wav, rate = sf.read(calls["recording"], dtype="int16")
    assert rate == 8000
    caller, bot = wav[:, 0], wav[:, 1]
    record = calls["record"]
    t0 = datetime.fromisoformat(record["started_at"])
    turns = record["turns"]

    def at(turn: dict[str, Any]) -> int:
        return int((datetime.fromisoformat(turn["at"]) - t0).total_seconds() * rate)

    asked = next(t for t in turns if t["node"] == "ask_account_balance" and t["kind"] == "prompt")
    keyed = next(t for t in turns if t["node"] == "ask_account_balance" and t["kind"] == "dtmf")
    start, end = at(asked), at(keyed)
    assert end - start > 2 * rate, (start, end)  # the prompt was heard out, then the keys
    margin = rate // 4  # the turns' times are the store's clock, the audio's the call's
    assert not caller[start + margin : end - margin].any()  # blanked: the caller side
    assert not bot[start + margin : end - margin].any()  # and the bot's (the prompt too)
    # the rest was recorded: the caller's noise before the question and after the keys,
    # the bot's prompts (the greeting; the balance read out after)
    assert np.count_nonzero(caller[: start - margin]) > 0.9 * (start - margin)
    after = caller[end + margin : end + margin + rate]
    assert np.count_nonzero(after) > 0.9 * len(after)
    assert bot[: start - margin].any() and bot[end + margin :].any()


def test_keys_typed_ahead_during_a_lookup_are_kept_for_the_next_question(
    calls: dict[str, Any],
) -> None:
    r: CallReport = calls["typed"]
    assert [(e["node"], e["digits"]) for e in dtmf(r)] == [
        ("main_menu", "1"),
        ("ask_account_balance", "•••••#"),
    ], r.events
    assert "Your balance is 0 dollars." in prompts(r), r.events


def test_an_entry_keyed_right_after_a_no_match_is_one_entry(calls: dict[str, Any]) -> None:
    r: CallReport = calls["reprompted"]
    assert [(e["node"], e["digits"]) for e in dtmf(r)] == [
        ("main_menu", "2"),
        ("ask_account_usage", "••#"),
        ("ask_account_usage", "••••#"),
    ], r.events
    assert "1.9 gigabytes" in prompts(r), r.events  # account 5678's data usage
