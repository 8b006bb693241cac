"""Input is bounded before it is parsed, and caller IDs are validated (issue 10): unit tests
of the limits, then a real server refusing what used to break it. (Every parser fuzzed:
test_fuzz_transports.)"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from live_server import FEED_TOKEN, ROOT, LiveServer, live_server

from ivr.api import token_entry
from ivr.api.flows import FlowUpload
from ivr.auth import BEARER_PREFIX, PROTOCOL
from ivr.callerid import WITHHELD, caller_number
from ivr.config import ConfigError, load_settings
from ivr.dial import Caller, CallerTurn
from ivr.dialog.flow import (
    MAX_YAML_CHARS,
    MAX_YAML_DEPTH,
    MAX_YAML_VALUES,
    FlowError,
    YamlLimitError,
    flow_from_bytes,
    load_flow,
    load_yaml,
)
from ivr.grammar import GrammarError, load_grammar
from ivr.transports.audiosocket import HEADER, KIND_AUDIO, AudioSocketSerializer, encode_uuid
from ivr.transports.browser import BrowserClient, BrowserSerializer
from ivr.transports.limits import (
    MAX_JSON_DEPTH,
    MAX_MESSAGE_BYTES,
    WEBSOCKET_MAX_MSG_SIZE,
    check_json_text,
    load_json,
)
from ivr.transports.messages import CallStart, ProtocolError
from ivr.transports.twilio import TwilioClient, TwilioSerializer

GRAMMARS = Path(__file__).resolve().parent.parent / "grammars"
SCRIPT = "<script>alert(1)</script>"


def started_twilio() -> TwilioSerializer:
    s = TwilioSerializer()
    s.parse(TwilioClient().start("CA1", "MZ1", {"from": "+15550001111"}))
    return s


def twilio_start(params: dict[str, str]) -> CallStart:
    [start] = TwilioSerializer().parse(TwilioClient().start("CA1", "MZ1", params))
    assert isinstance(start, CallStart)
    return start


# --- wire messages -------------------------------------------------------------------------


@pytest.mark.parametrize("opener", ["[", '{"a":'])
def test_deep_nesting_is_a_protocol_error_not_a_recursion_error(opener: str) -> None:
    text = opener * 1100  # ~1 KB: RecursionError in json.loads before
    for parse in (started_twilio().parse, BrowserSerializer("b").parse):
        with pytest.raises(ProtocolError, match="nests deeper"):
            parse(text)


def test_limits() -> None:
    check_json_text("[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH)
    check_json_text('{"s": "' + "[" * 1000 + '"}')  # brackets inside a string do not nest
    check_json_text('{"s": "\\"' + "[" * 1000 + '"}')  # nor after an escaped quote
    with pytest.raises(ProtocolError, match="nests deeper"):
        check_json_text("[" * (MAX_JSON_DEPTH + 1))
    with pytest.raises(ProtocolError, match="bytes is over"):
        check_json_text(" " * (MAX_MESSAGE_BYTES + 1))
    media = TwilioClient()
    media.stream_sid = "MZ1"
    check_json_text(media.media(b"\0" * 320)[0])  # a real message passes
    # aiohttp's own limit lets a message somewhat over the serializers' reach them (a reason)
    assert MAX_MESSAGE_BYTES < WEBSOCKET_MAX_MSG_SIZE <= 4 * MAX_MESSAGE_BYTES


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ('{"event": "media", "n": ' + "1" * 5000 + "}", "not valid JSON: Exceeds the limit"),
        ('{"event": "start", "x": "\\ud800"}', "lone surrogate"),
        ('{"event": "start", "x": "\\udc00\\ud800"}', "lone surrogate"),  # the wrong order
        ('{"event": "start", "x": "\ud800"}', "lone surrogate"),  # raw, from a Python caller
        (b'{"event": "x\xff"}', "not valid JSON"),
    ],
)
def test_what_json_loads_lets_through_or_raises_otherwise(text: str | bytes, error: str) -> None:
    """A 4301-digit number was a ValueError and a lone surrogate reached the store, which
    cannot encode it; both are protocol errors now, on every parser of JSON text."""
    with pytest.raises(ProtocolError, match=error):
        load_json(text)
    as_text = text if isinstance(text, str) else text.decode("utf-8", "replace")
    client = TwilioClient()
    client.start("CA1", "MZ1")
    parsers = [started_twilio().parse, client.parse_server, BrowserClient().parse_server]
    for parse in [*parsers, BrowserSerializer("b").parse]:
        with pytest.raises(ProtocolError):
            parse(as_text)


def test_an_escaped_emoji_is_no_lone_surrogate() -> None:
    assert load_json('{"x": "\\ud83d\\ude00", "y": "\\\\ud800"}') == {"x": "😀", "y": "\\ud800"}


def test_a_non_ascii_media_payload_is_a_protocol_error() -> None:
    """b64decode raises a plain ValueError (not binascii.Error) for non-ASCII text."""
    msg = json.loads(TwilioClient().start("CA1", "MZ1"))
    msg.update(event="media", media={"payload": "é"})
    with pytest.raises(ProtocolError, match="not valid base64"):
        started_twilio().parse(json.dumps(msg))


def test_audiosocket_frames_are_bounded_by_their_length_field() -> None:
    """The 2-byte length caps a frame at 64 KiB; a parser with a lower cap refuses a frame
    from its header, before any of its payload has to be buffered."""
    parser = AudioSocketSerializer()
    parser.parse(encode_uuid(uuid.uuid4()))
    assert parser.parse(HEADER.pack(KIND_AUDIO, 0xFFFF)) == []  # waits for the payload
    assert len(parser._buf) == HEADER.size
    strict = AudioSocketSerializer(max_payload=640)
    strict.parse(encode_uuid(uuid.uuid4()))
    with pytest.raises(ProtocolError, match="frame length 641 exceeds maximum 640"):
        strict.parse(HEADER.pack(KIND_AUDIO, 641))


# --- caller IDs ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "number"),
    [
        ("+15551230001", "+15551230001"),
        ("+1 (555) 123-0001", "+15551230001"),
        ("555.123.0001", "5551230001"),
        (" +4930555 ", "+4930555"),
        (SCRIPT, None),
        ("+1555123000123456", None),  # 16 digits: longer than E.164 allows
        ("12", None),
        ("+", None),
        ("++15551230001", None),
        ("15551230001+", None),
        ("anonymous", None),
        ("client:alice", None),  # a Twilio Client call: a name, no number to call
        ("sip:+15551230001@example.com", None),
        ("+1555\n1230001", None),
        ("١٢٣٤٥٦٧", None),  # Arabic-Indic digits: isdigit() says yes, a dialer would not
        ("+1 555 123 0001" + " " * 60, None),  # over 64 characters
        ("", None),
        (None, None),
    ],
)
def test_caller_ids(raw: str | None, number: str | None) -> None:
    assert caller_number(raw) == number


@pytest.mark.parametrize("withheld", sorted(WITHHELD))
def test_twilio_placeholders_for_a_withheld_number_are_anonymous(withheld: str) -> None:
    """Twilio's From for a withheld number is digits (ANONYMOUS on a keypad): not a callback
    number, and not anybody's account."""
    start = twilio_start({"from": withheld})
    assert start.caller is None and "from" not in start.params


