"""The text dialog runtime (ivr/chat) on the bundled flow: prompts as text (keypad hints
cut, `chat:` wordings, quick replies), customers' own words through the same classifier,
question types, FAQ, lookups and callback booking, and the conversations' keeping in the
store (both databases): idle timeout, SMS threads by number, one open callback per number."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import aiohttp
import pytest

from ivr.api.conversations import twilio_signature, twiml
from ivr.callbacks import CallbackPolicy, Callbacks
from ivr.chat import (
    SMS,
    BotMessage,
    ConversationEnded,
    Conversations,
    quick_replies,
    typed_keys,
    voice_only,
    written,
)
from ivr.clock import system_clock
from ivr.dialog import DialogEngine, Say, Start, load_flow
from ivr.dialog.flow import Flow
from ivr.dialog.schema import Prompt
from ivr.dialog.state import Interp, Pending
from ivr.fulfillment import Fulfillment
from ivr.store import Store

FLOW = Path(__file__).resolve().parent.parent / "grammars" / "hotline.yaml"
DEMO = "+15551230001"  # Alex Smith's demo account: balance 23 dollars and 50 cents


@pytest.fixture(scope="module")
def flow() -> Flow:
    return load_flow(FLOW)


def _prompts(flow: Flow) -> list[Prompt]:
    out = [f.answer for f in flow.spec.faq.values()]
    for node in flow.spec.nodes.values():
        for name in ("prompt", "say", "fallback"):
            p = getattr(node, name, None)
            if p is not None:
                out.append(p)
        out += [*node.reprompts, *node.no_input, *node.no_match]
    return out


def test_no_prompt_of_the_bundled_flow_reads_as_keypad_instructions(flow: Flow) -> None:
    for p in _prompts(flow):
        text = written(Say(p.text, chat=p.chat)).lower()
        assert text and "press" not in text and "key it in" not in text, p.text


def test_keypad_hints_are_cut_and_chat_wordings_win() -> None:
    assert written(Say("Is it mobile data? Say yes or no, or press 1 for yes, 2 for no.")) == (
        "Is it mobile data? Type yes or no."
    )
    assert written(Say("If it fails, say agent.")) == "If it fails, type agent."
    assert written(Say("Did you say balance?")) == "Did you say balance?"
    assert written(Say("When? Like tomorrow. Or press 1 for asap, or 2 for later.")) == (
        "When? Like tomorrow."
    )
    assert written(Say("Key in the number, then press hash.")) == "Type the number."
    assert written(Say("Press 1.", chat="Shall we?")) == "Shall we?"
    assert written(Say("Press 1.")) == "Press 1."  # nothing left: the text as it is


def test_voice_only_words_in_the_written_prompt() -> None:
    assert voice_only(Say("Please hold while I put you through.")) == ["please hold"]
    assert voice_only(Say("Press 1.")) == ["press"]  # nothing to cut it to
    assert voice_only(Say("Say yes or no, or press 1 for yes.")) == []
    assert voice_only(Say("Please hold.", chat="One moment.")) == []
    assert voice_only(Say("Then speak to a technician, or hang up.")) == ["speak to", "hang up"]


def test_typed_keys() -> None:
    assert typed_keys(" 2 ") == "2" and typed_keys("1234#") == "1234#"
    assert typed_keys("(555) 123-4567") == "5551234567"
    assert typed_keys("+15551230001") is None and typed_keys("two") is None
    assert typed_keys("") is None


def test_quick_replies_follow_what_the_dialog_waits_for(flow: Flow) -> None:
    engine = DialogEngine(flow)
    state, _ = engine.start(Start(caller=DEMO))
    assert quick_replies(flow, state) == (
        "balance", "data usage", "bill", "report a fault", "an agent",
    )  # fmt: skip
    state.node = "survey"
    assert quick_replies(flow, state) == ("1", "2", "3", "4", "5")
    state.node = "ask_callback_time"
    assert quick_replies(flow, state)[0] == "as soon as possible"
    state.node = "ask_account_balance"
    assert quick_replies(flow, state) == ()
    state.node = "main_menu"
    grammar = flow.confirm_grammars[True]
    state.pending = Pending("disambiguate", Say("?"), grammar, options=("roaming", "plan_change"))
    assert quick_replies(flow, state) == ("roaming abroad", "changing your plan")
    state.pending = Pending("confirm", Say("?"), grammar, interp=Interp("choice", "bill"))
    assert quick_replies(flow, state) == ("yes", "no")


# --- conversations on the store ----------------------------------------------------------


def MONDAY() -> datetime:  # the dialog's calendar: "tomorrow" is a Tuesday
    return datetime(2030, 1, 7, 9, 0, tzinfo=UTC)


class _Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


async def _conversations(
    store: Store, flow: Flow, idle: timedelta = timedelta(minutes=30), now: _Clock | None = None
) -> tuple[Conversations, Callbacks, aiohttp.ClientSession]:
    http = aiohttp.ClientSession()
    callbacks = Callbacks(store, CallbackPolicy(tz=ZoneInfo("UTC")))
    conversations = Conversations(
        store,
        lambda: flow,
        Fulfillment(http),
        callbacks,
        idle=idle,
        clock=MONDAY,
        now=now or system_clock,
    )
    return conversations, callbacks, http


def _texts(messages: list[BotMessage]) -> str:
    return " | ".join(m.text for m in messages)


async def test_a_chat_checks_a_balance_asks_an_faq_and_books_a_callback(
    store: Store, flow: Flow
) -> None:
    conversations, callbacks, http = await _conversations(store, flow)
    try:
        record, opening = await conversations.start("web", DEMO)
        assert opening[0].text == "Welcome to the Example Telecom hotline."
        assert "an agent" in opening[-1].quick_replies
        _, replies = await conversations.reply(record.id, "how much credit is on my account?")
        assert "Your balance is 23 dollars and 50 cents." in _texts(replies)
        _, replies = await conversations.reply(record.id, "yes")
        _, replies = await conversations.reply(record.id, "is my mobile going to work in spain")
        assert "Roaming in Europe is included" in _texts(replies)
        _, replies = await conversations.reply(record.id, "I'd like to talk to a human please")
        assert "Shall we call you on +15551230001?" in _texts(replies)
        assert replies[-1].quick_replies == ("yes", "no")
        await conversations.reply(record.id, "yes")
        _, replies = await conversations.reply(record.id, "tomorrow at 3pm")
        assert "tomorrow at 3 PM" in _texts(replies)
        record, replies = await conversations.reply(record.id, "yep")
        assert "One of our team will call you tomorrow at 3 PM" in _texts(replies)
        assert record.end_reason == "callback_booked" and record.ended_at is not None
        with pytest.raises(ConversationEnded):
            await conversations.reply(record.id, "hello?")
        items, _ = await store.list_callbacks(number=DEMO)
        assert len(items) == 1 and items[0].status == "scheduled"
        booked, _ = await callbacks.get(items[0].id)
        assert booked.transcript["conversation_id"] == record.id
        assert booked.transcript["channel"] == "web"
        assert booked.transcript["turns"][2]["text"] == "how much credit is on my account?"
        # the same number by SMS: its one open callback, updated, not a second
        for text in ("agent", "yes", "as soon as possible", "yes"):
            await conversations.sms(DEMO, text)
        items, _ = await store.list_callbacks(number=DEMO)
        assert len(items) == 1 and items[0].id == booked.id
        booked, _ = await callbacks.get(booked.id)
        assert booked.transcript["conversation_id"] != record.id
        assert booked.transcript["channel"] == SMS
        _, history = await conversations.history(record.id)
        assert history[0].sender == "bot" and history[2].sender == "customer"
        assert history[2].text == "how much credit is on my account?"
        assert [m.seq for m in history] == list(range(1, len(history) + 1))
    finally:
        await http.close()


async def test_typed_keys_and_numbers_answer_questions(store: Store, flow: Flow) -> None:
    conversations, _, http = await _conversations(store, flow)
    try:
        record, _ = await conversations.start("app", None)  # no number: the flow asks
        _, replies = await conversations.reply(record.id, "something's wrong with my service")
        assert "Is your problem with mobile data?" in _texts(replies)
        _, replies = await conversations.reply(record.id, "1")  # the keypad's yes
        assert "airplane mode" in _texts(replies)
        _, replies = await conversations.reply(record.id, "what do I owe this month")
        assert _texts(replies) == "Please write your account number."
        _, replies = await conversations.reply(record.id, "5678")
        assert "Your last bill was" in _texts(replies)
        _, replies = await conversations.reply(record.id, "no thanks")
        assert "how would you rate this chat" in _texts(replies)
        record, replies = await conversations.reply(record.id, "4")
        assert record.end_reason == "caller_goodbye" and record.survey == 4
        assert "Thank you for contacting Example Telecom" in _texts(replies)
    finally:
        await http.close()


async def test_sms_threads_by_number_with_an_idle_timeout(store: Store, flow: Flow) -> None:
    now = _Clock()
    conversations, _, http = await _conversations(store, flow, timedelta(minutes=5), now)
    try:
        first, replies = await conversations.sms("+15551230002", "how much credit have I got")
        assert replies[0].text.startswith("Welcome")
        assert "4 dollars and 10 cents" in _texts(replies)
        again, replies = await conversations.sms("+15551230002", "and my data?")
        assert again.id == first.id and "you have used" in _texts(replies)
        now.now += timedelta(minutes=6)  # idle: the thread ends, the next SMS starts one
        later, replies = await conversations.sms("+15551230002", "how much data have I used")
        assert later.id != first.id and replies[0].text.startswith("Welcome")
        assert (await store.get_conversation(first.id)).end_reason == "idle"
        # a conversation this process does not hold (a restart): ended, refused
        other = await store.start_conversation(channel="web", number=DEMO)
        with pytest.raises(ConversationEnded) as ended:
            await conversations.reply(other.id, "hello")
        assert ended.value.reason == "state_lost"
        assert conversations.active == 1
    finally:
        await http.close()


async def test_concurrent_messages_to_one_conversation_are_taken_in_turn(
    store: Store, flow: Flow
) -> None:
    conversations, _, http = await _conversations(store, flow)
    try:
        record, _ = await conversations.start("web", DEMO)
        results = await asyncio.gather(
            *(conversations.reply(record.id, "what's the balance") for _ in range(3))
        )
        assert all("23 dollars and 50 cents" in _texts(r) for _, r in results)
        _, history = await conversations.history(record.id)
        assert [m.seq for m in history] == list(range(1, len(history) + 1))
    finally:
        await http.close()


async def test_a_conversation_closed_from_outside_ends_once(store: Store, flow: Flow) -> None:
    """The chat socket closing ends its conversation (its reason), held here or not; an
    ended one keeps its first end."""
    conversations, _, http = await _conversations(store, flow)
    try:
        record, _ = await conversations.start("web", None)
        closed = await conversations.close(record.id, "customer_left")
        assert closed.end_reason == "customer_left" and closed.ended_at is not None
        assert conversations.active == 0
        assert (await conversations.close(record.id, "again")).end_reason == "customer_left"
        other = await store.start_conversation(channel="web")  # another process's
        assert (await conversations.close(other.id, "closed")).end_reason == "closed"
    finally:
        await http.close()


def test_twilio_signature_and_twiml() -> None:
    # Twilio's documented example (www.twilio.com/docs/usage/security)
    params = {"CallSid": "CA1234567890ABCDE", "Caller": "+12349013030", "Digits": "1234",
              "From": "+12349013030", "To": "+18005551212"}  # fmt: skip
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    assert twilio_signature("12345", url, params) == "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
    assert twiml(["a < b & c"]) == (
        '<?xml version="1.0" encoding="UTF-8"?><Response><Message>a &lt; b &amp; c</Message>'
        "</Response>"
    )


@pytest.mark.parametrize(
    ("said", "spoken"),
    [
        # the time parser reads the customer's sentence; the phrase grammar alone mapped these
        # onto the nearest listed time ("Wednesday the 9th at 3 PM", "… at 1 PM") or no-match
        ("tomorrow afternoon at 3", "tomorrow at 3 PM"),
        ("could you ring me tomorrow at 3pm", "tomorrow at 3 PM"),
        ("wednesday at 11", "Wednesday the 9th at 11 AM"),
        ("in two hours", "today at 11 AM"),
        ("next week", "Monday the 14th at 9 AM"),
    ],
)
async def test_callback_times_in_a_customers_own_words(
    store: Store, flow: Flow, said: str, spoken: str
) -> None:
    conversations, _, http = await _conversations(store, flow)
    try:
        record, _ = await conversations.start("web", "+15559990000")
        await conversations.reply(record.id, "I'd like to talk to a human please")
        await conversations.reply(record.id, "yes")
        _, replies = await conversations.reply(record.id, said)
        assert f"So that's a call back {spoken}. Is that right?" in _texts(replies)
    finally:
        await http.close()
