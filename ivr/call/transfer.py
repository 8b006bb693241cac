"""A live transfer of a call to a person, as the dialog's `Transfer` asks, on any leg.

The agent gets the call's context: its id (the one the calls API knows: GET
/v1/calls/{id} is the transcript with every turn and intent), the reason, the intent
history, and that link (`IVR_PUBLIC_URL` + /v1/calls/{id}).

* A leg that transfers by itself (`TransferLeg`: SIP, a REFER) carries the context as
  headers and reports how it went.
* The media streams (AudioSocket, WebSocket streams) cannot move their caller: their
  provider must (Asterisk redirects the channel, a Twilio integration updates the call).
  The call emits the ``call.transfer_requested`` webhook (the call record, and
  `transfer`: target, reason, intents, transcript_url, timeout_seconds) and waits, after the
  transfer node's prompt, for the provider to take the call away: the stream closing within
  the timeout is the transfer done (the call ends ``transferred``); still there at the
  timeout, the transfer failed and the flow goes on (in the hotline: the callback booking).
  A caller who hangs up while waiting cannot be told from a taken call: it is recorded
  ``transferred`` too.
"""

from __future__ import annotations

import asyncio
import logging
import urllib.parse
from typing import Any, Protocol

from ivr.call.leg import Leg, TransferLeg, TransferRequest
from ivr.call.recorder import CallRecorder
from ivr.call.services import CallServices
from ivr.dialog.types import Transfer

log = logging.getLogger(__name__)

MAX_INTENTS = 20  # the latest intents sent in the X-IVR-Intents header


class TransferPort(Protocol):
    """What a transfer uses of its call (`ivr.call.session.CallSession`)."""

    call_id: str
    s: CallServices
    recorder: CallRecorder
    leg: Leg

    def publish(self, event: dict[str, Any]) -> None: ...


def transcript_url(api_url: str, call_id: str) -> str:
    """Where the agent's desktop reads the call: its record with every turn."""
    return f"{api_url.rstrip('/')}/v1/calls/{urllib.parse.quote(call_id, safe='')}"


def context(call_id: str, action: Transfer, link: str) -> tuple[tuple[str, str], ...]:
    """The call's context as the agent gets it: headers of a REFER, of the agent's INVITE."""
    return (
        ("X-IVR-Call-Id", call_id),
        ("X-IVR-Reason", action.reason),
        ("X-IVR-Intents", ",".join(action.intents[-MAX_INTENTS:])),
        ("X-IVR-Transcript", link),
    )


async def transfer(call: TransferPort, action: Transfer) -> str | None:
    """Put `call`'s caller through to `action.target`: None once that is done, else why not."""
    settings = call.s.transfers
    timeout_s = action.timeout_ms / 1000 if action.timeout_ms else settings.timeout_s
    link = transcript_url(settings.api_url, call.call_id)
    event = {"event": "transfer", "target": action.target, "reason": action.reason}
    call.publish(event | {"via": call.leg.name})
    log.info("call %s: transfer to %s (%s)", call.call_id, action.target, action.reason)
    if isinstance(call.leg, TransferLeg):
        request = TransferRequest(action.target, context(call.call_id, action, link), timeout_s)
        return await call.leg.transfer(request)
    requested = call.recorder.transfer_requested(
        {
            "target": action.target,
            "reason": action.reason,
            "intents": list(action.intents),
            "transcript_url": link,
            "timeout_seconds": timeout_s,
        }
    )
    if not requested:
        return "no call.transfer_requested webhook: this server keeps no call records"
    await asyncio.sleep(timeout_s)  # the provider takes the call away: the session ends
    return f"the call was not taken within {timeout_s:g} s"