def test_a_caller_id_that_is_no_number_is_anonymous_everywhere() -> None:
    """Not read back, not booked: not the caller, and not a flow variable either."""
    start = twilio_start({"from": SCRIPT, "x": "1"})
    assert start.caller is None and start.params == {"x": "1"}
    [browser] = BrowserSerializer("b").parse(
        json.dumps({"type": "start", "caller": SCRIPT, "rate": 8000})
    )
    assert isinstance(browser, CallStart)
    assert browser.caller is None and browser.params == {}
    start = twilio_start({"from": "+1 555 123 0001"})
    assert start.caller == "+15551230001"


def test_each_caller_parameter_is_checked_on_its_own() -> None:
    """The first that is a number is the caller; any that is not goes nowhere, even when
    another one is a number (the params become the flow's variables)."""
    start = twilio_start({"from": SCRIPT, "caller": "+15551230001", "x": "1"})
    assert start.caller == "+15551230001"
    assert start.params == {"caller": "+15551230001", "x": "1"}
    start = twilio_start({"from": "+15551230001", "From": SCRIPT, "caller": "anonymous"})
    assert start.caller == "+15551230001" and start.params == {"from": "+15551230001"}


# --- YAML ------------------------------------------------------------------------------------


def alias_bomb(levels: int) -> str:
    """Each level a list of ten aliases of the one before: 10**levels values expanded."""
    lines = ["x0: &x0 [a, a, a, a, a, a, a, a, a, a]"]
    lines += [f"x{i}: &x{i} [{', '.join([f'*x{i - 1}'] * 10)}]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


def merge_chain(n: int) -> str:
    """Mappings each merging the one before: shallow as text, n deep once expanded (PyYAML
    flattens merges recursively)."""
    return "m0: &m0 {k: 1}\n" + "".join(f"m{i}: &m{i} {{<<: *m{i - 1}}}\n" for i in range(1, n))


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("[" * 1000 + "]" * 1000, f"line 1: nested more than {MAX_YAML_DEPTH} levels deep"),
        ("{a: " * 1000 + "1" + "}" * 1000, f"nested more than {MAX_YAML_DEPTH} levels"),
        ("".join("  " * i + "a:\n" for i in range(100)), f"line {MAX_YAML_DEPTH}: nested"),
        ("x:\n" + "- " * 500 + "1\n", "nested more than"),
        (alias_bomb(9), f"more than {MAX_YAML_VALUES} values once aliases are expanded"),
        (merge_chain(1200), "nested more than 64 levels deep once aliases are expanded"),
        ("z: &z [*z]\n", "line 1: an alias refers to a node that contains it"),
        ("#" * (MAX_YAML_CHARS + 1), f"over the {MAX_YAML_CHARS} a file may have"),
    ],
)
def test_yaml_over_a_bound_is_refused(text: str, error: str) -> None:
    with pytest.raises(YamlLimitError, match=error.replace("[", r"\[")):
        load_yaml(text)
    with pytest.raises(FlowError, match=error.replace("[", r"\[")) as exc:
        flow_from_bytes(text.encode(), "flows/x.yaml", GRAMMARS)
    assert exc.value.errors[0].startswith("flows/x.yaml: ")


