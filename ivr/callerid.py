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
WITHHELD = frozenset({"+266696687", "+86282452253", "+7378742833", "+2562533"})
"""What Twilio puts in `From` when the number is withheld: ANONYMOUS, UNAVAILABLE,
RESTRICTED and BLOCKED spelled on a keypad. Digits, but nobody's number: calling one back
reaches no caller."""


def caller_number(raw: str | None) -> str | None:
    """`raw` as a telephone number (`+` and digits only), or None when it is not one."""
    if not raw or len(raw) > MAX_RAW:
        return None
    number = _SEPARATORS.sub("", raw.strip())
    if number in WITHHELD or not _NUMBER.fullmatch(number):
        return None
    return number
