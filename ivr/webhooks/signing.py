"""Webhook signatures, two side by side on every signed delivery:

* ``X-IVR-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>``: the MAC covers
  ``b"<t>." + body``, keyed with the secret as written (a ``whsec_`` one included).
* Standard Webhooks (https://www.standardwebhooks.com): ``webhook-id`` (the event id),
  ``webhook-timestamp`` (unix seconds) and ``webhook-signature: v1,<base64 HMAC-SHA256>``
  over ``b"<id>.<timestamp>." + body``, keyed with the secret's bytes: for a
  ``whsec_<base64>`` secret the decoded base64 (so the `standardwebhooks` library verifies
  with the secret as configured); for any other secret its UTF-8 bytes (verify with
  ``"whsec_" + base64(secret)``).

Either lets a receiver reject a tampered body and, through the timestamp, a replayed old
request. Receivers verify the raw request body as received (before parsing JSON) and dedupe
on the event id (``webhook-id`` = ``X-IVR-Event-Id``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

from ivr.webhooks.endpoints import whsec_key

SIGNATURE_HEADER = "X-IVR-Signature"
EVENT_ID_HEADER = "X-IVR-Event-Id"
EVENT_TYPE_HEADER = "X-IVR-Event-Type"
WEBHOOK_ID = "webhook-id"
WEBHOOK_TIMESTAMP = "webhook-timestamp"
WEBHOOK_SIGNATURE = "webhook-signature"


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


def standard_key(secret: str) -> bytes:
    """The Standard Webhooks key of `secret` (see the module's docstring)."""
    key = whsec_key(secret)
    return secret.encode() if key is None else key


def standard_sign(msg_id: str, t: int, body: bytes, secret: str) -> str:
    """The ``webhook-signature`` value for `body` of event `msg_id` sent at `t`."""
    mac = hmac.new(standard_key(secret), b"%s.%d." % (msg_id.encode(), t) + body, hashlib.sha256)
    return "v1," + base64.b64encode(mac.digest()).decode()


def delivery_headers(
    event_id: str, event_type: str, body: bytes, secret: str | None, t: int
) -> dict[str, str]:
    """Every header of one delivery attempt at unix time `t` (signed when there is a secret):
    the X-IVR-* ones and the Standard Webhooks ones."""
    headers = {
        "Content-Type": "application/json",
        EVENT_ID_HEADER: event_id,
        EVENT_TYPE_HEADER: event_type,
        WEBHOOK_ID: event_id,
        WEBHOOK_TIMESTAMP: str(t),
    }
    if secret:
        headers[SIGNATURE_HEADER] = sign(body, secret, t)
        headers[WEBHOOK_SIGNATURE] = standard_sign(event_id, t, body, secret)
    return headers
