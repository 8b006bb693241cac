"""End to end: live transfer to an agent, from a real `ivr serve`.

Three callers at once on one server (business hours 24/7: agents are in; IVR_AGENT_URI is a
small SIP UAS in this test on 127.0.0.1, the "agent"):

* a baresip caller presses 0 (agent): the service says "please hold" and sends it a REFER;
  baresip follows it and calls the agent, who answers; baresip's NOTIFY (sipfrag 200) ends
  our leg with a BYE, the call recorded ``transferred``. The agent's INVITE carries the
  call's context as baresip copies it from the Refer-To (see `test_the_agent_gets_the_call`).
* a second baresip caller is refused by the agent (486 Busy Here): the service says so and
  books the callback (keys 1, 1, 1 for the callback questions), as outside business hours.
* a media-stream (Twilio-style WebSocket) caller presses 0: the service emits the
  ``call.transfer_requested`` webhook (a real receiver) and holds; the "provider" then takes
  the call away (stop, close): the call is recorded ``transferred``.

The test drives the callers by the server's live feed (/v1/live): each key goes when the
node that takes it listens.
"""

from __future__ import annotations

import asyncio
import json
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest
from live_server import FEED_TOKEN, LiveServer, free_port, live_server
from test_e2e_sip import need, rtp_range, write_config
from webhook_receiver import Hit, Receiver, until

from ivr.api import token_entry
from ivr.audio.pcm import Audio, write_wav
from ivr.sip.refer import embedded_headers
from ivr.transports.twilio import TwilioClient

TAKEN = "+15551230001"  # the agent answers this caller's transferred call
BUSY = "+15550000007"  # the agent is busy for this one: 486, then the callback
STREAM = "+15550000008"  # a media-stream caller
ANSWER_SDP = (
    "v=0\r\no=agent 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
)


# --- the agent: a SIP UAS on 127.0.0.1 ----------------------------------------------------


@dataclass
class Raw:
    """A request as the agent got it, read leniently: baresip's INVITE to a Refer-To URI
    with embedded headers keeps them in its Request-URI, which `ivr.sip.message` refuses."""

    method: str
    uri: str
    headers: list[tuple[str, str]]

    @classmethod
    def parse(cls, data: bytes) -> Raw | None:
        head = data.split(b"\r\n\r\n", 1)[0].decode(errors="replace").split("\r\n")
        parts = head[0].split(" ")
        if len(parts) != 3 or parts[0].startswith("SIP/"):
            return None
        headers = [(k.strip(), v.strip()) for k, _, v in (h.partition(":") for h in head[1:])]
        return cls(parts[0], parts[1], headers)

    def header(self, name: str) -> str:
        return next((v for k, v in self.headers if k.lower() == name.lower()), "")


class Agent(asyncio.DatagramProtocol):
    """Answers INVITEs: 200 with SDP for TAKEN's transferred call, 486 for anyone else;
    ACKs taken, BYEs answered 200. Every request is kept."""

    def __init__(self) -> None:
        self.requests: list[Raw] = []
        self.udp: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.udp = transport  # type: ignore[assignment]  # a datagram endpoint's

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        message = Raw.parse(data)
        if message is None or self.udp is None:
            return
        self.requests.append(message)
        peer = (str(addr[0]), int(addr[1]))
        if message.method == "INVITE":
            taken = TAKEN in message.header("From")
            status, body = (200, ANSWER_SDP.format(port=free_port())) if taken else (486, "")
            self.udp.sendto(_response(message, status, body, self.port), peer)
        elif message.method in ("BYE", "CANCEL", "OPTIONS"):
            self.udp.sendto(_response(message, 200, "", self.port), peer)

    @property
    def port(self) -> int:
        assert self.udp is not None
        return int(self.udp.get_extra_info("sockname")[1])

    def invites(self) -> list[Raw]:
        return [r for r in self.requests if r.method == "INVITE"]


