"""Asterisk AudioSocket over TCP: `AudioSocket(uuid,host:port)` in a dialplan reaches here."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque

from ivr.call.session import CallServices, CallSession
from ivr.transports.audiosocket import AudioSocketParser, render
from ivr.transports.messages import InboundMessage, OutboundMessage

log = logging.getLogger(__name__)


class AudioSocketLeg:
    name = "audiosocket"

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._parser = AudioSocketParser()
        self._pending: deque[InboundMessage] = deque()

    async def receive(self) -> InboundMessage | None:
        while not self._pending:
            data = await self._reader.read(4096)
            if not data:
                self._pending.extend(self._parser.feed_eof())
                if not self._pending:
                    return None
                break
            self._pending.extend(self._parser.feed(data))
        return self._pending.popleft()

    async def send(self, message: OutboundMessage) -> None:
        data = render(message)
        if data and not self._writer.is_closing():
            self._writer.write(data)
            await self._writer.drain()

    async def close(self) -> None:
        if not self._writer.is_closing():
            self._writer.close()
        with contextlib.suppress(Exception):
            await self._writer.wait_closed()


class AudioSocketServer:
    """The TCP listener; owns the call tasks it starts and cancels them on close."""

    def __init__(self, services: CallServices) -> None:
        self._services = services
        self._server: asyncio.Server | None = None
        self._calls: set[asyncio.Task[None]] = set()

    async def start(self, host: str, port: int) -> int:
        self._server = await asyncio.start_server(self._handle, host, port)
        return int(self._server.sockets[0].getsockname()[1])

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._calls.add(task)
        try:
            await CallSession(AudioSocketLeg(reader, writer), self._services).run()
        except Exception:
            log.exception("AudioSocket connection failed")
        finally:
            self._calls.discard(task)

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
