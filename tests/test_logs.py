"""Log lines callers cannot forge or blow up: the formatters (ivr/logs.py: text lines, and
JSON with a call's and a request's fields), every log call in ivr/ passing a constant format
string, and a real `ivr serve` fed a call id with a newline and a 1 MB event name, in each
format; with the start-up line naming the ports bound, call started/ended lines, and the
access log leaving out console files, /metrics and health probes unless asked to log them."""

from __future__ import annotations

import ast
import asyncio
import io
import json
import logging
import re
import socket
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest
from live_server import FEED_TOKEN, LiveServer, ephemeral_server, free_port, listening, live_server

from ivr.config import load_settings
from ivr.dial import Caller, CallerTurn
from ivr.logs import (
    CALL,
    CALL_FIELDS,
    FORMAT,
    INDENT,
    MAX_ARG,
    MAX_FIELDS,
    MAX_LINE,
    MAX_RECORD,
    REQUEST_ID,
    CallFields,
    JsonFormatter,
    SafeFormatter,
    cap,
    escape,
    redact,
)
from ivr.server.http import QuietAccessLogger, routine, server_options
from ivr.transports.twilio import TwilioClient

ROOT = Path(__file__).resolve().parent.parent
FORGED = "2030-01-01 00:00:00,000 CRITICAL ivr.forged: FORGED"
RECORD_START = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ \S+: ")


@pytest.fixture(params=["text"])
def logged(request: pytest.FixtureRequest) -> Iterator[tuple[logging.Logger, io.StringIO]]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter() if request.param == "json" else SafeFormatter())
    logger = logging.getLogger(f"test-logs-{uuid.uuid4().hex}")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield logger, out
    logger.removeHandler(handler)


# --- the formatter --------------------------------------------------------------------------


def test_a_newline_in_an_argument_cannot_start_a_line(
    logged: tuple[logging.Logger, io.StringIO],
) -> None:
    log, out = logged
    log.warning("call %s ended: %r", f"CA1\n{FORGED}", f"x\r\n{FORGED}")
    (line,) = out.getvalue().splitlines()
    assert RECORD_START.match(line) and "WARNING" in line
    assert f"CA1\\n{FORGED}" in line and f"x\\r\\n{FORGED}" in line  # still readable


def test_control_characters_are_escaped(logged: tuple[logging.Logger, io.StringIO]) -> None:
    log, out = logged
    log.info("event %s", "a\x1b[2Jb\x00c\x85d\u2028e\u202ef\tg\x7f")
    text = out.getvalue()
    assert text.count("\n") == 1  # the record's own end
    assert "a\\x1b[2Jb\\x00c\\x85d\\u2028e\\u202ef\\tg\\x7f" in text
    assert escape("plain text, C:\\path") == "plain text, C:\\path"


def test_a_huge_argument_gives_a_bounded_line(logged: tuple[logging.Logger, io.StringIO]) -> None:
    log, out = logged
    log.warning("call %s: unknown event %r (%d bytes)", "CA1", "e" * 1_000_000, 1_000_000)
    (line,) = out.getvalue().splitlines()
    assert len(line) < 2 * MAX_ARG + 100  # each argument cut to MAX_ARG
    assert "more chars]" in line and line.endswith("(1000000 bytes)")
    # Many arguments, or a long message without any, are cut at the line's limit.
    log.info(" ".join(["%s"] * 50), *["x" * MAX_ARG] * 50)
    log.info("y" * 1_000_000)
    long = out.getvalue().splitlines()[1:]
    assert all(MAX_LINE - 5 < len(line) <= MAX_LINE for line in long), [len(x) for x in long]
    # Escaping cannot push a line past it either.
    log.info("%s %s %s %s %s %s", *["\u2028" * MAX_ARG] * 6)
    assert len(out.getvalue().splitlines()[-1]) <= MAX_LINE
    assert cap("abcdef", 6) == "abcdef" and len(cap("a" * 5000, 100)) == 100


def test_numbers_keep_their_formats_and_mappings_work(
    logged: tuple[logging.Logger, io.StringIO],
) -> None:
    log, out = logged
    log.info("%d calls, %.1f MB, %g s, %d workers", 3, 2.25, 0.5, np.int64(4))
    log.info("%(who)s said %(what)r", {"who": "caller\n", "what": "z" * 10_000})
    first, second = out.getvalue().splitlines()
    assert first.endswith("3 calls, 2.2 MB, 0.5 s, 4 workers")
    assert "caller\\n said 'zzz" in second and len(second) < MAX_ARG + 200


