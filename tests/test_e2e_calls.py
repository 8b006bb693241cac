"""End to end: a real `ivr serve` over real sockets, callers with real audio (flite voices and
the Asterisk telephone recordings) through the real VAD, ASR, dialog and TTS.

The scenarios are real-time phone calls, so they run concurrently against one server (which
also shows calls do not disturb each other); each test then checks its own call.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest
from audio_fixtures import recording
from live_server import FEED_TOKEN, LiveServer, live_server
from speech import flite

from ivr.audio.pcm import Audio, read_wav, write_wav
from ivr.dial import Caller, CallerTurn, CallReport
from ivr.grammar import normalize
from ivr.transports.audiosocket import (
    AudioSocketSerializer,
    encode_audio,
    encode_hangup,
    encode_uuid,
)
from ivr.transports.messages import CallerAudio
from ivr.transports.twilio import TwilioClient

KNOWN = "+15551230001"  # a demo account: balance 23 dollars 50
UNKNOWN = "+15550009999"


def said(tmp: Path, text: str, voice: str) -> Path:
    path = tmp / f"{voice}-{text.replace(' ', '_')}.wav"
    write_wav(path, flite(text, path, voice=voice))
    return path


def asterisk(name: str) -> Path:
    return recording(name)


def events(report: CallReport, kind: str) -> list[dict[str, Any]]:
    return [e for e in report.events if e.get("event") == kind]


def prompts(report: CallReport) -> str:
    return " | ".join(e["text"] for e in events(report, "prompt"))


def intents(report: CallReport) -> list[str | None]:
    return [e.get("intent") for e in report.events if e.get("event") in ("recognized", "dtmf")]


# --- the calls ----------------------------------------------------------------------------


async def audiosocket_call(server: LiveServer, speech: Path) -> dict[str, Any]:
    """An Asterisk-style AudioSocket call: UUID, real-time slin audio both ways, hangup."""
    call_id = str(uuid.uuid4())
    got: dict[str, Any] = {"events": [], "bot_audio": 0}
    loop = asyncio.get_running_loop()
    last_audio = [loop.time()]
    listening = asyncio.Event()
    pcm = read_wav(speech, 8000).tobytes()
    utterance = [pcm[i : i + 320].ljust(320, b"\0") for i in range(0, len(pcm), 320)]
    async with aiohttp.ClientSession() as http:
        feed = await http.ws_connect(server.events_url(call_id))
        reader, writer = await asyncio.open_connection("127.0.0.1", server.audiosocket_port)
        writer.write(encode_uuid(call_id))
        parser = AudioSocketSerializer()  # reads the server's frames; it expects a UUID first
        parser.parse(encode_uuid(call_id))

        async def read_audio() -> None:
            while data := await reader.read(4096):
                for msg in parser.parse(data):
                    if isinstance(msg, CallerAudio):
                        got["bot_audio"] += len(msg.pcm)
                        last_audio[0] = loop.time()

        async def send_audio() -> None:
            start, n, queue = loop.time(), 0, list[bytes]()
            while True:
                quiet = loop.time() - last_audio[0] > 0.4
                if listening.is_set() and quiet and not queue and utterance:
                    queue, utterance[:] = list(utterance), []
                writer.write(encode_audio(queue.pop(0) if queue else b"\0" * 320))
                n += 1
                await asyncio.sleep(max(0.0, start + n * 0.02 - loop.time()))

        tasks = [asyncio.create_task(read_audio()), asyncio.create_task(send_audio())]
        async for msg in feed:
            event = json.loads(msg.data)
            got["events"].append(event)
            if event["event"] == "listen":
                listening.set()
            elif event["event"] == "recognized":
                writer.write(encode_hangup())
            elif event["event"] == "hangup":
                break
        for task in tasks:
            task.cancel()
        writer.close()
    return got


async def malformed_call(server: LiveServer) -> list[dict[str, Any]]:
    """A provider that sends garbage mid-call: that call ends, nothing else is harmed."""
    client = TwilioClient()
    call_sid = "CA" + uuid.uuid4().hex
    seen: list[dict[str, Any]] = []
    async with aiohttp.ClientSession() as http:
        feed = await http.ws_connect(server.events_url(call_sid))
        ws = await http.ws_connect(server.media_url)
        await ws.send_str(client.connected())
        await ws.send_str(client.start(call_sid, "MZ" + uuid.uuid4().hex, {"from": KNOWN}))
        for _ in range(50):
            for text in client.media(b"\0" * 320):
                await ws.send_str(text)
            await asyncio.sleep(0.02)
        await ws.send_str('{"event": "media", "media": {"payload": "%%% not base64"}}')
        async for msg in feed:
            seen.append(json.loads(msg.data))
            if seen[-1]["event"] == "hangup":
                break
        await ws.close()
    return seen


@pytest.fixture(scope="module")
def calls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("e2e")
    balance = said(tmp, "balance", "rms")
    data = said(tmp, "data usage", "slt")
    bill = said(tmp, "my bill", "awb")
    fault = said(tmp, "report a fault", "rms")
    agent = said(tmp, "agent", "rms")
    hours = said(tmp, "what are your opening hours", "awb")
    # A lone "yes" is one short syllable the built-in engine often misses; callers say more.
    yes = said(tmp, "yes please", "rms")
    other = asterisk("vm-password")  # "password": not a menu phrase or an FAQ
    # demo account 90210 said digit by digit: the Asterisk recordings joined, zeros as "oh"
    account = tmp / "account.wav"
    parts = [read_wav(asterisk(f"digits/{d}")).samples for d in "9 oh 2 1 oh".split()]
    write_wav(account, Audio(np.concatenate(parts), 8000))

    def caller(server: LiveServer, turns: list[CallerTurn], who: str = KNOWN, **kw: Any) -> Caller:
        return Caller(
            server.media_url, turns, who, out=None, max_seconds=150, token=FEED_TOKEN, **kw
        )

    with live_server(tmp) as server:
        scenarios: dict[str, Caller] = {
            "speech": caller(
                server,
                [
                    CallerTurn(wav=balance),
                    CallerTurn(wav=data),
                    CallerTurn(wav=bill),
                    CallerTurn(wav=agent),
                ],
            ),
            "speech_fault_faq": caller(
                server,
                [
                    CallerTurn(wav=fault),
                    CallerTurn(wav=yes),
                    CallerTurn(wav=hours),
                    CallerTurn(dtmf="0"),
                ],
            ),
            "asterisk": caller(
                server,
                [
                    CallerTurn(wav=asterisk("digits/1")),
                    CallerTurn(wav=asterisk("digits/2")),
                    CallerTurn(wav=asterisk("digits/3")),
                    CallerTurn(wav=asterisk("goodbye")),
                ],
            ),
            "asterisk_fault": caller(
                server, [CallerTurn(wav=asterisk("digits/4")), CallerTurn(dtmf="0")]
            ),
            "keypad": caller(
                server,
                [
                    CallerTurn(dtmf="1"),
                    CallerTurn(dtmf="2"),
                    CallerTurn(dtmf="3"),
                    CallerTurn(dtmf="4"),
                    CallerTurn(dtmf="1"),
                    CallerTurn(dtmf="0"),
                ],
            ),
            "no_input": caller(
                server,
                [
                    CallerTurn(dtmf="-"),
                    CallerTurn(dtmf="-"),
                    CallerTurn(dtmf="1"),
                    CallerTurn(dtmf="0"),
                ],
            ),
            "no_match": caller(
                server, [CallerTurn(wav=other), CallerTurn(dtmf="1"), CallerTurn(dtmf="0")]
            ),
            "barge_in": caller(
                server, [CallerTurn(wav=balance), CallerTurn(dtmf="0")], barge_in_after=1.5
            ),
            "unknown_dtmf": caller(
                server,
                [CallerTurn(dtmf="1"), CallerTurn(dtmf="5678#"), CallerTurn(dtmf="0")],
                UNKNOWN,
            ),
            "unknown_speech": caller(
                server,
                [CallerTurn(wav=data), CallerTurn(dtmf="90210#"), CallerTurn(dtmf="0")],
                UNKNOWN,
            ),
            "spoken_account": caller(
                server,
                [CallerTurn(wav=data), CallerTurn(wav=account), CallerTurn(dtmf="0")],
                UNKNOWN,
            ),
        }

        async def dial_cli() -> tuple[int, str]:
            """The `ivr dial` command itself, as a user runs it."""
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "ivr",
                "dial",
                server.media_url,
                "--token",
                FEED_TOKEN,
                "--from",
                KNOWN,
                "--wav",
                str(balance),
                "--dtmf",
                "0",
                "--record",
                str(tmp / "call.wav"),
                stdout=asyncio.subprocess.PIPE,
            )
            out, _ = await asyncio.wait_for(proc.communicate(), 150)
            return proc.returncode or 0, out.decode()

        async def run_all() -> dict[str, Any]:
            names = list(scenarios)
            results = await asyncio.gather(
                *(scenarios[n].run() for n in names),
                audiosocket_call(server, balance),
                malformed_call(server),
                dial_cli(),
            )
            out = dict(zip(names, results[: len(names)], strict=True))
            out["audiosocket"], out["malformed"], out["cli"] = results[len(names) :]
            out["recording"] = tmp / "call.wav"
            return out

        results = asyncio.run(run_all())
        results["records"] = asyncio.run(records(tmp / "data" / "ivr.db", results["speech"]))
        results["server"] = server
        results["health"] = server.health()
        yield results


async def records(db: Path, report: CallReport) -> tuple[Any, list[Any]]:
    """The store's record of the call behind `report` (its id is in the call_started event)."""
    from ivr.store import open_store

    call_id = report.call_id
    store = await open_store(str(db))
    try:
        return await store.get_call(call_id), await store.list_turns(call_id)
    finally:
        await store.close()


