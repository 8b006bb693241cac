"""Analytics by channel and one customer across channels, on both databases: calls (the
voice channel) and text conversations seeded with known messages, every figure per channel
and overall checked exactly; a real chat on the bundled flow records what the dialog made of
each message (kind, intent); a number's calls, conversations and callbacks found together."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import aiohttp
import pytest

from ivr.analytics import FlowFacts, Window, intents, nodes, summary, unrecognized
from ivr.analytics.channels import CHANNELS, TEXT_CHANNELS
from ivr.api.conversations import StartRequest
from ivr.callbacks import CallbackPolicy, Callbacks
from ivr.chat import SMS, Conversations
from ivr.chat.service import taken_as
from ivr.dialog import load_flow
from ivr.fulfillment import Fulfillment
from ivr.store import Store, open_store

FLOW = load_flow(Path(__file__).resolve().parent.parent / "grammars" / "hotline.yaml")
FACTS = FlowFacts.from_flow(FLOW)
UTC_ZONE = ZoneInfo("UTC")
T0 = datetime(2030, 1, 7, 9, 0, tzinfo=UTC)
DAY = Window(T0, T0 + timedelta(hours=24))
H = timedelta(hours=1)
NUMBER = "+15551230001"

Msg = tuple[str, str, str, str | None, str | None]  # sender, node, text, kind, intent


def bot(node: str, text: str = "…") -> Msg:
    return ("bot", node, text, None, None)


def says(node: str, text: str, intent: str | None) -> Msg:
    return ("customer", node, text, "recognized", intent)


def keys(node: str, digits: str, intent: str | None) -> Msg:
    return ("customer", node, digits, "dtmf", intent)


def not_understood(node: str, text: str) -> Msg:
    return ("customer", node, text, "no_match", None)


async def chat(
    store: Store,
    channel: str,
    start: datetime,
    messages: list[Msg],
    end: str | None,
    number: str | None = None,
    survey: int | None = None,
    minutes: float = 2,
) -> str:
    c = await store.start_conversation(channel=channel, number=number, started_at=start)
    for seq, (sender, node, text, kind, intent) in enumerate(messages, 1):
        await store.add_message(
            c.id, sender, text, node=node, kind=kind, intent=intent,  # type: ignore[arg-type]
            at=start + timedelta(seconds=seq),
        )  # fmt: skip
    if end is not None:
        await store.end_conversation(
            c.id, end, survey=survey, ended_at=start + timedelta(minutes=minutes)
        )
    return c.id


async def call(
    store: Store, id: str, start: datetime, intent: str, end: str, caller: str | None = None
) -> None:
    await store.start_call(id, transport="websocket", caller=caller, started_at=start)
    await store.add_turn(id, "prompt", node="main_menu", text="Welcome", at=start)
    await store.add_turn(
        id, "recognized", node="main_menu", text=intent, intent=intent, confidence=0.9,
        at=start + timedelta(seconds=1),
    )  # fmt: skip
    await store.end_call(id, end, ended_at=start + timedelta(minutes=1))


async def seed(store: Store) -> dict[str, str]:
    ids = {}
    # voice: two contained balance calls, one booked a callback (escalated)
    await call(store, "v-1", T0 + H, "balance", "caller_goodbye", NUMBER)
    await call(store, "v-2", T0 + 2 * H, "balance", "caller_goodbye")
    await call(store, "v-3", T0 + 3 * H, "agent", "callback_booked")
    # web: contained (balance, then a survey of 4), abandoned (left after a no-match),
    # escalated by its callback, one still open
    ids["web-ok"] = await chat(store, "web", T0 + H, [
        bot("main_menu"), says("main_menu", "how much do I owe", "balance"),
        bot("anything_else"), says("anything_else", "no", "no"),
        bot("survey"), keys("survey", "4", "4"), bot("goodbye"),
    ], "caller_goodbye", NUMBER, survey=4)  # fmt: skip
    ids["web-left"] = await chat(store, "web", T0 + 2 * H, [
        bot("main_menu"), says("main_menu", "roaming", "roaming"),
        bot("anything_else"), not_understood("anything_else", "purple monkey"),
        bot("anything_else"),
    ], "customer_left", minutes=4)  # fmt: skip
    ids["web-booked"] = await chat(store, "web", T0 + 3 * H, [
        bot("main_menu"), says("main_menu", "a person please", "agent"),
        bot("confirm_callback_number"), says("confirm_callback_number", "yes", "yes"),
    ], "callback_booked", NUMBER)  # fmt: skip
    ids["web-open"] = await chat(store, "web", T0 + 4 * H, [
        bot("main_menu"), not_understood("main_menu", "Purple monkey!"),
    ], None)  # fmt: skip
    # sms: escalated by reaching the agent path (then went idle), contained after a
    # no-match it recovered from; idle after an understood message is contained
    ids["sms-agent"] = await chat(store, SMS, T0 + 5 * H, [
        bot("main_menu"), says("main_menu", "agent", "agent"), bot("callback_intro"),
    ], "idle", "+15559990000")  # fmt: skip
    ids["sms-ok"] = await chat(store, SMS, T0 + 6 * H, [
        bot("main_menu"), not_understood("main_menu", "blah"), bot("main_menu"),
        says("main_menu", "roaming", "roaming"), bot("anything_else"),
    ], "idle", "+15559990001")  # fmt: skip
    # outside the window
    await chat(store, "web", T0 - 2 * H, [says("main_menu", "bill", "bill")], "caller_goodbye")
    await store.upsert_open_callback(
        NUMBER, T0 + 30 * H, reason="agent_requested",
        transcript={"conversation_id": ids["web-booked"], "channel": "web", "turns": []},
    )  # fmt: skip
    await store.upsert_open_callback(
        "+15550000009", T0 + 30 * H, reason="after_hours", transcript={"call_id": "v-3"}
    )
    return ids


@pytest.fixture
async def seeded(url: str) -> AsyncIterator[tuple[Store, dict[str, str]]]:
    s = await open_store(url)
    try:
        yield s, await seed(s)
    finally:
        await s.close()


def row(channel: str, contacts: int, ended: int, c: int, a: int, e: int) -> dict[str, object]:
    return {
        "channel": channel, "contacts": contacts, "ended": ended, "in_progress": contacts - ended,
        "contained": c, "abandoned": a, "escalated": e,
        "containment_rate": round(c / ended, 4) if ended else None,
    }  # fmt: skip


async def test_summary_per_channel_and_overall(seeded: tuple[Store, dict[str, str]]) -> None:
    store, _ = seeded
    got = await summary(store, DAY, FACTS, UTC_ZONE)
    assert got["channel"] is None
    assert (got["contacts"], got["calls"], got["conversations"]) == (9, 3, 6)
    assert (got["ended"], got["in_progress"]) == (8, 1)
    assert got["containment"] == {"contained": 4, "abandoned": 1, "escalated": 3, "rate": 0.5}
    assert got["channels"] == [
        row("voice", 3, 3, 2, 0, 1),
        row("web", 4, 3, 1, 1, 1),
        row("app", 0, 0, 0, 0, 0),
        row("api", 0, 0, 0, 0, 0),
        row("sms", 2, 2, 1, 0, 1),
    ]
    # callback reasons where one was booked; sms-agent's inferred from the message that
    # led onto the agent path (the agent choice declares agent_requested)
    assert got["escalations"] == [
        {"reason": "agent_requested", "calls": 2},
        {"reason": "after_hours", "calls": 1},
    ]
    assert got["survey"] == {"responses": 1, "average": 4.0, "distribution": [0, 0, 0, 1, 0]}
    # 3 calls of 60 s; web 120 + 240 + 120; sms 120 + 120: over 8 ended
    assert got["average_handling_seconds"] == 112.5

    web = await summary(store, DAY, FACTS, UTC_ZONE, "web")
    assert (web["channel"], web["contacts"], web["calls"], web["conversations"]) == (
        "web", 4, 0, 4
    )  # fmt: skip
    assert web["containment"] == {"contained": 1, "abandoned": 1, "escalated": 1, "rate": 0.3333}
    assert web["channels"] == [row("web", 4, 3, 1, 1, 1)]
    assert web["escalations"] == [{"reason": "agent_requested", "calls": 1}]
    voice = await summary(store, DAY, FACTS, UTC_ZONE, "voice")
    assert (voice["contacts"], voice["calls"], voice["conversations"]) == (3, 3, 0)
    assert voice["channels"] == [row("voice", 3, 3, 2, 0, 1)]
    assert voice["survey"]["responses"] == 0
    app = await summary(store, DAY, FACTS, UTC_ZONE, "app")
    assert app["contacts"] == 0 and app["containment"]["rate"] is None
    assert app["channels"] == [row("app", 0, 0, 0, 0, 0)]


async def test_topics_and_rising_topics_per_channel(seeded: tuple[Store, dict[str, str]]) -> None:
    store, _ = seeded
    for i in range(5):  # roaming rises on sms: five threads, none the day before
        await chat(store, SMS, T0 + 10 * H + i * timedelta(minutes=5), [
            says("main_menu", "roaming", "roaming")], "idle")  # fmt: skip

    def totals(report: dict[str, object]) -> dict[str, int]:
        return {s["intent"]: s["total"] for s in report["series"]}  # type: ignore[attr-defined]

    every = await intents(store, DAY, "hour", FACTS, UTC_ZONE)
    # answers (yes, no, the survey's 4) are not topics; each contact once
    assert totals(every) == {"roaming": 7, "balance": 3, "agent": 3}
    assert [r["intent"] for r in every["rising"]] == ["roaming"]
    assert totals(await intents(store, DAY, "hour", FACTS, UTC_ZONE, "voice")) == {
        "balance": 2, "agent": 1
    }  # fmt: skip
    web = await intents(store, DAY, "hour", FACTS, UTC_ZONE, "web")
    assert web["channel"] == "web"
    assert totals(web) == {"agent": 1, "balance": 1, "roaming": 1}
    assert web["rising"] == []  # the previous day's web chat asked about the bill
    sms = await intents(store, DAY, "hour", FACTS, UTC_ZONE, SMS)
    assert totals(sms) == {"roaming": 6, "agent": 1}
    assert sms["rising"] == [{"intent": "roaming", "count": 6, "previous": 0, "ratio": None}]
    # the series' buckets: web's balance chat at 10:00
    balance = next(s for s in web["series"] if s["intent"] == "balance")
    assert balance["counts"][1] == 1 and sum(balance["counts"]) == 1


async def test_nodes_and_unrecognized_per_channel(seeded: tuple[Store, dict[str, str]]) -> None:
    store, ids = seeded
    web = await nodes(store, DAY, UTC_ZONE, "web")
    main = next(n for n in web["nodes"] if n["node"] == "main_menu")
    # 4 bot messages and 4 customer messages at main_menu on web, one not understood
    assert (main["turns"], main["inputs"], main["no_match"], main["no_match_rate"]) == (
        9, 4, 1, 0.25
    )  # fmt: skip
    assert main["confidence"] == [0] * 10  # typed text has no recognizer confidence
    voice = await nodes(store, DAY, UTC_ZONE, "voice")
    assert [(n["node"], n["inputs"]) for n in voice["nodes"]] == [("main_menu", 3)]
    assert voice["nodes"][0]["confidence"][9] == 3
    every = await nodes(store, DAY, UTC_ZONE)
    main = next(n for n in every["nodes"] if n["node"] == "main_menu")
    assert main["inputs"] == 3 + 4 + 3 and main["no_match"] == 2

    got = await unrecognized(store, DAY, UTC_ZONE, channel="web")
    assert got["channel"] == "web"
    assert [(n["node"], n["unrecognized"]) for n in got["nodes"]] == [
        ("anything_else", 1), ("main_menu", 1)
    ]  # fmt: skip
    example = got["nodes"][1]["utterances"][0]["examples"][0]
    assert example == {
        "call_id": None,
        "conversation_id": ids["web-open"],
        "seq": 2,
        "at": (T0 + 4 * H + timedelta(seconds=2)).isoformat(),
        "text": "Purple monkey!",
        "confidence": None,
        "audio_url": None,
    }
    # "purple monkey" written at two nodes on web (normalized alike), "blah" on sms
    every_text = await unrecognized(store, DAY, UTC_ZONE)
    words = [
        (n["node"], u["text"], u["count"]) for n in every_text["nodes"] for u in n["utterances"]
    ]
    assert words == [
        ("main_menu", "blah", 1), ("main_menu", "purple monkey", 1),
        ("anything_else", "purple monkey", 1),
    ]  # fmt: skip
    assert (await unrecognized(store, DAY, UTC_ZONE, channel="voice"))["nodes"] == []
    only = await unrecognized(store, DAY, UTC_ZONE, node="main_menu", channel=SMS)
    assert [u["text"] for n in only["nodes"] for u in n["utterances"]] == ["blah"]


async def test_one_number_across_channels(seeded: tuple[Store, dict[str, str]]) -> None:
    store, ids = seeded
    found = await store.conversations_of(NUMBER)
    assert [c.id for c in found] == [ids["web-booked"], ids["web-ok"]]  # newest first
    assert [c.id for c in await store.conversations_of(NUMBER, limit=1)] == [ids["web-booked"]]
    messages = await store.messages_of([c.id for c in found])
    assert [m.seq for m in messages[ids["web-ok"]]] == list(range(1, 8))
    said = messages[ids["web-ok"]][1]
    assert (said.sender, said.kind, said.intent) == ("customer", "recognized", "balance")
    assert messages[ids["web-ok"]][0].kind is None  # the bot's
    assert await store.conversations_of("+19999999999") == []
    assert await store.messages_of([]) == {}
    calls, _ = await store.list_calls(caller=NUMBER)
    assert [c.id for c in calls] == ["v-1"]
    with pytest.raises(ValueError):
        await store.conversations_of(NUMBER, limit=0)


def test_channels_are_the_text_runtimes_channels() -> None:
    """The analytics' channel list names every channel a conversation can start on."""
    started = StartRequest.model_fields["channel"].annotation.__args__  # type: ignore[union-attr]
    assert set(started) | {SMS} == set(TEXT_CHANNELS)
    assert CHANNELS[0] == "voice"


