"""A blind transfer on the wire (RFC 3515 REFER, RFC 3420 message/sipfrag), and nothing else:
no sockets, no clocks.

The call's context goes to the agent twice: as headers of the REFER (for a transferee, a PBX,
that reads them) and as headers embedded in the Refer-To URI
(``<sip:agent@pbx?X-IVR-Call-Id=...&X-IVR-Reason=...>``, RFC 3261 §19.1.1), which a
transferee that follows the RFC turns into headers of its INVITE to the agent. The
transferee reports progress in NOTIFYs of the implicit ``refer`` subscription: each body is
a status line of its new call (``SIP/2.0 100 Trying``, ``SIP/2.0 200 OK``,
``SIP/2.0 486 Busy Here``).
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass

from sipmessage import URI


class ReferError(ValueError):
    """A REFER's target, or a NOTIFY of its subscription, that cannot be used."""


MAX_CONTEXT_VALUE = 300  # characters of one context header's value
_UNSAFE = re.compile(r"[^\x20-\x7e]")
# What an embedded header's value may carry unescaped (RFC 3261 hnv-unreserved and
# unreserved, less what quote() always keeps): the rest is %-escaped, '&' and '=' included.
_HVALUE_SAFE = "[]/?:+$-_.!~*'()"


@dataclass(frozen=True)
class Progress:
    """One NOTIFY of the refer subscription: the transferee's new call's status (None when
    the body has none) and whether the subscription ends with it."""

    status: int | None
    reason: str
    terminated: bool


def _uri(value: str) -> str:
    """The URI of a name-addr (`"A" <sip:a@h;p=1?x=1>` → `sip:a@h;p=1?x=1`), or a bare URI
    as configured (its parameters its own)."""
    start, end = value.find("<"), value.find(">")
    return value[start + 1 : end].strip() if 0 <= start < end else value.strip()


def context_value(value: str) -> str:
    """`value` as a header value: printable ASCII only (CR, LF, anything else: '?'), cut."""
    return _UNSAFE.sub("?", value)[:MAX_CONTEXT_VALUE]


def refer_to(target: str, context: Sequence[tuple[str, str]]) -> str:
    """The Refer-To value: `target` (a sip: or sips: URI, bare or in <>) with `context`
    embedded as its headers. ReferError for a target that is no SIP URI."""
    uri = _uri(target.strip())
    base, _, own = uri.partition("?")  # headers the target carries already stay first
    try:
        parsed = URI.parse(base)
    except Exception as exc:  # sipmessage raises its own error types
        raise ReferError(f"not a SIP URI: {target[:80]!r}") from exc
    if parsed.scheme not in ("sip", "sips"):
        raise ReferError(f"not a SIP URI: {target[:80]!r}")
    embedded = [part for part in own.split("&") if part]
    embedded += [
        f"{urllib.parse.quote(name, safe='-')}={urllib.parse.quote(value, safe=_HVALUE_SAFE)}"
        for name, value in context
    ]
    return f"<{base}?{'&'.join(embedded)}>" if embedded else f"<{base}>"


def embedded_headers(uri: str) -> list[tuple[str, str]]:
    """The headers embedded in a SIP URI (`?name=value&...`), unescaped: what a transferee
    following RFC 3261 puts in its INVITE."""
    _, _, query = _uri(uri).partition("?")
    out = []
    for part in query.split("&"):
        name, eq, value = part.partition("=")
        if name and eq:
            out.append((urllib.parse.unquote(name), urllib.parse.unquote(value)))
    return out


def refer_headers(
    refer_to_value: str, referred_by: str, contact: str, context: Sequence[tuple[str, str]]
) -> list[tuple[str, str]]:
    """The headers of our REFER besides the dialog's own (Via, From, To, Call-ID, CSeq)."""
    return [
        ("Contact", contact),
        ("Refer-To", refer_to_value),
        ("Referred-By", referred_by),
        *((name, context_value(value)) for name, value in context),
    ]


def sipfrag(content_type: str, body: bytes) -> tuple[int, str] | None:
    """The status line of a message/sipfrag body (``SIP/2.0 486 Busy Here``): its code and
    reason; None for an empty body. ReferError for another content type or no status line."""
    if not body.strip():
        return None
    if content_type != "message/sipfrag":
        raise ReferError(f"a refer NOTIFY carries message/sipfrag, not {content_type or 'nothing'}")
    first = body.decode("utf-8", "replace").strip().split("\n", 1)[0].strip()
    m = re.fullmatch(r"SIP/2\.0\s+([1-6]\d\d)(?:\s+(.*))?", first)
    if m is None:
        raise ReferError(f"no status line in the sipfrag: {first[:60]!r}")
    return int(m.group(1)), (m.group(2) or "").strip()


def progress(event: str | None, state: str | None, content_type: str, body: bytes) -> Progress:
    """What one NOTIFY of a refer subscription says (ReferError when it is none: another event
    package, a bad body)."""
    package = (event or "").split(";", 1)[0].strip().lower()
    if package != "refer":
        raise ReferError(f"not a refer NOTIFY (Event: {package or 'none'})")
    frag = sipfrag(content_type, body)
    terminated = (state or "").split(";", 1)[0].strip().lower() == "terminated"
    status, reason = frag if frag is not None else (None, "")
    return Progress(status, reason, terminated)
