"""The dialog engine alone: text / DTMF / no-input / fetch events in, actions out (no audio)."""

from __future__ import annotations

import dataclasses
from datetime import date
from pathlib import Path

import pytest

from ivr.dialog import (
    Action,
    DemoProvider,
    DialogEngine,
    DialogState,
    Disconnect,
    DtmfEntered,
    Event,
    Fetch,
    FetchDone,
    Handoff,
    Listen,
    NoInput,
    Recognized,
    Say,
    Start,
    Turn,
    load_flow,
)
from ivr.dialog.flow import parse_flow

GRAMMARS = Path(__file__).resolve().parent.parent / "grammars"
FLOW = load_flow(GRAMMARS / "hotline.yaml")
KNOWN = "+15551230001"  # demo account 1234
UNKNOWN = "+15559999999"
MENU_PROMPT = FLOW.nodes["main_menu"].prompt.text  # type: ignore[union-attr]
ANYTHING_ELSE = "Is there anything else I can help with?"


class Call:
    """Drives the engine like the call pipeline would, answering demo fetches itself."""

    def __init__(
        self, caller: str | None = KNOWN, flow: object = FLOW, fail_fetch: str = ""
    ) -> None:
        self.engine = DialogEngine(flow, today=lambda: date(2024, 6, 1))  # type: ignore[arg-type]
        self.demo = DemoProvider()
        self.fail_fetch = fail_fetch
        self.fetches: list[Fetch] = []
        self.state, actions = self.engine.start(Start(caller=caller, params={}))
        self.actions = self._fulfil(actions)
        self.log = list(self.actions)

    def send(self, event: Event) -> list[Action]:
        self.actions = self._fulfil(self.engine.handle(self.state, event))
        self.log += self.actions
        return self.actions

    def say(self, text: str, confidence: float = 0.9) -> list[str]:
        return said(self.send(Recognized(text, confidence)))

    def key(self, digits: str) -> list[str]:
        return said(self.send(DtmfEntered(digits)))

    def silence(self) -> list[str]:
        return said(self.send(NoInput()))

    def _fulfil(self, actions: list[Action]) -> list[Action]:
        out = list(actions)
        for action in actions:
            if isinstance(action, Fetch):
                self.fetches.append(action)
                if self.fail_fetch:
                    done = FetchDone(None, self.fail_fetch)
                else:
                    values = self.demo.lookup(action.item, action.params)
                    done = FetchDone(values, None if values else "not_found")
                out += self._fulfil(self.engine.handle(self.state, done))
        return out

    @property
    def listen(self) -> Listen:
        listens = [a for a in self.actions if isinstance(a, Listen)]
        assert listens, f"no Listen in {self.actions}"
        return listens[-1]

    def turns(self, kind: str) -> list[Turn]:
        return [a for a in self.log if isinstance(a, Turn) and a.kind == kind]

    @property
    def end(self) -> Handoff | Disconnect | None:
        ends = [a for a in self.actions if isinstance(a, Handoff | Disconnect)]
        return ends[-1] if ends else None


def said(actions: list[Action]) -> list[str]:
    return [a.text for a in actions if isinstance(a, Say)]


def test_start_greets_and_listens_to_the_menu() -> None:
    call = Call()
    assert said(call.actions) == ["Welcome to the Example Telecom hotline.", MENU_PROMPT]
    assert call.state.node == "main_menu" and call.state.waiting == "input"
    assert call.state.variables["caller"] == KNOWN
    # A menu with FAQ listens to free speech and matches the text itself.
    assert call.listen.grammar is None and call.listen.dtmf_max_digits == 1
    assert call.listen.no_input_ms == 5000
    assert [t.kind for t in call.turns("prompt")] == ["prompt", "prompt"]
    assert dataclasses.is_dataclass(call.state) and isinstance(call.state, DialogState)


MENU_CASES = [
    ("balance", "check my balance", "1", "Your balance is 23 dollars and 50 cents."),
    ("data_usage", "how much data", "2", "you have used 3.2 gigabytes"),
    ("bill", "my bill", "3", "Your last bill was 45 dollars, due on June 15th."),
    ("fault", "report a fault", "4", "Is your problem with mobile data?"),
    ("agent", "speak to a person", "0", "I'll arrange for one of our team to call you back."),
]


