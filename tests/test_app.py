"""`ivr serve`: starts on its defaults, answers /healthz, and refuses a bad model at start-up."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_serve_defaults_healthz(tmp_path: Path) -> None:
    port = free_port()
    # Call audio past the default retention (90 days) goes at start; a recent one stays.
    (tmp_path / "recordings").mkdir()
    old, recent = tmp_path / "recordings" / "CAold.wav", tmp_path / "recordings" / "CAnew.wav"
    for path, days in ((old, 91), (recent, 89)):
        path.write_bytes(b"RIFF")
        os.utime(path, (time.time() - days * 86400,) * 2)
    env = {**os.environ, "IVR_DATA_DIR": str(tmp_path)}
    env.pop("IVR_VOSK_MODEL", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "ivr", "serve", "--host", "127.0.0.1", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        body = b""
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                    assert r.status == 200
                    body = r.read()
                    break
            except OSError:
                assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
                time.sleep(0.2)
        assert b"whisper tiny.en (bundled)" in body  # the default engine
        while old.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not old.exists() and recent.exists()
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
    assert "ASR engine: whisper" in out
    assert "audio retention: deleted 1 files" in out


def test_serve_with_missing_model_fails_at_start(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model"
    env = {**os.environ, "IVR_DATA_DIR": str(tmp_path), "IVR_VOSK_MODEL": str(missing)}
    out = subprocess.run(
        [sys.executable, "-m", "ivr", "serve", "--port", str(free_port())],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 2
    assert str(missing) in out.stderr and "does not exist" in out.stderr


def test_serve_with_bad_config_file(tmp_path: Path) -> None:
    cfg = tmp_path / "ivr.yaml"
    cfg.write_text("port: not-a-number\n")
    out = subprocess.run(
        [sys.executable, "-m", "ivr", "--config", str(cfg), "serve"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 2
    assert "port" in out.stderr and str(cfg) in out.stderr
