"""`ivr token list` and `ivr token revoke` (subprocess, as an operator runs them), the
revocation list in the store (both backends), and against a real `ivr serve`: a revoked token
is refused without a restart, wrong tokens lock the address out (429), the README's
quick-start call succeeds, and `ivr --version` says what the server's build info says."""

from __future__ import annotations

import http.client
import json
import os
import re
import shlex
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from live_server import FEED_TOKEN, LiveServer, live_server

from ivr.auth import hash_token, token_entry
from ivr.store import open_store

ROOT = Path(__file__).resolve().parent.parent
CRM = "crm-token-0123456789abcdefghijkl"
OLD = "old-token-0123456789abcdefghijkl"
ENTRIES = ",".join(
    [
        token_entry("crm", CRM, ["callbacks.read", "callbacks.write"]),
        token_entry("old", OLD, ["*"]),
    ]
)


def ivr_cli(*args: str, **env: str | None) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, **env}
    return subprocess.run(
        [sys.executable, "-m", "ivr", *args],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
        env={k: v for k, v in full.items() if v is not None},
        timeout=120,
    )


def tokens_env(tmp_path: Path) -> dict[str, str | None]:
    return {
        "IVR_API_TOKENS": ENTRIES,
        "IVR_DATA_DIR": str(tmp_path / "data"),
        "IVR_DATABASE_URL": None,
    }


# --- the store's revocation list ------------------------------------------------------------


async def test_revocations_are_kept_once_with_their_first_record(url: str) -> None:
    store = await open_store(url)
    try:
        assert await store.revoked_tokens() == []
        first, added = await store.revoke_token("AB" * 32, name="crm", reason="leaked")
        assert added and first.sha256 == "ab" * 32 and first.name == "crm"
        again, added = await store.revoke_token("ab" * 32, name="other")
        assert not added and again == first  # the first revocation stands
        await store.revoke_token("cd" * 32)
        assert [(r.sha256, r.name, r.reason) for r in await store.revoked_tokens()] == [
            ("ab" * 32, "crm", "leaked"),
            ("cd" * 32, None, None),
        ]
    finally:
        await store.close()


# --- the commands ---------------------------------------------------------------------------


def test_list_shows_each_configured_token_and_its_status(tmp_path: Path) -> None:
    env = tokens_env(tmp_path)
    done = ivr_cli("token", "list", **env)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["NAME", "SHA256", "SCOPES", "STATUS"]
    assert lines[1].split() == [
        "crm",
        hash_token(CRM)[:12],
        "callbacks.read,callbacks.write",
        "active",
    ]
    assert lines[2].split() == ["old", hash_token(OLD)[:12], "*", "active"]
    assert CRM not in done.stdout and hash_token(CRM) not in done.stdout  # a prefix only

    done = ivr_cli("token", "revoke", "old", "--reason", "left the team", **env)
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"revoked old (sha256 {hash_token(OLD)[:12]}…)\n"
    assert "refuse it within 5 s" in done.stderr
    again = ivr_cli("token", "revoke", hash_token(OLD)[:10], **env)  # by its digest's start
    assert again.returncode == 0 and "was already revoked at" in again.stdout

    listed = json.loads(ivr_cli("token", "list", "--json", **env).stdout)
    assert [(t["name"], t["status"], t["configured"]) for t in listed] == [
        ("crm", "active", True),
        ("old", "revoked", True),
    ]
    assert listed[1]["revoked_at"] and listed[1]["sha256"] == hash_token(OLD)
    # Once its entry is gone from the configuration, the revocation is still listed.
    env["IVR_API_TOKENS"] = token_entry("crm", CRM, ["callbacks.read"])
    table = ivr_cli("token", "list", **env).stdout
    assert re.search(r"^old\s+\S{12}\s+-\s+revoked \S+ \(not configured here\)$", table, re.M)


def test_revoke_names_what_it_cannot_find(tmp_path: Path) -> None:
    env = tokens_env(tmp_path)
    for which in ("nobody", "abc", "0" * 8):
        done = ivr_cli("token", "revoke", which, **env)
        assert done.returncode == 2, done
        assert f"ivr token: no configured token is named {which!r}" in done.stderr
        assert "(configured: crm, old)" in done.stderr and "Traceback" not in done.stderr
    # A whole digest may name a token configured elsewhere (another node's).
    done = ivr_cli("token", "revoke", "f" * 64, **env)
    assert done.returncode == 0 and done.stdout == f"revoked {'f' * 64}\n"


# --- against a real server ------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    tmp = tmp_path_factory.mktemp("tokens")
    with live_server(
        tmp,
        IVR_API_TOKENS=ENTRIES,
        IVR_TOKEN_REVOCATION_POLL_SECONDS="0.5",
        IVR_MAX_TOKEN_FAILURES_PER_CLIENT="5",
        IVR_ASR_ENGINE="pocketsphinx",
    ) as s:
        yield s


