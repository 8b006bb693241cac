"""Caller IDs from the wire, validated before anything reads them back.

A caller ID is looked up (the demo accounts), spoken ("on this number?") and booked as the
number an agent calls back, so only a telephone number may pass: an optional `+`, then 3 to
15 digits (E.164 allows 15), after the separators people and SIP URIs use (spaces, dashes,
dots, parentheses). Anything else is anonymous (None): never read back, never booked.
"""

from __future__ import annotations

import re

_SEPARATORS = re.compile(r"[ \-.()]")
_NUMBER = re.compile(r"\+?[0-9]{3,15}")
MAX_RAW = 64  # longer than any number with separators


def caller_number(raw: str | None) -> str | None:
    """`raw` as a telephone number (`+` and digits only), or None when it is not one."""
    if not raw or len(raw) > MAX_RAW:
        return None
    number = _SEPARATORS.sub("", raw.strip())
    return number if _NUMBER.fullmatch(number) else None