def test_yaml_composing_stops_at_the_value_bound() -> None:
    """The worst text for its length: a flat list, two characters a value. Refused once it
    has that many values, not after composing them all (PyYAML: ~50 000 a second)."""
    started = time.monotonic()
    with pytest.raises(YamlLimitError, match=f"line 1: more than {MAX_YAML_VALUES} values$"):
        load_yaml("[" + "x," * (MAX_YAML_VALUES + 10_000) + "]")
    assert time.monotonic() - started < 30


def test_yaml_within_the_bounds_loads_as_safe_load_does() -> None:
    hotline = (GRAMMARS / "hotline.yaml").read_text()
    assert load_yaml(hotline) == yaml.safe_load(hotline)
    deep = "[" * (MAX_YAML_DEPTH - 1) + "]" * (MAX_YAML_DEPTH - 1)
    assert load_yaml(deep) == yaml.safe_load(deep)
    assert load_yaml(alias_bomb(4)) == yaml.safe_load(alias_bomb(4))  # 10 000 values
    assert load_yaml(merge_chain(40))["m39"] == {"k": 1}
    assert load_yaml("") is None
    with pytest.raises(yaml.YAMLError, match="expected a single document"):
        load_yaml("a: 1\n---\nb: 2\n")
    with pytest.raises(yaml.YAMLError, match="could not determine a constructor"):
        load_yaml("!!python/object/apply:os.system [echo hi]")  # still safe_load


def test_flow_uploads_are_bounded_like_the_validator() -> None:
    FlowUpload(text="x" * MAX_YAML_CHARS)
    with pytest.raises(ValueError, match="at most"):
        FlowUpload(text="x" * (MAX_YAML_CHARS + 1))


