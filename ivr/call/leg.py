"""The transport-neutral side of a call leg that the pipeline talks to."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from ivr.transports.messages import InboundMessage, OutboundMessage


class Leg(Protocol):
    """One call's connection to the far end (a WebSocket media stream, an AudioSocket...)."""

    name: str  # transport name for logs and records

    async def receive(self) -> InboundMessage | None:
        """The next inbound message; None when the connection closed.

        Raises ProtocolError for malformed input.
        """
        ...

    async def send(self, message: OutboundMessage) -> None: ...

    async def close(self) -> None: ...


@dataclass(frozen=True)
class TransferRequest:
    """Put the caller through to `target`; `context` is the call's for the agent, as
    headers (``X-IVR-Call-Id``, ``X-IVR-Reason``, ``X-IVR-Intents``, ``X-IVR-Transcript``)."""

    target: str
    context: tuple[tuple[str, str], ...]
    timeout_s: float


@runtime_checkable
class TransferLeg(Leg, Protocol):
    """A leg that can hand its caller to someone else itself (SIP: a REFER). The others'
    calls are handed over by their provider (`ivr.call.transfer`)."""

    async def transfer(self, request: TransferRequest) -> str | None:
        """None once the caller is with the target; else why not (refused, failed, no
        answer within `request.timeout_s`)."""
        ...
