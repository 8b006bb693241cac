"""Helpers for the failure tests (store outages, start-up failures, crashes) against real
`ivr serve` processes: a Twilio-protocol caller that holds a call open, a store outage on
the SQLite file, the server's worker processes, /readyz."""

from __future__ import annotations

import asyncio
import json
import subprocess
import textwrap
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from ivr.transports.twilio import TwilioClient

FRAME = 320  # 20 ms of 8 kHz PCM


def descendants(pid: int) -> list[int]:
    """All processes below `pid` (its ASR/TTS workers, multiprocessing's tracker), from /proc."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def alive(pid: int) -> bool:
    """Running (a zombie has exited: only its parent has not reaped it)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def readyz(port: int) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@dataclass
class HeldCall:
    """A caller that speaks the Twilio protocol and keeps the line open (silence) until
    `hang_up` is set, then sends `stop`; `closed` once the server closed the stream."""

    url: str
    sid: str = field(default_factory=lambda: "CA" + uuid.uuid4().hex)
    hang_up: asyncio.Event = field(default_factory=asyncio.Event)
    bot_frames: int = 0
    closed: bool = False
    lost: bool = False  # the connection broke (the server died) rather than closed

    async def run(self, limit_s: float = 120.0) -> HeldCall:
        client = TwilioClient()
        try:
            async with aiohttp.ClientSession() as http:
                ws = await http.ws_connect(self.url)
                await ws.send_str(client.connected())
                await ws.send_str(
                    client.start(self.sid, "MZ" + uuid.uuid4().hex, {"from": "+15550001111"})
                )

                async def read() -> None:
                    async for msg in ws:
                        if msg.type != aiohttp.WSMsgType.TEXT:
                            break
                        if '"media"' in msg.data:
                            self.bot_frames += 1
                    self.closed = True

                reader = asyncio.create_task(read())
                loop = asyncio.get_running_loop()
                start, n = loop.time(), 0
                while not reader.done() and loop.time() - start < limit_s:
                    if self.hang_up.is_set():
                        await ws.send_str(client.stop())
                        break
                    for text in client.media(b"\x00" * FRAME):
                        await ws.send_str(text)
                    n += 1
                    await asyncio.sleep(max(0.0, start + n * 0.02 - loop.time()))
                await asyncio.wait_for(reader, 30)
        except (aiohttp.ClientError, ConnectionError, RuntimeError):
            self.lost = True
        return self


class Outage:
    """The SQLite database stops taking writes, for real where the filesystem allows it:
    the file and its WAL made immutable (chattr +i, root on ext4 and the like), so every
    commit fails with SQLite's own "disk I/O error" while reads still work. Where that is
    not possible, a fault injected at the driver (sitecustomize in the server process, on
    while a flag file exists) fails every write statement as a full disk would."""

    def __init__(self, db: Path, work: Path) -> None:
        self.db = db
        self.flag = work / "outage.flag"
        self.site = work / "site"
        self.real = _can_chattr(work)

    def env(self) -> dict[str, str]:
        """The server's environment for the injected kind (nothing for the real one)."""
        if self.real:
            return {}
        self.site.mkdir(exist_ok=True)
        (self.site / "sitecustomize.py").write_text(_INJECTION)
        return {"PYTHONPATH": str(self.site), "IVR_TEST_STORE_OUTAGE": str(self.flag)}

    def files(self) -> list[Path]:
        return [p for p in (self.db, self.db.with_name(self.db.name + "-wal")) if p.exists()]

    def begin(self) -> None:
        if self.real:
            subprocess.run(["chattr", "+i", *map(str, self.files())], check=True)
        else:
            self.flag.touch()

    def end(self) -> None:
        if self.real:
            subprocess.run(["chattr", "-i", *map(str, self.files())], check=True)
        else:
            self.flag.unlink(missing_ok=True)


def _can_chattr(work: Path) -> bool:
    probe = work / "chattr-probe"
    probe.write_text("x")
    try:
        made = subprocess.run(["chattr", "+i", str(probe)], capture_output=True).returncode == 0
    except OSError:
        return False
    if made:
        subprocess.run(["chattr", "-i", str(probe)], check=True)
    probe.unlink()
    return made


_INJECTION = textwrap.dedent(
    '''
    """Test fault injection: while $IVR_TEST_STORE_OUTAGE exists, SQLite writes fail."""
    import os

    FLAG = os.environ.get("IVR_TEST_STORE_OUTAGE")
    if FLAG:
        import sqlite3

        import aiosqlite

        def _failing(method):
            async def call(self, sql, *args, **kwargs):
                head = sql.lstrip().split(None, 1)[0].upper() if sql.strip() else ""
                if os.path.exists(FLAG) and head in ("INSERT", "UPDATE", "DELETE"):
                    raise sqlite3.OperationalError("database or disk is full")
                return await method(self, sql, *args, **kwargs)

            return call

        for name in ("execute", "execute_fetchall"):
            setattr(aiosqlite.Connection, name, _failing(getattr(aiosqlite.Connection, name)))
    '''
)
