"""Log lines that callers cannot forge or blow up.

Call ids, event names, paths and reasons come from the wire. Rendered as they are, a newline
in one starts a fake log line, an escape sequence rewrites the terminal, and a 1 MB value
makes a 1 MB line. `SafeFormatter` renders every record with control characters escaped,
each argument and the whole line capped, and API tokens in query strings redacted (aiohttp's
access log has the request line, and `?token=` is a way to authenticate a WebSocket).

Every record made while an HTTP request is handled carries that request's id
(`record.request_id`, from `REQUEST_ID`; None outside a request: see `ivr.api.request_id`),
which `SafeFormatter` writes at the end of the line as ``request_id=<id>``: a request's lines
can be found together and matched to the ``X-Request-Id`` its client got. Every record made
while a call is served (in its task, or one it started) carries the call's fields
(`record.call_fields`, from `CALL`: its id, caller and dialog node at that moment); a log
call names what happened with ``extra={"event": "call_ended"}`` and the like.

`IVR_LOG_FORMAT=json` renders each record as one JSON object per line instead
(`JsonFormatter`, on python-json-logger): ``time`` (UTC, RFC 3339), ``level``, ``logger``,
``message``, ``request_id`` in a request, and on a call's records ``call_id``, ``caller``,
``node`` and ``event`` (null when unknown), then the record's other fields (``extra``,
aiohttp's access log fields, ``exc_info``). The same limits hold: arguments and fields cut,
the message cut to the line limit, tokens redacted; JSON escapes every control character
(and everything past ASCII), so a record is one line whatever a caller sends.
"""

from __future__ import annotations

import json
import logging
import math
import numbers
import os
import re
import sys
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from pythonjsonlogger.core import RESERVED_ATTRS, merge_record_extra
from pythonjsonlogger.json import JsonFormatter as _JsonFormatter

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
MAX_ARG = 300
"""Characters of one interpolated argument (its str or repr) before it is cut."""
MAX_LINE = 2000
"""Characters of one rendered line before it is cut."""
MAX_TRACE_LINES = 100
"""Lines of a traceback kept (the last ones: where it failed)."""
INDENT = "    "
"""Before each line of a traceback: only a record's own line starts at column 0."""
MAX_TRACE = 8000
"""Characters of a traceback in a JSON record (the last ones), as written."""
MAX_RECORD = 16_000
"""Characters of a JSON record's line: over it, the record's other fields are left out."""
CALL_FIELDS = ("call_id", "caller", "node", "event")
"""The fields of a call's records in JSON, each there (null when unknown) on every one."""

# C0, DEL, C1, and what some viewers take as a line break or a reordering of the text
# (Unicode line/paragraph separators, bidirectional overrides).
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
_SECRETS = re.compile(r"(?i)(token=|bearer\.|authorization:\s*\w+\s+)[^\s&;,\"'#]+")


REQUEST_ID: ContextVar[str | None] = ContextVar("ivr_request_id", default=None)
"""The id of the HTTP request being handled (set by the API's request-id middleware; a task
started while handling it inherits it, e.g. a call's on its WebSocket)."""


@dataclass
class CallFields:
    """The call being served, for its records (`CALL`): set by the call's session, which
    fills in the caller once the call has started and the dialog's node as it moves."""

    call_id: str
    caller: str | None = None
    node: Callable[[], str | None] = field(default=lambda: None)

    def snapshot(self) -> dict[str, Any]:
        try:
            node = self.node()
        except Exception:  # a record is never lost for its fields
            node = None
        return {"call_id": self.call_id, "caller": self.caller, "node": node}


def event(name: str, **fields: Any) -> dict[str, Any]:
    """A log call's `extra` naming what happened: ``log.info(…, extra=event("call_ended"))``
    (the record's ``event`` field in JSON), with any other fields."""
    return {"event": name, **fields}