def get(
    server: LiveServer, path: str, token: str | None, source: str = "127.0.0.1"
) -> tuple[int, dict[str, str], Any]:
    """GET `path` from the loopback address `source`: failed attempts count per address, so
    each test of the shared server sends from its own."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    conn = http.client.HTTPConnection(
        "127.0.0.1", server.port, timeout=10, source_address=(source, 0)
    )
    try:
        conn.request("GET", path, headers=headers)
        r = conn.getresponse()
        return r.status, dict(r.headers), json.loads(r.read())
    finally:
        conn.close()


def test_a_revoked_token_is_refused_by_the_running_server(server: LiveServer) -> None:
    src = "127.0.0.3"
    assert get(server, "/v1/callbacks", OLD, src)[0] == 200
    env = {"IVR_API_TOKENS": ENTRIES, "IVR_DATA_DIR": str(server.log.parent / "data")}
    done = ivr_cli("token", "revoke", "old", **env)
    assert done.returncode == 0, done.stderr
    deadline = time.monotonic() + 10
    while (status := get(server, "/v1/callbacks", CRM, src)[0]) == 200:
        if get(server, "/v1/callbacks", OLD, src)[0] != 200:
            break
        assert time.monotonic() < deadline, "still accepted 10 s after its revocation"
        time.sleep(0.2)
    status, _, body = get(server, "/v1/callbacks", OLD, src)
    assert status == 401 and body["detail"] == "bearer token 'old' has been revoked"
    assert get(server, "/v1/callbacks", CRM, src)[0] == 200  # the others are untouched
    assert "tokens: 1 revoked (1 in all)" in server.log_text()


def test_wrong_tokens_lock_the_address_out_of_the_real_server(server: LiveServer) -> None:
    src = "127.0.0.2"
    for i in range(5):
        assert get(server, "/v1/callbacks", f"guess-{i}", src)[0] == 401
    status, headers, body = get(server, "/v1/callbacks", CRM, src)
    assert status == 429 and body["code"] == "too_many_attempts"
    assert 55 <= int(headers["Retry-After"]) <= 60
    assert get(server, "/v1/callbacks", CRM, "127.0.0.4")[0] == 200  # another address
    # The live feed's WebSocket too, with the token as the console and `ivr dial` send it.
    import asyncio

    import aiohttp

    async def feed() -> int:
        connector = aiohttp.TCPConnector(local_addr=(src, 0))
        async with aiohttp.ClientSession(connector=connector) as session:
            try:
                await session.ws_connect(
                    f"ws://127.0.0.1:{server.port}/v1/live",
                    protocols=("ivr.v1", f"bearer.{FEED_TOKEN}"),
                )
            except aiohttp.WSServerHandshakeError as exc:
                return exc.status
        return 101

    assert asyncio.run(feed()) == 429
    with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=10) as r:
        metrics = r.read().decode()
    assert re.search(r'^ivr_token_failures_total\{reason="unknown"\} 5\.0$', metrics, re.M)
    assert re.search(r"^ivr_token_lockouts_total 1\.0$", metrics, re.M)
    assert re.search(r"^ivr_token_locked_clients 1\.0$", metrics, re.M)
    log = server.log_text()
    assert "token attempts: 5 failed from 127.0.0.2 within 60 s" in log
    assert CRM not in log and "guess-" not in log  # no token in the log


def test_version_says_what_the_build_info_metric_says(server: LiveServer) -> None:
    with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=10) as r:
        metrics = r.read().decode()
    info = re.search(r"^ivr_build_info\{(.*)\} 1\.0$", metrics, re.M)
    assert info, metrics[:500]
    labels = dict(re.findall(r'(\w+)="([^"]*)"', info[1]))
    done = ivr_cli("--version", IVR_ASR_ENGINE="pocketsphinx")  # as the server was started
    assert done.stdout.splitlines() == [
        f"ivr {labels['version']}",
        f"python {labels['python']}",
        f"engine {labels['engine']}",
    ]


def _quick_start_dial() -> list[str]:
    """The arguments of the README quick start's `ivr dial` command."""
    readme = (ROOT / "README.md").read_text()
    start = readme.index("## Quick start")
    quick = readme[start : readme.index("\n## ", start + 1)]
    (line,) = [ln for ln in quick.splitlines() if ".venv/bin/ivr dial" in ln]
    words = shlex.split(line.strip().strip("`"), comments=True)
    return words[words.index(".venv/bin/ivr") + 1 :]


def test_the_readme_quick_start_call_succeeds(server: LiveServer) -> None:
    words = _quick_start_dial()
    assert words[0] == "dial"
    # The README's own token variable and the default URL, pointed at this server.
    done = ivr_cli(*words, server.media_url, IVR_TOKEN=FEED_TOKEN)
    assert done.returncode == 0, done.stdout + done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines()]
    said = [e["text"] for e in events if e["event"] == "prompt"]
    assert "Your balance is 23 dollars and 50 cents." in said, said
    assert events[-1] == {"event": "hangup", "reason": "caller_hangup"}
