"""Hot reload of the served flow: FlowStore and FlowWatcher on real files (and the real
built-in ASR engine's vocabulary check), then a real `ivr serve` whose flow file is edited,
broken and uploaded while calls are in progress."""

from __future__ import annotations

import asyncio
import functools
import logging
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from live_server import FEED_TOKEN, LiveServer, live_server

from ivr.api import hash_token
from ivr.app import check_flow_grammars
from ivr.asr.pocketsphinx_engine import PocketsphinxEngine
from ivr.dial import Caller, CallerTurn, CallReport
from ivr.dialog import FlowError, FlowStore, load_flow
from ivr.flows_watch import FlowWatcher

ROOT = Path(__file__).resolve().parent.parent
KNOWN = "+15551230001"  # a demo account: "Your balance is 23 dollars and 50 cents."
TOKEN = "hot-reload-token-0123456789"
READER = "hot-reload-reader-0123456789"  # flows.read only
BROKEN = ("goto: balance\n", "goto: balace\n")  # a menu choice going to no node


def copy_flows(tmp: Path) -> Path:
    """The bundled hotline flow with the grammars it compiles against, in a folder of its own
    (the flow file we edit); returns the flow file."""
    folder = tmp / "flows"
    folder.mkdir()
    for name in ("hotline.yaml", "digits.yaml", "yesno.yaml"):
        shutil.copy(ROOT / "grammars" / name, folder / name)
    return folder / "hotline.yaml"


def edited(text: str, *changes: tuple[str, str]) -> str:
    for old, new in changes:
        assert old in text, old
        text = text.replace(old, new)
    return text


# --- FlowStore --------------------------------------------------------------------------


