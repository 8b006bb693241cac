"""The ASR and TTS worker processes log as the server does: with IVR_LOG_FORMAT=json their
lines (in the server's stderr) are JSON records too, at the server's level."""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import time
from pathlib import Path
from typing import Any

from live_server import ephemeral_server

from ivr import logs
from ivr.workers import die_with_parent


def _worker(out: Any) -> None:
    die_with_parent("test worker")
    logging.getLogger("ivr.test").warning("from the worker")
    out.put(os.getpid())


def _records(path: Path) -> list[dict[str, Any]]:
    found = []
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            found.append(json.loads(line))
    return found


def test_a_spawned_worker_takes_the_parents_settings(
    tmp_path: Path, monkeypatch: Any, capfd: Any
) -> None:
    monkeypatch.setenv(logs.WORKER_ENV, f"{logging.INFO}:json")
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_worker, args=(queue,))
    proc.start()
    pid = queue.get(timeout=60)
    proc.join(60)
    err = capfd.readouterr().err
    lines = [json.loads(line) for line in err.splitlines() if line.strip()]
    assert [(r["level"], r["logger"], r["message"]) for r in lines] == [
        ("INFO", "ivr.workers", f"test worker process {pid} started"),
        ("WARNING", "ivr.test", "from the worker"),
    ], err
    assert lines[0]["event"] == "worker_started"


def test_no_settings_no_setup(monkeypatch: Any) -> None:
    monkeypatch.delenv(logs.WORKER_ENV, raising=False)
    assert not logs.setup_worker()
    monkeypatch.setenv(logs.WORKER_ENV, "loud:xml")
    assert not logs.setup_worker()


def test_ivr_serve_workers_log_json(tmp_path: Path) -> None:
    with ephemeral_server(tmp_path, IVR_LOG_FORMAT="json") as server:
        deadline = time.monotonic() + 60
        while True:
            workers = [r for r in _records(server.log) if r.get("event") == "worker_started"]
            if workers or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert workers, server.log_text()
        pid = server.proc.pid
        for record in workers:
            assert record["logger"] == "ivr.workers" and record["level"] == "INFO"
            assert record["message"].endswith("started") and str(pid) not in record["message"]
        assert any("ASR worker" in r["message"] for r in workers), workers
        assert "T" in workers[0]["time"] and workers[0]["time"].endswith("Z")
