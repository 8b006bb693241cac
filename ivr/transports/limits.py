"""Bounds on a wire message, checked before it is parsed.

A media message is a few hundred bytes nested three deep; these limits are far above any
real message and far below what could hurt: Python's JSON parser recurses once per level
(RecursionError at ~1000), and a large message costs memory and time before it is refused.
"""

from __future__ import annotations

from ivr.transports.messages import ProtocolError

MAX_MESSAGE_BYTES = 64 * 1024
MAX_JSON_DEPTH = 32


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
