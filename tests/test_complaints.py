"""The complaint early warning: the detector's language part (customers' own words, not the
labelled sets' sentences), its behavioural watch over a contact's turns, and the effects in
text conversations on the bundled flow and a real store (both databases): the conversation
marked, `complaint.detected` in the outbox, the callback's priority raised whether it was
booked before or after the complaint, a repeat contact about the same topic, and a neutral
conversation that sets off nothing."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import pytest

from ivr.analytics.facts import FlowFacts
from ivr.callbacks import CallbackPolicy, Callbacks
from ivr.callbacks.complaints import EVENT, ComplaintDesk
from ivr.chat import Conversations
from ivr.dialog import load_flow
from ivr.dialog.flow import Flow
from ivr.fulfillment import Fulfillment
from ivr.nlu.complaint import (
    THRESHOLD,
    Complaint,
    ComplaintLanguage,
    ComplaintWatch,
    default_language,
    examples,
)
from ivr.store import Store

FLOW = Path(__file__).resolve().parent.parent / "grammars" / "hotline.yaml"
VIP = "+15551230003"  # demo account 90210: segment "vip", priority 10


@pytest.fixture(scope="module")
def flow() -> Flow:
    return load_flow(FLOW)


@pytest.fixture(scope="module")
def language() -> ComplaintLanguage:
    return default_language()


# --- what is said -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "I'd like to make a complaint about my last bill",
        "this is the fourth time I ring about the same fault",
        "honestly your company is a disgrace",
        "get me a supervisor, now",
        "oh brilliant, cut off again, thanks a lot",
        "I'm furious, my phone hasn't worked all week",
    ],
)
def test_complaints_in_a_customers_words_score_as_complaints(
    language: ComplaintLanguage, text: str
) -> None:
    heard = language.hear(text)
    assert heard.complaint and heard.score >= THRESHOLD, heard


@pytest.mark.parametrize(
    "text",
    [
        "how much credit do I have",
        "could you explain the charges on this month's bill",
        "my signal is weak indoors",
        "can a person call me back this afternoon",
        "thanks, that's everything",
        "I'm happy to wait",
    ],
)
def test_ordinary_requests_do_not(language: ComplaintLanguage, text: str) -> None:
    heard = language.hear(text)
    assert not heard.complaint and heard.score < THRESHOLD, heard


@pytest.mark.parametrize("text", ["report a fault", "pass word", "fault", "an engineer visit"])
def test_a_menu_answer_naming_a_problem_is_not_a_complaint(
    language: ComplaintLanguage, text: str
) -> None:
    """These score over the threshold by meaning alone (they name a problem); a complaint
    without an anger or escalation word needs a sentence (MIN_WORDS_BY_MEANING)."""
    heard = language.hear(text)
    assert heard.score >= THRESHOLD and not heard.complaint, heard


@pytest.mark.parametrize("text", ["this is ridiculous", "useless service", "formal complaint"])
def test_a_short_complaint_with_its_words_still_is(language: ComplaintLanguage, text: str) -> None:
    assert language.hear(text).complaint


def test_cues_are_named_and_add_to_the_meaning(language: ComplaintLanguage) -> None:
    heard = language.hear("I want to speak to your manager, this is unacceptable")
    assert {"higher_up", "judgement"} <= set(heard.cues)
    assert language.hear("").score == 0 and not language.hear("").complaint


def test_the_examples_are_the_labelled_tune_part() -> None:
    rows = examples()
    assert len(rows) >= 100 and {label for _, label in rows} == {"complaint", "neutral"}
    heldout = (Path(__file__).resolve().parent.parent / "eval/complaint/heldout.csv").read_text()
    assert not {text for text, _ in rows} & set(heldout.splitlines())  # never tuned on


# --- how the contact goes -----------------------------------------------------------------


def test_three_no_matches_make_a_complaint_once(flow: Flow) -> None:
    watch = ComplaintWatch(None, FlowFacts.from_flow(flow).is_topic)
    assert watch.turn("main_menu", "no_match", "", None) is None
    assert watch.turn("main_menu", "no_match", "", None) is None
    found = watch.turn("main_menu", "no_match", "", None)
    assert found is not None and found.reasons == ("no_matches",)
    assert watch.turn("main_menu", "no_match", "", None) is None  # reported once


def test_asking_for_a_person_twice(flow: Flow) -> None:
    watch = ComplaintWatch(None, FlowFacts.from_flow(flow).is_topic)
    assert watch.turn("main_menu", "recognized", "agent", "agent") is None
    found = watch.turn("confirm_callback_number", "dtmf", "0", "agent")
    assert found is not None and found.reasons == ("agent_twice",)


def test_a_topic_asked_about_again_within_the_day(flow: Flow) -> None:
    is_topic = FlowFacts.from_flow(flow).is_topic
    watch = ComplaintWatch(None, is_topic, frozenset({"bill"}))
    assert watch.turn("main_menu", "recognized", "balance", "balance") is None
    assert watch.turn("anything_else", "recognized", "yes", "yes") is None  # no topic
    found = watch.turn("main_menu", "dtmf", "3", "bill")
    assert found is not None and found.reasons == ("repeat_contact",) and found.topic == "bill"
    assert watch.topics == ["balance", "bill"]


def test_words_and_behaviour_together(flow: Flow, language: ComplaintLanguage) -> None:
    watch = ComplaintWatch(language, FlowFacts.from_flow(flow).is_topic)
    assert watch.turn("main_menu", "prompt", "How can I help? This is ridiculous.", None) is None
    assert watch.turn("main_menu", "recognized", "what's my balance", "balance") is None
    found = watch.turn("main_menu", "recognized", "this is ridiculous, I've had enough", None)
    assert found is not None and found.reasons == ("words",)
    assert found.text == "this is ridiculous, I've had enough" and "anger" in found.cues


# --- in text conversations, on the store ----------------------------------------------------


def MONDAY() -> datetime:
    return datetime(2030, 1, 7, 9, 0, tzinfo=UTC)


async def _chat(store: Store, flow: Flow) -> tuple[Conversations, aiohttp.ClientSession]:
    http = aiohttp.ClientSession()
    callbacks = Callbacks(store, CallbackPolicy(tz=ZoneInfo("UTC")))
    return Conversations(store, lambda: flow, Fulfillment(http), callbacks, clock=MONDAY), http


async def _events(store: Store, kind: str) -> list[dict[str, Any]]:
    events, _ = await store.list_events(type=kind, limit=100)
    return [e.payload for e in events]


async def _book(conversations: Conversations, id: str) -> None:
    for text in ("agent", "yes", "tomorrow at 3pm", "yes"):
        await conversations.reply(id, text)


async def test_a_complaint_in_a_chat_marks_it_and_raises_the_callback(
    store: Store, flow: Flow
) -> None:
    conversations, http = await _chat(store, flow)
    try:
        record, _ = await conversations.start("web", VIP)
        said = "your service is a joke and I want to file a complaint"
        await conversations.reply(record.id, said)
        marked = await store.get_conversation(record.id)
        assert marked.complaint is not None and marked.complaint["reasons"] == ["words"]
        assert marked.complaint["text"] == said and marked.complaint["channel"] == "web"
        (event,) = await _events(store, EVENT)
        assert event["complaint"]["id"] == record.id and event["complaint"]["number"] == VIP
        assert event["complaint"]["callback"] is None  # none booked yet
        await _book(conversations, record.id)
        (cb,), _ = await store.list_callbacks(number=VIP)
        assert cb.priority == 15 and cb.complaint is not None  # a VIP's 10, raised by 5
        assert cb.complaint["id"] == record.id
        (scheduled,) = await _events(store, "callback.scheduled")
        assert scheduled["callback"]["priority"] == 15
        assert scheduled["callback"]["complaint"]["reasons"] == ["words"]
    finally:
        await http.close()


async def test_a_callback_booked_before_the_complaint_is_raised_after(
    store: Store, flow: Flow
) -> None:
    conversations, http = await _chat(store, flow)
    try:
        record, _ = await conversations.start("sms", "+15559990001")
        for text in ("I need to talk to someone", "yes", "as soon as possible", "yes"):
            await conversations.reply(record.id, text)
        (cb,), _ = await store.list_callbacks(number="+15559990001")
        assert cb.priority == 0 and cb.complaint is None
        # the same number again by SMS, now angry: a new conversation, the same callback
        for text in ("this is the third time I'm asking, get me a manager", "yes"):
            await conversations.sms("+15559990001", text)
        (raised,), _ = await store.list_callbacks(number="+15559990001")
        assert raised.id == cb.id and raised.priority == 5 and raised.complaint is not None
        (event,) = await _events(store, EVENT)
        assert event["complaint"]["channel"] == "sms"
    finally:
        await http.close()


async def test_a_repeat_contact_about_the_same_topic(store: Store, flow: Flow) -> None:
    conversations, http = await _chat(store, flow)
    try:
        first, _ = await conversations.start("web", "+15551230001")
        await conversations.reply(first.id, "I have a question about my bill")
        assert (await store.get_conversation(first.id)).complaint is None
        again, _ = await conversations.start("web", "+15551230001")
        await conversations.reply(again.id, "it's about my bill")
        marked = await store.get_conversation(again.id)
        assert marked.complaint is not None
        assert marked.complaint["reasons"] == ["repeat_contact"]
        assert marked.complaint["topic"] == "bill"
    finally:
        await http.close()


async def test_a_neutral_chat_sets_off_nothing(store: Store, flow: Flow) -> None:
    conversations, http = await _chat(store, flow)
    try:
        record, _ = await conversations.start("web", "+15551230002")
        for text in ("how much data have I got left", "yes", "the bill looks high this month"):
            await conversations.reply(record.id, text)
        await _book(conversations, record.id)
        assert (await store.get_conversation(record.id)).complaint is None
        (cb,), _ = await store.list_callbacks(number="+15551230002")
        assert cb.priority == 0 and cb.complaint is None
        assert await _events(store, EVENT) == []
    finally:
        await http.close()


async def test_the_callback_booked_in_the_contact_is_raised_with_its_update(
    store: Store,
) -> None:
    """A flow that goes on after its booking: the complaint comes later in the same contact
    and raises that callback (its callback.updated, and the webhook names it)."""
    callbacks = Callbacks(store, CallbackPolicy(tz=ZoneInfo("UTC")))
    await store.start_call("call-1", transport="websocket", caller="+15550001234")
    cb, _ = await callbacks.book("+15550001234", MONDAY(), reason="agent_requested")
    desk = ComplaintDesk(callbacks, "call", "call-1", "voice", "(555) 000-1234")
    assert desk.number == "+15550001234"  # kept in E.164, as callbacks are
    desk.booked(cb.id)
    payload = await desk.detected(store, Complaint(("agent_twice",)))
    assert payload["complaint"]["callback"]["id"] == cb.id
    assert payload["complaint"]["callback"]["priority"] == 5
    (updated,) = await _events(store, "callback.updated")
    assert updated["callback"]["priority"] == 5
    assert (await store.get_call("call-1")).complaint["reasons"] == ["agent_twice"]
    # the same complaint again changes nothing more
    await desk.detected(store, Complaint(("agent_twice",)))
    assert (await store.get_callback(cb.id)).priority == 5
    assert len(await _events(store, "callback.updated")) == 1
