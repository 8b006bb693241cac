"""Crash recovery (issue 10): `kill -9` a real server during live calls, and nothing of it
outlives it or stays half-done once it is back.

The server alone is killed (not its workers, unlike `test_reliability.kill9`): its ASR and
TTS worker processes must exit by themselves within seconds. Restarted on the same data,
the node closes the calls it left open as `server_crash`, each with its `call.ended` event
in the outbox, and completes the whole-call recordings they were writing (no `.wav.tmp`
left). On PostgreSQL, another node's open call (live elsewhere) is left alone.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import struct
import time
import wave
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
from failures import HeldCall, alive, descendants
from live_server import LiveServer, live_server
from webhook_receiver import wait_until

from ivr.call.recording import recover_partial
from ivr.store import open_store, sqlite_path

N_CALLS = 2
OTHER_NODE = "other-node"


def query(db: str, sql: str, *args: Any) -> list[dict[str, Any]]:
    """Rows as the database has them (`$1` parameters), read beside the server."""
    if not db.startswith("postgresql://"):
        with sqlite3.connect(sqlite_path(db)) as conn:
            conn.row_factory = sqlite3.Row
            return [dict(r) for r in conn.execute(sql.replace("$", "?"), args)]

    async def fetch() -> list[dict[str, Any]]:
        conn = await asyncpg.connect(db)
        try:
            return [dict(r) for r in await conn.fetch(sql, *args)]
        finally:
            await conn.close()

    return asyncio.run(fetch())


def calls_of(db: str, sids: list[str]) -> dict[str, dict[str, Any]]:
    rows = query(db, "SELECT * FROM calls")
    return {r["provider_call_id"]: r for r in rows if r["provider_call_id"] in sids}


async def seed_other_nodes_call(db: str) -> str:
    """A call in progress on another node sharing the database."""
    store = await open_store(db)
    try:
        call = await store.start_call(
            "other-live-call", transport="twilio", provider_call_id="CAother", node_id=OTHER_NODE
        )
    finally:
        await store.close()
    return call.id


def test_kill9_during_calls(tmp_path: Path, database: str) -> None:
    data = tmp_path / "data"
    env = {"IVR_DATA_DIR": str(data), "IVR_ASR_WORKERS": "1"}
    pg = database.startswith("postgresql://")
    if pg:
        env["IVR_DATABASE_URL"] = database
        other = asyncio.run(seed_other_nodes_call(database))
    recordings = data / "recordings"
    (tmp_path / "run1").mkdir()
    with live_server(tmp_path / "run1", **env) as server:
        held = [HeldCall(server.media_url) for _ in range(N_CALLS)]
        sids = [h.sid for h in held]

        async def calls_then_kill() -> float:
            tasks = [asyncio.create_task(h.run()) for h in held]
            # long enough for each call's recording to be on disk in part (5 s pieces)
            await asyncio.to_thread(
                wait_until,
                lambda: len(list(recordings.glob(".*.wav.tmp"))) == N_CALLS,
                30,
                "the calls' recordings in progress",
            )
            killed_at = kill9_server_only(server)
            await asyncio.gather(*tasks)
            return killed_at

        workers = descendants(server.proc.pid)
        assert len(workers) >= 2, workers  # ASR and TTS workers (and multiprocessing's tracker)
        killed_at = asyncio.run(calls_then_kill())
        gone_after = wait_gone(workers, 10) - killed_at
    assert all(h.closed or h.lost for h in held)
    print(f"{len(workers)} worker processes gone {gone_after:.2f} s after the kill")

    # What the crash left: the calls in progress forever, half-written recordings.
    before = calls_of(database, sids)
    assert len(before) == N_CALLS and all(r["ended_at"] is None for r in before.values())
    node = before[sids[0]]["node_id"]
    assert node and all(r["node_id"] == node for r in before.values())
    partial = sorted(recordings.glob(".*.wav.tmp"))
    assert len(partial) == N_CALLS

    (tmp_path / "run2").mkdir()
    with live_server(tmp_path / "run2", **env) as server:
        after = calls_of(database, sids)
        log = server.log_text()
    assert len(after) == N_CALLS
    for row in after.values():
        assert row["end_reason"] == "server_crash", row
        ended = as_time(row["ended_at"])
        assert as_time(row["started_at"]) <= ended <= datetime.fromtimestamp(killed_at, UTC)
    events = [
        json.loads(r["payload"]) if isinstance(r["payload"], str) else r["payload"]
        for r in query(database, "SELECT payload FROM outbox WHERE type = 'call.ended'")
    ]
    ended_events = {e["call"]["provider_call_id"]: e for e in events}
    for sid in sids:
        event = ended_events[sid]["call"]
        assert event["id"] == after[sid]["id"] and event["end_reason"] == "server_crash"
        assert set(event) >= {"id", "caller", "transport", "flow", "started_at", "ended_at"}
    assert f"closed {N_CALLS} calls the previous run of node {node} left open" in log
    # the recordings: completed under their final names, nothing temporary left
    assert not list(recordings.glob("*.tmp")) and not list(recordings.glob(".*"))
    for tmp in partial:
        with wave.open(str(tmp.with_name(tmp.name[1:-4]))) as wav:
            assert wav.getnchannels() == 2 and wav.getframerate() == 8000
            assert wav.getnframes() >= 4 * 8000  # seconds of the call, header sizes fixed
    if pg:  # the other node's call is live: not this node's to close
        [row] = query(database, "SELECT * FROM calls WHERE id = $1", other)
        assert row["ended_at"] is None and row["node_id"] == OTHER_NODE
        assert OTHER_NODE not in json.dumps(events)


def kill9_server_only(server: LiveServer) -> float:
    """SIGKILL the server, and only it: no shutdown code runs; the workers are left to
    notice by themselves."""
    at = time.time()
    os.kill(server.proc.pid, signal.SIGKILL)
    server.proc.wait(10)
    return at


def wait_gone(pids: list[int], limit_s: float) -> float:
    """When (epoch s) none of `pids` runs any more; AssertionError naming those left after
    `limit_s`."""
    start = time.monotonic()
    while left := [p for p in pids if alive(p)]:
        if time.monotonic() - start > limit_s:
            cmdlines = [Path(f"/proc/{p}/cmdline").read_bytes()[:120] for p in left]
            for pid in left:  # not leave them to the next tests
                os.kill(pid, signal.SIGKILL)
            raise AssertionError(f"still running {limit_s} s after the kill: {cmdlines}")
        time.sleep(0.01)
    return time.time()


def as_time(value: Any) -> datetime:
    parsed: datetime = datetime.fromisoformat(value) if isinstance(value, str) else value
    return parsed


# --- partial recordings, on their own ------------------------------------------------------


def wav_header(data_size: int, riff_size: int) -> bytes:
    fmt = struct.pack("<HHIIHH", 1, 2, 8000, 32000, 4, 16)
    return (
        b"RIFF"
        + struct.pack("<I", riff_size)
        + b"WAVEfmt "
        + struct.pack("<I", 16)
        + fmt
        + b"data"
        + struct.pack("<I", data_size)
    )


def test_partial_recordings_are_completed_or_removed(tmp_path: Path) -> None:
    """As libsndfile leaves a WAV it never closed: sizes 0 in the header; a frame cut in
    half at the end; an empty one; one that is not a WAV; a complete one stays as it is."""
    audio = bytes(range(256)) * 40  # 10240 bytes: 2560 frames
    (tmp_path / ".CAcut.wav.tmp").write_bytes(wav_header(0, 8) + audio + b"\x01\x02")
    (tmp_path / ".CAempty.wav.tmp").write_bytes(wav_header(0, 8))
    (tmp_path / ".CAjunk.wav.tmp").write_bytes(b"garbage")
    (tmp_path / "CAdone.wav").write_bytes(wav_header(len(audio), 36 + len(audio)) + audio)
    assert recover_partial(tmp_path) == (1, 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["CAcut.wav", "CAdone.wav"]
    with wave.open(str(tmp_path / "CAcut.wav")) as wav:
        assert wav.getnframes() == 2560 and wav.readframes(2560) == audio
    assert recover_partial(tmp_path) == (0, 0)
    assert recover_partial(tmp_path / "missing") == (0, 0)
