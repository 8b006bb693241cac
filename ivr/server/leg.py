"""The call leg every transport shares: a byte carrier's reads and writes through a
`Serializer` (`ivr.transports.base`). A carrier (`websocket`, `stream`) only says how to
read one message, write some, and close."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Sequence

from ivr.transports.base import Serializer, Wire
from ivr.transports.messages import CallStart, InboundMessage, OutboundMessage


class SerializerLeg(ABC):
    """A `Leg` (`ivr.call.leg`) over one connection in the wire format of `serializer`."""

    def __init__(self, serializer: Serializer, name: str) -> None:
        self.name = name  # the transport's name in logs and call records
        self._serializer = serializer
        self._pending: deque[InboundMessage] = deque()
        self._ended = False

    async def receive(self) -> InboundMessage | None:
        """The next message; None once the far end closed the connection. ProtocolError for
        what the serializer or the carrier refused."""
        while not self._pending:
            if self._ended:
                return None
            data = await self._read()
            if data is None:
                self._ended = True
                parsed = self._serializer.end()
            else:
                parsed = self._serializer.parse(data)
            for msg in parsed:
                if isinstance(msg, CallStart):
                    await self._write(self._serializer.answer(msg))
            self._pending.extend(parsed)
        return self._pending.popleft()

    async def send(self, message: OutboundMessage) -> None:
        if self._closed() or not self._serializer.ready:
            return  # nobody to send to yet (before the stream started), or any more
        await self._write(self._serializer.render(message))

    @abstractmethod
    async def _read(self) -> Wire | None:
        """One message (or what one read of a stream returned); None when it closed."""

    @abstractmethod
    async def _write(self, data: Sequence[Wire]) -> None: ...

    @abstractmethod
    def _closed(self) -> bool: ...

    @abstractmethod
    async def close(self) -> None: ...
