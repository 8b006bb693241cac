"""Analytics on both backends (SQLite and a throwaway PostgreSQL): calls, turns and callbacks
seeded with known times, every figure checked exactly; the window, buckets and flow facts."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from ivr.analytics import FlowFacts, Window, intents, nodes, summary, unrecognized
from ivr.analytics.report import utterance_key
from ivr.analytics.window import EARLIEST, LATEST, MAX_BUCKETS, chart
from ivr.dialog import load_flow
from ivr.store import NotFound, Store, open_store

FLOW = load_flow(Path(__file__).resolve().parent.parent / "grammars" / "hotline.yaml")
FACTS = FlowFacts.from_flow(FLOW)
UTC_ZONE = ZoneInfo("UTC")
T0 = datetime(2030, 1, 7, 9, 0, tzinfo=UTC)  # a Monday
DAY = Window(T0, T0 + timedelta(hours=24))
LAST = T0 + timedelta(hours=23, minutes=59)  # the window's last call
AUDIO = "audio/c-agent/2.wav"

TurnSpec = tuple[str, str, str | None, str | None, float | None, str | None]


def prompt(node: str) -> TurnSpec:
    return (node, "prompt", "…", None, None, None)


def said(
    node: str, text: str, intent: str | None, conf: float, audio: str | None = None
) -> TurnSpec:
    return (node, "recognized", text, intent, conf, audio)


def key(node: str, digits: str, intent: str | None) -> TurnSpec:
    return (node, "dtmf", digits, intent, None, None)


def no_input(node: str) -> TurnSpec:
    return (node, "no_input", "", None, None, None)


def no_match(node: str) -> TurnSpec:
    return (node, "no_match", "why", None, None, None)


async def call(
    store: Store,
    id: str,
    start: datetime,
    turns: list[TurnSpec],
    ended_after: float | None = None,
    end_reason: str = "caller_hangup",
    survey: int | None = None,
) -> None:
    """A call with its turns one second apart."""
    await store.start_call(id, transport="websocket", flow="hotline", started_at=start)
    for seq, (node, kind, text, intent, conf, audio) in enumerate(turns, 1):
        await store.add_turn(
            id, kind, node=node, text=text, intent=intent, confidence=conf,  # type: ignore[arg-type]
            at=start + timedelta(seconds=seq), audio=audio,
        )  # fmt: skip
    if survey is not None:
        await store.record_survey(id, survey)
    if ended_after is not None:
        await store.end_call(id, end_reason, ended_at=start + timedelta(seconds=ended_after))


async def calls(
    store: Store, prefix: str, n: int, start: datetime, turn: TurnSpec, ended_after: float
) -> None:
    """`n` one-turn calls ten minutes apart."""
    for i in range(n):
        await call(store, f"{prefix}-{i}", start + i * timedelta(minutes=10), [turn], ended_after)


async def seed(store: Store) -> None:
    h = timedelta(hours=1)
    # Asked for an agent after two no-matches, hung up while the callback was being arranged.
    await call(store, "c-agent", T0 + h, [
        prompt("main_menu"),
        said("main_menu", "how much do I owe", None, 0.41, AUDIO),
        no_match("main_menu"),
        prompt("main_menu"),
        said("main_menu", "How much do I owe?", None, 0.35),
        no_match("main_menu"),
        prompt("main_menu"),
        key("main_menu", "0", "agent"),
        prompt("callback_intro"),
        prompt("confirm_callback_number"),
    ], 90)  # fmt: skip
    # A callback names this call (booked, then the caller hung up): escalated for that alone.
    await call(store, "c-booked", T0 + 2 * h, [
        prompt("main_menu"), said("main_menu", "agent", "agent", 0.88),
    ], 120)  # fmt: skip
    await call(store, "c-handoff", T0 + 3 * h, [
        prompt("main_menu"), no_input("main_menu"), prompt("main_menu"), no_input("main_menu"),
    ], 30, "handoff: no_input_max")  # fmt: skip
    # Still in progress; an ambiguous FAQ (no intent, but no no-match either).
    await call(store, "c-live", T0 + 4 * h, [
        prompt("main_menu"),
        said("main_menu", "bill", "bill", 1.0),
        said("main_menu", "change roaming plan", None, 0.6),
        prompt("main_menu"),
    ])  # fmt: skip
    await call(store, "c-survey-5", T0 + 5 * h, [
        prompt("main_menu"),
        said("main_menu", "balance", "balance", 0.95),
        prompt("anything_else"),
        said("anything_else", "no thanks", "no", 0.72),
        prompt("survey"),
        key("survey", "5", "5"),
        prompt("goodbye"),
    ], 60, "caller_goodbye", survey=5)  # fmt: skip
    await call(store, "c-survey-3", LAST, [
        key("main_menu", "1", "balance"),
        said("ask_account_balance", "one two three four", "1234", 0.55),
        said("anything_else", "uh banana", None, 0.2),
        no_match("anything_else"),
    ], 45, "caller_goodbye", survey=3)  # fmt: skip
    await call(store, "c-not-booked", T0 + 9 * h, [prompt("main_menu")], 25, "callback_not_booked")
    fault, balance = key("main_menu", "4", "fault"), key("main_menu", "1", "balance")
    await calls(store, "c-fault", 6, T0 + 6 * h, fault, 100)
    await calls(store, "c-roam", 5, T0 + 7 * h, said("main_menu", "roaming", "roaming", 0.65), 50)
    await calls(store, "c-bal", 3, T0 + 8 * h, balance, 40)
    # the previous day: fewer faults, as many balances
    await calls(store, "p-fault", 2, T0 - 2 * h, fault, 10)
    await calls(store, "p-bal", 3, T0 - 3 * h, balance, 10)
    # outside both windows (until is exclusive)
    await call(store, "c-late", T0 + 24 * h, [key("main_menu", "1", "balance")], 10)
    await call(store, "c-early", T0 - 25 * h, [key("main_menu", "4", "fault")], 10)
    # callbacks: one booked from c-booked; one from a call outside the window; one whose
    # transcript is not a call's (a list)
    due = T0 + 30 * h
    await store.upsert_open_callback(
        "+15550001", due, reason="after_hours", transcript={"call_id": "c-booked", "turns": []}
    )
    await store.upsert_open_callback(
        "+15550002", due, reason="agent_requested", transcript={"call_id": "c-late"}
    )
    await store.upsert_open_callback("+15550003", due, reason="bill", transcript=[{"n": 1}])


@pytest.fixture
async def store(url: str) -> AsyncIterator[Store]:
    s = await open_store(url)
    try:
        await seed(s)
        yield s
    finally:
        await s.close()


WINDOW = {
    "since": "2030-01-07T09:00:00+00:00",
    "until": "2030-01-08T09:00:00+00:00",
    "timezone": "UTC",
    "channel": None,  # every channel: here only calls
}


async def test_summary(store: Store) -> None:
    assert await summary(store, DAY, FACTS, UTC_ZONE) == WINDOW | {
        "contacts": 21,
        "calls": 21,
        "conversations": 0,
        "ended": 20,
        "in_progress": 1,
        # c-survey-3's last input was a no-match, but the flow said goodbye: not abandoned
        "containment": {"contained": 16, "abandoned": 0, "escalated": 4, "rate": 0.8},
        "escalations": [
            {"reason": "after_hours", "calls": 1},  # the callback's reason
            {"reason": "agent_requested", "calls": 1},  # inferred: the key that led there
            {"reason": "no_input_max", "calls": 1},  # the handoff's
            {"reason": "unknown", "calls": 1},  # callback_not_booked, nothing shows why
        ],
        # (90 + 120 + 30 + 60 + 45 + 25 + 6 * 100 + 5 * 50 + 3 * 40) / 20
        "average_handling_seconds": 67.0,
        "survey": {"responses": 2, "average": 4.0, "distribution": [0, 0, 1, 0, 1]},
        "channels": [
            {"channel": "voice", "contacts": 21, "ended": 20, "in_progress": 1, "contained": 16,
             "abandoned": 0, "escalated": 4, "containment_rate": 0.8},
            *({"channel": text, "contacts": 0, "ended": 0, "in_progress": 0, "contained": 0,
               "abandoned": 0, "escalated": 0, "containment_rate": None}
              for text in ("web", "app", "api", "sms")),
        ],  # fmt: skip
    }


async def test_containment_without_the_flow_misses_the_agent_path(store: Store) -> None:
    # Without the flow's agent nodes, the caller who hung up while booking looks contained.
    got = await summary(store, DAY, FlowFacts(), UTC_ZONE)
    assert got["containment"] == {"contained": 17, "abandoned": 0, "escalated": 3, "rate": 0.85}


async def test_nodes(store: Store) -> None:
    got = await nodes(store, DAY, UTC_ZONE)
    assert got == WINDOW | {
        "nodes": [
            {
                "node": "main_menu",
                "turns": 36,
                "inputs": 24,  # 11 recognized + 11 keyed + 2 silences
                "no_match": 2,
                "no_input": 2,
                "no_match_rate": 0.0833,
                "no_input_rate": 0.0833,
                "confidence": [0, 0, 0, 1, 1, 0, 6, 0, 1, 2],
            },
            {
                "node": "anything_else",
                "turns": 4,
                "inputs": 2,
                "no_match": 1,
                "no_input": 0,
                "no_match_rate": 0.5,
                "no_input_rate": 0.0,
                "confidence": [0, 0, 1, 0, 0, 0, 0, 1, 0, 0],
            },
            _node("survey", turns=2, inputs=1),
            _node("ask_account_balance", turns=1, inputs=1, confidence=5),
            _node("callback_intro", turns=1, inputs=0),
            _node("confirm_callback_number", turns=1, inputs=0),
            _node("goodbye", turns=1, inputs=0),
        ]
    }


def _node(name: str, turns: int, inputs: int, confidence: int | None = None) -> dict[str, Any]:
    hist = [0] * 10
    if confidence is not None:
        hist[confidence] = 1
    zero = 0.0 if inputs else None
    return {
        "node": name, "turns": turns, "inputs": inputs, "no_match": 0, "no_input": 0,
        "no_match_rate": zero, "no_input_rate": zero, "confidence": hist,
    }  # fmt: skip


async def test_intents_by_hour_and_rising(store: Store) -> None:
    got = await intents(store, DAY, "hour", FACTS, UTC_ZONE)
    hours = [f"2030-01-0{7 + (9 + i) // 24}T{(9 + i) % 24:02d}:00:00+00:00" for i in range(24)]
    assert got["buckets"] == hours

    def at(*pairs: tuple[int, int]) -> list[int]:
        counts = [0] * 24
        for index, n in pairs:
            counts[index] += n
        return counts

    # once per call; question answers ("1234", the survey's "5") and "no" at anything_else
    # (it only leads to the survey and goodbye) are not topics
    assert got == WINDOW | {
        "bucket": "hour",
        "buckets": hours,
        "truncated": False,
        "series": [
            {"intent": "fault", "total": 6, "counts": at((6, 6))},
            {"intent": "balance", "total": 5, "counts": at((5, 1), (8, 3), (23, 1))},
            {"intent": "roaming", "total": 5, "counts": at((7, 5))},
            {"intent": "agent", "total": 2, "counts": at((1, 1), (2, 1))},
            {"intent": "bill", "total": 1, "counts": at((4, 1))},
        ],
        "previous": {"since": "2030-01-06T09:00:00+00:00", "until": WINDOW["since"]},
        "rising": [
            {"intent": "roaming", "count": 5, "previous": 0, "ratio": None},  # new
            {"intent": "fault", "count": 6, "previous": 2, "ratio": 3.0},
            # balance: 5 against 3 is not twice as many
        ],
    }


async def test_intents_by_local_day(store: Store) -> None:
    berlin = ZoneInfo("Europe/Berlin")  # +01:00 in January: the window is 10:00 to 10:00
    got = await intents(store, DAY, "day", FACTS, berlin)
    assert got["since"] == "2030-01-07T10:00:00+01:00"
    assert got["buckets"] == ["2030-01-07T00:00:00+01:00", "2030-01-08T00:00:00+01:00"]
    balance = next(s for s in got["series"] if s["intent"] == "balance")
    assert balance["counts"] == [4, 1]  # c-survey-3 started at 09:59 on the 8th, Berlin time


async def test_unrecognized_grouped_with_audio(store: Store) -> None:
    got = await unrecognized(store, DAY, UTC_ZONE)
    start = T0 + timedelta(hours=1)
    assert got == WINDOW | {
        "truncated": False,
        "nodes": [
            {
                "node": "main_menu",
                "unrecognized": 2,
                "utterances": [
                    {
                        "text": "how much do i owe",
                        "count": 2,
                        "examples": [  # newest first; only the first was kept as audio
                            example("c-agent", 5, start, "How much do I owe?", 0.35),
                            example("c-agent", 2, start, "how much do I owe", 0.41, True),
                        ],
                    }
                ],
            },
            {
                "node": "anything_else",
                "unrecognized": 1,
                "utterances": [
                    {
                        "text": "uh banana",
                        "count": 1,
                        "examples": [example("c-survey-3", 3, LAST, "uh banana", 0.2)],
                    }
                ],
            },
        ],
    }
    only = await unrecognized(store, DAY, UTC_ZONE, node="anything_else", limit=1)
    assert [n["node"] for n in only["nodes"]] == ["anything_else"]
    assert (await unrecognized(store, DAY, UTC_ZONE, node="nowhere"))["nodes"] == []


def example(
    call_id: str, seq: int, start: datetime, text: str, conf: float, audio: bool = False
) -> dict[str, Any]:
    return {
        "call_id": call_id,
        "conversation_id": None,
        "seq": seq,
        "at": (start + timedelta(seconds=seq)).isoformat(),
        "text": text,
        "confidence": conf,
        "audio_url": f"/v1/calls/{call_id}/turns/{seq}/audio" if audio else None,
    }


async def test_an_empty_window(store: Store) -> None:
    empty = Window(T0 + timedelta(days=300), T0 + timedelta(days=301))
    got = await summary(store, empty, FACTS, UTC_ZONE)
    assert got["calls"] == 0 and got["containment"]["rate"] is None
    assert got["average_handling_seconds"] is None and got["escalations"] == []
    assert got["survey"] == {"responses": 0, "average": None, "distribution": [0] * 5}
    assert (await nodes(store, empty, UTC_ZONE))["nodes"] == []
    assert (await intents(store, empty, "day", FACTS, UTC_ZONE))["series"] == []


async def test_turn_audio_and_survey_records(store: Store) -> None:
    turn = await store.set_turn_audio("c-survey-3", 3, "audio/c-survey-3/3.wav")
    assert turn.audio == "audio/c-survey-3/3.wav" and turn.text == "uh banana"
    assert (await store.list_turns("c-agent"))[1].audio == AUDIO
    assert (await store.set_turn_audio("c-survey-3", 3, None)).audio is None
    with pytest.raises(NotFound):
        await store.set_turn_audio("c-survey-3", 99, "x.wav")
    assert (await store.get_call("c-survey-5")).survey == 5
    assert (await store.record_survey("c-survey-5", 2)).survey == 2  # a later answer wins
    assert (await store.get_call("c-live")).survey is None
    for bad in (0, 6, True):
        with pytest.raises(ValueError):
            await store.record_survey("c-live", bad)
    with pytest.raises(NotFound):
        await store.record_survey("no-such-call", 3)


# --- no store needed --------------------------------------------------------------------------


def test_window_defaults_and_limits() -> None:
    now = datetime(2030, 5, 1, 12, 0, tzinfo=UTC)
    assert Window.of(now=now) == Window(now - timedelta(hours=24), now)
    assert Window.of(until=now).since == now - timedelta(hours=24)
    assert Window.of(T0, T0 + timedelta(hours=2)).previous() == Window(T0 - timedelta(hours=2), T0)
    backwards = Window.of(T0, T0 - timedelta(hours=1))  # empty, like a list's after > before
    assert backwards.span == timedelta(0) and backwards.previous() == Window(T0, T0)
    huge = Window.of(datetime.min.replace(tzinfo=UTC), datetime.max.replace(tzinfo=UTC))
    assert huge == Window(EARLIEST, LATEST)  # no call is outside; every zone can show these
    assert huge.previous() == Window(EARLIEST, EARLIEST)
    with pytest.raises(ValueError):
        Window.of(datetime(2030, 1, 1), now=now)


async def test_intents_of_an_empty_or_backwards_window(store: Store) -> None:
    got = await intents(store, Window.of(T0 + timedelta(days=1), T0), "hour", FACTS, UTC_ZONE)
    assert got["series"] == [] and got["rising"] == [] and len(got["buckets"]) == 1


def test_day_buckets_across_a_dst_change() -> None:
    berlin = ZoneInfo("Europe/Berlin")  # clocks go forward on 2030-03-31: a 23-hour day

    def local(day: int, hour: int) -> datetime:
        return datetime(2030, 3 if day > 1 else 4, day, hour, tzinfo=berlin)

    days = chart(Window.of(local(30, 12), local(1, 12)), "day", berlin)
    assert [s.astimezone(berlin).isoformat() for s in days.starts] == [
        "2030-03-30T00:00:00+01:00", "2030-03-31T00:00:00+01:00", "2030-04-01T00:00:00+02:00"
    ]  # fmt: skip
    hours = chart(Window.of(local(31, 1), local(31, 4)), "hour", berlin)
    assert [s.astimezone(berlin).hour for s in hours.starts] == [1, 3]  # 02:00 never happened


def test_long_windows_are_charted_by_day_then_truncated() -> None:
    weeks = chart(Window(T0, T0 + timedelta(days=60)), "hour", UTC_ZONE)
    assert weeks.bucket == "day" and len(weeks.starts) == 61 and not weeks.truncated  # 09:00-09:00
    most = chart(Window(T0, T0 + timedelta(hours=MAX_BUCKETS - 2)), "hour", UTC_ZONE)
    assert most.bucket == "hour" and len(most.starts) == MAX_BUCKETS - 2
    years = chart(Window(T0, T0 + timedelta(days=3650)), "day", UTC_ZONE)
    assert years.truncated and len(years.starts) <= MAX_BUCKETS
    assert years.starts[-1] == (T0 + timedelta(days=3650)).replace(hour=0)  # the newest kept
    everything = chart(Window.of(EARLIEST, LATEST), "hour", ZoneInfo("Etc/GMT+12"))
    assert everything.truncated and len(everything.starts) <= MAX_BUCKETS


def test_agent_path_of_the_hotline_flow() -> None:
    assert FACTS.agent_nodes == {
        "agent_handoff", "transfer_to_agent", "callback_after_hours", "callback_intro",
        "callback_number",
        "confirm_callback_number", "ask_callback_number", "ask_callback_time",
        "confirm_callback", "book_callback",
        "callback_closed_today", "callback_out_of_hours",  # a holiday's prompt, the hour's
    }  # fmt: skip
    assert "goodbye" not in FACTS.agent_nodes and "offer_callback" not in FACTS.agent_nodes
    assert FACTS.reasons == {"agent": "agent_requested"}
    assert FACTS.is_topic("main_menu", "balance") and FACTS.is_topic("survey", "agent")
    assert not FACTS.is_topic("ask_account_balance", "1234")
    assert not FACTS.is_topic("fault", "yes")  # an answer to the fault question
    # "yes" goes back to the main menu, "no" to the survey and goodbye: they steer the dialog
    assert not FACTS.is_topic("anything_else", "yes") and not FACTS.is_topic("anything_else", "no")
    assert FACTS.is_topic("anything_else", "bill")
    for steering in ("repeat", "main_menu", "goodbye"):  # global intents that only steer
        assert not FACTS.is_topic("main_menu", steering)


def test_utterance_key() -> None:
    assert utterance_key("How much do I OWE?") == "how much do i owe"
    assert utterance_key("[unk] my  bill [unk]") == "my bill"
    assert utterance_key(None) == utterance_key("[unk]") == ""
