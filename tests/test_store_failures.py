"""Store failures are loud and contained, and start-up is all or nothing (issue 10).

The database failing (a disk that refuses writes, a read-only PostgreSQL, a lost connection)
reaches callers only as StoreUnavailable, is counted in the store's health, and a call in
progress ends normally; `/readyz` answers 503 until the node's heartbeat gets through again,
with no restart. A start-up that fails anywhere (a corrupt database, a port in use, a late
step) exits at once, non-zero, with the reason on one line and nothing left running.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiosqlite
import asyncpg
import pytest
from failures import HeldCall, Outage, alive, descendants, readyz
from live_server import ROOT, free_port, live_server
from pg import PgCluster
from webhook_receiver import wait_until

from ivr.store import StoreError, StoreUnavailable, open_store
from ivr.store.health import StoreProbe
from ivr.store.sqlite import SQLiteStore

# --- the store on its own -----------------------------------------------------------------


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    store = await SQLiteStore.open(tmp_path / "ivr.db")
    try:
        yield store
    finally:
        await store.close()


def inject(monkeypatch: pytest.MonkeyPatch, error: Exception) -> list[bool]:
    """SQLite's driver raises `error` on every write statement while the flag is set."""
    on = [True]
    for name in ("execute", "execute_fetchall"):
        method = getattr(aiosqlite.Connection, name)

        def failing(self: Any, sql: str, *args: Any, _method: Any = method) -> Any:
            if on[0] and sql.split(None, 1)[0].upper() in ("INSERT", "UPDATE", "DELETE"):
                raise error
            return _method(self, sql, *args)

        monkeypatch.setattr(aiosqlite.Connection, name, failing)
    return on


