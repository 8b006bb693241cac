"""Questions marked ``sensitive: true``: the masking rules, the flow schema, the engine's
turns, prompts and Listen, the recording's pause, the variables kept for an agent, and a
chat's history (both databases)."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import pytest
import soundfile as sf
import yaml
from test_chat import _conversations

from ivr.call.recording import CallAudio
from ivr.dialog import (
    DialogEngine,
    DtmfEntered,
    Fetch,
    FetchDone,
    Listen,
    Recognized,
    Say,
    Start,
    Turn,
    load_flow,
)
from ivr.dialog.flow import FlowError, parse_flow
from ivr.dialog.sensitive import for_agent, mask, redact
from ivr.transports.messages import PlayAudio

GRAMMARS = Path(__file__).resolve().parent.parent / "grammars"
HOTLINE = load_flow(GRAMMARS / "hotline.yaml")
UNKNOWN = "+15559999999"  # no demo account: the flow asks for the number


def test_masks() -> None:
    assert mask("90210") == "•••••"  # short (a PIN, an account): nothing but its length
    assert mask("90210#") == "•••••#"  # the terminator keyed stays
    assert mask("4111111111111111") == "••••••••••••••11"  # long: the last two, as receipts
    assert mask("") == ""
    assert redact("it's nine oh two one oh, then 44") == "it's • • • • •, then ••"
    assert redact("I want an agent") == "I want an agent"
    assert redact("key '1234#' is not an option here") == "key '••••#' is not an option here"


def _flow(**question: Any) -> dict[str, Any]:
    return {
        "name": "pin",
        "start": "ask_pin",
        "escalation": "bye",
        "nodes": {
            "ask_pin": {
                "kind": "question",
                "type": "digits",
                "var": "pin",
                "prompt": "Key your PIN.",
                "min_digits": 4,
                "max_digits": 6,
                "next": "read_back",
                **question,
            },
            "read_back": {"kind": "answer", "prompt": "Your PIN is {pin_spoken}.", "next": "bye"},
            "bye": {"kind": "hangup", "prompt": "Goodbye, {pin}."},
        },
    }


def _parse(data: dict[str, Any]) -> Any:
    return parse_flow(data, "pin.yaml", "v1", GRAMMARS)


def test_the_flow_schema_takes_true_or_false_only_on_questions() -> None:
    assert _parse(_flow(sensitive=True)).sensitive_vars == {"pin"}
    assert _parse(_flow(sensitive=False)).sensitive_vars == frozenset()
    assert HOTLINE.sensitive_vars == {"account"}
    assert HOTLINE.is_sensitive("ask_account_bill") and not HOTLINE.is_sensitive("main_menu")
    with pytest.raises(FlowError) as wrong:
        _parse(_flow(sensitive="yes"))  # YAML's quoted "yes" is no boolean
    assert "node 'ask_pin': sensitive: Input should be a valid boolean" in str(wrong.value)
    data = _flow()
    data["nodes"]["read_back"]["sensitive"] = True  # only a question collects an answer
    with pytest.raises(FlowError, match="node 'read_back': sensitive: Extra inputs"):
        _parse(data)


def test_ivr_grammar_check_rejects_a_wrong_type(tmp_path: Path) -> None:
    import subprocess
    import sys

    path = tmp_path / "pin.yaml"
    path.write_text(yaml.safe_dump(_flow(sensitive=1)))
    done = subprocess.run(
        [sys.executable, "-m", "ivr", "grammar", "check", str(path)],
        capture_output=True,
        text=True,
        cwd=GRAMMARS.parent,
    )
    assert done.returncode != 0
    assert "sensitive" in done.stdout + done.stderr, done.stdout + done.stderr


def _turns(actions: list[Any]) -> list[tuple[str, str, str | None]]:
    return [(t.kind, t.text, t.intent) for t in actions if isinstance(t, Turn)]


def test_keyed_answers_are_kept_masked_and_used_as_they_are() -> None:
    engine = DialogEngine(_parse(_flow(sensitive=True)), today=lambda: date(2030, 1, 7))
    state, actions = engine.start(Start(caller=UNKNOWN))
    (listen,) = [a for a in actions if isinstance(a, Listen)]
    assert listen.sensitive  # the call pauses its recording
    actions = engine.handle(state, DtmfEntered("12#"))  # too short: a no-match
    assert _turns(actions)[:2] == [
        ("dtmf", "••#", None),
        ("no_match", "key '••#' is not an option here", None),
    ]
    actions = engine.handle(state, DtmfEntered("2468#"))
    assert state.variables["pin"] == "2468"  # the dialog has the real value
    says = [a for a in actions if isinstance(a, Say)]
    assert says[0].text == "Your PIN is 2 4 6 8." and says[1].text == "Goodbye, 2468."
    assert [s.recorded for s in says] == ["Your PIN is ••••.", "Goodbye, ••••."]
    assert _turns(actions) == [
        ("dtmf", "••••#", "••••"),
        ("prompt", "Your PIN is ••••.", None),
        ("prompt", "Goodbye, ••••.", None),
    ]


def test_spoken_answers_and_their_confirmation_are_kept_masked() -> None:
    flow = _parse(_flow(sensitive=True, confirm_below=0.9))
    engine = DialogEngine(flow, today=lambda: date(2030, 1, 7))
    state, _ = engine.start(Start(caller=UNKNOWN))
    actions = engine.handle(state, Recognized("two four six eight", 0.6))
    (say,) = [a for a in actions if isinstance(a, Say)]
    assert say.text == "Did you say 2 4 6 8?" and say.recorded == "Did you say • • • •?"
    assert _turns(actions) == [
        ("recognized", "••••", "••••"),
        ("prompt", "Did you say • • • •?", None),
    ]
    (listen,) = [a for a in actions if isinstance(a, Listen)]
    assert listen.sensitive  # the confirmation is at the question: still paused
    actions = engine.handle(state, Recognized("yes", 0.9))
    assert state.variables["pin"] == "2468"


def test_a_question_not_marked_keeps_what_was_keyed() -> None:
    engine = DialogEngine(_parse(_flow()), today=lambda: date(2030, 1, 7))
    state, actions = engine.start(Start(caller=UNKNOWN))
    assert not next(a for a in actions if isinstance(a, Listen)).sensitive
    actions = engine.handle(state, DtmfEntered("2468#"))
    assert _turns(actions)[0] == ("dtmf", "2468#", "2468")


def test_the_hotline_looks_the_masked_account_up_by_its_real_number() -> None:
    engine = DialogEngine(HOTLINE, today=lambda: date(2030, 1, 7))
    state, _ = engine.start(Start(caller=UNKNOWN))
    engine.handle(state, DtmfEntered("1"))
    actions = engine.handle(state, FetchDone(error="not_found"))
    assert state.node == "ask_account_balance"
    assert next(a for a in actions if isinstance(a, Listen)).sensitive
    actions = engine.handle(state, DtmfEntered("90210#"))
    (fetch,) = [a for a in actions if isinstance(a, Fetch)]
    assert fetch.params["account"] == "90210"
    assert _turns(actions) == [("dtmf", "•••••#", "•••••")]


def test_the_variables_kept_for_an_agent() -> None:
    given = {"account": "90210", "account_spoken": "nine oh two one oh", "caller": "+1555",
             "open_now": "yes", "callback_at": "2030-01-07T15:00:00+00:00"}  # fmt: skip
    assert for_agent(given, {"account"}) == {
        "account": "•••••",
        "caller": "+1555",
        "callback_at": "2030-01-07T15:00:00+00:00",
    }


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_a_paused_recording_is_silence_on_both_sides(tmp_path: Path) -> None:
    clock = _Clock()
    rec = CallAudio(tmp_path / "c.wav", 8000, max_seconds=60, clock=clock)
    tone = (b"\x10\x00") * 8000  # one second at 16
    rec.caller(tone)
    rec.sent(PlayAudio(tone))
    clock.now = 1.0
    rec.pause()
    rec.caller(tone)  # the keys' tones and what the caller says: not kept
    rec.sent(PlayAudio(tone))
    clock.now = 2.0
    rec.resume()
    rec.caller(tone)
    rec.sent(PlayAudio(tone))
    await rec.finish()
    wav, _ = sf.read(tmp_path / "c.wav", dtype="int16")
    assert wav.shape == (24000, 2)
    for side in (0, 1):
        assert (wav[:8000, side] == 16).all()
        assert not wav[8000:16000, side].any()
        assert (wav[16000:, side] == 16).all()


async def test_a_chat_keeps_the_customers_answer_masked(store: Any) -> None:
    conversations, _, http = await _conversations(store, HOTLINE)
    try:
        record, _ = await conversations.start("web", None)
        await conversations.reply(record.id, "what's my balance")
        _, replies = await conversations.reply(record.id, "it's 90210")
        assert "Your balance is 0 dollars." in " | ".join(m.text for m in replies)
        other, _ = await conversations.start("web", None)
        await conversations.reply(other.id, "what do I owe this month")
        _, replies = await conversations.reply(other.id, "5678")  # typed keys
        assert "Your last bill was 19 dollars and 99 cents" in " | ".join(m.text for m in replies)
        for id, kept in ((record.id, "it's •••••"), (other.id, "••••")):
            _, history = await conversations.history(id)
            customer = [m.text for m in history if m.sender == "customer"]
            assert customer[1] == kept, customer
            assert not [m for m in history if "90210" in m.text or "5678" in m.text]
    finally:
        await http.close()