def test_tokens_are_redacted(logged: tuple[logging.Logger, io.StringIO]) -> None:
    log, out = logged
    # aiohttp's access log: the request line as one preformatted message
    log.info('127.0.0.1 "GET /v1/calls/CA1/events?token=s3cret&x=1 HTTP/1.1" 101 0 "-"')
    log.info("offered %s", "ivr.v1, bearer.s3cret")
    assert "s3cret" not in out.getvalue()
    assert "?token=[redacted]&x=1" in out.getvalue() and "bearer.[redacted]" in out.getvalue()
    assert redact("Authorization: Bearer s3cret") == "Authorization: Bearer [redacted]"


def test_a_traceback_stays_under_its_record(logged: tuple[logging.Logger, io.StringIO]) -> None:
    log, out = logged
    try:
        raise ValueError(f"bad id\n{FORGED}\x1b[2J")
    except ValueError:
        log.exception("call %s failed", "CA1")
    first, *trace = out.getvalue().splitlines()
    assert RECORD_START.match(first) and first.endswith("call CA1 failed")
    assert trace and all(line.startswith(INDENT) for line in trace)
    assert trace[-1] == f"{INDENT}{FORGED}\\x1b[2J"  # indented: no record of its own


def test_the_record_is_left_as_it_was(logged: tuple[logging.Logger, io.StringIO]) -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "%s", ("a\n" * 1000,), None)
    SafeFormatter(FORMAT).format(record)
    assert record.args == ("a\n" * 1000,)  # another handler formats it its own way


# --- the JSON formatter ---------------------------------------------------------------------

json_logged = pytest.mark.parametrize("logged", ["json"], indirect=True)


def records(out: io.StringIO) -> list[dict[str, Any]]:
    lines = out.getvalue().splitlines()
    return [json.loads(line) for line in lines]


@json_logged
def test_json_a_record_is_one_line_whatever_its_text(
    logged: tuple[logging.Logger, io.StringIO],
) -> None:
    log, out = logged
    odd = "a\x1b[2Jb\u2028c\u202ed\x85"
    log.warning("call %s ended: %s %r", f"CA1\n{FORGED}", odd, odd)
    log.info("y" * 1_000_000)
    log.warning("call %s: unknown event %r (%d bytes)", "CA1", "e" * 1_000_000, 1_000_000)
    log.info("offered %s", "ivr.v1, bearer.s3cret", extra={"url": "/x?token=s3cret&a=1"})
    try:
        raise ValueError(f"bad id\n{FORGED}\x1b[2J" + "z" * 100_000)
    except ValueError:
        log.exception("call %s failed", "CA1")
    text = out.getvalue()
    lines = text.splitlines()
    assert len(lines) == 5 and text.isascii()  # JSON escapes every control and non-ASCII char
    first, long, huge, secret, failed = (json.loads(line) for line in lines)
    assert first["message"] == f"call CA1\n{FORGED} ended: {odd} {odd!r}"  # as it was
    assert first["level"] == "WARNING" and first["logger"] == log.name
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", first["time"])
    assert MAX_LINE - 5 < len(json.dumps(long["message"])) - 2 <= MAX_LINE  # written
    assert long["message"].endswith(f"…[{1_000_000 - long['message'].index('…')} more chars]")
    assert len(huge["message"]) < MAX_ARG + 100 and huge["message"].endswith("(1000000 bytes)")
    assert "s3cret" not in text and secret["url"] == "/x?token=[redacted]&a=1"
    assert failed["message"] == "call CA1 failed" and failed["exc_info"].endswith("z")
    assert max(map(len, lines)) <= MAX_RECORD
    # Written, escapes and all, each part keeps to its limit.
    log.info("%s", "\x00" * 100_000)
    log.error("x", extra={"many": {str(i): "\U0001f600" * 1000 for i in range(1000)}})
    try:
        raise ValueError("\U0001f600" * 100_000)
    except ValueError:
        log.exception("x", extra={f"f{i}": "\x01" * 1000 for i in range(1000)})
    nul, many, failed = (json.loads(line) for line in out.getvalue().splitlines()[5:])
    assert len(json.dumps(nul["message"])) <= MAX_LINE + 2 and nul["message"].endswith("chars]")
    assert len(many["many"]) == MAX_FIELDS
    assert failed["fields_left_out"] > 0 and failed["exc_info"].endswith("\U0001f600")
    assert max(map(len, out.getvalue().splitlines())) <= MAX_RECORD


