"""A logged-in customer's number, vouched for by the site that embeds the web chat.

The chat widget is public: anyone can open it, so a number it sends is only a claim, and a
number is what the flow looks the customer's account up by (as a caller ID is on the
phone). A site that knows its customer (they logged in) signs the number on its server with
IVR_CHAT_IDENTITY_SECRET and hands the page the signature with an expiry; the chat takes the
number only with a valid, unexpired one:

    identity = sign_number(secret, "+15551230001", expires=int(time.time()) + 3600)
    # "1767225600.5c1f...": the expiry (Unix seconds) and HMAC-SHA256(secret, "number|expiry")
"""

from __future__ import annotations

import hashlib
import hmac
import re

_IDENTITY = re.compile(r"(\d{1,12})\.([0-9a-f]{64})")


def _mac(secret: str, number: str, expires: int) -> str:
    data = f"{number}|{expires}".encode()
    return hmac.new(secret.encode(), data, hashlib.sha256).hexdigest()


def sign_number(secret: str, number: str, expires: int) -> str:
    """The identity for `number` (E.164, as the chat keeps it) valid until `expires`."""
    return f"{expires}.{_mac(secret, number, expires)}"


def check_identity(secret: str, number: str, identity: str, now: float) -> str | None:
    """Why `identity` does not vouch for `number` at `now`; None when it does."""
    m = _IDENTITY.fullmatch(identity)
    if m is None:
        return "identity is not EXPIRY.SIGNATURE (Unix seconds, 64 hex digits)"
    expires = int(m.group(1))
    if not hmac.compare_digest(_mac(secret, number, expires), m.group(2)):
        return "identity is not signed for this number"
    if expires < now:
        return "identity has expired"
    return None
