"""SIP over UDP and TCP on one port: datagrams and connections in, messages to the endpoint.

A message's `Peer` says how to answer it: UDP responses go back to the source address
(symmetric response routing, RFC 3581: what phones behind NAT need), TCP ones on the
connection the request came on. A request of ours (a BYE) goes on the dialog's connection
while it is open, else on a new one, or as a datagram. A TCP stream that cannot be framed
any more (a bad Content-Length, headers too long) gets its 400, if it can be answered, and
is closed; a bad datagram gets its 400 or is dropped. Neither touches any other call.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass

from ivr.sip.message import Request, Response, SipError, StreamFramer, parse_datagram

log = logging.getLogger(__name__)

READ_BYTES = 65_536
TCP_IDLE_S = 600.0  # a connection that carries nothing this long is closed
MAX_CONNECTIONS = 1000


@dataclass
class Peer:
    """The far end of one message: its transport, address and (TCP) connection."""

    transport: str  # "UDP" or "TCP"
    addr: tuple[str, int]
    writer: asyncio.StreamWriter | None = None

    @property
    def open(self) -> bool:
        return self.transport == "UDP" or (self.writer is not None and not self.writer.is_closing())


Handler = Callable[[Request | Response, Peer], None]


class SipTransport:
    def __init__(self, handler: Handler) -> None:
        self._handler = handler
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self.host = ""
        self.port = 0
        self._local: dict[str, str] = {}

    async def start(self, host: str, port: int) -> int:
        """Listen on UDP and TCP `port` (0: a free one, the same for both)."""
        for _ in range(1 if port else 20):  # port 0: UDP's free port may be taken for TCP
            try:
                return await self._listen(host, port)
            except OSError:
                if port:
                    raise
        raise OSError(f"no port free for both UDP and TCP on {host}")

    async def _listen(self, host: str, port: int) -> int:
        loop = asyncio.get_running_loop()
        udp, _ = await loop.create_datagram_endpoint(
            lambda: _Datagrams(self), local_addr=(host, port)
        )
        port = int(udp.get_extra_info("sockname")[1])
        try:
            self._tcp = await asyncio.start_server(self._connection, host, port)
        except OSError:
            udp.close()
            raise
        self._udp, self.host, self.port = udp, host, port
        return port

    @property
    def address(self) -> tuple[str, int]:
        """The address UDP is bound to (TCP listens on the same), once started."""
        name = self._udp.get_extra_info("sockname") if self._udp is not None else None
        return (str(name[0]), int(name[1])) if name else (self.host, self.port)

    async def close(self) -> None:
        if self._tcp is not None:
            self._tcp.close()
        for task in list(self._connections):
            task.cancel()
        for task in list(self._connections):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._udp is not None:
            self._udp.close()

    # --- in ------------------------------------------------------------------------------

    def datagram(self, data: bytes, addr: tuple[str, int]) -> None:
        peer = Peer("UDP", addr)
        try:
            message = parse_datagram(data)
        except SipError as exc:
            log.info("SIP from %s:%d refused: %s", *addr, exc)
            if exc.reply is not None:
                self.send(peer, exc.reply)
            return
        if message is not None:
            self._handler(message, peer)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self._connections) >= MAX_CONNECTIONS:
            writer.close()
            return
        addr = writer.get_extra_info("peername")
        await self._read(reader, Peer("TCP", (str(addr[0]), int(addr[1])), writer))

    async def _read(self, reader: asyncio.StreamReader, peer: Peer) -> None:
        task = asyncio.current_task()
        assert task is not None and peer.writer is not None
        self._connections.add(task)
        framer = StreamFramer()
        try:
            while True:
                data = await asyncio.wait_for(reader.read(READ_BYTES), TCP_IDLE_S)
                if not data:
                    break
                for message in framer.feed(data):
                    self._handler(message, peer)
        except SipError as exc:
            log.info("SIP over TCP from %s:%d refused: %s", *peer.addr, exc)
            if exc.reply is not None:
                self.send(peer, exc.reply)
        except (TimeoutError, ConnectionError):
            pass
        finally:
            self._connections.discard(task)
            peer.writer.close()

    # --- out -----------------------------------------------------------------------------

    def send(self, peer: Peer, data: bytes) -> None:
        if peer.transport == "UDP":
            if self._udp is not None:
                self._udp.sendto(data, peer.addr)
        elif peer.writer is not None and not peer.writer.is_closing():
            peer.writer.write(data)

    async def connect(self, host: str, port: int) -> Peer:
        """A new TCP connection to the far end (to send it a request); its responses are
        read as any connection's."""
        reader, writer = await asyncio.open_connection(host, port)
        peer = Peer("TCP", (host, port), writer)
        task = asyncio.create_task(self._read(reader, peer), name="sip-tcp")
        self._connections.add(task)
        return peer

    def local_address(self, peer: Peer) -> str:
        """Our address as `peer` sees it: the listening host when it is one, else the
        address the system routes `peer` from (no packet is sent to find it)."""
        if self.host not in ("", "0.0.0.0", "::"):
            return self.host
        if peer.writer is not None:
            return str(peer.writer.get_extra_info("sockname")[0])
        ip = peer.addr[0]
        if ip not in self._local:
            with socket.socket(
                socket.AF_INET6 if ":" in ip else socket.AF_INET, socket.SOCK_DGRAM
            ) as s:
                try:
                    s.connect((ip, 9))
                    self._local[ip] = str(s.getsockname()[0])
                except OSError:
                    return "127.0.0.1"
        return self._local[ip]


class _Datagrams(asyncio.DatagramProtocol):
    def __init__(self, transport: SipTransport) -> None:
        self._owner = transport

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        try:
            self._owner.datagram(data, (str(addr[0]), int(addr[1])))
        except Exception:  # one bad message must not stop the socket's other calls
            log.exception("SIP message from %s failed", addr[0])

    def error_received(self, exc: Exception) -> None:
        log.debug("SIP UDP socket error: %r", exc)