@json_logged
def test_json_a_calls_records_carry_its_fields(
    logged: tuple[logging.Logger, io.StringIO],
) -> None:
    log, out = logged
    node = ["greeting"]
    call = CallFields("c-1", caller="+15551230001", node=lambda: node[0])

    async def served() -> None:
        token = CALL.set(call)
        try:
            log.info("call %s started", "c-1", extra={"event": "call_started"})
            node[0] = "main_menu"

            async def task() -> None:  # the call's own tasks inherit its fields
                log.warning("call %s: recognition failed", "c-1")

            await asyncio.create_task(task())
        finally:
            CALL.reset(token)
        log.info("not about a call", extra={"event": "listening"})
        log.error("call %s: could not record", "c-2", extra={"call_id": "c-2"})
        REQUEST_ID.set("req-1")
        log.info('127.0.0.1 "GET /v1/calls HTTP/1.1" 200')

    asyncio.run(served())
    started, failed, other, about, access = records(out)
    assert {k: started[k] for k in CALL_FIELDS} == {
        "call_id": "c-1", "caller": "+15551230001", "node": "greeting", "event": "call_started"
    }  # fmt: skip
    assert failed["node"] == "main_menu" and failed["event"] is None and failed["call_id"] == "c-1"
    assert "call_id" not in other and other["event"] == "listening"
    assert about["call_id"] == "c-2" and about["caller"] is None and "node" in about
    assert access["request_id"] == "req-1" and "call_id" not in access


@json_logged
def test_json_numbers_stay_numbers(logged: tuple[logging.Logger, io.StringIO]) -> None:
    log, out = logged
    log.info("x", extra={"n": np.int64(4), "f": 2.5, "nan": float("nan"), "big": 10**40})
    (record,) = records(out)
    assert record["n"] == 4 and record["f"] == 2.5 and record["nan"] == "nan"
    assert record["big"] == "<133-bit int>"


# --- every log call in ivr/ passes a constant format string ---------------------------------

LOG_METHODS = {"debug", "info", "warning", "warn", "error", "exception", "critical", "log"}
LOGGER_NAME = re.compile(r"^(_?log|logger|_logger|LOG|logging)$")


def log_calls(tree: ast.AST) -> Iterator[ast.Call]:
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in LOG_METHODS
            and isinstance(node.func.value, ast.Name)
            and LOGGER_NAME.match(node.func.value.id)
        ):
            yield node


def constant_message(call: ast.Call) -> bool:
    assert isinstance(call.func, ast.Attribute)
    at = 1 if call.func.attr == "log" else 0  # log.log(level, msg, ...)
    message = call.args[at] if len(call.args) > at else None
    return isinstance(message, ast.Constant) and isinstance(message.value, str)


def test_no_log_call_builds_its_message() -> None:
    """Caller-controlled values go in as arguments (which the formatter cuts and escapes),
    never formatted into the message first (an f-string, % or .format: a 1 MB value would
    be copied whole, and a check like this could not see it)."""
    offenders, seen = [], 0
    for path in sorted((ROOT / "ivr").rglob("*.py")):
        for call in log_calls(ast.parse(path.read_text(encoding="utf-8"))):
            seen += 1
            if not constant_message(call):
                offenders.append(f"{path.relative_to(ROOT)}:{call.lineno}")
    assert seen > 30  # the check finds the service's log calls
    assert offenders == []


def test_the_check_catches_built_messages() -> None:
    source = """
log.info(f"call {call_id} ended")
log.warning("call %s" % call_id)
logger.error("call {}".format(call_id))
log.log(logging.INFO, "call " + call_id)
log.exception(message)
log.info("call %s ended", call_id)
log.log(logging.INFO, "call %s ended", call_id)
"""
    assert [constant_message(c) for c in log_calls(ast.parse(source))] == [False] * 5 + [True] * 2


def named_events(tree: ast.AST) -> Iterator[str]:
    """The events an `extra` names: ``{"event": "x"}`` and ``event("x", …)``."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values, strict=True):
                if isinstance(key, ast.Constant) and key.value == "event":
                    assert isinstance(value, ast.Constant), ast.unparse(node)
                    yield str(value.value)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            if node.func.id == "event" and node.args:
                assert isinstance(node.args[0], ast.Constant), ast.unparse(node)
                yield str(node.args[0].value)


def test_every_event_a_log_line_names_is_documented() -> None:
    """The `event` field's values (IVR_LOG_FORMAT=json) are what log queries select on: the
    README lists each one the code writes."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Operations: logs") :]
    section = section[: section.index("\n## ", 1)]
    named: set[str] = set()
    for path in sorted((ROOT / "ivr").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call):  # a log call's extra=…
                for keyword in node.keywords:
                    if keyword.arg == "extra":
                        named.update(named_events(keyword.value))
    assert {"call_started", "call_ended", "listening"} <= named
    assert sorted(e for e in named if f"`{e}`" not in section) == []