# --- what each call shows -----------------------------------------------------------------


def test_main_menu_by_speech_flite(calls: dict[str, Any]) -> None:
    r = calls["speech"]
    assert intents(r) == ["balance", "data_usage", "bill", "agent"], r.events
    assert "23 dollars and 50 cents" in prompts(r)
    assert "3.2 gigabytes" in prompts(r)
    # asking for an agent starts booking a callback; this caller hangs up there
    assert "call you back" in prompts(r) and r.hangup == "caller_hangup"


def test_fault_yes_and_faq_answer(calls: dict[str, Any]) -> None:
    r = calls["speech_fault_faq"]
    assert intents(r)[:3] == ["fault", "yes", "opening_hours"], r.events
    assert "airplane mode" in prompts(r)
    assert "open Monday to Saturday" in prompts(r)


def test_main_menu_by_speech_asterisk_recordings(calls: dict[str, Any]) -> None:
    r = calls["asterisk"]
    assert intents(r) == ["balance", "data_usage", "bill", "goodbye"], r.events
    assert r.hangup == "caller_goodbye"
    assert intents(calls["asterisk_fault"])[:1] == ["fault"]


def test_main_menu_by_keypad(calls: dict[str, Any]) -> None:
    r = calls["keypad"]
    dtmf = events(r, "dtmf")
    assert [(e["digits"], e["intent"]) for e in dtmf][:4] == [
        ("1", "balance"),
        ("2", "data_usage"),
        ("3", "bill"),
        ("4", "fault"),
    ], r.events
    assert dtmf[-1]["intent"] == "agent" and r.hangup == "caller_hangup"