async def test_driver_errors_leave_the_store_as_store_errors(
    sqlite_store: SQLiteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = sqlite_store
    on = inject(monkeypatch, sqlite3.OperationalError("database or disk is full"))
    with pytest.raises(StoreUnavailable) as raised:
        await store.start_call("c1", transport="twilio")
    assert raised.value.kind == "OperationalError" and "disk is full" in str(raised.value)
    assert isinstance(raised.value, StoreError)
    async with store.transaction() as tx:  # inside a transaction too: caught in the block
        with pytest.raises(StoreUnavailable):
            await tx.add_event("x", {})
    assert store.health.failing and store.health.errors == 2
    assert store.health.last_error == "OperationalError"
    on[0] = False
    # a read succeeding proves nothing about writes: still failing
    assert await store.open_calls("n1") == []
    assert store.health.failing
    await store.node_seen("n1")  # the heartbeat, a write, gets through: healthy again
    assert not store.health.failing
    await store.start_call("c1", transport="twilio", node_id="n1")
    assert [c.id for c in await store.open_calls("n1")] == ["c1"]


async def test_a_failed_commit_leaves_no_transaction_open(
    sqlite_store: SQLiteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLITE_BUSY at COMMIT keeps the transaction open in SQLite: it is rolled back, or
    every later BEGIN would fail ("cannot start a transaction within a transaction")."""
    store = sqlite_store
    execute = aiosqlite.Connection.execute
    busy = [True]

    def commit_busy(self: Any, sql: str, *args: Any) -> Any:
        if sql == "COMMIT" and busy[0]:
            busy[0] = False
            raise sqlite3.OperationalError("database is locked")
        return execute(self, sql, *args)

    monkeypatch.setattr(aiosqlite.Connection, "execute", commit_busy)
    with pytest.raises(StoreUnavailable, match="locked"):
        await store.start_call("c1", transport="twilio")
    await store.start_call("c2", transport="twilio")  # the store goes on
    with pytest.raises(StoreError):
        await store.get_call("c1")  # rolled back, not committed later


async def test_a_real_disk_error_and_recovery_without_reopening(tmp_path: Path) -> None:
    """The file and its WAL made immutable under an open store: SQLite's own disk I/O
    error, reads still fine, and writes again once the files are writable."""
    outage = Outage(tmp_path / "ivr.db", tmp_path)
    if not outage.real:
        pytest.skip("chattr +i needs root on ext4 or alike (the injected kind is tested above)")
    store = await SQLiteStore.open(tmp_path / "ivr.db")
    try:
        await store.start_call("c1", transport="twilio", node_id="n1")
        outage.begin()
        try:
            with pytest.raises(StoreUnavailable) as raised:
                await store.add_turn("c1", "prompt", text="hello")
            assert "disk I/O error" in str(raised.value)
            with pytest.raises(StoreUnavailable):
                await store.node_seen("n1")
            assert store.health.failing
            assert (await store.get_call("c1")).ended_at is None  # reads still work
        finally:
            outage.end()
        await store.node_seen("n1")
        assert not store.health.failing
        await store.add_turn("c1", "prompt", text="hello again")
        assert [t.text for t in await store.list_turns("c1")] == ["hello again"]
    finally:
        await store.close()


async def test_postgres_read_only_and_lost_connections(pg_cluster: PgCluster) -> None:
    """The server turned read-only and every connection cut: the store's errors are
    StoreUnavailable, the probe says unready, and it recovers on its own."""
    url = await pg_cluster.create_database()
    name = url.rsplit("/", 1)[1]
    admin = await asyncpg.connect(pg_cluster.dsn)
    store = await open_store(url)
    probe = StoreProbe(store, "n1", interval=0.1)

    async def switch(read_only: bool) -> None:
        value = "on" if read_only else "off"
        await admin.execute(f"ALTER DATABASE {name} SET default_transaction_read_only = {value}")
        await admin.fetch(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = $1 AND pid <> pg_backend_pid()",
            name,
        )

    try:
        await probe.beat()
        assert probe.ready
        await switch(read_only=True)
        kinds = set()
        for _ in range(5):  # a cut connection first, then the read-only server
            with pytest.raises(StoreUnavailable) as raised:
                await store.start_call("c1", transport="twilio")
            kinds.add(raised.value.kind)
            if raised.value.kind == "ReadOnlySQLTransactionError":
                break
        assert "ReadOnlySQLTransactionError" in kinds, kinds
        await probe.beat()
        assert not probe.ready and probe.status()["last_error"]
        await switch(read_only=False)
        for _ in range(5):
            await probe.beat()
            if probe.ready:
                break
        assert probe.ready
        await store.start_call("c1", transport="twilio")
    finally:
        await store.close()
        await admin.close()


# --- a real server --------------------------------------------------------------------------


def test_store_outage_during_a_call(tmp_path: Path) -> None:
    """The disk refuses the database's writes during a call: the call goes on and ends
    normally, its slot is freed, /readyz says 503 (and /healthz, liveness, still 200); once
    the disk takes writes again, /readyz says 200 and calls are recorded, no restart."""
    data = tmp_path / "data"
    outage = Outage(data / "ivr.db", tmp_path)
    env = {"IVR_STORE_PROBE_SECONDS": "0.5", "IVR_ASR_WORKERS": "1", **outage.env()}
    with live_server(tmp_path, IVR_DATA_DIR=str(data), **env) as server:

        async def call(seconds: float) -> HeldCall:
            held = HeldCall(server.media_url)
            task = asyncio.create_task(held.run())
            await asyncio.sleep(seconds)
            held.hang_up.set()
            return await task

        assert readyz(server.port)[0] == 200
        outage.begin()
        try:
            wait_until(lambda: readyz(server.port)[0] == 503, 5, "/readyz to say 503")
            during = asyncio.run(call(4.0))
            assert during.closed and not during.lost and during.bot_frames > 0
            wait_until(lambda: server.health()["active_calls"] == 0, 20, "the slot to be free")
            status, body = readyz(server.port)
            assert status == 503 and body["store"]["healthy"] is False, body
            assert body["store"]["last_error"] in ("OperationalError", "DatabaseError"), body
            health = server.health()
            assert health["ready"] is False and health["status"] == "ok"  # alive
            # nothing in either answer names a file or a directory
            for text in (json.dumps(body), json.dumps(health)):
                assert "/" not in text, text
        finally:
            outage.end()
        wait_until(lambda: readyz(server.port)[0] == 200, 5, "/readyz to recover")
        after = asyncio.run(call(3.0))
        assert after.closed and after.bot_frames > 0
        log = server.log_text()
        assert "the database is failing" in log and "the database answers again" in log
        assert re.search(r"call \S+: could not record: sqlite database: ", log), log[-3000:]
        assert "Traceback" not in log
        pid = server.proc.pid

    with sqlite3.connect(data / "ivr.db") as db:
        row = db.execute(
            "SELECT id, end_reason FROM calls WHERE provider_call_id = ?", (after.sid,)
        ).fetchone()
        events = db.execute("SELECT payload FROM outbox WHERE type = 'call.ended'").fetchall()
    assert row is not None and row[1] == "caller_hangup"
    assert any(json.loads(p)["call"]["id"] == row[0] for (p,) in events)
    assert server.proc.pid == pid  # one process all along


# --- start-up -------------------------------------------------------------------------------


def serve(tmp_path: Path, *args: str, **env: str) -> tuple[subprocess.CompletedProcess[str], float]:
    full = {**os.environ, "IVR_DATA_DIR": str(tmp_path / "data"), **env}
    full.pop("IVR_VOSK_MODEL", None)
    started = time.monotonic()
    out = subprocess.run(
        [sys.executable, "-m", "ivr", "serve", "--host", "127.0.0.1", *args],
        cwd=ROOT,
        env=full,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return out, time.monotonic() - started


def test_corrupt_database_at_start(tmp_path: Path) -> None:
    db = tmp_path / "data" / "ivr.db"
    db.parent.mkdir()
    db.write_bytes(os.urandom(8192))
    out, took = serve(tmp_path, "--port", str(free_port()))
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0] == f"ivr serve: cannot open the SQLite database {db}: file is not a database"
    assert took < 5, took


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


@pytest.mark.parametrize("which", ["audiosocket", "http"])
def test_port_in_use_at_start(tmp_path: Path, taken_port: int, which: str) -> None:
    ports = {"audiosocket": free_port(), "http": free_port(), which: taken_port}
    out, took = serve(
        tmp_path, "--port", str(ports["http"]), "--audiosocket-port", str(ports["audiosocket"])
    )
    assert out.returncode == 2, out.stderr
    name = "AudioSocket" if which == "audiosocket" else "HTTP"
    assert out.stderr.strip().splitlines()[-1] == (
        f"ivr serve: {name} port {taken_port}: Address already in use"
    )
    assert took < 2.5, took  # before anything loads


LATE_FAILURE = """
import errno, sys, time
from ivr.server import stream

async def start(self, host, port):
    print(f"FAILING AT {time.time()}", file=sys.stderr, flush=True)
    raise OSError(errno.EADDRINUSE, "error while attempting to bind: address already in use")

stream.StreamServer.start = start  # the AudioSocket port taken after the early check
from ivr.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_a_late_start_up_failure_stops_everything(tmp_path: Path) -> None:
    """The AudioSocket port is taken between the early check and the bind, after the store,
    the models, the ASR and TTS workers have started: the process still exits at once, and
    its workers and store with it."""
    env = {**os.environ, "IVR_DATA_DIR": str(tmp_path / "data"), "IVR_ASR_WORKERS": "1"}
    env.pop("IVR_VOSK_MODEL", None)
    port = free_port()
    ports = ["--port", str(free_port()), "--audiosocket-port", str(port)]
    proc = subprocess.Popen(
        [sys.executable, "-c", LATE_FAILURE, "serve", "--host", "127.0.0.1", *ports],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    seen: set[int] = set()
    deadline = time.monotonic() + 120
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            seen.update(descendants(proc.pid))
            time.sleep(0.05)
    finally:
        if proc.poll() is None:  # the failure this test is about: alive, serving nothing
            for pid in [proc.pid, *seen]:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            proc.wait()
            pytest.fail("still running 120 s after a start-up failure")
    ended = time.time()
    stderr = proc.stderr.read() if proc.stderr else ""
    assert proc.returncode == 2, stderr
    failed_at = float(re.findall(r"FAILING AT ([\d.]+)", stderr)[-1])
    assert ended - failed_at < 2.0, ended - failed_at
    assert stderr.strip().splitlines()[-1] == (
        f"ivr serve: AudioSocket port {port}: error while attempting to bind:"
        " address already in use"
    )
    assert "Traceback" not in stderr
    assert len(seen) >= 2, seen  # the ASR and TTS workers had started
    wait_until(lambda: not any(alive(pid) for pid in seen), 5, "the workers to be gone")