# --- the access log -------------------------------------------------------------------------


def test_access_log_settings() -> None:
    assert routine("/metrics") and routine("/readyz") and routine("/console/static/js/app.js")
    assert not routine("/console/") and not routine("/v1/calls") and not routine("/metricsx")
    quiet, every, off = (
        server_options(load_settings(access_log=v)) for v in ("quiet", "all", "off")
    )
    assert quiet["access_log_class"] is QuietAccessLogger and quiet["access_log"] is not None
    assert every["access_log_class"] is not QuietAccessLogger and off["access_log"] is None


# --- a real server ----------------------------------------------------------------------

STATIC = "/console/static/console.css"
QUIET = ["/metrics", "/livez", "/readyz", "/healthz", STATIC]
"""Left out of the access log by default (IVR_ACCESS_LOG=quiet), when they succeed."""


async def forged_call(server: LiveServer) -> None:
    """A call whose id, caller and an event name carry a forged log line, the event name
    60 KB long (it ends the call: a protocol error); then a feed request whose query has a
    token."""
    client = TwilioClient()
    call_sid = f"CA{uuid.uuid4().hex}\n{FORGED}"
    # An unknown event's name: as long as a message may be (longer is refused unparsed).
    huge = "e" * 60_000 + f"\n{FORGED}"
    base = f"http://127.0.0.1:{server.port}"
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(server.media_url)
        await ws.send_str(client.connected())
        params = {"from": f"+15551230001\n{FORGED}"}
        await ws.send_str(client.start(call_sid, f"MZ{uuid.uuid4().hex}", params))
        await asyncio.sleep(1.0)
        try:
            await ws.send_str(json.dumps({"event": huge}))
        except aiohttp.ClientConnectionResetError:  # the server ended the call first: why?
            raise AssertionError(server.log_text()[-3000:]) from None
        async for _ in ws:  # until the server ends the call
            pass
        # The access log has the request line: the query's token is not written.
        async with http.get(f"{base}/v1/calls/x%0A/events?token=query-s3cret") as r:
            assert r.status == 401


async def routine_requests(server: LiveServer) -> str:
    """The requests the quiet access log leaves out, one it keeps although routine (a
    missing console file), and an API request under an id of ours, which it returns."""
    base = f"http://127.0.0.1:{server.port}"
    mine = f"logs-test-{uuid.uuid4().hex}"
    async with aiohttp.ClientSession() as http:
        for path in QUIET:
            async with http.get(base + path) as r:
                assert r.status == 200, (path, r.status)
        async with http.get(f"{base}/console/static/missing.css") as r:
            assert r.status == 404
        auth = {"Authorization": f"Bearer {FEED_TOKEN}", "X-Request-Id": mine}
        async with http.get(f"{base}/v1/calls?limit=1", headers=auth) as r:
            assert r.status == 200 and r.headers["X-Request-Id"] == mine
    return mine


def check_bounded(lines: list[str], longest: int) -> None:
    """No forged line, no huge line, no token (both formats)."""
    log = "\n".join(lines)
    assert "unknown event" in log and "more chars]" in log, log[-3000:]
    assert not [line for line in lines if line.startswith(FORGED)]
    assert not [line[:200] for line in lines if len(line) > longest]
    assert "query-s3cret" not in log and "token=[redacted]" in log
    print(f"server log: {len(lines)} lines, longest {max(map(len, lines))}", file=sys.stderr)


ENDED = re.compile(r"call (\S+) ended: (.+) \(caller (.+), (\d+\.\d) s\)")


