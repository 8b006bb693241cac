"""Webhooks: outbox events POSTed, signed, to the configured endpoints (see `deliverer`;
the endpoints' settings syntax: `endpoints`; the signatures: `signing`)."""

from __future__ import annotations

from ivr.store import PARKED_UNTIL
from ivr.webhooks.deliverer import WebhookDeliverer, backoff_s, body_of
from ivr.webhooks.endpoints import WEBHOOK_EVENTS, WebhookEndpoint
from ivr.webhooks.signing import (
    EVENT_ID_HEADER,
    EVENT_TYPE_HEADER,
    SIGNATURE_HEADER,
    WEBHOOK_ID,
    WEBHOOK_SIGNATURE,
    WEBHOOK_TIMESTAMP,
    sign,
    standard_sign,
    verify,
)

__all__ = [
    "EVENT_ID_HEADER",
    "EVENT_TYPE_HEADER",
    "PARKED_UNTIL",
    "SIGNATURE_HEADER",
    "WEBHOOK_EVENTS",
    "WEBHOOK_ID",
    "WEBHOOK_SIGNATURE",
    "WEBHOOK_TIMESTAMP",
    "WebhookDeliverer",
    "WebhookEndpoint",
    "backoff_s",
    "body_of",
    "sign",
    "standard_sign",
    "verify",
]
