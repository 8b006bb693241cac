"""Webhook signatures: ``X-IVR-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>``.

The MAC covers ``b"<t>." + body`` with the shared secret, so a receiver can reject a
tampered body and, through the timestamp, a replayed old request. Receivers verify the raw
request body as received (before parsing JSON) and dedupe on ``X-IVR-Event-Id``.
"""

from __future__ import annotations

import hashlib
import hmac
import time

SIGNATURE_HEADER = "X-IVR-Signature"
EVENT_ID_HEADER = "X-IVR-Event-Id"
EVENT_TYPE_HEADER = "X-IVR-Event-Type"


def _mac(body: bytes, secret: str, t: int) -> str:
    return hmac.new(secret.encode(), b"%d." % t + body, hashlib.sha256).hexdigest()


def sign(body: bytes, secret: str, t: int) -> str:
    """The signature header value for `body` sent at unix time `t`."""
    return f"t={t},v1={_mac(body, secret, t)}"


def verify(
    header: str, body: bytes, secret: str, tolerance_s: float = 300, now: float | None = None
) -> bool:
    """True when `header` signs `body` with `secret` and its time is within `tolerance_s` of
    `now` (default: the current time). Several ``v1=`` entries are accepted (any may match),
    which lets a sender sign with an old and a new secret while rotating."""
    t: int | None = None
    macs: list[str] = []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t":
            try:
                t = int(value)
            except ValueError:
                return False
        elif key == "v1":
            macs.append(value)
    if t is None or not macs:
        return False
    if abs((time.time() if now is None else now) - t) > tolerance_s:
        return False
    expected = _mac(body, secret, t)
    # compare_digest on every entry: the time taken does not reveal which one (if any) matched
    return any([hmac.compare_digest(expected, mac) for mac in macs])
