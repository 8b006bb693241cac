"""The container image: its Dockerfile's conventions, its entrypoint (the image's flow,
grammars and prompts copied into the data volume once, operators' edits kept), a start as the
image starts the service — the Dockerfile's own environment, the entrypoint, `ivr serve` — whose
console edit survives a "new container", and, where a Docker daemon runs, the image built and
answering /readyz."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
from live_server import live_server

from ivr.api import hash_token

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = (ROOT / "Dockerfile").read_text()
ENTRYPOINT = ROOT / "deploy" / "docker" / "entrypoint.sh"
TOKEN = "docker-test-token-0123456789"


def instructions(name: str) -> list[str]:
    """The arguments of every `NAME` instruction (continuation lines joined)."""
    text = DOCKERFILE.replace("\\\n", " ")
    return [m.group(1).strip() for m in re.finditer(rf"^{name}\s+(.*)$", text, re.M)]


def image_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for line in instructions("ENV"):
        for pair in shlex.split(line):
            key, _, value = pair.partition("=")
            env[key] = value
    return env


def test_dockerfile_runs_as_a_user_with_a_readiness_check_and_the_call_ports() -> None:
    assert instructions("USER") == ["ivr"]  # not root
    assert "useradd --system --uid 10001" in DOCKERFILE
    [check] = instructions("HEALTHCHECK")
    assert "/readyz" in check and "--start-period" in check
    exposed = set(" ".join(instructions("EXPOSE")).split())
    assert {"8080/tcp", "9092/tcp", "5060/udp", "5060/tcp", "10000-10199/udp"} <= exposed
    env = image_env()
    assert env["IVR_RTP_PORTS"] == "10000-10199"  # the exposed RTP range is the one used
    assert env["IVR_GRAMMAR_DIR"].startswith(env["IVR_DATA_DIR"])  # edits land in the volume
    assert instructions("VOLUME") == [env["IVR_DATA_DIR"]]
    assert instructions("ENTRYPOINT") == ['["ivr-entrypoint"]']
    assert "deploy/docker/entrypoint.sh /usr/local/bin/ivr-entrypoint" in DOCKERFILE


def entrypoint(bundled: Path, data: Path, *command: str) -> str:
    env = {**os.environ, "IVR_BUNDLED_DIR": str(bundled), "IVR_DATA_DIR": str(data)}
    done = subprocess.run(
        ["sh", str(ENTRYPOINT), *command], env=env, capture_output=True, text=True, check=True
    )
    return done.stdout


def test_entrypoint_copies_the_image_files_once_and_keeps_edits(tmp_path: Path) -> None:
    bundled, data = tmp_path / "app", tmp_path / "data"
    shutil.copytree(ROOT / "grammars", bundled / "grammars")
    (bundled / "prompts" / "en").mkdir(parents=True)
    (bundled / "prompts" / "en" / "welcome.wav").write_bytes(b"RIFF")
    out = entrypoint(bundled, data, "echo", "started")
    grammars = sorted(p.name for p in (bundled / "grammars").iterdir())
    assert sorted(p.name for p in (data / "grammars").iterdir()) == grammars
    assert (data / "prompts" / "en" / "welcome.wav").read_bytes() == b"RIFF"
    assert f"copied {len(grammars)} file(s) of the image's grammars" in out
    assert out.rstrip().endswith("started")  # then the command runs (exec)

    edited = data / "grammars" / "hotline.yaml"
    edited.write_text(edited.read_text() + "\n# edited in the console\n")
    (bundled / "grammars" / "new.yaml").write_text("name: new\n")  # a newer image's file
    out = entrypoint(bundled, data, "true")
    assert edited.read_text().endswith("# edited in the console\n")  # kept
    assert (data / "grammars" / "new.yaml").exists()
    assert "copied 1 file(s) of the image's grammars" in out
    assert entrypoint(bundled, data, "true") == ""  # nothing new: says nothing


def _put_flow(port: int, text: str) -> dict[str, str]:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/flows/hotline",
        data=json.dumps({"text": text}).encode(),
        method="PUT",
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.loads(r.read())  # type: ignore[no-any-return]


def _served_version(port: int) -> str:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/flows/hotline", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())["version"]  # type: ignore[no-any-return]


def test_a_console_edit_survives_a_new_container(tmp_path: Path) -> None:
    """Two "containers" on one volume: each starts as the image does (its ENV, the
    entrypoint, then `ivr serve`); the first one's flow edit is what the second serves."""
    volume, app = tmp_path / "volume", tmp_path / "app"
    shutil.copytree(ROOT / "grammars", app / "grammars")
    shutil.copytree(ROOT / "prompts", app / "prompts")
    env = {
        k: v.replace("/data", str(volume))
        for k, v in image_env().items()
        if k.startswith("IVR_") and k not in ("IVR_HOST", "IVR_SIP_PORT", "IVR_RTP_PORTS")
    }
    env["IVR_API_TOKENS"] = f"ops:{hash_token(TOKEN)}:flows.read+flows.write"
    marker = f"# edited in the console {uuid.uuid4().hex}"
    entrypoint(app, volume, "true")
    for run in ("first", "second"):
        (tmp_path / run).mkdir()
    with live_server(tmp_path / "first", **env) as first:
        text = (volume / "grammars" / "hotline.yaml").read_text() + f"\n{marker}\n"
        saved = _put_flow(first.port, text)
    assert marker in (volume / "grammars" / "hotline.yaml").read_text()
    assert marker not in (app / "grammars" / "hotline.yaml").read_text()  # the image's as built
    entrypoint(app, volume, "true")  # the new container's first start
    with live_server(tmp_path / "second", **env) as second:
        assert _served_version(second.port) == saved["version"]


def _docker_daemon() -> str | None:
    """Why the image cannot be built here, or None when a daemon answers."""
    if shutil.which("docker") is None:
        return "no docker client installed"
    info = subprocess.run(["docker", "info"], capture_output=True, text=True)
    if info.returncode != 0:
        return f"no Docker daemon: {info.stderr.strip().splitlines()[-1] if info.stderr else ''}"
    return None


def test_the_image_builds_and_becomes_ready() -> None:
    why = _docker_daemon()
    if why is not None:
        pytest.skip(f"{why} (the image is built and started only where one runs)")
    tag = f"ivr-test:{uuid.uuid4().hex[:8]}"
    subprocess.run(["docker", "build", "-t", tag, str(ROOT)], check=True)
    name = f"ivr-test-{uuid.uuid4().hex[:8]}"
    try:
        subprocess.run(
            [
                "docker",
                "run",
                "-d",
                "--name",
                name,
                "-e",
                f"IVR_API_TOKENS=t:{hash_token(TOKEN)}:*",
                tag,
            ],
            check=True,
        )
        deadline = time.monotonic() + 300
        while True:
            state = subprocess.run(
                ["docker", "inspect", "-f", "{{.State.Health.Status}}", name],
                capture_output=True,
                text=True,
            ).stdout.strip()
            if state == "healthy":
                break
            assert state in ("starting", "") and time.monotonic() < deadline, state
            time.sleep(2)
        user = subprocess.run(
            ["docker", "exec", name, "id", "-u"], capture_output=True, text=True, check=True
        ).stdout.strip()
        assert user == "10001"
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)
        subprocess.run(["docker", "rmi", "-f", tag], capture_output=True)
