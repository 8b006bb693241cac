"""Start a real `ivr serve` subprocess on free loopback ports for end-to-end tests."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ivr.api import token_entry

ROOT = Path(__file__).resolve().parent.parent
FEED_TOKEN = "live-server-feed-token-0123456789"
"""A calls.read token every test server accepts besides the test's own IVR_API_TOKENS: call
feeds need one (`Caller(..., token=FEED_TOKEN)`, `ivr dial --token`, `events_url`)."""
FEED_TOKEN_ENTRY = token_entry("feed", FEED_TOKEN, ["calls.read"])


LISTENING = re.compile(r"listening: (.*?)(?:\"|$)", re.M)
"""The start-up line naming every address (ivr.app.log_listening), as text or in JSON."""


def listening(log: str) -> str | None:
    """The addresses of the server's start-up line in `log`, else None."""
    found = LISTENING.search(log)
    return found.group(1) if found else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LiveServer:
    port: int
    audiosocket_port: int
    proc: subprocess.Popen[str]
    log: Path

    @property
    def media_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v1/media-stream"

    def events_url(self, call_id: str) -> str:
        """The call's feed, with FEED_TOKEN as `?token=` (the access log redacts it)."""
        return f"ws://127.0.0.1:{self.port}/v1/calls/{call_id}/events?token={FEED_TOKEN}"

    def health(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=5) as r:
            return json.loads(r.read())  # type: ignore[no-any-return]

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def log_lines(self) -> list[str]:
        return self.log_text().splitlines()


def _bound(server: LiveServer, deadline: float) -> None:
    """The ports a server given port 0 took, from its start-up line."""
    while (where := listening(server.log_text())) is None:
        if server.proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"ivr serve did not start:\n{server.log_text()}")
        time.sleep(0.2)
    http = re.search(r"http://127\.0\.0\.1:(\d+)", where)
    audiosocket = re.search(r"audiosocket tcp 127\.0\.0\.1:(\d+)", where)
    assert http and audiosocket, where
    server.port, server.audiosocket_port = int(http.group(1)), int(audiosocket.group(1))


@contextmanager
def live_server(tmp: Path, **env: str) -> Iterator[LiveServer]:
    """`ivr serve` on free ports, until the block ends."""
    with _serve(tmp, False, env) as server:
        yield server


@contextmanager
def ephemeral_server(tmp: Path, **env: str) -> Iterator[LiveServer]:
    """`ivr serve` on port 0, the ports it took read from its start-up line."""
    with _serve(tmp, True, env) as server:
        yield server


@contextmanager
def _serve(tmp: Path, ephemeral: bool, env: dict[str, str]) -> Iterator[LiveServer]:
    port, as_port = (0, 0) if ephemeral else (free_port(), free_port())
    log = tmp / "server.log"
    full_env = {
        **os.environ,
        "IVR_DATA_DIR": str(tmp / "data"),
        "IVR_END_SILENCE_MS": "500",
        # Agents are in whatever the hour: a test about business hours sets these (and
        # IVR_CLOCK_START) itself, so no test depends on when the suite runs.
        "IVR_TIMEZONE": "UTC",
        "IVR_BUSINESS_HOURS": "24/7",
        # A test's server stops at its end: calls a test leaves up are cut soon, not drained.
        "IVR_DRAIN_SECONDS": "2",
        # No SIP unless a test asks for it on a port of its own (5060 may be taken).
        "IVR_SIP_PORT": "0",
        **env,
    }
    full_env["IVR_API_TOKENS"] = ",".join(
        filter(None, [full_env.get("IVR_API_TOKENS"), FEED_TOKEN_ENTRY])
    )
    full_env.pop("IVR_VOSK_MODEL", None)
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "ivr",
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--audiosocket-port",
                str(as_port),
            ],
            cwd=ROOT,
            env=full_env,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )
    server = LiveServer(port, as_port, proc, log)
    try:
        deadline = time.monotonic() + 90
        if ephemeral:
            _bound(server, deadline)
        while True:
            try:
                server.health()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"ivr serve did not start:\n{server.log_text()}") from None
                time.sleep(0.2)
        yield server
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
