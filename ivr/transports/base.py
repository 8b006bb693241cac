"""The one protocol every wire format implements; a generic leg in `ivr.server` drives it.

A serializer is pure (no I/O) and holds one connection's state (has the call started, at
which rate, under which stream id). The leg that drives it reads the socket, hands each
read to `parse`, calls `end` when the far end closed it, sends `answer` for a `CallStart`,
and sends what `render` returns, but only once the serializer is `ready`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from ivr.transports.messages import CallStart, InboundMessage, OutboundMessage

Wire = bytes | str
"""One wire message: a WebSocket's text (str) or binary (bytes) message, or bytes of a
stream (TCP), in whatever pieces it arrived."""


class Serializer(Protocol):
    """One connection's wire format, seen from the server."""

    @property
    def call_id(self) -> str | None:
        """The id the server gives this call, when the wire format names the call (the
        softphone page has no id of its own and is told this one); None: the call session
        names it, and the far end's own id (in `CallStart`) is kept as its provider id."""
        ...

    @property
    def ready(self) -> bool:
        """Whether the far end can be addressed yet: nothing is rendered before (Twilio needs
        the stream's id from `start`)."""
        ...

    def parse(self, data: Wire) -> list[InboundMessage]:
        """The messages in one read: a whole WebSocket message, or the bytes a stream read
        returned (a partial frame waits for the next). ProtocolError if it is malformed."""
        ...

    def end(self) -> list[InboundMessage]:
        """The far end closed the connection: what that says (AudioSocket: a hang-up, or a
        ProtocolError inside a frame); [] for nothing more (the leg then reports the close)."""
        ...

    def answer(self, start: CallStart) -> Sequence[Wire]:
        """What to send the far end as soon as its call started (the softphone's `started`);
        most formats send nothing."""
        ...

    def render(self, msg: OutboundMessage) -> Sequence[Wire]:
        """Wire messages for `msg`. A `PlayAudio` is one piece of the leg's ptime, cut by the
        player: it goes as one message, unless more than the format's largest payload; [] for
        what the format has no message for (the leg closes the socket after `EndCall`)."""
        ...
