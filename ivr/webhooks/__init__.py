"""Webhooks: outbox events POSTed, signed, to the configured URLs (see `deliverer`)."""

from __future__ import annotations

from ivr.webhooks.deliverer import PARKED_UNTIL, WebhookDeliverer, backoff_s, body_of
from ivr.webhooks.signing import (
    EVENT_ID_HEADER,
    EVENT_TYPE_HEADER,
    SIGNATURE_HEADER,
    sign,
    verify,
)

__all__ = [
    "EVENT_ID_HEADER",
    "EVENT_TYPE_HEADER",
    "PARKED_UNTIL",
    "SIGNATURE_HEADER",
    "WebhookDeliverer",
    "backoff_s",
    "body_of",
    "sign",
    "verify",
]