@pytest.mark.parametrize(("intent", "text", "key", "expect"), MENU_CASES)
@pytest.mark.parametrize("by", ["speech", "dtmf"])
def test_main_menu_intents(intent: str, text: str, key: str, expect: str, by: str) -> None:
    call = Call()
    out = call.say(text) if by == "speech" else call.key(key)
    assert any(expect in s for s in out), out
    turn = call.turns("recognized" if by == "speech" else "dtmf")[-1]
    assert turn.intent == intent and turn.node == "main_menu"
    assert call.state.intents == [intent]
    if intent == "agent":  # a callback is offered: first, which number
        assert call.state.node == "confirm_callback_number" and not call.state.ended
        assert call.state.variables["handoff_reason"] == "agent_requested"
    elif intent == "fault":
        assert call.state.node == "fault" and call.listen.grammar is not None
    else:
        assert out[-1] == ANYTHING_ELSE and call.state.node == "anything_else"


def test_balance_for_known_caller_uses_caller_number() -> None:
    call = Call(KNOWN)
    call.say("check my balance")
    fetch = call.fetches[0]
    assert (fetch.source, fetch.item, fetch.url, fetch.timeout_ms) == (
        "demo",
        "balance",
        None,
        2000,
    )
    assert fetch.params == {"caller": KNOWN}
    assert call.state.variables["account"] == "1234"
    assert call.state.variables["balance"] == "23 dollars and 50 cents"


@pytest.mark.parametrize(
    "answer", [Recognized("one two three four", 0.9), DtmfEntered("1234#"), DtmfEntered("1234")]
)
def test_unknown_caller_gives_account_number(answer: Event) -> None:
    call = Call(UNKNOWN)
    out = call.say("balance")
    assert out == ["Please say your account number, or key it in and press hash."]
    assert call.state.node == "ask_account_balance"
    listen = call.listen
    assert listen.grammar is not None and listen.grammar.match("five six").intent == "56"
    assert (listen.dtmf_max_digits, listen.dtmf_terminator) == (10, "#")
    out = said(call.send(answer))
    assert out == ["Your balance is 23 dollars and 50 cents.", ANYTHING_ELSE]
    assert call.state.variables["account"] == "1234"
    assert call.fetches[-1].params["account"] == "1234"
    # The account is remembered: the bill needs no second question.
    assert call.say("bill")[0].startswith("Your last bill was 45 dollars")


def test_unknown_account_number_asks_again_then_escalates() -> None:
    call = Call(None)
    call.say("data usage")
    assert call.state.node == "ask_account_usage"
    assert call.key("9999#") == [
        "Sorry, I couldn't find that account.",
        "Please say your account number, or key it in and press hash.",
    ]
    call.key("8888#")
    assert call.end is None
    call.key("7777#")
    assert call.end is None and call.state.node == "ask_callback_number"  # no caller ID
    assert call.state.variables["handoff_reason"] == "not_found_max"


def test_too_short_account_number_is_a_no_match() -> None:
    call = Call(UNKNOWN)
    call.say("balance")
    out = call.key("12#")
    assert out[0] == "Sorry, I didn't get that." and call.state.no_match == 1
    assert call.turns("dtmf")[-1].intent is None


def test_no_input_reprompts_then_escalates() -> None:
    call = Call()
    first = call.silence()
    assert first == [
        "Sorry, I didn't hear you.",
        "Say balance, data usage, bill, or fault. Or ask me a question, like opening hours.",
    ]
    assert call.state.no_input == 1 and call.listen.grammar is None
    second = call.silence()
    assert second[0] == "Sorry, I still didn't hear anything." and call.state.no_input == 2
    third = call.silence()
    assert call.state.variables["handoff_reason"] == "no_input_max"
    assert third[0] == "I'll arrange for one of our team to call you back."
    assert call.state.node == "confirm_callback_number"
    assert len(call.turns("no_input")) == 3


def test_no_match_reprompts_then_escalates() -> None:
    call = Call()
    assert call.say("purple elephants dancing")[0] == "Sorry, I didn't get that."
    assert call.turns("recognized")[-1].intent is None
    assert call.turns("no_match")[-1].text  # the matcher's reason
    assert call.key("7")[0] == "Sorry, I still didn't understand."
    call.say("blah blah")
    assert call.state.node == "confirm_callback_number"
    assert call.state.variables["handoff_reason"] == "no_match_max"


def test_counters_reset_on_a_new_node() -> None:
    call = Call()
    call.say("purple elephants")
    call.silence()
    call.say("fault")
    assert (call.state.no_match, call.state.no_input) == (0, 0)


def test_repeat_replays_last_prompt_without_counting() -> None:
    call = Call()
    assert call.say("say that again") == ["Welcome to the Example Telecom hotline.", MENU_PROMPT]
    call.say("nonsense words here")
    assert call.state.no_match == 1
    out = call.say("repeat")
    assert out == [
        "Say balance, data usage, bill, or fault. Or ask me a question, like opening hours."
    ]
    assert call.state.no_match == 1 and call.state.node == "main_menu"
    assert call.turns("recognized")[-1].intent == "repeat"
    call.say("balance")
    assert call.say("repeat") == ["Your balance is 23 dollars and 50 cents.", ANYTHING_ELSE]


