"""Webhook endpoints as configured: a URL, its own secret, the event types it subscribes to.

``IVR_WEBHOOK_URLS`` is a comma-separated list of entries, each a URL optionally followed
by space-separated options::

    https://crm.example/hooks secret=whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw events=callback.*,
    https://bi.example/ivr events=call.ended+callback.completed,
    https://audit.example/all

``secret=`` signs that endpoint's deliveries (default: ``IVR_WEBHOOK_SECRET``; ``secret=``
with nothing after it: unsigned); ``events=`` takes ``+``-separated event types, ``call.*``,
``callback.*`` or ``*`` (the default). In a YAML config file an entry may also be a mapping
``{url, secret, events}`` (events a list). An event type nobody subscribes to is settled
without a request.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict, Field, field_validator

EVENT_DESCRIPTIONS: dict[str, str] = {
    "call.started": "A call was answered; its record is written (`data.call`).",
    "call.ended": "A call ended; `end_reason` says how (also sent for the calls a crashed"
    " server left open, closed at its restart).",
    "call.transfer_requested": "A call over AudioSocket or a WebSocket media stream reached a"
    " transfer node: put the caller through to `data.transfer.target` (redirect the channel,"
    " update the call) within `timeout_seconds`; the call holds, and its stream closing is the"
    " transfer done (end_reason transferred). Not taken in time: the flow goes on (a callback)."
    " The agent's desktop reads the call at `transcript_url`.",
    "callback.scheduled": "A new callback was booked: by a caller in a call, or over the API"
    " (POST /v1/callbacks).",
    "callback.updated": "An open callback changed: a repeat caller's new request, a"
    " reschedule, or an attempt that did not reach the caller and will be retried.",
    "callback.due": "The dispatcher hands a due callback out: dial now, then report the"
    " outcome (POST /v1/callbacks/{id}/complete) within the dispatch lease.",
    "callback.claimed": "An agent took the callback.",
    "callback.completed": "The callback ended with a final outcome.",
    "callback.cancelled": "The callback was cancelled.",
    "callback.expired": "The callback ran out of attempts, or was still open too long after"
    " it was due.",
    "complaint.detected": "A call or text conversation was found to be a complaint (what the"
    " customer said, three no-matches, a second request for a person, or the same topic"
    " again within a day): `data.complaint` says why; the callback booked in it, if any by"
    " then, had its priority raised (`data.complaint.callback`; a later booking is raised"
    " too, with its own callback.scheduled or callback.updated).",
}
WEBHOOK_EVENTS: tuple[str, ...] = tuple(EVENT_DESCRIPTIONS)
"""Every event type the outbox carries (tests/test_webhooks_standard.py checks the code
writes no other)."""
GROUPS = frozenset(t.split(".")[0] for t in WEBHOOK_EVENTS)
STANDARD_PREFIX = "whsec_"


def whsec_key(secret: str) -> bytes | None:
    """The key bytes of a Standard Webhooks secret (``whsec_`` + base64), else None."""
    if not secret.startswith(STANDARD_PREFIX):
        return None
    raw = secret[len(STANDARD_PREFIX) :]
    try:
        return base64.b64decode(raw + "=" * (-len(raw) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("a whsec_ secret is whsec_ and base64 text") from None


def check_secret(secret: str) -> str:
    """`secret`, when it can sign: a whsec_ one must decode to some bytes."""
    if whsec_key(secret) == b"":
        raise ValueError("a whsec_ secret needs key bytes after whsec_")
    return secret


class WebhookEndpoint(BaseModel):
    """One receiver: every event it subscribes to is POSTed to `url`, signed with `secret`
    (None: the deliverer's default secret; "": unsigned)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str
    secret: str | None = None
    events: tuple[str, ...] = Field(default=("*",), min_length=1)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"webhook URL {value!r} is not http:// or https://")
        return value

    @field_validator("secret")
    @classmethod
    def _secret(cls, value: str | None) -> str | None:
        return value if not value else check_secret(value)

    @field_validator("events")
    @classmethod
    def _events(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for pattern in value:
            if pattern != "*" and pattern not in WEBHOOK_EVENTS:
                group, _, star = pattern.partition(".")
                if star != "*" or group not in GROUPS:
                    raise ValueError(
                        f"unknown webhook event type {pattern!r}: one of"
                        f" {', '.join(WEBHOOK_EVENTS)}, call.*, callback.* or *"
                    )
        return value

    def wants(self, event_type: str) -> bool:
        """Whether the endpoint subscribes to `event_type`."""
        group = event_type.split(".")[0]
        return any(p in ("*", event_type, f"{group}.*") for p in self.events)


def _entry(text: str) -> dict[str, object]:
    """``URL [secret=S] [events=A+B]`` → the endpoint's fields."""
    url, *options = text.split()
    out: dict[str, object] = {"url": url}
    for option in options:
        key, eq, value = option.partition("=")
        if not eq or key not in ("secret", "events") or key in out:
            raise ValueError(
                f"webhook entry {text!r}: after the URL, secret=… and events=a+b, once each"
            )
        out[key] = value.split("+") if key == "events" else value
    return out


def parse_endpoints(value: object) -> object:
    """IVR_WEBHOOK_URLS: entries comma-separated, or a YAML list of entries or mappings."""
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list):
        return items  # pydantic says what is wrong with it
    out: list[object] = []
    for item in items:
        if isinstance(item, str):
            if not item.strip():
                continue
            item = _entry(item)
        out.append(item)
    return out


def check_unique(endpoints: Sequence[WebhookEndpoint]) -> None:
    """A URL listed twice with different options is ambiguous (twice alike: one endpoint)."""
    seen: dict[str, WebhookEndpoint] = {}
    for endpoint in endpoints:
        if seen.setdefault(endpoint.url, endpoint) != endpoint:
            raise ValueError(f"webhook URL {endpoint.url!r} is listed twice, differently")