def test_a_bad_file_is_rejected_and_the_old_version_kept(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = copy_flows(tmp_path)
    store = FlowStore(path)
    good, text = store.flow, path.read_text()
    assert store.text == text and store.last_rejected is None
    assert [v.source for v in store.history] == ["startup"]

    path.write_text(edited(text, BROKEN))
    with caplog.at_level(logging.WARNING, logger="ivr.dialog.store"):
        errors = store.reload()
    assert errors and any("unknown node 'balace'" in e for e in errors), errors
    assert store.flow is good and store.text == text and store.errors == errors
    assert store.last_rejected is not None and store.last_rejected.errors == tuple(errors)
    logged = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    for error in errors:  # each problem is logged, as a warning
        assert any(error in line for line in logged), (error, logged)

    path.write_text("nodes: [\n")
    assert "not valid YAML" in store.reload()[0] and store.flow is good

    renamed = edited(text, ("name: hotline", "name: other"))
    path.write_text(renamed)
    assert "cannot be renamed" in store.reload()[0] and store.flow is good

    path.write_text(edited(text, ("Welcome to", "Welcome again to")))
    assert store.reload() == [] and store.errors == []
    assert store.flow.version != good.version
    assert store.flow.version == load_flow(path).version  # the version call records name
    assert "Welcome again to" in store.text
    assert [v.source for v in store.history] == ["startup", "file"]
    assert store.last_rejected.source == "file"  # kept: the last rejection, for ops to see


def test_a_word_the_engine_cannot_say_is_rejected(tmp_path: Path) -> None:
    path = copy_flows(tmp_path)
    text = path.read_text()
    engine = PocketsphinxEngine()  # in-process: what `check` needs
    try:
        store = FlowStore(path, check=functools.partial(check_flow_grammars, engine=engine))
        good = store.flow
        unsayable = edited(text, ("[balance, check my balance", "[balance, zorbulate my balance"))
        path.write_text(unsayable)
        load_flow(path)  # a valid flow as such: only the engine cannot say the word
        errors = store.reload()
    finally:
        engine.close()
    assert any("no pronunciation for 'zorbulate'" in e for e in errors), errors
    assert store.flow is good and store.text == text


# --- FlowWatcher ------------------------------------------------------------------------


async def until(check: Callable[[], bool]) -> None:
    """Polls `check` for up to 15 s (what it watches is a file's effect: no event to await)."""
    for _ in range(750):
        if check():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("timed out")


async def test_watcher_follows_edits_of_the_flow_and_its_grammars(tmp_path: Path) -> None:
    path = copy_flows(tmp_path)
    text = path.read_text()
    results: list[bool] = []
    store = FlowStore(path)
    watcher = FlowWatcher(store, interval_s=0.05, settle_s=0.02, on_result=results.append)
    watcher.start()
    try:
        first = store.flow
        path.write_text(edited(text, ("Welcome to", "Welcome again to")))
        await until(lambda: store.flow is not first)
        assert results == [True] and store.history[-1].source == "file"

        path.write_text(edited(text, BROKEN))
        await until(lambda: store.last_rejected is not None)
        assert results == [True, False] and "Welcome again" in store.text

        # The flow text is unchanged but a grammar it uses is not: recompiled.
        second = store.flow
        path.write_text(edited(text, ("Welcome to", "Welcome again to")))  # good again
        yesno = path.parent / "yesno.yaml"
        yesno.write_text(edited(yesno.read_text(), ('"no thanks",', '"no thanks", "nah",')))
        await until(lambda: store.history[-1].source == "grammars")
        assert store.flow is not second and store.flow.version == second.version
        assert "nah" in store.flow.grammars["fault"].intents["no"]

        # A grammar the flow does not compile against: nothing to switch.
        (path.parent / "colors.yaml").write_text("name: colors\nintents: {red: [red]}\n")
        await asyncio.sleep(0.3)
        assert [v.source for v in store.history] == ["startup", "file", "grammars"]
        assert results == [True, False, True]
    finally:
        await watcher.close()
    assert watcher._task is None


async def test_upload_validates_then_writes_atomically(tmp_path: Path) -> None:
    path = copy_flows(tmp_path)
    text = path.read_text()
    store = FlowStore(path)
    watcher = FlowWatcher(store, interval_s=0.05, settle_s=0.02)
    watcher.start()
    try:
        with pytest.raises(FlowError) as info:
            await watcher.upload(edited(text, BROKEN))
        assert any("balace" in e for e in info.value.errors)
        assert path.read_text() == text and store.last_rejected is not None
        assert store.last_rejected.source == "api"

        new = edited(text, ("Welcome to", "Welcome back to"))
        flow = await watcher.upload(new)
        assert store.flow is flow and path.read_text() == new and store.text == new
        assert sorted(p.name for p in path.parent.iterdir()) == [
            "digits.yaml",
            "hotline.yaml",
            "yesno.yaml",
        ]  # no temporary file left behind
        await asyncio.sleep(0.3)  # the watcher sees its own write as no change
        assert [v.source for v in store.history] == ["startup", "api"]

        # A broken edit on disk, undone by uploading the served text: the file is restored.
        path.write_text(edited(new, BROKEN))
        await until(
            lambda: store.last_rejected is not None and store.last_rejected.source == "file"
        )
        assert await watcher.upload(new) is flow and path.read_text() == new
        assert [v.source for v in store.history] == ["startup", "api"]
    finally:
        await watcher.close()


# --- a real server --------------------------------------------------------------------------


class Api:
    def __init__(self, http: aiohttp.ClientSession, server: LiveServer) -> None:
        self.http = http
        self.base = f"http://127.0.0.1:{server.port}"

    async def __call__(
        self, method: str, path: str, token: str = TOKEN, **kwargs: Any
    ) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token}"}
        async with self.http.request(method, self.base + path, headers=headers, **kwargs) as r:
            return r.status, await r.json()

    async def flow(self) -> dict[str, Any]:
        status, body = await self("GET", "/v1/flows")
        assert status == 200, body
        (flow,) = body["items"]
        return flow  # type: ignore[no-any-return]

    async def wait_for(self, check: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        deadline = time.monotonic() + 15
        while not check(flow := await self.flow()):
            assert time.monotonic() < deadline, flow
            await asyncio.sleep(0.1)
        return flow


def prompts(report: CallReport) -> str:
    return " | ".join(e["text"] for e in report.events if e.get("event") == "prompt")


def caller(server: LiveServer, turns: list[CallerTurn], **kwargs: Any) -> Caller:
    return Caller(
        server.media_url, turns, KNOWN, out=None, max_seconds=60, token=FEED_TOKEN, **kwargs
    )


def quick(server: LiveServer) -> Caller:
    """Keys 1 half a second into the menu prompt (cutting it short), hangs up the same way
    during the balance answer: a few seconds."""
    return caller(server, [CallerTurn(dtmf="1")], barge_in_after=0.5)


def test_served_flow_reloads_while_calls_are_in_progress(tmp_path: Path) -> None:
    path = copy_flows(tmp_path)
    v1_text = path.read_text()
    v2_text = edited(
        v1_text,
        ("Welcome to the Example", "Welcome to the new Example"),
        ('say: "Your balance is {balance}."', 'say: "Right now your balance is {balance}."'),
    )
    v3_text = edited(v2_text, ("Welcome to the new Example", "Welcome to the third Example"))
    env = {
        "IVR_FLOW": str(path),
        "IVR_GRAMMAR_DIR": str(path.parent),
        "IVR_API_TOKENS": f"ops:{hash_token(TOKEN)}:*,viewer:{hash_token(READER)}:flows.read",
    }

    async def scenario(server: LiveServer) -> dict[str, Any]:
        out: dict[str, Any] = {}
        async with aiohttp.ClientSession() as http:
            api = Api(http, server)
            v1 = await api.flow()
            # A: listens to the whole menu before keying 1, so it keys after the reload.
            a = caller(server, [CallerTurn(dtmf="1")])
            a_task = asyncio.create_task(a.run())
            await until(lambda: any(e["event"] == "prompt" for e in a.report.events))
            path.write_text(v2_text)
            v2 = await api.wait_for(lambda f: f["version"] != v1["version"])
            out["a_keyed_before_reload"] = any(e["event"] == "dtmf" for e in a.report.events)
            out["b"] = await quick(server).run()  # B: started after the reload

            path.write_text(edited(v2_text, BROKEN))
            out["rejected"] = await api.wait_for(lambda f: f["last_rejected"] is not None)
            out["c"] = await quick(server).run()  # C: the good version still serves

            status, body = await api("PUT", "/v1/flows/hotline", json={"text": v3_text})
            assert status == 200, body
            out["put"] = body
            out["after_put"] = await api.flow()
            status, out["get"] = await api("GET", "/v1/flows/hotline")
            assert status == 200
            out["d"] = await quick(server).run()  # D: the uploaded version serves

            out["bad_put"] = await api(
                "PUT", "/v1/flows/hotline", json={"text": edited(v3_text, BROKEN)}
            )
            out["disk_after_bad_put"] = path.read_text()
            out["renamed_put"] = await api(
                "PUT",
                "/v1/flows/hotline",
                json={"text": v3_text.replace("name: hotline", "name: x")},
            )
            out["unknown"] = await api("GET", "/v1/flows/nosuchflow")
            out["reader_get"] = await api("GET", "/v1/flows/hotline", token=READER)
            out["reader_put"] = await api(
                "PUT", "/v1/flows/hotline", token=READER, json={"text": v1_text}
            )
            out["after_bad_puts"] = await api.flow()

            out["a"] = await a_task
            out["records"] = {
                k: (await api("GET", f"/v1/calls/{out[k].call_id}"))[1] for k in "abcd"
            }
        out["v1"], out["v2"] = v1, v2
        return out

    with live_server(tmp_path, **env) as server:
        r = asyncio.run(scenario(server))
        log = server.log_text()
    v1, v2, v3 = r["v1"]["version"], r["v2"]["version"], r["put"]["version"]
    assert len({v1, v2, v3}) == 3

    # B started after the reload: the new greeting and answer text, and its record says so.
    assert not r["a_keyed_before_reload"]
    assert "Welcome to the new Example" in prompts(r["b"]), r["b"].events
    assert "Right now your balance is" in prompts(r["b"])
    assert r["records"]["b"]["flow_version"] == v2
    # A started before it: it finished on its version, keying 1 after the reload.
    a = r["a"]
    assert "Welcome to the Example" in prompts(a) and "Your balance is 23 dollars" in prompts(a)
    assert "Right now" not in prompts(a) and a.hangup == "caller_hangup", a.events
    assert r["records"]["a"]["flow_version"] == v1

    # A broken file: rejected with its error (logged as a warning), v2 still serves.
    rejected = r["rejected"]
    assert rejected["version"] == v2 and rejected["last_rejected"]["source"] == "file"
    assert any("unknown node 'balace'" in e for e in rejected["last_rejected"]["errors"])
    assert "WARNING" in log and "unknown node 'balace'" in log
    assert "Welcome to the new Example" in prompts(r["c"]), r["c"].events
    assert r["records"]["c"]["flow_version"] == v2

    # An upload: validated, written, served.
    assert r["put"] == {"name": "hotline", "version": v3}
    assert r["after_put"]["version"] == v3 and r["get"]["text"] == v3_text
    assert [h["source"] for h in r["after_put"]["history"]] == ["api", "file", "startup"]
    assert [h["version"] for h in r["after_put"]["history"]] == [v3, v2, v1]
    assert "Welcome to the third Example" in prompts(r["d"]), r["d"].events
    assert r["records"]["d"]["flow_version"] == v3

    # Bad uploads: 422 naming each problem; nothing changed on disk or in service.
    status, body = r["bad_put"]
    assert status == 422, body
    fields = body["error"]["fields"]
    assert fields and {f["field"] for f in fields} == {"text"}
    assert any("unknown node 'balace'" in f["message"] for f in fields), fields
    assert r["disk_after_bad_put"] == v3_text
    status, body = r["renamed_put"]
    assert status == 422 and "cannot be renamed" in body["error"]["fields"][0]["message"]
    assert r["unknown"][0] == 404
    assert r["reader_get"][0] == 200 and r["reader_put"][0] == 403  # flows.write needed
    assert r["after_bad_puts"]["version"] == v3
    assert r["after_bad_puts"]["last_rejected"]["source"] == "api"
