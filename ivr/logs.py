"""Log lines that callers cannot forge or blow up.

Call ids, event names, paths and reasons come from the wire. Rendered as they are, a newline
in one starts a fake log line, an escape sequence rewrites the terminal, and a 1 MB value
makes a 1 MB line. `SafeFormatter` renders every record with control characters escaped,
each argument and the whole line capped, and API tokens in query strings redacted (aiohttp's
access log has the request line, and `?token=` is a way to authenticate a WebSocket).

Every record made while an HTTP request is handled carries that request's id
(`record.request_id`, from `REQUEST_ID`; None outside a request: see `ivr.api.request_id`),
which `SafeFormatter` writes at the end of the line as ``request_id=<id>``: a request's lines
can be found together and matched to the ``X-Request-Id`` its client got.
"""

from __future__ import annotations

import logging
import numbers
import re
import sys
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from typing import Any

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
MAX_ARG = 300
"""Characters of one interpolated argument (its str or repr) before it is cut."""
MAX_LINE = 2000
"""Characters of one rendered line before it is cut."""
MAX_TRACE_LINES = 100
"""Lines of a traceback kept (the last ones: where it failed)."""
INDENT = "    "
"""Before each line of a traceback: only a record's own line starts at column 0."""

# C0, DEL, C1, and what some viewers take as a line break or a reordering of the text
# (Unicode line/paragraph separators, bidirectional overrides).
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
_SECRETS = re.compile(r"(?i)(token=|bearer\.|authorization:\s*\w+\s+)[^\s&;,\"'#]+")


REQUEST_ID: ContextVar[str | None] = ContextVar("ivr_request_id", default=None)
"""The id of the HTTP request being handled (set by the API's request-id middleware; a task
started while handling it inherits it, e.g. a call's on its WebSocket)."""


def _with_request_id(make: Callable[..., logging.LogRecord]) -> Callable[..., logging.LogRecord]:
    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = make(*args, **kwargs)
        record.request_id = REQUEST_ID.get()
        return record

    factory.ivr_request_id = True  # type: ignore[attr-defined]
    return factory


def install_request_ids() -> None:
    """Every log record gets `request_id` (whatever the formatter: a JSON one shows it as
    a field). Idempotent; done on import."""
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

    def _message(self, record: logging.LogRecord) -> str:
        args = record.args
        if isinstance(args, Mapping):
            safe: Any = {k: _capped(v, self.max_arg) for k, v in args.items()}
        elif args:
            safe = tuple(_capped(a, self.max_arg) for a in args)
        else:
            # A message with no arguments is a constant (tests/test_logs.py checks that no
            # call builds one), or another library's; capped by the line's limit.
            return str(record.msg)
        record.args = safe
        try:
            return record.getMessage()
        finally:
            record.args = args  # other handlers see the record as it was

    def _line(self, text: str, limit: int) -> str:
        # Cut before escaping too: escaping never makes a line more than 6x longer.
        return cap(escape(redact(cap(text, limit))), limit)

    def format(self, record: logging.LogRecord) -> str:
        record.message = self._message(record)
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


def setup(level: int) -> None:
    """The process's logging: records at `level` and above to stderr, rendered safely."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(SafeFormatter())
    logging.basicConfig(level=level, handlers=[handler])
