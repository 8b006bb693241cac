"""Bounds on a wire message, checked before it is parsed.

A media message is a few hundred bytes nested three deep; these limits are far above any
real message and far below what could hurt: Python's JSON parser recurses once per level
(RecursionError at ~1000), and a large message costs memory and time before it is refused.
`load_json` also turns what json.loads lets through or raises besides JSONDecodeError into
a ProtocolError: integers over Python's 4300-digit limit (a plain ValueError) and lone
surrogates (``"\\ud800"``: valid JSON, but no text the store or a log line can encode).
"""

from __future__ import annotations

import json
import re
from typing import Any

from ivr.transports.messages import ProtocolError

MAX_MESSAGE_BYTES = 64 * 1024
"""Of one JSON text message (counted in characters of a str: at most 4 bytes each)."""
MAX_JSON_DEPTH = 32
WEBSOCKET_MAX_MSG_SIZE = 2 * MAX_MESSAGE_BYTES
"""aiohttp's limit for the call WebSockets, above the serializers' own: a message somewhat
over theirs still reaches them, so the call ends with a reason that says so; anything larger
aiohttp refuses from the frame header, unbuffered (close code 1009; the call ends as a
protocol error)."""

_SURROGATE = re.compile(r"[\ud800-\udfff]|\\u[dD][89abcdefABCDEF]")


def check_json_text(text: str | bytes) -> None:
    """ProtocolError if `text` is too long or nests arrays and objects too deep."""
    if len(text) > MAX_MESSAGE_BYTES:
        raise ProtocolError(f"message of {len(text)} bytes is over {MAX_MESSAGE_BYTES}")
    s = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
    if s.count("[") + s.count("{") <= MAX_JSON_DEPTH:
        return  # cannot nest deeper than it has brackets: the common case, at C speed
    depth, in_string, escaped = 0, False, False
    for ch in s:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            if depth > MAX_JSON_DEPTH:
                raise ProtocolError(f"message nests deeper than {MAX_JSON_DEPTH} levels")
        elif ch in "]}":
            depth -= 1


def load_json(text: str | bytes) -> Any:
    """One JSON text message, bounded first; any failure is a ProtocolError."""
    check_json_text(text)
    try:
        msg = json.loads(text)
    except RecursionError:  # a guard only: the depth is checked above
        raise ProtocolError("message nests too deeply") from None
    except (ValueError, UnicodeDecodeError) as e:  # JSONDecodeError is a ValueError
        raise ProtocolError(f"message is not valid JSON: {e}") from None
    # Only when the text has a surrogate at all: an emoji escaped as a pair is fine.
    if _SURROGATE.search(text if isinstance(text, str) else text.decode("utf-8", "replace")):
        try:
            json.dumps(msg, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise ProtocolError("message has a lone surrogate: not valid Unicode") from None
    return msg