def test_no_input_reprompts(calls: dict[str, Any]) -> None:
    r = calls["no_input"]
    kinds = [e["event"] for e in r.events]
    assert kinds.count("no_input") == 2, r.events
    assert "didn't hear you" in prompts(r) and "still didn't hear" in prompts(r)
    assert intents(r)[0] == "balance"


def test_no_match_reprompts(calls: dict[str, Any]) -> None:
    r = calls["no_match"]
    first = [e for e in r.events if e["event"] in ("recognized", "no_match")]
    assert first and first[0].get("intent") is None, r.events
    assert "didn't get that" in prompts(r)
    assert intents(r)[-2:] == ["balance", "agent"]


def test_barge_in_during_a_long_prompt(calls: dict[str, Any]) -> None:
    r = calls["barge_in"]
    assert events(r, "barge_in"), r.events
    assert intents(r)[0] == "balance"  # the first syllable was not lost


def test_unknown_caller_gives_account_number(calls: dict[str, Any]) -> None:
    r = calls["unknown_dtmf"]
    assert "account number" in prompts(r)
    assert "balance is" in prompts(r), r.events
    r = calls["unknown_speech"]
    assert intents(r)[:2] == ["data_usage", "•••••"], r.events  # sensitive: masked
    assert "you have used 12 gigabytes" in prompts(r), r.events  # account 90210's


def test_spoken_account_number(calls: dict[str, Any]) -> None:
    """The number question hears a real spoken digit string as the digits said."""
    r = calls["spoken_account"]
    assert "account number" in prompts(r)
    # the account question is sensitive: the feed shows the number masked, and the data
    # read out is account 90210's (what the recognizer heard)
    assert intents(r)[:2] == ["data_usage", "•••••"], r.events
    heard = [e for e in events(r, "recognized") if e["node"] == "ask_account_usage"]
    assert heard[0]["text"] == "•••••", heard
    assert "you have used 12 gigabytes" in prompts(r), r.events


def test_audiosocket_call(calls: dict[str, Any]) -> None:
    got = calls["audiosocket"]
    recognized = [e for e in got["events"] if e["event"] == "recognized"]
    assert recognized and recognized[0]["intent"] == "balance", got["events"]
    assert got["bot_audio"] > 8000 * 2 * 3  # heard seconds of prompts
    assert got["events"][0]["transport"] == "audiosocket"


def test_malformed_frame_ends_only_that_call(calls: dict[str, Any]) -> None:
    ended = calls["malformed"][-1]
    assert ended["event"] == "hangup" and "not valid base64" in ended["reason"]
    # every other call ran to its normal end while this one failed
    assert calls["speech"].hangup == "caller_hangup"
    assert calls["health"]["active_calls"] == 0


