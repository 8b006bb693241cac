"""Log lines callers cannot forge or blow up: the formatter (ivr/logs.py), every log call in
ivr/ passing a constant format string, and a real `ivr serve` fed a call id with a newline
and a 1 MB event name."""

from __future__ import annotations

import ast
import asyncio
import io
import json
import logging
import re
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import numpy as np
import pytest
from live_server import live_server

from ivr.logs import FORMAT, INDENT, MAX_ARG, MAX_LINE, SafeFormatter, cap, escape, redact
from ivr.transports.twilio import TwilioClient

ROOT = Path(__file__).resolve().parent.parent
FORGED = "2030-01-01 00:00:00,000 CRITICAL ivr.forged: FORGED"
RECORD_START = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ \S+: ")


@pytest.fixture
def logged() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(SafeFormatter())
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


# --- a real server ----------------------------------------------------------------------


def test_ivr_serve_logs_no_forged_line_and_no_huge_line(tmp_path: Path) -> None:
    client = TwilioClient()
    call_sid = f"CA{uuid.uuid4().hex}\n{FORGED}"
    # An unknown event's name: as long as a message may be (longer is refused unparsed).
    huge = "e" * 60_000 + f"\n{FORGED}"

    async def provider(media_url: str, base: str) -> None:
        async with aiohttp.ClientSession() as http:
            ws = await http.ws_connect(media_url)
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

    with live_server(tmp_path) as server:
        base = f"http://127.0.0.1:{server.port}"
        asyncio.run(asyncio.wait_for(provider(server.media_url, base), 60))
    log = server.log_text()
    lines = log.splitlines()
    assert "unknown event" in log and "more chars]" in log, log[-3000:]
    assert not [line for line in lines if line.startswith(FORGED)]
    assert not [line[:200] for line in lines if len(line) > MAX_LINE]
    assert "query-s3cret" not in log and "token=[redacted]" in log
    for line in lines:  # each line is a record, or indented under one (a traceback)
        assert RECORD_START.match(line) or line.startswith(INDENT) or not line.strip(), line
    print(f"server log: {len(lines)} lines, longest {max(map(len, lines))}", file=sys.stderr)
