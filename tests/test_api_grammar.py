"""POST /v1/grammar/validate and /v1/grammar/test on the real application (`create_app`:
the served hotline flow, the built-in ASR engine in its worker process, real tokens)."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from audio_fixtures import recording

from ivr.api import hash_token
from ivr.api.grammar import ProbeResponse, ValidateResponse
from ivr.app import create_app
from ivr.config import Settings
from ivr.grammar import normalize
from ivr.nlu.numbers import digits_as_words

pytestmark = pytest.mark.asyncio(loop_scope="module")

CONSOLE, READER = "console-secret-0123456789", "reader-secret-0123456789"
HOTLINE = Path(__file__).resolve().parent.parent / "grammars" / "hotline.yaml"
Client = TestClient[web.Request, web.Application]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def client(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Client]:
    tokens = f"console:{hash_token(CONSOLE)}:flows.read,reader:{hash_token(READER)}:calls.read"
    settings = Settings.model_validate(
        {
            "data_dir": tmp_path_factory.mktemp("api-grammar"),
            "host": "127.0.0.1",
            "audiosocket_port": 0,
            "sip_port": 0,  # no SIP: 5060 may be another process's
            "asr_workers": 1,
            "api_tokens": tokens,
        }
    )
    async with TestClient(TestServer(create_app(settings))) as c:
        yield c


async def post(
    client: Client, path: str, body: Any, token: str | None = CONSOLE
) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    async with client.post(path, json=body, headers=headers) as r:
        return r.status, await r.json()


def line_of(text: str, fragment: str) -> int:
    found = [i for i, line in enumerate(text.splitlines(), 1) if fragment in line]
    assert len(found) == 1, (fragment, found)
    return found[0]


async def test_validate_good_flow(client: Client) -> None:
    status, body = await post(client, "/v1/grammar/validate", {"text": HOTLINE.read_text()})
    assert status == 200, body
    ValidateResponse.model_validate(body)
    assert (body["ok"], body["kind"], body["problems"]) == (True, "flow", [])
    assert body["summary"].startswith("flow 'hotline': ")
    assert body["summary"].endswith("words checked with whisper")  # the server's engine
    assert body["warnings"] == []


async def test_validate_warns_of_a_prompt_that_makes_no_sense_in_text(client: Client) -> None:
    text = HOTLINE.read_text().replace('      chat: "I\'m passing you to one of our team."\n', "")
    status, body = await post(client, "/v1/grammar/validate", {"text": text})
    assert status == 200 and body["ok"], body
    assert body["warnings"] == [
        {
            "line": line_of(text, "Please hold while I put you through") - 1,
            "where": "node 'transfer_to_agent': prompt",
            "message": "makes no sense in a chat or SMS ('please hold'): give it a `chat:` wording",
        }
    ]


async def test_validate_bad_flow_lines(client: Client) -> None:
    text = HOTLINE.read_text()
    text = text.replace("missing: ask_account_balance", "missing: ask_acount")
    text = text.replace("phrases: [fault, report a fault,", "phrases: [fault, zorblaxian fault,")
    status, body = await post(client, "/v1/grammar/validate", {"text": text, "name": "mine.yaml"})
    assert status == 200 and body["ok"] is False
    # Whisper can say any word (the vocabulary check of an engine with a dictionary is in
    # tests/test_grammar_cli.py): the broken reference is the one problem.
    assert body["problems"] == [
        {
            "line": line_of(text, "missing: ask_acount"),
            "where": "node 'balance': fetch.missing",
            "message": "unknown node 'ask_acount'",
        },
    ]


async def test_validate_bad_yaml_and_grammars(client: Client) -> None:
    status, body = await post(
        client, "/v1/grammar/validate", {"text": "name: x\nnodes: {a: b: c}\n"}
    )
    assert status == 200 and body["kind"] is None
    assert [(p["line"], p["message"].split(":")[0]) for p in body["problems"]] == [
        (2, "not valid YAML")
    ]
    grammar = "name: g\nintents:\n  a: [one]\n  b: [two, one]\n"
    status, body = await post(client, "/v1/grammar/validate", {"text": grammar})
    assert status == 200 and body["kind"] == "grammar"
    assert body["problems"] == [
        {"line": 4, "where": "", "message": "intents.b: phrase 'one' already belongs to intent 'a'"}
    ]


async def test_test_by_text(client: Client) -> None:
    status, body = await post(client, "/v1/grammar/test", {"text": "check my balance"})
    assert status == 200, body
    ProbeResponse.model_validate(body)
    assert body["node"] == "main_menu"  # the first node that listens
    assert (body["intent"], body["score"], body["phrase"]) == ("balance", 1.0, "check my balance")
    assert (body["text"], body["confidence"]) == ("check my balance", 1.0)
    assert body["runner_up"]["intent"] != "balance"
    body = (await post(client, "/v1/grammar/test", {"text": "when are you open"}))[1]
    assert (body["intent"], body["reason"]) == (
        "opening_hours",
        "FAQ: closest phrase 'when are you open'",
    )
    body = (
        await post(client, "/v1/grammar/test", {"flow": "hotline", "node": "fault", "text": "yeah"})
    )[1]
    assert (body["node"], body["intent"]) == ("fault", "yes")
    body = (await post(client, "/v1/grammar/test", {"text": "the weather in paris"}))[1]
    assert body["intent"] is None and body["reason"].startswith("menu: best phrase")


async def test_test_by_audio(client: Client) -> None:
    wav = base64.b64encode(recording("digits/1").read_bytes()).decode()
    status, body = await post(client, "/v1/grammar/test", {"audio_wav_base64": wav})
    assert status == 200, body
    said = normalize(digits_as_words(body["text"]))  # Whisper writes "1." or "One."
    assert (body["node"], said, body["intent"], body["phrase"]) == (
        "main_menu",
        "one",
        "balance",
        "one",
    )
    assert 0 < body["confidence"] <= 1


async def test_auth(client: Client) -> None:
    for path in ("/v1/grammar/validate", "/v1/grammar/test"):
        status, body = await post(client, path, {"text": "x"}, token=None)
        assert (status, body["error"]["status"]) == (401, 401)
        status, body = await post(client, path, {"text": "x"}, token="wrong")
        assert status == 401
        status, body = await post(client, path, {"text": "x"}, token=READER)
        assert status == 403 and "flows.read" in body["error"]["message"]


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({"text": None}, ["text"]),
        ({"text": 5}, ["text"]),
        ({"text": "a", "grammar": "digits"}, ["grammar"]),
    ],
)
async def test_test_invalid_bodies_are_422(client: Client, body: Any, fields: list[str]) -> None:
    status, answer = await post(client, "/v1/grammar/test", body)
    assert status == 422, answer
    assert [f["field"] for f in answer["error"]["fields"]] == fields


async def test_validate_invalid_bodies_are_422(client: Client) -> None:
    for body, field in (({}, "text"), ({"text": 1}, "text"), ({"text": "a", "name": ""}, "name")):
        status, answer = await post(client, "/v1/grammar/validate", body)
        assert status == 422 and [f["field"] for f in answer["error"]["fields"]] == [field]


async def test_unusable_requests_are_400(client: Client) -> None:
    for body in ({}, {"text": "a", "audio_wav_base64": "QQ=="}):
        status, answer = await post(client, "/v1/grammar/test", body)
        assert status == 400, answer
        assert [f["field"] for f in answer["error"]["fields"]] == ["text", "audio_wav_base64"]
    cases = [
        ({"flow": "other", "text": "a"}, "flow", "this server serves 'hotline'"),
        ({"node": "main_men", "text": "a"}, "node", "no such node"),
        ({"node": "greeting", "text": "a"}, "node", "this answer node has no grammar"),
        ({"audio_wav_base64": "QUJD"}, "audio_wav_base64", "not a sound file"),
        ({"audio_wav_base64": "QUJ"}, "audio_wav_base64", "not base64"),
        ({"audio_wav_base64": "not base64!"}, "audio_wav_base64", "not base64"),
    ]
    for body, field, message in cases:
        status, answer = await post(client, "/v1/grammar/test", body)
        assert status == 400, answer
        (error,) = answer["error"]["fields"]
        assert error["field"] == field and message in error["message"], answer
