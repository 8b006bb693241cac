"""SIP messages on the wire (RFC 3261), and nothing else: no sockets, no clocks.

Framing: a UDP datagram is one message (its `Content-Length`, when given, cuts the body; a
CRLF keep-alive is no message); over TCP `StreamFramer` cuts the byte stream by each
message's `Content-Length`. Headers are read leniently (folded lines joined, compact forms
expanded, names case-insensitive) and kept raw in order, because a response must echo
`Via`, `From`, `To`, `Call-ID`, `CSeq` and `Record-Route` exactly as they came; the values
we act on are parsed with `sipmessage`'s grammar (URI, Address, Via, CSeq). Anything
malformed raises `SipError`: with `reply` set when the request got far enough to be
answered with a 400, else it is dropped.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from sipmessage import URI, Address, CSeq, Via

MAX_MESSAGE = 65_535  # bytes: a UDP datagram's most, and a TCP message's
MAX_HEADER_BYTES = 16_384  # the header section over TCP, before its blank line
MAX_HEADER_LINES = 200
SIP_VERSION = "SIP/2.0"
BRANCH_COOKIE = "z9hG4bK"  # RFC 3261 branches start with it
ALLOW = "INVITE, ACK, BYE, CANCEL, OPTIONS, INFO"
USER_AGENT = "ivr"

COMPACT = {
    "i": "Call-ID",
    "m": "Contact",
    "e": "Content-Encoding",
    "l": "Content-Length",
    "c": "Content-Type",
    "f": "From",
    "s": "Subject",
    "k": "Supported",
    "t": "To",
    "v": "Via",
}
_TOKEN = re.compile(r"^[A-Za-z0-9\-.!%*_+`'~]+$")
_FOLD = re.compile(rb"\r\n[ \t]+")
_HEAD_END = b"\r\n\r\n"
REASONS = {
    100: "Trying",
    180: "Ringing",
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    405: "Method Not Allowed",
    415: "Unsupported Media Type",
    420: "Bad Extension",
    481: "Call/Transaction Does Not Exist",
    487: "Request Terminated",
    488: "Not Acceptable Here",
    491: "Request Pending",
    500: "Server Internal Error",
    501: "Not Implemented",
    503: "Service Unavailable",
    505: "Version Not Supported",
}


class SipError(ValueError):
    """A malformed message. `reply` is the 400 (or other error) to send back, when the
    request said enough (Via, From, To, Call-ID, CSeq) to be answered."""

    def __init__(self, message: str, reply: bytes | None = None) -> None:
        super().__init__(message)
        self.reply = reply


@dataclass
class Headers:
    """Header lines in order, raw, names as first seen (compact forms expanded)."""

    items: list[tuple[str, str]] = field(default_factory=list)

    def get(self, name: str) -> str | None:
        key = name.lower()
        return next((v for k, v in self.items if k.lower() == key), None)

    def all(self, name: str) -> list[str]:
        key = name.lower()
        return [v for k, v in self.items if k.lower() == key]

    def render(self) -> str:
        return "".join(f"{k}: {v}\r\n" for k, v in self.items)


@dataclass
class Message:
    """What every SIP message has: its headers and body, and the dialog's identifiers."""

    headers: Headers
    body: bytes

    def header(self, name: str) -> str:
        value = self.headers.get(name)
        if value is None:
            raise SipError(f"no {name} header")
        return value

    @property
    def call_id(self) -> str:
        return self.header("Call-ID")

    @property
    def cseq(self) -> CSeq:
        return CSeq.parse(self.header("CSeq"))

    @property
    def from_tag(self) -> str | None:
        return Address.parse(self.header("From")).parameters.get("tag")

    @property
    def to_tag(self) -> str | None:
        return Address.parse(self.header("To")).parameters.get("tag")

    @property
    def vias(self) -> list[Via]:
        return [v for raw in self.headers.all("Via") for v in Via.parse_many(raw)]

    @property
    def branch(self) -> str:
        vias = self.vias
        if not vias:
            raise SipError("no Via header")
        return vias[0].parameters.get("branch") or ""

    @property
    def content_type(self) -> str:
        value = self.headers.get("Content-Type") or ""
        return value.split(";", 1)[0].strip().lower()


@dataclass
class Request(Message):
    method: str
    uri: str  # raw, as sent: a proxy rewrites it, and any user and host are accepted


@dataclass
class Response(Message):
    status: int
    reason: str