def test_ivr_serve_text_logs(tmp_path: Path) -> None:
    """Text lines: nothing forged or huge; the start-up line; call started and ended lines;
    with IVR_ACCESS_LOG=all, console files, /metrics and the probes are logged too."""
    with live_server(tmp_path, IVR_ACCESS_LOG="all") as server:

        async def calls() -> None:
            await asyncio.gather(forged_call(server), routine_requests(server))

        asyncio.run(asyncio.wait_for(calls(), 60))
    lines = server.log_lines()
    check_bounded(lines, MAX_LINE)
    for line in lines:  # each line is a record, or indented under one (a traceback)
        assert RECORD_START.match(line) or line.startswith(INDENT) or not line.strip(), line
    where = listening(server.log_text())
    assert where == (
        f"http://127.0.0.1:{server.port} audiosocket tcp 127.0.0.1:{server.audiosocket_port}"
    )
    started = [line for line in lines if " started: caller " in line]
    assert len(started) == 1 and "on websocket, flow hotline version" in started[0], started
    ended = [m for line in lines if (m := ENDED.search(line))]
    assert len(ended) == 1, lines[-20:]
    call_id, reason, caller, seconds = ended[0].groups()
    assert started[0].split(" started:")[0].endswith(f"call {call_id}")
    assert caller == "unknown"  # its caller id was no number
    assert reason.startswith("protocol error: unknown event 'eeee") and len(reason) < 300
    assert 0.5 <= float(seconds) < 60, ended[0].group()
    access = [line for line in lines if " aiohttp.access: " in line]
    for path in QUIET:
        assert any(f'"GET {path} HTTP/1.1" 200' in line for line in access), (path, access)


def test_ivr_serve_json_logs(tmp_path: Path) -> None:
    """IVR_LOG_FORMAT=json: every line a JSON record, nothing forged or huge; a real call's
    records carry its id, caller, node and event, its start and end with caller, duration and
    reason; the start-up line names the ports bound for port 0 (and SIP's); the default
    access log has the API request under its id and leaves out console files, /metrics and
    the probes, but not a failed one."""
    sip = free_port()
    env = {"IVR_LOG_FORMAT": "json", "IVR_SIP_PORT": str(sip)}
    with ephemeral_server(tmp_path, **env) as server:
        caller = Caller(
            server.media_url,
            [CallerTurn(dtmf="1")],  # the balance, then the caller hangs up
            "+15551230001",
            out=None,
            max_seconds=60,
            token=FEED_TOKEN,
        )

        async def calls() -> str:
            _, _, mine = await asyncio.gather(
                caller.run(), forged_call(server), routine_requests(server)
            )
            return mine

        mine = asyncio.run(asyncio.wait_for(calls(), 90))
        # The ports named are the ones in use: the AudioSocket one takes a connection (a
        # call that never starts).
        with socket.create_connection(("127.0.0.1", server.audiosocket_port), timeout=5):
            pass
    lines = server.log_lines()
    records = [json.loads(line) for line in lines]  # every line is one
    assert all({"time", "level", "logger", "message"} <= r.keys() for r in records)
    check_bounded(lines, 3 * MAX_LINE)

    (start_up,) = [r for r in records if r.get("event") == "listening"]
    assert start_up["addresses"] == [
        f"http://127.0.0.1:{server.port}",
        f"audiosocket tcp 127.0.0.1:{server.audiosocket_port}",
        f"sip udp+tcp 127.0.0.1:{sip}",
    ]
    assert start_up["message"] == "listening: " + " ".join(start_up["addresses"])
    assert 0 not in (server.port, server.audiosocket_port)

    (started,) = [r for r in records if r.get("provider_call_id") == caller.call_sid]
    call_id = started["call_id"]
    mine_records = [r for r in records if r.get("call_id") == call_id]
    assert all(set(CALL_FIELDS) <= r.keys() for r in mine_records)
    assert {r["caller"] for r in mine_records} == {"+15551230001"}
    events = [r["event"] for r in mine_records]
    assert events[0] == "call_started" and events[-1] == "call_ended", events
    ended = mine_records[-1]
    assert ended["reason"] == "caller_hangup" and ended["transport"] == "websocket"
    assert 1.0 <= ended["duration_s"] < 60 and isinstance(ended["node"], str), ended
    assert started["message"].startswith(f"call {call_id} started: caller +15551230001")
    assert ended["message"] == (
        f"call {call_id} ended: caller_hangup (caller +15551230001, {ended['duration_s']:.1f} s)"
    )
    # The forged call's records: its id and caller as fields, never a line of their own.
    forged = [
        r
        for r in records
        if r.get("event") == "call_ended" and r["transport"] == "websocket" and r is not ended
    ]
    assert len(forged) == 1 and forged[0]["reason"].startswith("protocol error: unknown event")

    access = [r for r in records if r["logger"] == "aiohttp.access"]
    requested = [r["first_request_line"] for r in access]
    for path in QUIET:
        assert not [line for line in requested if f"GET {path} " in line], (path, requested)
    assert "GET /console/static/missing.css HTTP/1.1" in requested  # failed: logged
    (api,) = [r for r in access if r["first_request_line"].startswith("GET /v1/calls?")]
    assert api["request_id"] == mine and api["response_status"] == 200
