"""Telephone numbers from the wire and from people, checked, then written one way: E.164.

A caller ID is looked up (the demo accounts), spoken ("on this number?") and booked as the
number an agent calls back, so only a telephone number may pass: an optional `+`, then 3 to
15 digits (E.164 allows 15), after the separators people and SIP URIs use (spaces, dashes,
dots, parentheses). Anything else is anonymous (None): never read back, never booked.

A number that passes is then written in E.164 (`phonenumbers`): `+15551230001`,
`15551230001` and `(555) 123-0001` are one caller, with `region` (IVR_DEFAULT_REGION) saying
whose national numbers the ones without `+` are (the trunk prefix and the international
prefix of that country are understood: `0114930100` from the US is `+4930100`). A number
that cannot be one of that length (an extension such as `100`, a short code, a local
number without its area code such as `5551234`) is kept as given, separators dropped, as
before: a PBX's internal callers still have a caller ID, but never the E.164 form of
somebody else's.
"""

from __future__ import annotations

import re

import phonenumbers

_SEPARATORS = re.compile(r"[ \-.()]")
_NUMBER = re.compile(r"\+?[0-9]{3,15}")
MAX_RAW = 64  # longer than any number with separators
DEFAULT_REGION = "US"
WITHHELD = frozenset({"+266696687", "+86282452253", "+7378742833", "+2562533"})
"""What Twilio puts in `From` when the number is withheld: ANONYMOUS, UNAVAILABLE,
RESTRICTED and BLOCKED spelled on a keypad. Digits, but nobody's number: calling one back
reaches no caller."""


def caller_number(raw: str | None, region: str | None = None) -> str | None:
    """`raw` as a telephone number: E.164 where it can be one (a national number read as
    `region`'s; with no region only a `+` number is), else as given (`+` and digits only);
    None when it is not a number at all."""
    if not raw or len(raw) > MAX_RAW:
        return None
    number = _SEPARATORS.sub("", raw.strip())
    if number in WITHHELD or not _NUMBER.fullmatch(number):
        return None
    e164 = _e164(number, region)
    return number if e164 is None or e164 in WITHHELD else e164


def check_region(region: str) -> str:
    """`region` upper-cased when phonenumbers knows it (ISO 3166-1 alpha-2); ValueError."""
    code = region.strip().upper()
    if code not in phonenumbers.SUPPORTED_REGIONS:
        raise ValueError(
            f"unknown region {region!r}: a country code of ISO 3166-1 such as US, GB or DE"
        )
    return code


def _e164(number: str, region: str | None) -> str | None:
    try:
        parsed = phonenumbers.parse(number, None if number.startswith("+") else region)
    except phonenumbers.NumberParseException:
        return None
    reason = phonenumbers.is_possible_number_with_reason(parsed)
    if reason != phonenumbers.ValidationResult.IS_POSSIBLE:
        return None
    e164 = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    return e164 if _NUMBER.fullmatch(e164) else None