DEEP = "[" * 1000 + "]" * 1000  # a RecursionError in yaml.safe_load
OVER_A_BOUND = [
    (DEEP, f"line 1: nested more than {MAX_YAML_DEPTH} levels deep"),
    (alias_bomb(9), f"more than {MAX_YAML_VALUES} values once aliases are expanded"),
    ("#" * (MAX_YAML_CHARS + 1), f"over the {MAX_YAML_CHARS} a file may have"),
]


@pytest.mark.parametrize(("text", "error"), OVER_A_BOUND, ids=["deep", "aliases", "long"])
def test_every_yaml_file_the_service_reads_is_bounded(
    tmp_path: Path, text: str, error: str
) -> None:
    """Grammars, flow files and the configuration file: each reader refuses a document over
    a bound with its own error naming the file and the bound."""
    bad = tmp_path / "bad.yaml"
    bad.write_text(text)
    with pytest.raises(GrammarError) as grammar:
        load_grammar(bad, tmp_path)
    assert str(grammar.value).startswith(f"{bad}: ") and error in str(grammar.value)
    with pytest.raises(FlowError) as flow:
        load_flow(bad, tmp_path)
    errors = flow.value.errors
    assert len(errors) == 1 and errors[0].startswith(f"{bad}: ") and error in errors[0]
    with pytest.raises(ConfigError) as config:
        load_settings(bad)
    assert str(config.value).startswith(f"{bad}: ") and error in str(config.value)