def test_global_agent_from_a_question() -> None:
    call = Call()
    call.key("4")
    assert call.state.node == "fault"
    call.say("operator")
    assert call.state.node == "confirm_callback_number"
    call = Call(UNKNOWN)
    call.say("balance")
    call.say("speak to a person")
    assert call.state.node == "confirm_callback_number"
    assert call.state.variables["handoff_reason"] == "agent_requested"


@pytest.mark.parametrize("how", ["goodbye", "bye", "no thanks"])
def test_goodbye_hangs_up(how: str) -> None:
    call = Call()
    if how == "no thanks":
        call.key("1")  # balance, then "anything else?"
        assert call.say(how)[0].startswith("Before you go: how would you rate this call")
        how = "goodbye"  # the survey (tests/test_survey.py) can be skipped like this
    out = call.say(how)
    assert out == ["Thank you for calling Example Telecom. Goodbye."]
    assert call.end == Disconnect("caller_goodbye") and call.state.end_reason == "caller_goodbye"


def test_fault_troubleshooting() -> None:
    call = Call()
    call.say("fault")
    assert call.listen.dtmf_max_digits == 1
    out = call.say("no")
    assert out == ["Is it about making or receiving calls?"]
    out = call.key("1")
    assert out[0].startswith("Please restart your phone") and out[-1] == ANYTHING_ELSE
    assert call.state.intents == ["fault", "fault_mobile_data=no", "fault_calls=yes"]
    assert call.state.variables["fault_mobile_data"] == "no"


def test_faq_answer_from_a_paraphrase() -> None:
    call = Call()
    out = call.say("can I use my phone in another country")
    assert out[0].startswith("Roaming in Europe is included") and out[-1] == ANYTHING_ELSE
    assert call.turns("recognized")[-1].intent == "roaming"
    assert call.state.node == "anything_else"


# Two FAQs the classifier scores within the flow's faq_margin (0.671 and 0.670).
AMBIGUOUS = "I'm going abroad and want to change my plan"
DID_YOU_MEAN = "Did you mean changing your plan, or roaming abroad?"


@pytest.mark.parametrize(
    "reply", [Recognized("the second", 0.8), Recognized("roaming abroad", 0.8), DtmfEntered("2")]
)
def test_did_you_mean_a_or_b(reply: Event) -> None:
    call = Call()
    out = call.say(AMBIGUOUS)
    assert out == [DID_YOU_MEAN]
    assert call.state.pending is not None and call.state.pending.kind == "disambiguate"
    assert call.turns("recognized")[-1].intent is None
    grammar = call.listen.grammar
    assert grammar is not None and grammar.match("the first").intent == "plan_change"
    out = said(call.send(reply))
    assert out[0].startswith("Roaming in Europe") and call.state.pending is None
    assert call.state.intents == ["roaming"]


def test_did_you_mean_neither_reprompts_and_silence_reasks() -> None:
    call = Call()
    call.say(AMBIGUOUS)
    out = call.silence()
    assert out == ["Sorry, I didn't hear you.", DID_YOU_MEAN]
    assert call.say("neither") == ["Sorry about that.", MENU_PROMPT]
    assert call.state.pending is None and call.state.node == "main_menu"


def test_low_confidence_asks_for_confirmation() -> None:
    call = Call()
    out = call.say("check my balance", confidence=0.4)
    assert out == ["Did you say balance?"] and call.fetches == []
    assert call.listen.grammar is not None and call.listen.grammar.match("yeah").intent == "yes"
    out = call.say("yes", confidence=0.45)
    assert out[0] == "Your balance is 23 dollars and 50 cents."

    call = Call()
    call.say("check my balance", confidence=0.4)
    assert call.say("no") == ["Sorry about that.", MENU_PROMPT]
    assert call.state.node == "main_menu" and call.fetches == []
    call.say("data usage", confidence=0.4)
    assert call.key("1")[0].startswith("This month you have used")


def test_low_confidence_digits_are_read_back() -> None:
    call = Call(UNKNOWN)
    call.say("balance")
    assert call.say("one two three four", confidence=0.4) == ["Did you say 1 2 3 4?"]
    assert call.say("that's right")[0].startswith("Your balance is")


def test_very_low_confidence_is_a_no_match() -> None:
    call = Call()
    assert call.say("balance", confidence=0.1)[0] == "Sorry, I didn't get that."


