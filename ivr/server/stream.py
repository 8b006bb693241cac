"""Call transports over TCP (asyncio streams): each connection to a transport's listener is
one call, its bytes in the transport's wire format (`ivr.server.transports` lists them;
Asterisk's `AudioSocket(uuid,host:port)` is one)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ivr.call.session import CallServices, CallSession
from ivr.server.leg import SerializerLeg
from ivr.transports.base import Serializer, Wire

log = logging.getLogger(__name__)

READ_BYTES = 4096  # at most this much per read: a few frames of audio


class StreamLeg(SerializerLeg):
    """A call over one TCP connection: the serializer gets the bytes as they arrive; what it
    renders goes in one write (Asterisk wants a frame's header and payload together)."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        serializer: Serializer,
        name: str,
    ) -> None:
        super().__init__(serializer, name)
        self._reader = reader
        self._writer = writer

    async def _read(self) -> Wire | None:
        return await self._reader.read(READ_BYTES) or None

    async def _write(self, data: Sequence[Wire]) -> None:
        out = b"".join(w if isinstance(w, bytes) else w.encode("utf-8") for w in data)
        if out and not self._writer.is_closing():
            self._writer.write(out)
            await self._writer.drain()

    def _closed(self) -> bool:
        return self._writer.is_closing()

    async def close(self) -> None:
        if not self._writer.is_closing():
            self._writer.close()
        with contextlib.suppress(Exception):
            await self._writer.wait_closed()


@dataclass(frozen=True)
class StreamTransport:
    """Calls on a TCP listener, each a new `serializer()`, named `name` in logs and records."""

    name: str
    serializer: Callable[[], Serializer]


class StreamServer:
    """The TCP listener of one transport; owns the call tasks it starts and cancels them on
    close."""

    def __init__(self, services: CallServices, transport: StreamTransport) -> None:
        self._services = services
        self.transport = transport
        self._server: asyncio.Server | None = None
        self._calls: set[asyncio.Task[None]] = set()

    async def start(self, host: str, port: int) -> int:
        """Listen; the port it listens on (an ephemeral one for port 0)."""
        self._server = await asyncio.start_server(self._handle, host, port)
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def addresses(self) -> list[tuple[str, int]]:
        """The (host, port) of each socket it listens on."""
        sockets = self._server.sockets if self._server is not None else ()
        return [(str(a[0]), int(a[1])) for a in (s.getsockname() for s in sockets)]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._calls.add(task)
        t = self.transport
        try:
            serializer = t.serializer()
            leg = StreamLeg(reader, writer, serializer, t.name)
            await CallSession(leg, self._services, serializer.call_id).run()
        except Exception:
            log.exception("%s connection failed", t.name)
        finally:
            self._calls.discard(task)

    def stop_listening(self) -> None:
        """Take no new connections; the calls in progress go on (a drain)."""
        if self._server is not None:
            self._server.close()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._calls):
            task.cancel()
        for task in list(self._calls):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._server is not None:
            await self._server.wait_closed()