CALL: ContextVar[CallFields | None] = ContextVar("ivr_call", default=None)
"""The call being served (set by `ivr.call.session.CallSession.run` for the call's task;
the tasks it starts inherit it)."""


def _with_request_id(make: Callable[..., logging.LogRecord]) -> Callable[..., logging.LogRecord]:
    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = make(*args, **kwargs)
        record.request_id = REQUEST_ID.get()
        call = CALL.get()
        # Under a name of its own: a log call may still pass `extra={"call_id": …}`.
        record.call_fields = call.snapshot() if call is not None else None
        return record

    factory.ivr_request_id = True  # type: ignore[attr-defined]
    return factory


def install_request_ids() -> None:
    """Every log record gets `request_id` and `call_fields` (whatever the formatter: the
    JSON one shows them as fields). Idempotent; done on import."""
    current = logging.getLogRecordFactory()
    if not getattr(current, "ivr_request_id", False):
        logging.setLogRecordFactory(_with_request_id(current))


install_request_ids()


def _escape_char(m: re.Match[str]) -> str:
    c = m.group()
    return _NAMED.get(c) or (f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}")


def escape(text: str) -> str:
    """`text` with every control character written as an escape (`\\n`, `\\x1b`...)."""
    return _CONTROL.sub(_escape_char, text)


def redact(text: str) -> str:
    """`text` with credentials (`?token=…`, a subprotocol `bearer.…`, an `Authorization:`
    header's) replaced by `[redacted]`."""
    return _SECRETS.sub(r"\1[redacted]", text)


def cap(text: str, limit: int) -> str:
    """`text` cut to at most `limit` characters, saying how many were cut."""
    if len(text) <= limit:
        return text
    # The marker fits in the limit: its count has at most as many digits as len(text).
    keep = max(0, limit - len(f"…[{len(text)} more chars]"))
    return f"{text[:keep]}…[{len(text) - keep} more chars]"


class _Capped:
    """An argument as `%s` and `%r` render it, cut to MAX_ARG (before interpolation: a huge
    value is never copied into the message whole)."""

    __slots__ = ("_limit", "_value")

    def __init__(self, value: object, limit: int) -> None:
        self._value = value
        self._limit = limit

    def __str__(self) -> str:
        return cap(str(self._value), self._limit)

    def __repr__(self) -> str:
        return cap(repr(self._value), self._limit)


def _capped(value: object, limit: int) -> object:
    # Numbers (numpy's too) stay numbers for %d, %g and %.1f; they are short, hold no text.
    return value if isinstance(value, numbers.Number) else _Capped(value, limit)


def _message(record: logging.LogRecord, max_arg: int) -> str:
    """The record's message, each argument cut to `max_arg` before it is interpolated."""
    args = record.args
    if isinstance(args, Mapping):
        safe: Any = {k: _capped(v, max_arg) for k, v in args.items()}
    elif args:
        safe = tuple(_capped(a, max_arg) for a in args)
    else:
        # A message with no arguments is a constant (tests/test_logs.py checks that no
        # call builds one), or another library's; capped by the line's limit.
        return str(record.msg)
    record.args = safe
    try:
        return record.getMessage()
    finally:
        record.args = args  # other handlers see the record as it was


