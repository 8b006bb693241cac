"""Booking an agent callback in the bundled hotline flow: the dialog engine alone, with a
fixed clock and business hours (Tuesday 2026-11-24 10:17 in Shanghai unless a test says)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from ivr.dialog import (
    Action,
    DialogEngine,
    Disconnect,
    DtmfEntered,
    Event,
    FetchDone,
    NoInput,
    Recognized,
    Say,
    Start,
    load_flow,
)
from ivr.dialog.types import BookCallback
from ivr.dialog.when import BusinessHours

FLOW = load_flow(Path(__file__).resolve().parent.parent / "grammars" / "hotline.yaml")
TZ = ZoneInfo("Asia/Shanghai")
HOURS = BusinessHours.parse("mon-fri 08:00-20:00, sat 09:00-17:00", "Asia/Shanghai")
TUESDAY = datetime(2026, 11, 24, 10, 17, tzinfo=TZ)
SUNDAY = datetime(2026, 11, 29, 21, 5, tzinfo=TZ)
CALLER = "+15551230001"


class Call:
    """Drives the engine; a BookCallback is answered with `book_result`."""

    def __init__(
        self,
        caller: str | None = CALLER,
        now: datetime = TUESDAY,
        book_result: FetchDone | None = None,
        params: dict[str, str] | None = None,
    ) -> None:
        self.engine = DialogEngine(FLOW, clock=lambda: now, hours=HOURS)
        self.book_result = book_result or FetchDone({"callback_id": "cb-1"})
        self.bookings: list[BookCallback] = []
        self.state, actions = self.engine.start(Start(caller=caller, params=params or {}))
        self.actions = self._answer(actions)

    def send(self, event: Event) -> list[str]:
        self.actions = self._answer(self.engine.handle(self.state, event))
        return [a.text for a in self.actions if isinstance(a, Say)]

    def say(self, text: str) -> list[str]:
        return self.send(Recognized(text, 0.9))

    def key(self, digits: str) -> list[str]:
        return self.send(DtmfEntered(digits))

    def _answer(self, actions: list[Action]) -> list[Action]:
        out = list(actions)
        for a in actions:
            if isinstance(a, BookCallback):
                self.bookings.append(a)
                out += self._answer(self.engine.handle(self.state, self.book_result))
        return out

    @property
    def hangup(self) -> str | None:
        ends = [a.reason for a in self.actions if isinstance(a, Disconnect)]
        return ends[-1] if ends else None


def test_agent_by_speech_books_tomorrow_at_three_pm() -> None:
    call = Call()
    out = call.say("speak to a person")
    assert out[0] == "I'll arrange for one of our team to call you back."
    assert "1 5 5 5 1 2 3 0 0 0 1" in out[1]  # the caller ID, read digit by digit
    assert call.say("yes please")[0].startswith("When should we call?")
    assert call.say("tomorrow at three p m") == [
        "So that's a call back tomorrow at 3 PM. Is that right?"
        " Say yes or no, or press 1 for yes, 2 for no."
    ]
    out = call.say("yes")
    (booking,) = call.bookings
    assert booking.number == CALLER
    assert datetime.fromisoformat(booking.due_at) == datetime(2026, 11, 25, 15, 0, tzinfo=TZ)
    assert booking.reason == "agent_requested"
    assert booking.intents == ("agent", "use_caller_number=yes", "callback_at",
                               "callback_confirmed=yes")  # fmt: skip
    assert out == [
        "Thank you. One of our team will call you tomorrow at 3 PM.",
        "Thank you for calling Example Telecom. Goodbye.",
    ]
    assert call.hangup == "callback_booked" and call.state.variables["callback_id"] == "cb-1"


def test_keypad_only_with_another_number_and_a_changed_time() -> None:
    call = Call()
    call.key("0")
    assert call.key("2") == ["Please key in the number we should call, then press hash."]
    assert call.key("12#")[0] == "Sorry, I didn't get that."  # not a phone number
    assert call.key("5551234567#")[0].startswith("When should we call?")
    assert call.key("3")[0].startswith("So that's a call back tomorrow at 9 AM.")
    assert call.key("2")[0].startswith("When should we call?")  # no: ask again
    assert call.key("1")[0].startswith("So that's a call back as soon as possible.")
    call.key("1")
    (booking,) = call.bookings
    assert booking.number == "5551234567"
    assert datetime.fromisoformat(booking.due_at) == TUESDAY.replace(second=0)
    assert booking.variables["callback_number"] == "5551234567"


def test_after_hours_says_when_agents_work_and_books_the_next_opening() -> None:
    call = Call(now=SUNDAY)
    out = call.key("0")
    assert out[0] == (
        "Our team is available Monday to Friday, 8 AM to 8 PM; Saturday, 9 AM to 5 PM."
        " I can book a call back for you."
    )
    call.key("1")
    assert call.say("as soon as possible")[0].startswith("So that's a call back tomorrow at 8 AM")
    call.key("1")
    (booking,) = call.bookings
    assert booking.reason == "after_hours"
    assert datetime.fromisoformat(booking.due_at) == datetime(2026, 11, 30, 8, 0, tzinfo=TZ)


def test_no_caller_id_asks_for_the_number() -> None:
    call = Call(caller=None)
    out = call.key("0")
    assert out[-1] == "Please key in the number we should call, then press hash."


@pytest.mark.parametrize(
    ("events", "reason"),
    [
        ([NoInput()] * 3, "no_input_max"),
        ([Recognized("purple elephants dancing", 0.9)] * 3, "no_match_max"),
    ],
)
def test_escalation_books_with_its_reason(events: list[Event], reason: str) -> None:
    call = Call()
    for ev in events:
        call.send(ev)
    assert call.state.node == "confirm_callback_number"
    call.key("1")
    call.key("4")
    call.key("1")
    assert call.bookings[0].reason == reason


def test_fulfillment_failure_offers_a_callback() -> None:
    call = Call()
    call.key("1")
    # the demo provider answers in the test harness of test_dialog; here the Fetch waits:
    call.send(FetchDone(error="timeout"))
    assert call.state.node == "offer_callback"
    call.key("1")
    call.key("1")
    call.key("1")
    call.key("1")
    assert call.bookings[0].reason == "fulfillment_failed"


def test_main_menu_from_the_booking_forgets_the_reason() -> None:
    call = Call()
    call.key("0")
    call.say("main menu")
    assert call.state.node == "main_menu" and "handoff_reason" not in call.state.variables


def test_silence_while_booking_ends_the_call_politely() -> None:
    call = Call()
    call.key("0")
    call.key("1")
    for _ in range(3):
        out = call.send(NoInput())
    assert out[-1].startswith("Sorry, I couldn't arrange a call back.")
    assert call.hangup == "no_input_max" and call.bookings == []  # the escalation's reason


def test_booking_that_cannot_be_stored_says_so() -> None:
    call = Call(book_result=FetchDone(error="booking failed: database is down"))
    call.key("0")
    call.key("1")
    call.key("1")
    out = call.key("1")
    assert out == ["Sorry, I couldn't arrange a call back. Please call us again later. Goodbye."]
    assert call.hangup == "callback_not_booked"


def test_a_time_already_past_is_not_accepted() -> None:
    call = Call()
    call.key("0")
    call.key("1")
    out = call.say("today at nine a m")  # it is 10:17
    assert out[0] == "Sorry, I didn't get that."
    assert call.state.node == "ask_callback_time"


SCRIPT = "<script>alert(1)</script>"
FORGED = {  # what the far end may put in Twilio customParameters
    "callback_number": SCRIPT,  # the number booked (a question's, and the callback node's)
    "callback_at": "2026-11-24T11:00:00+08:00",  # the callback node's time
    "use_caller_number": "yes",  # a question's answer
    "caller": SCRIPT,
    "caller_spoken": SCRIPT,
    "handoff_reason": SCRIPT,
    "open_now": "no",
    "callback_id": SCRIPT,
}


def test_call_parameters_cannot_set_what_the_engine_or_the_flow_sets() -> None:
    """Only what the flow does not set itself, or declares as an input (`variables:`,
    hotline: caller and account; the caller ID is the engine's all the same), is taken."""
    taken = {"account": "1234", "dialled": "+15550000000"}
    call = Call(params={**FORGED, **taken})
    v = call.state.variables
    assert {k: v[k] for k in taken} == taken
    assert v["caller"] == CALLER and v["caller_spoken"] == "1 5 5 5 1 2 3 0 0 0 1"
    assert v["open_now"] == "yes" and not {"handoff_reason", "callback_id"} & v.keys()
    assert not {"callback_number", "callback_at", "use_caller_number"} & v.keys()
    assert call.state.refused_params == sorted(FORGED)  # for the call's log
    # The flow goes on as for any caller: it asks, and books the caller ID.
    call.key("0")
    assert call.state.node == "confirm_callback_number"
    for key in "111":
        call.key(key)
    (booking,) = call.bookings
    assert booking.number == CALLER and booking.reason == "agent_requested"
    assert SCRIPT not in repr(booking)


def test_a_transports_copy_of_the_caller_id_is_not_reported_as_refused() -> None:
    call = Call(params={"caller": CALLER})  # as the softphone sends it
    assert call.state.refused_params == [] and call.state.variables["caller"] == CALLER
    anonymous = Call(caller=None, params={"caller": SCRIPT, "caller_spoken": SCRIPT})
    assert "caller" not in anonymous.state.variables
    assert anonymous.state.refused_params == ["caller", "caller_spoken"]


def test_a_lookup_cannot_overwrite_the_caller_or_what_a_callback_books() -> None:
    call = Call()
    call.key("1")  # the balance: a lookup by the caller ID
    looked_up = {"balance": "5 dollars", "account": "1234", "account_name": "Alex"}
    call.send(FetchDone({**looked_up, **FORGED}))
    v = call.state.variables
    assert {k: v[k] for k in looked_up} == looked_up  # not asked yet: the account is kept
    assert v["caller"] == CALLER and v["caller_spoken"] == "1 5 5 5 1 2 3 0 0 0 1"
    assert not {"callback_number", "callback_at", "handoff_reason", "callback_id"} & set(v)
    assert call.state.node == "anything_else"
    call.say("agent")
    for key in "111":
        call.key(key)
    (booking,) = call.bookings
    assert booking.number == CALLER and SCRIPT not in repr(booking)


def test_a_lookup_does_not_replace_an_answer_the_caller_gave() -> None:
    call = Call(caller=None)
    call.key("1")
    call.send(FetchDone(error="not_found"))  # no account for no caller ID: it is asked for
    assert call.state.node == "ask_account_balance"
    call.key("5678#")
    call.send(FetchDone({"balance": "4 dollars", "account": "1234"}))
    assert call.state.variables["account"] == "5678"