def test_a_config_file_over_a_bound_stops_ivr_serve_with_one_line(tmp_path: Path) -> None:
    """As any other bad configuration: exit status 2 and one line, not a traceback."""
    config = tmp_path / "ivr.yaml"
    config.write_text(DEEP)
    env = {**os.environ, "IVR_DATA_DIR": str(tmp_path / "data")}
    out = subprocess.run(
        [sys.executable, "-m", "ivr", "--config", str(config), "serve", "--port", "0"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert out.returncode == 2, out.stderr
    assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr, out.stderr
    assert str(config) in out.stderr and f"nested more than {MAX_YAML_DEPTH}" in out.stderr


# --- a real server -----------------------------------------------------------------------------

ADMIN = "input-bounds-admin-token"
KNOWN = "+15551230001"  # a demo account
CLOSE_WITHIN = 5.0  # seconds from the bad message to the socket's close


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    tmp = tmp_path_factory.mktemp("bounds")
    flows = tmp / "grammars"
    shutil.copytree(GRAMMARS, flows)  # an upload that got through must not touch the repo's
    env = {
        "IVR_API_TOKENS": token_entry("admin", ADMIN, ["*"]),
        "IVR_FLOW": str(flows / "hotline.yaml"),
        "IVR_GRAMMAR_DIR": str(flows),
    }
    with live_server(tmp, **env) as live:
        yield live


def api(server: LiveServer, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    req = urllib.request.Request(
        f"http://127.0.0.1:{server.port}{path}",
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {ADMIN}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def ended_record(server: LiveServer, call_sid: str | None = None, call_id: str | None = None
                 ) -> dict[str, Any]:  # fmt: skip
    """The call's record once it is closed (its writes lag the socket's close a little), by
    the provider's id (a media stream's callSid) or the server's (a softphone call's)."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if call_id is not None:
            status, record = api(server, "GET", f"/v1/calls/{urllib.parse.quote(call_id)}")
            found = record if status == 200 else None
        else:
            query = urllib.parse.urlencode({"provider_call_id": call_sid})
            status, page = api(server, "GET", f"/v1/calls?{query}")
            found = page["items"][0] if status == 200 and page["items"] else None
        assert status in (200, 404), record if call_id else page
        if found is not None and found["end_reason"] is not None:
            return dict(found)
        time.sleep(0.1)
    raise AssertionError(f"no closed record of {call_sid or call_id}")


async def media_call(server: LiveServer, bad: str, caller: str = KNOWN) -> tuple[str, float, int]:
    """A media stream that starts, streams a second of audio (the greeting has begun), then
    sends `bad`: (its callSid, seconds until the server closed the socket, the close code)."""
    client, call_sid = TwilioClient(), "CA" + uuid.uuid4().hex
    async with aiohttp.ClientSession() as http, http.ws_connect(server.media_url) as ws:
        await ws.send_str(client.connected())
        await ws.send_str(client.start(call_sid, "MZ" + uuid.uuid4().hex, {"from": caller}))
        for _ in range(50):
            for text in client.media(b"\0" * 320):
                await ws.send_str(text)
            await asyncio.sleep(0.02)
        sent = time.monotonic()
        await ws.send_str(bad)
        async with asyncio.timeout(30):
            async for _ in ws:  # bot audio, until the server closes
                pass
        return call_sid, time.monotonic() - sent, ws.close_code or 0


async def a_normal_call(server: LiveServer) -> dict[str, Any]:
    """The next call after the bad ones: it is greeted, and hangs up a second into it."""
    caller = Caller(server.media_url, [], KNOWN, out=None, max_seconds=60, token=FEED_TOKEN,
                    barge_in_after=1.0)  # fmt: skip
    report = await caller.run()
    assert report.bot_frames >= 50, report.events  # a second of the greeting
    assert report.hangup == "caller_hangup"
    return report.events[0]


def assert_healthy(server: LiveServer) -> None:
    asyncio.run(a_normal_call(server))
    deadline = time.monotonic() + 10
    while server.health()["active_calls"] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert server.health()["active_calls"] == 0


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        ("[" * 1024, f"protocol error: message nests deeper than {MAX_JSON_DEPTH} levels"),
        ('{"a":' * 205, f"protocol error: message nests deeper than {MAX_JSON_DEPTH} levels"),
        (
            '{"event": "media", "pad": "' + "x" * 100_000 + '"}',  # between the two limits
            f"protocol error: message of 100029 bytes is over {MAX_MESSAGE_BYTES}",
        ),
        ('{"event": "media", "n": ' + "9" * 5000 + "}", "protocol error: message is not valid"),
    ],
    ids=["1KB-brackets", "205-objects", "100KB", "5000-digits"],
)
def test_a_bad_media_stream_message_ends_that_call_promptly(
    server: LiveServer, bad: str, reason: str
) -> None:
    call_sid, took, code = asyncio.run(media_call(server, bad))
    assert took < CLOSE_WITHIN and code == aiohttp.WSCloseCode.OK
    record = ended_record(server, call_sid)
    assert record["end_reason"].startswith(reason), record
    assert f"ended: {reason}" in server.log_text()
    assert_healthy(server)


TOO_BIG = f"protocol error: WebSocket message over {WEBSOCKET_MAX_MSG_SIZE} bytes"


def test_a_message_over_the_websocket_limit_is_refused_unread(server: LiveServer) -> None:
    """Over aiohttp's limit the frame is refused from its header (1009) and the call ends as
    the protocol error it is (it ended as caller_hangup)."""
    bad = '{"event": "media", "pad": "' + "x" * 200 * 1024 + '"}'  # 200 KiB
    call_sid, took, code = asyncio.run(media_call(server, bad))
    assert took < CLOSE_WITHIN and code == aiohttp.WSCloseCode.MESSAGE_TOO_BIG
    assert ended_record(server, call_sid)["end_reason"] == TOO_BIG
    assert f"ended: {TOO_BIG}" in server.log_text()
    assert_healthy(server)  # its slot is free: the next call gets through


def test_a_softphone_message_over_the_websocket_limit_ends_as_a_protocol_error(
    server: LiveServer,
) -> None:
    call_id, took, _ = asyncio.run(softphone_call(server, "x" * 200 * 1024))
    assert took < CLOSE_WITHIN
    assert ended_record(server, call_id=call_id)["end_reason"] == TOO_BIG
    assert_healthy(server)


async def softphone_call(server: LiveServer, bad: str | bytes) -> tuple[str, float, Any]:
    """A softphone call that starts, then sends `bad`: (the call's id, seconds until the
    server closed the socket, the last text the server sent)."""
    client = BrowserClient(16000)
    url = f"ws://127.0.0.1:{server.port}/v1/softphone"
    protocols = (PROTOCOL, BEARER_PREFIX + FEED_TOKEN)
    last: Any = None
    async with aiohttp.ClientSession() as http, http.ws_connect(url, protocols=protocols) as ws:
        await ws.send_str(client.start(KNOWN))
        started = await ws.receive(timeout=10)
        client.parse_server(started.data)
        assert client.call_id is not None
        for frame in client.audio(b"\0" * 32000):
            await ws.send_bytes(frame)
        sent = time.monotonic()
        await (ws.send_bytes(bad) if isinstance(bad, bytes) else ws.send_str(bad))
        async with asyncio.timeout(30):
            async for msg in ws:
                if msg.type == aiohttp.WSMsgType.TEXT:
                    last = json.loads(msg.data)
        return client.call_id, time.monotonic() - sent, last


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        ('{"a":' * 205, f"protocol error: message nests deeper than {MAX_JSON_DEPTH} levels"),
        ("[" * 100_000, f"protocol error: message of 100000 bytes is over {MAX_MESSAGE_BYTES}"),
        (b"\1" * 33_000, "protocol error: audio message of 33000 bytes is over 32000"),
    ],
    ids=["205-objects", "100KB", "audio-over-1s"],
)
def test_a_bad_softphone_message_ends_that_call_promptly(
    server: LiveServer, bad: str | bytes, reason: str
) -> None:
    call_id, took, last = asyncio.run(softphone_call(server, bad))
    assert took < CLOSE_WITHIN
    assert last is not None and last["type"] == "end" and last["reason"].startswith(reason)
    record = ended_record(server, call_id=call_id)
    assert record["end_reason"].startswith(reason), record
    assert_healthy(server)


def test_deeply_nested_or_aliased_flow_yaml_is_a_422(server: LiveServer) -> None:
    _, before = api(server, "GET", "/v1/flows/hotline")
    hotline = (GRAMMARS / "hotline.yaml").read_text()
    for text, problem in [
        ("[" * 1000 + "]" * 1000, "line 1: nested more than 64 levels deep"),
        (hotline + "extra: " + "[" * 1000 + "]" * 1000 + "\n", "nested more than 64 levels"),
        (alias_bomb(9) + hotline, "values once aliases are expanded"),
        (merge_chain(300) + hotline, "levels deep once aliases are expanded"),
    ]:
        status, body = api(server, "PUT", "/v1/flows/hotline", {"text": text})
        assert status == 422, body
        assert [f["field"] for f in body["error"]["fields"]] == ["text"]
        assert problem in body["error"]["fields"][0]["message"], body
    status, body = api(server, "PUT", "/v1/flows/hotline", {"text": "#" * (MAX_YAML_CHARS + 1)})
    assert status == 422, body
    _, after = api(server, "GET", "/v1/flows/hotline")
    assert after["version"] == before["version"]  # nothing was changed
    # The validator (200 with its problems) says so too, and both bounds are the same text.
    status, report = api(server, "POST", "/v1/grammar/validate", {"text": "[" * 1000})
    assert status == 200 and not report["ok"], report


def test_a_caller_id_that_is_no_number_is_never_read_back_or_booked(server: LiveServer) -> None:
    """From `<script>…`: anonymous in the call's events and record; asked for the agent (0),
    the flow asks for a number to call instead of offering that one."""
    caller = Caller(
        server.media_url,
        [CallerTurn(dtmf="0")],  # the agent: a callback, to a number the caller must key in
        SCRIPT,
        out=None,
        max_seconds=120,
        token=FEED_TOKEN,
        barge_in_after=0.5,
    )
    report = asyncio.run(caller.run())
    said = " | ".join(e["text"] for e in report.events if e.get("event") == "prompt")
    assert "Please key in the number we should call" in said, said
    assert "the number you're calling from" not in said and "script" not in said
    record = ended_record(server, caller.call_sid)
    assert record["caller"] is None, record
    status, booked = api(server, "GET", "/v1/callbacks?limit=200")
    assert status == 200 and all("script" not in cb["number"] for cb in booked["items"])
    assert "alert(1)" not in json.dumps(api(server, "GET", f"/v1/calls/{record['id']}")[1])


class ForgingClient(TwilioClient):
    """Twilio's side, with customParameters of the far end's choosing besides `from`."""

    def __init__(self, forged: dict[str, str]) -> None:
        super().__init__()
        self.forged = forged

    def start(self, call_sid: str, stream_sid: str, params: dict[str, str] | None = None) -> str:
        return super().start(call_sid, stream_sid, {**(params or {}), **self.forged})


def dial(server: LiveServer, keys: str, caller: str | None = KNOWN,
         forged: dict[str, str] | None = None) -> tuple[Caller, str]:  # fmt: skip
    """A call that keys `keys`, one turn each: (the caller, what the bot said)."""
    call = Caller(server.media_url, [CallerTurn(dtmf=k) for k in keys.split()], caller, out=None,
                  max_seconds=120, token=FEED_TOKEN, barge_in_after=0.5)  # fmt: skip
    if forged is not None:
        call._client = ForgingClient(forged)
    report = asyncio.run(call.run())
    return call, " | ".join(e["text"] for e in report.events if e.get("event") == "prompt")


def test_forged_call_parameters_book_no_callback_and_set_nothing(server: LiveServer) -> None:
    """customParameters naming what the flow sets (the number booked, the caller's own
    number read back, the reason) are not taken: the caller is offered their own number,
    and that is the callback booked."""
    forged = {
        "callback_number": SCRIPT,
        "caller": SCRIPT,
        "caller_spoken": SCRIPT,
        "handoff_reason": SCRIPT,
    }
    call, said = dial(server, "0 1 1 1", forged=forged)  # agent; this number; asap; yes
    assert "the number you're calling from, 1 5 5 5 1 2 3 0 0 0 1?" in said, said
    assert "One of our team will call you" in said and "script" not in said
    record = ended_record(server, call.call_sid)
    assert record["caller"] == KNOWN and record["end_reason"] == "callback_booked", record
    status, page = api(server, "GET", "/v1/callbacks?limit=200")
    assert status == 200 and "alert(1)" not in json.dumps(page)
    [mine] = [cb for cb in page["items"] if cb["number"] == KNOWN]  # one open per number
    status, detail = api(server, "GET", f"/v1/callbacks/{mine['id']}")
    assert detail["transcript"]["call_id"] == record["id"], detail
    assert detail["reason"] == "agent_requested" and "alert(1)" not in json.dumps(detail)
    log = server.log_text()
    assert "call parameters not taken (the flow sets them): callback_number, caller_spoken," in log


def test_a_number_that_is_no_telephone_number_is_not_booked(server: LiveServer) -> None:
    """A flow whose callback number comes from a digits question ("12"): the booking refuses
    it, and the caller hears the flow's failure path; the call ends cleanly."""
    _, before = api(server, "GET", "/v1/flows/hotline")
    hotline = (GRAMMARS / "hotline.yaml").read_text()
    phone = "  ask_callback_number:\n    kind: question\n    type: phone\n"
    assert phone in hotline
    digits = hotline.replace(phone, phone.replace("phone", "digits"))
    status, body = api(server, "PUT", "/v1/flows/hotline", {"text": digits})
    assert status == 200, body
    try:
        call, said = dial(server, "0 12# 1 1", caller=None)  # agent; "12"; asap; yes
    finally:
        status, body = api(server, "PUT", "/v1/flows/hotline", {"text": hotline})
        assert status == 200 and body["version"] == before["version"], body
    assert "Sorry, I couldn't arrange a call back." in said, said
    record = ended_record(server, call.call_sid)
    assert record["end_reason"] == "callback_not_booked", record
    _, page = api(server, "GET", "/v1/callbacks?limit=200")
    assert all(cb["number"] != "12" for cb in page["items"])
    log = server.log_text()
    assert "cannot book a callback to '12': not a telephone number" in log
    assert_healthy(server)