class SafeFormatter(logging.Formatter):
    """A line per record: control characters escaped, arguments cut to `max_arg`, the line
    to `max_line`, tokens redacted. A traceback follows on lines of its own, each indented
    (a line that starts at column 0 always starts a record) and escaped likewise."""

    def __init__(
        self,
        fmt: str | None = FORMAT,
        datefmt: str | None = None,
        *,
        max_arg: int = MAX_ARG,
        max_line: int = MAX_LINE,
    ) -> None:
        super().__init__(fmt, datefmt)
        self.max_arg = max_arg
        self.max_line = max_line

    def _line(self, text: str, limit: int) -> str:
        # Cut before escaping too: escaping never makes a line more than 6x longer.
        return cap(escape(redact(cap(text, limit))), limit)

    def format(self, record: logging.LogRecord) -> str:
        record.message = _message(record, self.max_arg)
        if self.usesTime():
            record.asctime = self.formatTime(record, self.datefmt)
        request_id = getattr(record, "request_id", None)
        # The id is made safe where it is taken (ivr.api.request_id); escaped here all the same.
        tail = f" request_id={escape(cap(str(request_id), 200))}" if request_id else ""
        lines = [self._line(self.formatMessage(record), self.max_line - len(tail)) + tail]
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        extra = [record.exc_text, record.stack_info and self.formatStack(record.stack_info)]
        for text in filter(None, extra):
            trace = text.rstrip("\n").split("\n")  # other breaks (\r, \u2028...) are escaped
            if len(trace) > MAX_TRACE_LINES:
                cut = len(trace) - MAX_TRACE_LINES
                trace = [f"…[{cut} lines]", *trace[-MAX_TRACE_LINES:]]
            width = self.max_line - len(INDENT)
            lines.extend(INDENT + self._line(line, width) for line in trace)
        return "\n".join(lines)


_OWN_FIELDS = {"request_id", "call_fields", "message", "asctime", "event"}
_CORE = ("time", "level", "logger", "message", "request_id", *CALL_FIELDS, "exc_info")
"""What a JSON record keeps when its other fields would make it longer than MAX_RECORD."""
MAX_FIELDS = 40
"""Fields of a record's `extra` (and items of a list or mapping in one) written in JSON."""


def _encoded(text: str) -> int:
    """The length of `text` as a JSON string's contents (escapes counted)."""
    if text.isascii() and text.isprintable() and '"' not in text and "\\" not in text:
        return len(text)
    return len(json.dumps(text)) - 2


def _longest(fits: Callable[[int], bool], most: int) -> int:
    """The largest n in 0..most with fits(n) (fits is monotone: true up to some n)."""
    low, high = 0, most
    while low < high:
        mid = (low + high + 1) // 2
        low, high = (mid, high) if fits(mid) else (low, mid - 1)
    return low


def fit(text: str, limit: int, length: int | None = None) -> str:
    """`text` cut so that written in JSON, escapes and all, it takes at most `limit`
    characters (one may take up to 12: ``\\ud83d\\ude00``), saying how many were cut
    (of `length`, when `text` is the beginning of a longer one)."""
    length = len(text) if length is None else length
    if length <= limit and _encoded(text) <= limit:
        return text
    room = limit - len(f"…[{length} more chars]") - 5  # the marker, written (… is \\u2026)
    keep = _longest(lambda n: _encoded(text[:n]) <= room, min(len(text), max(0, room)))
    return f"{text[:keep]}…[{length - keep} more chars]"