def parse_datagram(data: bytes) -> Request | Response | None:
    """One UDP datagram as a message; None for a keep-alive (CRLFs)."""
    if not data.strip(b"\r\n \t"):
        return None
    if len(data) > MAX_MESSAGE:
        raise SipError(f"message over {MAX_MESSAGE} bytes")
    end = data.find(_HEAD_END)
    if end < 0:
        raise SipError("no blank line after the headers")
    head, rest = data[:end], data[end + 4 :]
    start, headers = _read_head(head)
    length = _content_length(start, headers)
    if length is not None:
        if length > len(rest):
            raise _refusal(start, headers, "Content-Length is larger than the body")
        rest = rest[:length]  # what follows a datagram's body is not the message's
    return _message(start, headers, rest)


class StreamFramer:
    """Cuts a TCP byte stream into messages by `Content-Length` (absent: no body)."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[Request | Response]:
        """The whole messages `data` completes; SipError for a stream that cannot be
        framed any more (the connection should close after the error's reply)."""
        self._buffer += data
        out: list[Request | Response] = []
        while True:
            while self._buffer[:2] == b"\r\n":  # keep-alives and stray CRLFs between messages
                del self._buffer[:2]
            end = self._buffer.find(_HEAD_END)
            if end < 0:
                if len(self._buffer) > MAX_HEADER_BYTES:
                    raise SipError(f"headers over {MAX_HEADER_BYTES} bytes")
                return out
            start, headers = _read_head(bytes(self._buffer[:end]))
            length = _content_length(start, headers) or 0
            if end + 4 + length > MAX_MESSAGE:
                raise _refusal(start, headers, f"message over {MAX_MESSAGE} bytes")
            if len(self._buffer) < end + 4 + length:
                return out  # the body is still on its way
            body = bytes(self._buffer[end + 4 : end + 4 + length])
            del self._buffer[: end + 4 + length]
            out.append(_message(start, headers, body))


def _read_head(head: bytes) -> tuple[str, Headers]:
    try:
        text = _FOLD.sub(b" ", head).decode("utf-8")
    except UnicodeDecodeError:
        raise SipError("headers are not UTF-8") from None
    lines = text.split("\r\n")
    if len(lines) > MAX_HEADER_LINES:
        raise SipError(f"over {MAX_HEADER_LINES} header lines")
    headers = Headers()
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        name = name.strip()
        if not colon or not _TOKEN.match(name):
            raise _refusal(lines[0], headers, f"malformed header line {line[:40]!r}")
        headers.items.append((COMPACT.get(name.lower(), name), value.strip()))
    return lines[0], headers


def _content_length(start: str, headers: Headers) -> int | None:
    value = headers.get("Content-Length")
    if value is None:
        return None
    if not value.isdigit():
        raise _refusal(start, headers, f"bad Content-Length {value[:20]!r}")
    return int(value)


def _message(start: str, headers: Headers, body: bytes) -> Request | Response:
    parts = start.split(" ", 2)
    if len(parts) == 3 and parts[0] == SIP_VERSION:
        if not (parts[1].isdigit() and len(parts[1]) == 3):
            raise SipError(f"bad status line {start[:60]!r}")
        message: Request | Response = Response(headers, body, int(parts[1]), parts[2])
    elif len(parts) == 3 and _TOKEN.match(parts[0]) and parts[1]:
        if parts[2] != SIP_VERSION:
            raise _refusal(start, headers, f"unsupported version {parts[2][:20]!r}", 505)
        message = Request(headers, body, parts[0], parts[1])
    else:
        raise SipError(f"neither a request nor a response: {start[:60]!r}")
    try:
        _check(message)
    except (SipError, ValueError, KeyError) as exc:
        raise _refusal(start, headers, str(exc) or type(exc).__name__) from None
    return message


def _check(message: Request | Response) -> None:
    """The headers every message needs, well formed (sipmessage's grammar)."""
    for name in ("Via", "From", "To", "Call-ID", "CSeq"):
        message.header(name)
    Address.parse(message.header("From"))
    Address.parse(message.header("To"))
    cseq = message.cseq
    if cseq.sequence >= 2**31:
        raise SipError("CSeq number out of range")
    if not message.vias:
        raise SipError("no Via header")
    if isinstance(message, Request):
        if cseq.method != message.method:
            raise SipError(f"CSeq method {cseq.method} is not {message.method}")
        URI.parse(message.uri)


def _refusal(start: str, headers: Headers, why: str, status: int = 400) -> SipError:
    """A SipError carrying the reply to a request that can be answered."""
    parts = start.split(" ", 2)
    needed = ("Via", "From", "To", "Call-ID", "CSeq")
    if len(parts) != 3 or parts[0] == SIP_VERSION or parts[0] == "ACK":
        return SipError(why)
    if any(headers.get(n) is None for n in needed):
        return SipError(why)
    request = Request(headers, b"", parts[0], parts[1])
    reply = response(request, status, reason=f"{REASONS[status]} ({_clean(why)})")
    return SipError(why, reply)


def _clean(text: str) -> str:
    return re.sub(r"[^\x20-\x7e]", "?", text)[:100]


# --- writing messages --------------------------------------------------------------------


def new_tag() -> str:
    return secrets.token_hex(6)


def new_branch() -> str:
    return BRANCH_COOKIE + secrets.token_hex(8)


def response(
    request: Request,
    status: int,
    *,
    reason: str | None = None,
    to_tag: str | None = None,
    headers: Sequence[tuple[str, str]] = (),
    body: bytes = b"",
    received: tuple[str, int] | None = None,
    record_route: bool = False,
) -> bytes:
    """The response to `request`: its Via, From, To (with `to_tag` added if it has none),
    Call-ID and CSeq echoed; `received`, the request's source, goes on the top Via
    (received= and rport=, RFC 3581); Record-Route echoed for responses that make a
    dialog."""
    out = Headers()
    vias = request.headers.all("Via")
    for i, via in enumerate(vias):
        out.items.append(("Via", _received(via, received) if i == 0 and received else via))
    out.items.append(("From", request.header("From")))
    to = request.header("To")
    if to_tag and "tag" not in Address.parse(to).parameters:
        to += f";tag={to_tag}"
    out.items.append(("To", to))
    out.items.append(("Call-ID", request.header("Call-ID")))
    out.items.append(("CSeq", request.header("CSeq")))
    if record_route:
        out.items.extend(("Record-Route", v) for v in request.headers.all("Record-Route"))
    out.items.extend(headers)
    out.items.append(("Server", USER_AGENT))
    out.items.append(("Content-Length", str(len(body))))
    return f"{SIP_VERSION} {status} {reason or REASONS.get(status, 'Unknown')}\r\n".encode() + (
        out.render().encode() + b"\r\n" + body
    )


def _received(via: str, source: tuple[str, int]) -> str:
    """The top Via (the first of a comma-joined line) with received= and rport= set."""
    top, comma, rest = via.partition(",")
    host, port = source
    if re.search(r";\s*rport(?=\s*(;|$))", top):
        top = re.sub(r";\s*rport(?=\s*(;|$))", f";rport={port}", top, count=1)
    if not re.search(r";\s*received=", top):
        top = top.rstrip() + f";received={host}"
    return top + comma + rest


def request(
    method: str,
    uri: str,
    *,
    via: str,
    from_: str,
    to: str,
    call_id: str,
    cseq: int,
    routes: Iterable[str] = (),
    headers: Sequence[tuple[str, str]] = (),
    body: bytes = b"",
) -> bytes:
    """A request of ours, within a dialog (BYE): `via` is the whole Via value."""
    out = Headers()
    out.items.append(("Via", via))
    out.items.append(("Max-Forwards", "70"))
    out.items.extend(("Route", r) for r in routes)
    out.items += [("From", from_), ("To", to), ("Call-ID", call_id)]
    out.items.append(("CSeq", f"{cseq} {method}"))
    out.items.extend(headers)
    out.items.append(("User-Agent", USER_AGENT))
    out.items.append(("Content-Length", str(len(body))))
    return f"{method} {uri} {SIP_VERSION}\r\n".encode() + out.render().encode() + b"\r\n" + body


def address_uri(value: str) -> str:
    """The URI of a name-addr or addr-spec (`"A" <sip:a@h>;tag=1` → `sip:a@h`), raw."""
    start, end = value.find("<"), value.find(">")
    if 0 <= start < end:
        return value[start + 1 : end].strip()
    return value.split(";", 1)[0].strip()


def caller_number(from_header: str) -> str | None:
    """The caller, as the From header's user part (a number, usually)."""
    uri = Address.parse(from_header).uri
    return uri.user or None


def target(uri_text: str) -> tuple[str, int, str]:
    """Where a request to `uri_text` goes: host, port (default 5060) and transport."""
    uri = URI.parse(uri_text)
    transport = (uri.parameters.get("transport") or "udp").lower()
    return uri.host.strip("[]"), uri.port or 5060, transport


def info_digit(content_type: str, body: bytes) -> str | None:
    """The key of a SIP INFO: `application/dtmf-relay` (`Signal=5`) or `application/dtmf`
    (`5`); None for an INFO that carries none. SipError for a malformed one."""
    text = body.decode("utf-8", "replace")
    if content_type == "application/dtmf-relay":
        m = re.search(r"(?im)^\s*signal\s*=\s*(\S+)\s*$", text)
        if m is None:
            raise SipError("dtmf-relay without a Signal line")
        value = m.group(1)
    elif content_type == "application/dtmf":
        value = text.strip()
    else:
        return None
    value = {"10": "*", "11": "#"}.get(value, value).upper()
    if len(value) != 1 or value not in "0123456789*#ABCD":
        raise SipError(f"not a DTMF key: {value[:10]!r}")
    return value
