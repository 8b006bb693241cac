"""Abandoned calls apart from contained ones, topics without the answers and steering intents
(yes, no, repeat, main menu, goodbye), named periods, and the reports as CSV: on calls
recorded in a real store (SQLite and PostgreSQL, the `store` fixture)."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from ivr.analytics import FlowFacts, Window, intents, nodes, summary, unrecognized
from ivr.analytics.export import cell, filename, to_csv
from ivr.dialog import load_flow
from ivr.store import Store

FACTS = FlowFacts.from_flow(
    load_flow(Path(__file__).resolve().parent.parent / "grammars" / "hotline.yaml")
)
UTC_ZONE = ZoneInfo("UTC")
T0 = datetime(2031, 3, 3, 8, 0, tzinfo=UTC)
DAY = Window(T0, T0 + timedelta(hours=24))

Turn = tuple[str, str, str | None, str | None]  # node, kind, text, intent


async def record(
    store: Store, id: str, at: datetime, turns: list[Turn], reason: str | None
) -> None:
    """A call as the session records it: its turns a second apart, then its end (None: still
    in progress)."""
    await store.start_call(id, transport="websocket", flow="hotline", started_at=at)
    for seq, (node, kind, text, intent) in enumerate(turns, 1):
        await store.add_turn(
            id, kind, node=node, text=text, intent=intent,  # type: ignore[arg-type]
            confidence=0.8 if kind == "recognized" else None, at=at + timedelta(seconds=seq),
        )  # fmt: skip
    if reason is not None:
        await store.end_call(id, reason, ended_at=at + timedelta(seconds=len(turns) + 5))


MENU = ("main_menu", "prompt", "Say balance…", None)
AGAIN = ("main_menu", "prompt", "Sorry, I didn't get that.", None)
WHAT = ("main_menu", "recognized", "the weather", None)
MISS = ("main_menu", "no_match", "the weather", None)


async def seed(store: Store) -> None:
    m = timedelta(minutes=1)
    # hung up on the reprompt after a no-match: abandoned
    await record(store, "gave-up", T0, [MENU, WHAT, MISS, AGAIN], "caller_hangup")
    # hung up at once on the no-match (no reprompt recorded yet): abandoned
    await record(store, "gave-up-at-once", T0 + m, [MENU, WHAT, MISS], "caller_hangup")
    # a no-match, then understood, then hung up: contained
    await record(store, "understood", T0 + 2 * m, [
        MENU, WHAT, MISS, AGAIN, ("main_menu", "dtmf", "1", "balance"),
        ("balance", "prompt", "Your balance is…", None),
    ], "caller_hangup")  # fmt: skip
    # the flow said goodbye after a no-match (the survey's): contained, not abandoned
    await record(store, "said-goodbye", T0 + 3 * m, [
        ("survey", "prompt", "How would you rate…", None),
        ("survey", "recognized", "purple", None), ("survey", "no_match", "purple", None),
        ("goodbye", "prompt", "Goodbye.", None),
    ], "caller_goodbye")  # fmt: skip
    # a no-match, then the callback questions (the agent path), then hung up: escalated
    await record(store, "escalated", T0 + 4 * m, [
        MENU, ("main_menu", "dtmf", "0", "agent"),
        ("confirm_callback_number", "prompt", "Shall we call you…", None),
        ("confirm_callback_number", "recognized", "hmm", None),
        ("confirm_callback_number", "no_match", "hmm", None),
    ], "caller_hangup")  # fmt: skip
    # silence, then hung up: contained (a no-input is not a no-match)
    await record(store, "silent", T0 + 5 * m, [MENU, ("main_menu", "no_input", "", None)],
                 "caller_hangup")  # fmt: skip
    # a no-match and still talking: in progress, neither
    await record(store, "live", T0 + 6 * m, [MENU, WHAT, MISS], None)
    # topics: balance, then "yes" (another question), "repeat", bill, "main menu", "no",
    # "goodbye"; the answers and steering are not topics
    await record(store, "topics", T0 + 7 * m, [
        MENU, ("main_menu", "recognized", "balance", "balance"),
        ("anything_else", "recognized", "yes", "yes"),
        ("main_menu", "recognized", "say that again", "repeat"),
        ("main_menu", "recognized", "my bill", "bill"),
        ("anything_else", "recognized", "main menu", "main_menu"),
        ("main_menu", "dtmf", "3", "bill"),
        ("anything_else", "recognized", "no thanks", "no"),
        ("survey", "dtmf", "5", "5"),
        ("goodbye", "recognized", "bye", "goodbye"),
    ], "caller_goodbye")  # fmt: skip


async def test_abandoned_calls_are_counted_apart_from_contained_ones(store: Store) -> None:
    await seed(store)
    got = await summary(store, DAY, FACTS, UTC_ZONE)
    assert (got["calls"], got["ended"], got["in_progress"]) == (8, 7, 1)
    # contained: understood, said-goodbye, silent, topics; abandoned: gave-up, gave-up-at-once
    assert got["containment"] == {"contained": 4, "abandoned": 2, "escalated": 1, "rate": 0.5714}
    assert await store.abandoned_calls(DAY.since, DAY.until) == [
        "escalated",
        "gave-up",
        "gave-up-at-once",
    ]  # fmt: skip  (the store's list; the escalated call is counted as escalated alone)


async def test_answers_and_steering_are_not_topics(store: Store) -> None:
    await seed(store)
    got = await intents(store, DAY, "day", FACTS, UTC_ZONE)
    totals = {s["intent"]: s["total"] for s in got["series"]}
    assert totals == {"agent": 1, "balance": 2, "bill": 1}  # bill twice, one call
    # without the flow nothing says what an intent is: every one counts
    everything = await intents(store, DAY, "day", FlowFacts(), UTC_ZONE)
    assert {"yes", "no", "repeat", "goodbye", "5"} <= {s["intent"] for s in everything["series"]}


async def test_reports_as_csv(store: Store) -> None:
    await seed(store)
    berlin = ZoneInfo("Europe/Berlin")  # +01:00 in March before the change

    def rows(text: str) -> list[list[str]]:
        assert text.endswith("\r\n")
        return list(csv.reader(io.StringIO(text)))

    head = await summary(store, DAY, FACTS, berlin)
    table = dict(rows(to_csv("summary", head))[1:])
    assert table["since"] == "2031-03-03T09:00:00+01:00" and table["timezone"] == "Europe/Berlin"
    assert (table["contained"], table["abandoned"], table["escalated"]) == ("4", "2", "1")
    assert table["containment_rate"] == "0.5714" and table["escalated: agent_requested"] == "1"
    assert table["survey_average"] == "" and table["survey_score_5"] == "0"
    assert filename("summary", head) == "ivr-summary-2031-03-03T0900-2031-03-04T0900.csv"

    by_hour = rows(to_csv("intents", await intents(store, DAY, "hour", FACTS, berlin)))
    assert by_hour[0] == ["hour", "balance", "agent", "bill"]
    assert by_hour[1] == ["2031-03-03T09:00:00+01:00", "2", "1", "1"]
    assert len(by_hour) == 1 + 24 and all(r[1:] == ["0", "0", "0"] for r in by_hour[2:])

    per_node = rows(to_csv("nodes", await nodes(store, DAY, berlin)))
    assert per_node[0][:3] == ["node", "turns", "inputs"] and len(per_node[0]) == 7 + 10
    assert per_node[0][-1] == "confidence 0.9-1.0"
    menu = next(r for r in per_node if r[0] == "main_menu")
    assert menu[3] == "4"  # no-matches at the main menu (gave-up ×2, understood, live)

    said = rows(to_csv("unrecognized", await unrecognized(store, DAY, berlin)))
    assert said[0] == ["node", "text", "count", "newest_at", "newest_call_id", "newest_seq"]
    assert said[1][:3] == ["main_menu", "the weather", "4"] and said[1][4] == "live"


def test_spreadsheet_formulas_are_defused() -> None:
    assert [cell(v) for v in ("=1+2", "+1", "-1", "@x", "\tx", "ok", None, 3, -1)] == [
        "'=1+2", "'+1", "'-1", "'@x", "'\tx", "ok", "", 3, -1
    ]  # fmt: skip


def test_named_periods_end_now_in_the_service_zone() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    now = datetime(2031, 3, 30, 0, 30, tzinfo=UTC)  # 01:30 in Berlin, the day clocks go on
    today = Window.period("today", berlin, now)
    assert today == Window(datetime(2031, 3, 29, 23, 0, tzinfo=UTC), now)  # Berlin's midnight
    assert Window.period("today", UTC_ZONE, now).since == datetime(2031, 3, 30, tzinfo=UTC)
    assert Window.period("24h", berlin, now) == Window(now - timedelta(hours=24), now)
    assert Window.period("7d", berlin, now) == Window(now - timedelta(days=7), now)