class JsonFormatter(_JsonFormatter):
    """A record as one line of JSON (see the module's doc): control characters escaped by
    JSON itself, non-ASCII too. Written, the message takes at most `max_line` characters,
    each other text `max_arg` (arguments cut before they are interpolated, as
    `SafeFormatter` does), a traceback MAX_TRACE (its last ones), the whole line MAX_RECORD
    (else the record's other fields are left out, and counted); tokens redacted
    everywhere."""

    def __init__(self, *, max_arg: int = MAX_ARG, max_line: int = MAX_LINE) -> None:
        super().__init__(reserved_attrs=[*RESERVED_ATTRS, *_OWN_FIELDS], json_ensure_ascii=True)
        self.max_arg = max_arg
        self.max_line = max_line

    def _text(self, value: str, limit: int) -> str:
        # Redacted before it is cut: a token is never cut in two, one half written.
        return fit(redact(value[: 2 * limit]), limit, len(value))

    def _value(self, value: Any, depth: int = 0) -> Any:
        if value is None or isinstance(value, bool):
            return value
        if isinstance(value, numbers.Integral):  # numpy's too
            number = int(value)
            return number if -(2**63) <= number < 2**63 else f"<{number.bit_length()}-bit int>"
        if isinstance(value, numbers.Real):
            real = float(value)
            return real if math.isfinite(real) else str(real)  # JSON has no NaN or Infinity
        if depth < 2 and isinstance(value, Mapping):
            items = list(value.items())[:MAX_FIELDS]
            return {self._text(str(k), 100): self._value(v, depth + 1) for k, v in items}
        if depth < 2 and isinstance(value, list | tuple | set | frozenset):
            return [self._value(v, depth + 1) for v in list(value)[:MAX_FIELDS]]
        return self._text(str(value), self.max_arg)

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        when = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
        return when.replace("+00:00", "Z")

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": self._text(record.name, 100),
            "message": self._text(_message(record, self.max_arg), self.max_line),
        }
        request_id = getattr(record, "request_id", None)
        if request_id:
            data["request_id"] = self._value(request_id)
        call = getattr(record, "call_fields", None)
        event = getattr(record, "event", None)
        extra: dict[str, Any] = {}
        merge_record_extra(record, extra, reserved=self.reserved_attrs)
        if call is not None or "call_id" in extra:
            # A call's record, or one about a call: every call field, null when unknown.
            for name in CALL_FIELDS:
                data[name] = self._value((call or {}).get(name))
        if event is not None:
            data["event"] = self._value(event)
        for key, value in list(extra.items())[:MAX_FIELDS]:
            data[self._text(str(key), 100)] = self._value(value)
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter.formatException(self, record.exc_info)
        if record.exc_text:
            data["exc_info"] = self._trace(record.exc_text)
        if record.stack_info:
            data["stack_info"] = self._trace(record.stack_info)
        line = self.serialize_log_record(data)
        if len(line) > MAX_RECORD:  # many long fields: the record's own ones only
            kept = {k: data[k] for k in _CORE if k in data}
            kept["fields_left_out"] = len(data) - len(kept)
            line = self.serialize_log_record(kept)
        return line

    def _trace(self, text: str) -> str:
        """A traceback's last characters (where it failed), at most MAX_TRACE as written."""
        room = MAX_TRACE - 40  # for the marker
        if len(text) <= room and _encoded(redact(text)) <= room:
            return redact(text)
        tail = redact(text[-2 * room :])[-room:]  # redacted before a token could be cut
        keep = _longest(lambda n: _encoded(tail[len(tail) - n :]) <= room, len(tail))
        return f"…[{len(text) - keep} chars] {tail[len(tail) - keep :]}"


LogFormat = Literal["text", "json"]


WORKER_ENV = "_IVR_WORKER_LOGGING"
"""How `setup` hands its level and format to the worker processes the server spawns (ASR,
TTS): their environment is the parent's at the spawn, and `setup_worker` reads it."""


def setup(level: int, fmt: LogFormat = "text") -> None:
    """The process's logging: records at `level` and above to stderr, rendered safely, as
    text lines or (`fmt` "json") one JSON object a line. May be called again (`ivr serve`
    does once its settings are read): the handler is replaced. Worker processes started
    after it log the same way (`setup_worker`)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else SafeFormatter())
    logging.basicConfig(level=level, handlers=[handler], force=True)
    # Python's warnings as records too: in JSON every line of stderr is a record.
    logging.captureWarnings(fmt == "json")
    os.environ[WORKER_ENV] = f"{level}:{fmt}"


def setup_worker() -> bool:
    """In a spawned worker process: the logging its parent set up (level and format), to the
    same stderr; False (Python's defaults left) when the parent set none up."""
    level, _, fmt = os.environ.get(WORKER_ENV, "").partition(":")
    if not level.isdigit() or fmt not in ("text", "json"):
        return False
    setup(int(level), "json" if fmt == "json" else "text")
    return True