@pytest.mark.parametrize("error", ["timeout", "HTTP 500"])
def test_fetch_failure_speaks_fallback(error: str) -> None:
    call = Call(fail_fetch=error)
    out = call.say("balance")
    assert out == [
        "Sorry, I can't read your balance right now. Please try again later.",
        "Would you like one of our team to call you back? Say yes or no, or press 1 or 2.",
    ]
    assert "balance" not in call.state.variables
    assert call.state.variables["handoff_reason"] == "fulfillment_failed"
    assert call.key("2") == [ANYTHING_ELSE]  # no thanks
    call.say("balance")
    call.key("1")  # yes: the callback flow, and the booking will say why
    assert call.state.node == "confirm_callback_number"
    assert call.state.variables["handoff_reason"] == "fulfillment_failed"


def test_events_out_of_turn_are_ignored() -> None:
    call = Call()
    state = call.state
    assert call.engine.handle(state, FetchDone({"x": "1"})) == []
    call.engine.handle(state, Recognized("goodbye"))
    assert call.engine.handle(state, Recognized("balance")) == []


def test_demo_provider_lookup() -> None:
    demo = DemoProvider()
    assert demo.lookup("balance", {"caller": "+15551230002"}) == {
        "account": "5678",
        "account_name": "Sam Lee",
        "balance": "4 dollars and 10 cents",
    }
    assert demo.lookup("bill", {"account": "90210", "caller": KNOWN})["account"] == "90210"  # type: ignore[index]
    assert demo.lookup("balance", {"caller": UNKNOWN}) is None
    with pytest.raises(ValueError, match="unknown item"):
        demo.lookup("shoe_size", {"caller": KNOWN})


SMALL_FLOW = {
    "name": "small",
    "start": "menu",
    "escalation": "bye",
    "globals": {"agent": {"phrases": ["agent"], "dtmf": "0", "goto": "bye"}},
    "nodes": {
        "menu": {
            "kind": "menu",
            "prompt": {"key": "menu_intro", "text": "Say book or note."},
            "choices": {
                "book": {"phrases": ["book", "appointment"], "dtmf": "1", "goto": "day"},
                "note": {"phrases": ["note"], "dtmf": "2", "goto": "note"},
            },
        },
        "day": {"kind": "question", "type": "date", "var": "day", "prompt": "Which day?",
                "next": "hour"},
        "hour": {"kind": "question", "type": "time", "var": "hour", "prompt": "What time?",
                 "next": "done"},
        "note": {"kind": "question", "type": "text", "var": "note", "prompt": "Your note?",
                 "next": "done", "confirm_below": 0},
        "done": {"kind": "answer", "prompt": "Booked {day} at {hour}. Noted: {note}.",
                 "next": "bye"},
        "bye": {"kind": "hangup", "prompt": "Bye.", "reason": "done"},
    },
}  # fmt: skip


def test_menu_without_faq_listens_with_its_grammar_and_other_question_types() -> None:
    flow = parse_flow(SMALL_FLOW, "<small>", "v1", GRAMMARS)
    call = Call(flow=flow)
    say = call.actions[0]
    assert isinstance(say, Say) and say.prompt_key == "menu_intro"
    grammar = call.listen.grammar
    assert grammar is not None and set(grammar.intents) == {"book", "note", "agent"}
    call.say("appointment")
    assert call.listen.dtmf_terminator == "#" and call.listen.dtmf_max_digits == 8
    call.say("tomorrow")
    assert call.state.variables["day"] == "2024-06-02"
    call.key("1430#")
    assert call.state.variables["hour"] == "14:30"
    call = Call(flow=flow)
    call.key("2")
    assert call.listen.grammar is None  # free speech
    out = call.say("please call me back after five", confidence=0.4)
    assert call.state.variables["note"] == "please call me back after five"
    assert out[0] == "Booked  at . Noted: please call me back after five."
    assert call.end == Disconnect("done")


def test_last_words_are_not_interruptible() -> None:
    call = Call()
    call.say("goodbye")
    final = [a for a in call.actions if isinstance(a, Say)]
    assert final and not any(s.barge_in for s in final)
    assert all(s.barge_in for s in call.log if isinstance(s, Say) and s not in final)


def test_a_number_question_waits_longer_for_the_end_of_speech() -> None:
    """Callers pause between groups of digits: the utterance ends after the flow's
    digits_end_silence_ms there, and after the server's usual silence elsewhere."""
    call = Call(UNKNOWN)
    assert call.listen.end_silence_ms is None  # the main menu
    call.key("1")  # balance: an unknown caller is asked for the account number
    assert call.state.node == "ask_account_balance"
    assert call.listen.end_silence_ms == FLOW.spec.defaults.digits_end_silence_ms == 1300