def test_how_a_message_was_taken() -> None:
    assert taken_as([]) == (None, None)
    recognized = {"kind": "recognized", "intent": "balance"}
    assert taken_as([recognized, {"kind": "prompt", "intent": None}]) == ("recognized", "balance")
    assert taken_as([{"kind": "dtmf", "intent": "4"}]) == ("dtmf", "4")
    nothing = {"kind": "recognized", "intent": None}
    assert taken_as([nothing, {"kind": "no_match", "intent": None}]) == ("no_match", None)


async def test_a_real_chat_records_what_each_message_was(store: Store) -> None:
    http = aiohttp.ClientSession()
    try:
        callbacks = Callbacks(store, CallbackPolicy(tz=ZoneInfo("UTC")))
        conversations = Conversations(
            store, lambda: FLOW, Fulfillment(http), callbacks, clock=lambda: T0
        )
        record, _ = await conversations.start("web", NUMBER)
        await conversations.reply(record.id, "how much credit is on my account?")
        await conversations.reply(record.id, "purple monkey dishwasher")
        await conversations.reply(record.id, "2")
        _, history = await conversations.history(record.id)
        mine = [(m.text, m.node, m.kind, m.intent) for m in history if m.sender == "customer"]
        assert mine[0] == ("how much credit is on my account?", "main_menu", "recognized",
                           "balance")  # fmt: skip
        assert mine[1][2:] == ("no_match", None)
        assert mine[2][0] == "2" and mine[2][2] == "dtmf" and mine[2][3] is not None
        now = datetime.now(UTC)
        window = Window(now - H, now + H)
        got = await intents(store, window, "hour", FACTS, UTC_ZONE, "web")
        assert "balance" in {s["intent"] for s in got["series"]}
    finally:
        await http.close()