def _response(req: Raw, status: int, body: str, port: int) -> bytes:
    reason = {200: "OK", 486: "Busy Here"}[status]
    lines = [f"SIP/2.0 {status} {reason}"]
    for name in ("Via", "From", "To", "Call-ID", "CSeq"):
        value = req.header(name)
        if name == "To" and "tag=" not in value:
            value += ";tag=agent1"
        lines.append(f"{name}: {value}")
    if status == 200 and req.method == "INVITE":
        lines += [f"Contact: <sip:agent@127.0.0.1:{port}>", "Content-Type: application/sdp"]
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n" + body).encode()


# --- the callers --------------------------------------------------------------------------


@dataclass
class Baresip:
    """A headless baresip that dials, then takes commands (`/sndcode 1`) while it runs."""

    home: Path
    user: str
    proc: asyncio.subprocess.Process | None = None
    log: list[str] = field(default_factory=list)
    reader: asyncio.Task[None] | None = None

    async def start(self, wav: Path) -> None:
        for attempt in range(3):  # baresip takes the port after sip_listen's too (TLS)
            try:
                await self._start(wav)
                return
            except EOFError:
                if attempt == 2:
                    raise
                self.log.clear()

    async def _start(self, wav: Path) -> None:
        (self.home / "snd").mkdir(parents=True, exist_ok=True)
        write_config(self.home, wav)
        (self.home / "accounts").write_text(
            f"<sip:{self.user}@127.0.0.1>;regint=0;audio_codecs=PCMU;ptime=20\n"
        )
        self.proc = await asyncio.create_subprocess_exec(
            "baresip", "-f", str(self.home),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        self.reader = asyncio.create_task(self._read())
        await self.until("baresip is ready", 20)

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            self.log.append(line.decode(errors="replace"))

    async def until(self, text: str, limit: float) -> None:
        async with asyncio.timeout(limit):
            while not any(text in line for line in self.log):
                if self.proc is not None and self.proc.returncode is not None:
                    raise EOFError(f"baresip exited:\n{self.text}")
                await asyncio.sleep(0.05)

    async def cmd(self, command: str) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(f"{command}\n".encode())
        await self.proc.stdin.drain()

    async def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.returncode is None:
            await self.cmd("/quit")
            try:
                await asyncio.wait_for(self.proc.wait(), 10)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        if self.reader is not None:
            await self.reader

    @property
    def text(self) -> str:
        return "".join(self.log)


async def stream_call(server: LiveServer, receiver: Receiver, keys: asyncio.Queue[str]) -> str:
    """A Twilio-style media stream: silence, a 0 when told, and the provider taking the call
    away (stop, close) once the transfer webhook came. Its call id."""
    client, sid = TwilioClient(), "CA" + uuid.uuid4().hex
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(server.media_url)
        await ws.send_str(client.connected())
        await ws.send_str(client.start(sid, "MZ" + uuid.uuid4().hex, {"from": STREAM}))

        async def silence() -> None:
            while True:
                for text in client.media(b"\0" * 320):
                    await ws.send_str(text)
                await asyncio.sleep(0.02)

        audio = asyncio.create_task(silence())
        try:
            await ws.send_str(client.dtmf(await asyncio.wait_for(keys.get(), 30)))
            delivered = lambda: any(_is_transfer(h, STREAM) for h in receiver.snapshot())  # noqa: E731
            await until(delivered, 20, "the call.transfer_requested webhook")
            await ws.send_str(client.stop())
        finally:
            audio.cancel()
            await ws.close()
    return sid


def _is_transfer(hit: Hit, caller: str) -> bool:
    doc = hit.doc
    return bool(
        doc["type"] == "call.transfer_requested" and doc["data"]["call"]["caller"] == caller
    )


async def drive(server: LiveServer, steps: dict[str, list[tuple[str, Any]]], done: asyncio.Event
                ) -> None:  # fmt: skip
    """Follow /v1/live: when a caller's call listens at the node of its next step, do it."""
    callers: dict[str, str] = {}
    url = f"ws://127.0.0.1:{server.port}/v1/live?token={FEED_TOKEN}"
    async with aiohttp.ClientSession() as http, http.ws_connect(url) as feed:
        while not done.is_set():
            try:
                msg = await asyncio.wait_for(feed.receive(), 0.5)
            except TimeoutError:
                continue
            if msg.type != aiohttp.WSMsgType.TEXT:
                return
            event = json.loads(msg.data)
            if event["event"] == "call_started":
                callers[event["call_id"]] = event["caller"]
            elif event["event"] == "listen":
                todo = steps.get(callers.get(event["call_id"], ""), [])
                if todo and todo[0][0] == event["node"]:
                    await todo.pop(0)[1]()


def silent_wav(tmp: Path, seconds: float) -> Path:
    path = tmp / "silence.wav"
    write_wav(path, Audio(np.zeros(int(seconds * 8000), dtype=np.int16), 8000))
    return path


READER = "transfer-test-reader-token-0123456789"  # calls.read and callbacks.read


def get(server: LiveServer, path: str) -> Any:
    req = urllib.request.Request(
        f"http://127.0.0.1:{server.port}{path}", headers={"Authorization": f"Bearer {READER}"}
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


@pytest.fixture(scope="module")
def transfers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    need("baresip", "baresip-core")
    tmp = tmp_path_factory.mktemp("transfer")
    sip_port = free_port()

    async def run_all(server: LiveServer, receiver: Receiver) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        udp, agent = await loop.create_datagram_endpoint(
            Agent, local_addr=("127.0.0.1", agent_port)
        )
        wav = silent_wav(tmp, 40)
        taken, busy = Baresip(tmp / "taken", TAKEN), Baresip(tmp / "busy", BUSY)
        stream_keys: asyncio.Queue[str] = asyncio.Queue()

        def key(b: Baresip, digit: str) -> Any:
            return lambda: b.cmd(f"/sndcode {digit}")

        async def stream_key() -> None:
            stream_keys.put_nowait("0")

        steps: dict[str, list[tuple[str, Any]]] = {
            TAKEN: [("main_menu", key(taken, "0"))],
            BUSY: [("main_menu", key(busy, "0")), ("confirm_callback_number", key(busy, "1")),
                   ("ask_callback_time", key(busy, "1")), ("confirm_callback", key(busy, "1"))],
            STREAM: [("main_menu", stream_key)],
        }  # fmt: skip
        done = asyncio.Event()
        driver = asyncio.create_task(drive(server, steps, done))
        await asyncio.sleep(0.5)  # the feed is open
        try:
            for b in (taken, busy):
                await b.start(wav)
                await b.cmd(f"/dial sip:hotline@127.0.0.1:{sip_port}")
            stream = asyncio.create_task(stream_call(server, receiver, stream_keys))
            acked = lambda: any(r.method == "ACK" for r in agent.requests)  # noqa: E731
            await until(acked, 60, "the transferred call at the agent")
            await taken.until("terminated", 20)  # our BYE ended its call with the IVR
            await busy.until("terminated", 60)  # our BYE after the callback's goodbye
            sid = await asyncio.wait_for(stream, 60)
        finally:
            done.set()
            await taken.stop()
            await busy.stop()
            await driver
            udp.close()
        return {"agent": agent, "taken": taken.text, "busy": busy.text, "stream_sid": sid}

    agent_port = free_port()
    with Receiver() as receiver:
        env = {
            "IVR_SIP_PORT": str(sip_port),
            "IVR_SIP_HOST": "127.0.0.1",
            "IVR_RTP_PORTS": rtp_range(),
            "IVR_AGENT_URI": f"sip:agent@127.0.0.1:{agent_port}",
            "IVR_TRANSFER_TIMEOUT_SECONDS": "15",
            "IVR_WEBHOOK_URLS": receiver.url(),
            "IVR_API_TOKENS": token_entry("reader", READER, ["calls.read", "callbacks.read"]),
        }
        with live_server(tmp, **env) as server:
            results = asyncio.run(run_all(server, receiver))
            results["server"], results["receiver"] = server, receiver
            results["calls"] = [
                get(server, f"/v1/calls/{urllib.parse.quote(c['id'])}")
                for c in get(server, "/v1/calls?limit=20")["items"]
            ]
            results["callbacks"] = get(server, "/v1/callbacks?limit=20")["items"]
            results["log"] = server.log_text()
            yield results


def call_of(results: dict[str, Any], caller: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = [c for c in results["calls"] if c["caller"] == caller]
    assert found, [(c["caller"], c["end_reason"]) for c in results["calls"]]
    return found[0]


def test_the_agent_gets_the_call(transfers: dict[str, Any]) -> None:
    agent: Agent = transfers["agent"]
    invites = [r for r in agent.invites() if TAKEN in r.header("From")]
    assert invites, transfers["taken"][-3000:]
    invite = invites[0]
    record = call_of(transfers, TAKEN)
    # baresip 1.0 dials the Refer-To URI as given: the embedded headers stay in the
    # Request-URI (and To) of its INVITE, where RFC 3261 §19.1.5 would make them headers.
    # A transferee that does (a PBX) sends X-IVR-* headers: either way the agent has them.
    context = dict(embedded_headers(invite.uri)) or {
        k: v for k, v in invite.headers if k.startswith("X-IVR-")
    }
    assert embedded_headers(invite.uri), invite.headers  # baresip 1.0, measured
    assert context["X-IVR-Call-Id"] == record["id"]  # the id the calls API knows
    assert context["X-IVR-Reason"] == "agent_requested"
    assert context["X-IVR-Intents"] == "agent"
    link = context["X-IVR-Transcript"]
    assert link == f"http://127.0.0.1:{transfers['server'].port}/v1/calls/{record['id']}"
    assert get(transfers["server"], urllib.parse.urlsplit(link).path)["id"] == record["id"]
    assert record["end_reason"] == "transferred", record
    prompts = [t["text"] for t in record["turns"] if t["kind"] == "prompt"]
    assert "Please hold while I put you through to one of our team." in prompts
    assert "REFER to sip:agent@127.0.0.1" in transfers["log"]


def test_a_refused_transfer_books_the_callback(transfers: dict[str, Any]) -> None:
    record = call_of(transfers, BUSY)
    assert record["end_reason"] == "callback_booked", record
    prompts = [t["text"] for t in record["turns"] if t["kind"] == "prompt"]
    assert "Sorry, no one from our team is free to take your call right now." in prompts
    booked = [cb for cb in transfers["callbacks"] if cb["number"] == BUSY]
    assert booked and booked[0]["reason"] == "agent_requested", transfers["callbacks"]
    assert "the transfer failed: 486 Busy Here" in transfers["log"]


def test_a_media_stream_call_emits_transfer_requested(transfers: dict[str, Any]) -> None:
    receiver: Receiver = transfers["receiver"]
    hits = [h for h in receiver.snapshot() if _is_transfer(h, STREAM)]
    assert len(hits) == 1
    data = hits[0].doc["data"]
    record = call_of(transfers, STREAM)
    assert data["call"]["id"] == record["id"] and data["call"]["transport"] != "sip"
    transfer = data["transfer"]
    assert transfer["target"].startswith("sip:agent@127.0.0.1:")
    assert transfer["reason"] == "agent_requested" and transfer["intents"] == ["agent"]
    assert transfer["transcript_url"].endswith(f"/v1/calls/{record['id']}")
    assert transfer["timeout_seconds"] == 15
    assert hits[0].headers["X-IVR-Event-Type"] == "call.transfer_requested"
    assert record["end_reason"] == "transferred", record


def test_no_call_is_left_and_nothing_failed(transfers: dict[str, Any]) -> None:
    assert transfers["server"].health()["active_calls"] == 0
    assert "Traceback" not in transfers["log"], transfers["log"][-5000:]
