"""A call's first and last lines in the log, for people and log queries alike:

    call 5be7… started: caller +15551230001 on websocket, flow hotline version 663bcf2f29
    call 5be7… ended: caller_hangup (caller +15551230001, 18.6 s)

In JSON (IVR_LOG_FORMAT=json) they are the events ``call_started`` (with ``transport`` and
``provider_call_id``, the far end's own id: Twilio's CallSid, SIP's Call-ID) and
``call_ended`` (``reason``, ``duration_s``, ``transport``), besides every call record's
``call_id``, ``caller`` and ``node`` (ivr/logs.py). Written under the session's logger.
"""

from __future__ import annotations

import logging

from ivr.logs import event

log = logging.getLogger("ivr.call.session")


def started(
    call_id: str,
    caller: str | None,
    transport: str,
    flow: tuple[str, str],
    provider_call_id: str | None,
) -> None:
    """The call is admitted and its flow about to start."""
    log.info(
        "call %s started: caller %s on %s, flow %s version %s",
        call_id,
        caller or "unknown",
        transport,
        *flow,
        extra=event("call_started", transport=transport, provider_call_id=provider_call_id),
    )


def ended(
    level: int, call_id: str, reason: str, caller: str | None, seconds: float, transport: str
) -> None:
    """The call's last line: why it ended, its caller, how long it lasted (from the far
    end's connecting to the end of the teardown); also for a call refused or never started."""
    log.log(
        level,
        "call %s ended: %s (caller %s, %.1f s)",
        call_id,
        reason,
        caller or "unknown",
        seconds,
        extra=event("call_ended", reason=reason, duration_s=round(seconds, 3), transport=transport),
    )