def test_turn_latency_recorded(calls: dict[str, Any]) -> None:
    lat = [x for r in calls.values() if isinstance(r, CallReport) for x in r.latencies]
    assert lat and float(np.median(lat)) < 3.0  # as the callers measured it
    health = calls["health"]  # and as the server did
    assert health["turn_latency_p50_ms"] is not None
    assert 0 < health["turn_latency_p50_ms"] <= health["turn_latency_p95_ms"] < 3000


def test_busy_when_over_the_call_limit(tmp_path: Path) -> None:
    async def two_calls(server: LiveServer) -> list[CallReport]:
        first = Caller(
            server.media_url,
            [CallerTurn(dtmf="-"), CallerTurn(dtmf="0")],
            KNOWN,
            out=None,
            token=FEED_TOKEN,
        )
        task = asyncio.create_task(first.run())
        # The first call holds the one slot before the second dials (a loaded machine may
        # take more than a second to start it).
        deadline = time.monotonic() + 60
        while (await asyncio.to_thread(server.health))["active_calls"] < 1:
            assert not task.done() and time.monotonic() < deadline, "first call not up"
            await asyncio.sleep(0.05)
        second = await Caller(
            server.media_url, [CallerTurn(dtmf="1")], KNOWN, out=None, token=FEED_TOKEN
        ).run()
        return [await task, second]

    with live_server(tmp_path, IVR_MAX_CALLS="1") as server:
        first, second = asyncio.run(two_calls(server))
        assert second.hangup == "busy", second.events
        assert "lines are busy" in prompts(second)
        assert first.hangup == "caller_hangup"
        assert server.health()["calls_rejected"] == 1


def test_idle_and_maximum_duration_limits(tmp_path: Path) -> None:
    async def silent_provider(server: LiveServer) -> str:
        """Starts a stream and then sends nothing at all."""
        client = TwilioClient()
        sid = "CA" + uuid.uuid4().hex
        async with aiohttp.ClientSession() as http:
            feed = await http.ws_connect(server.events_url(sid))
            ws = await http.ws_connect(server.media_url)
            await ws.send_str(client.start(sid, "MZ" + uuid.uuid4().hex, {"from": KNOWN}))
            reason = ""
            async for msg in feed:
                event = json.loads(msg.data)
                if event["event"] == "hangup":
                    reason = event["reason"]
                    break
            await ws.close()
            return reason

    async def both(server: LiveServer) -> tuple[str, CallReport]:
        idle = await silent_provider(server)
        never_answers = Caller(
            server.media_url, [CallerTurn(dtmf="-")] * 10, KNOWN, out=None, token=FEED_TOKEN
        )
        return idle, await never_answers.run()

    env = {"IVR_IDLE_TIMEOUT_SECONDS": "2", "IVR_MAX_CALL_SECONDS": "8"}
    with live_server(tmp_path, **env) as server:
        idle, long_call = asyncio.run(both(server))
    assert idle == "idle for 2 s"
    assert long_call.hangup == "max_duration", long_call.events
    assert "We have to end the call now" in prompts(long_call)


def test_calls_and_turns_are_recorded(calls: dict[str, Any]) -> None:
    call, turns = calls["records"]
    assert call.caller == KNOWN and call.transport == "websocket" and call.flow == "hotline"
    assert call.end_reason == "caller_hangup" and call.ended_at is not None
    # as the recognizer wrote them ("Data usage."), compared as words
    recognized = [(normalize(t.text or ""), t.intent) for t in turns if t.kind == "recognized"]
    assert recognized == [
        ("balance", "balance"),
        ("data usage", "data_usage"),
        ("my bill", "bill"),
        ("agent", "agent"),
    ]
    assert [t.seq for t in turns] == list(range(1, len(turns) + 1))
    assert any(t.kind == "prompt" and "23 dollars" in (t.text or "") for t in turns)


def test_ivr_dial_command_prints_json_lines_and_records(calls: dict[str, Any]) -> None:
    code, out = calls["cli"]
    lines = [json.loads(line) for line in out.splitlines()]
    kinds = [e["event"] for e in lines]
    assert code == 0 and kinds[0] == "prompt" and kinds[-1] == "hangup", out
    recognized = next(e for e in lines if e["event"] == "recognized")
    assert recognized["intent"] == "balance" and {"text", "confidence"} <= set(recognized)
    dtmf = next(e for e in lines if e["event"] == "dtmf")
    assert dtmf == {"event": "dtmf", "node": "anything_else", "digits": "0", "intent": "agent"}
    audio = read_wav(calls["recording"])
    assert audio.rate == 8000 and audio.duration > 10  # greeting, menu, answer, both sides
    assert np.abs(audio.samples).max() > 3000
