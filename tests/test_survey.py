"""The post-call survey: the `rating` question type and `survey: true` in the dialog engine,
the flow checks, and a real call (live server, flite speech and keys) whose record keeps the
caller's score."""

from __future__ import annotations

import asyncio
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import yaml
from live_server import FEED_TOKEN, live_server
from speech import flite

from ivr.audio.pcm import write_wav
from ivr.dial import Caller, CallerTurn
from ivr.dialog import (
    Action,
    DemoProvider,
    DialogEngine,
    Disconnect,
    DtmfEntered,
    Event,
    Fetch,
    FetchDone,
    FlowError,
    Handoff,
    Listen,
    NoInput,
    Recognized,
    Say,
    Start,
    Survey,
    load_flow,
)
from ivr.dialog.flow import parse_flow
from ivr.store import open_store

GRAMMARS = Path(__file__).resolve().parent.parent / "grammars"
FLOW = load_flow(GRAMMARS / "hotline.yaml")
KNOWN = "+15551230001"
SURVEY = "Before you go: how would you rate this call, from 1 to 5? Say a number or press a key."
GOODBYE = "Thank you for calling Example Telecom. Goodbye."


class Call:
    """The engine driven like the call pipeline drives it (demo lookups answered here)."""

    def __init__(self) -> None:
        self.engine = DialogEngine(FLOW, today=lambda: date(2030, 1, 7))
        self.state, actions = self.engine.start(Start(caller=KNOWN))
        self.actions = self._fulfil(actions)

    def send(self, event: Event) -> list[Action]:
        self.actions = self._fulfil(self.engine.handle(self.state, event))
        return self.actions

    def _fulfil(self, actions: list[Action]) -> list[Action]:
        out = list(actions)
        for a in actions:
            if isinstance(a, Fetch):
                values = DemoProvider().lookup(a.item, a.params)
                out += self._fulfil(self.engine.handle(self.state, FetchDone(values)))
        return out

    def said(self) -> list[str]:
        return [a.text for a in self.actions if isinstance(a, Say)]

    def surveys(self) -> list[int]:
        return [a.score for a in self.actions if isinstance(a, Survey)]

    def to_survey(self) -> None:
        self.send(DtmfEntered("1"))  # balance, then "anything else?"
        self.send(Recognized("no thanks", 0.9))
        assert self.said() == [SURVEY] and self.state.node == "survey"


@pytest.mark.parametrize(
    ("answer", "score"),
    [
        (Recognized("four", 0.8), 4),
        (Recognized("five stars", 0.8), 5),
        (Recognized("excellent", 0.7), 5),
        (Recognized("terrible", 0.6), 1),
        (Recognized("three out of five", 0.4), 3),  # low confidence: no "Did you say...?"
        (DtmfEntered("5"), 5),
        (DtmfEntered("1"), 1),
    ],
)
def test_rating_by_speech_or_key_is_the_survey_score(answer: Event, score: int) -> None:
    call = Call()
    call.to_survey()
    listen = next(a for a in call.actions if isinstance(a, Listen))
    assert listen.dtmf_max_digits == 1 and listen.dtmf_terminator is None  # one key, at once
    call.send(answer)
    assert call.surveys() == [score]
    assert call.said() == [GOODBYE] and call.state.variables["satisfaction"] == str(score)
    assert Disconnect("caller_goodbye") in call.actions


def test_a_key_out_of_range_asks_again() -> None:
    call = Call()
    call.to_survey()
    call.send(DtmfEntered("7"))
    assert call.surveys() == [] and call.said() == ["Sorry, I didn't get that.", SURVEY]
    call.send(DtmfEntered("9"))  # max_no_match 2: the survey's escalation is the goodbye
    assert call.said() == [GOODBYE]
    assert call.surveys() == [] and call.state.end_reason == "no_match_max"


def test_the_survey_can_be_skipped() -> None:
    call = Call()
    call.to_survey()
    call.send(NoInput())  # one silence: the caller has nothing to add
    assert call.said() == [GOODBYE] and call.surveys() == []
    call = Call()
    call.to_survey()
    call.send(Recognized("goodbye", 0.9))
    assert call.said() == [GOODBYE] and call.state.end_reason == "caller_goodbye"
    call = Call()
    call.to_survey()
    call.send(DtmfEntered("0"))  # the agent key still works there
    assert call.state.variables["handoff_reason"] in ("agent_requested", "after_hours")
    assert not any(isinstance(a, Handoff) for a in call.actions) and call.surveys() == []


def test_goodbye_from_the_menu_skips_the_survey() -> None:
    call = Call()
    call.send(Recognized("goodbye", 0.9))
    assert call.said() == [GOODBYE]


def _flow(**survey: Any) -> dict[str, Any]:
    data = yaml.safe_load((GRAMMARS / "hotline.yaml").read_text())
    data["nodes"]["survey"].update(survey)
    return data  # type: ignore[no-any-return]


def test_flow_checks() -> None:
    with pytest.raises(FlowError, match=r"node 'survey': survey: only a rating question"):
        parse_flow(_flow(type="digits"), "f.yaml", "v", GRAMMARS)
    data = _flow()
    data["globals"]["repeat"]["dtmf"] = "5"  # the rating's keys 1-5 come with its type
    with pytest.raises(FlowError, match=r"node 'survey': dtmf for rating 5: key '5' is already"):
        parse_flow(data, "f.yaml", "v", GRAMMARS)
    assert parse_flow(_flow(survey=False), "f.yaml", "v", GRAMMARS).nodes["survey"]


# --- a real call ------------------------------------------------------------------------------


def test_a_real_call_keeps_the_survey_score(tmp_path: Path) -> None:
    no_thanks = tmp_path / "no-thanks.wav"
    write_wav(no_thanks, flite("no thanks", no_thanks, voice="rms"))
    turns = [CallerTurn(dtmf="1"), CallerTurn(wav=no_thanks), CallerTurn(dtmf="4")]

    async def records(db: Path, call_id: str) -> tuple[Any, list[Any]]:
        store = await open_store(str(db))
        try:
            return await store.get_call(call_id), await store.list_turns(call_id)
        finally:
            await store.close()

    with live_server(tmp_path) as server:
        caller = Caller(server.media_url, turns, KNOWN, out=None, token=FEED_TOKEN)
        report = asyncio.run(caller.run())
    call, recorded = asyncio.run(records(tmp_path / "data" / "ivr.db", report.call_id))
    assert report.hangup == "caller_goodbye", report.events
    assert call.survey == 4 and call.end_reason == "caller_goodbye"
    heard = [(t.node, t.kind, t.intent) for t in recorded if t.kind != "prompt"]
    assert heard == [
        ("main_menu", "dtmf", "balance"),
        ("anything_else", "recognized", "no"),
        ("survey", "dtmf", "4"),
    ]
    assert any(t.node == "survey" and t.text == SURVEY for t in recorded)
