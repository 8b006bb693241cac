"""The transport-neutral side of a call leg that the pipeline talks to."""

from __future__ import annotations

from typing import Protocol

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
