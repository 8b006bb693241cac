"""The complaint early warning's records (migration 11), on SQLite and PostgreSQL: the mark
on a call and a conversation, the callback's priority raised once, the topics of a number's
recent contacts, and the complaints of a window for analytics."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from ivr.analytics import FlowFacts, Window, intents
from ivr.dialog import load_flow
from ivr.store import NotFound, Store

FLOW = Path(__file__).resolve().parent.parent / "grammars" / "hotline.yaml"
UTC_ZONE = ZoneInfo("UTC")

T0 = datetime(2030, 1, 7, 9, 0, tzinfo=UTC)
WHY = {"reasons": ["words"], "text": "this is ridiculous", "score": 1.2, "cues": ["judgement"]}


async def test_a_call_and_a_conversation_are_marked(store: Store) -> None:
    call = await store.start_call("c-1", transport="ws", caller="+15551230001", started_at=T0)
    assert call.complaint is None
    await store.mark_complaint("call", "c-1", WHY)
    assert (await store.get_call("c-1")).complaint == WHY
    conv = await store.start_conversation(channel="web", number="+15551230001", started_at=T0)
    assert conv.complaint is None
    await store.mark_complaint("conversation", conv.id, WHY)
    assert (await store.get_conversation(conv.id)).complaint == WHY
    with pytest.raises(NotFound):
        await store.mark_complaint("call", "nobody", WHY)
    with pytest.raises(NotFound):
        await store.mark_complaint("conversation", "not-a-uuid", WHY)


async def test_the_callback_of_a_complaint_is_raised_once(store: Store) -> None:
    cb, _ = await store.upsert_open_callback("+15551230001", T0, reason="agent_requested",
                                             priority=10, now=T0)  # fmt: skip
    assert cb.complaint is None and cb.priority == 10
    raised, changed = await store.mark_callback_complaint(cb.id, WHY, 5, now=T0)
    assert changed and raised.priority == 15 and raised.complaint == WHY
    again, changed = await store.mark_callback_complaint(cb.id, {"reasons": ["x"]}, 5, now=T0)
    assert not changed and again.priority == 15 and again.complaint == WHY
    page, _ = await store.list_callbacks()
    assert [(c.id, c.complaint) for c in page] == [(cb.id, WHY)]  # the list shows the mark
    with pytest.raises(NotFound):
        await store.mark_callback_complaint("00000000-0000-4000-8000-000000000000", WHY, 5)


async def test_the_topics_of_a_numbers_recent_contacts(store: Store) -> None:
    n = "+15551230001"
    await store.add_contact_topic(n, "bill", channel="voice", contact_id="c-1",
                                  at=T0 - timedelta(hours=30))  # fmt: skip
    await store.add_contact_topic(n, "fault", channel="web", contact_id="k-1",
                                  at=T0 - timedelta(hours=3))  # fmt: skip
    await store.add_contact_topic(n, "balance", channel="voice", contact_id="c-2",
                                  at=T0 - timedelta(hours=2))  # fmt: skip
    await store.add_contact_topic(n, "fault", channel="voice", contact_id="c-2",
                                  at=T0 - timedelta(hours=2))  # fmt: skip
    await store.add_contact_topic("+15550009999", "roaming", channel="sms", contact_id="s-1",
                                  at=T0 - timedelta(hours=1))  # fmt: skip
    since = T0 - timedelta(hours=24)
    assert await store.recent_topics(n, since) == ["fault", "balance"]  # not the day before
    assert await store.recent_topics(n, since, exclude="c-2") == ["fault"]
    assert await store.recent_topics("+15550000000", since) == []


async def test_complaints_of_a_window_for_analytics(store: Store) -> None:
    await store.start_call("c-1", transport="ws", started_at=T0)
    await store.start_call("c-2", transport="ws", started_at=T0 + timedelta(minutes=1))
    await store.start_call("c-3", transport="ws", started_at=T0 + timedelta(days=2))
    conv = await store.start_conversation(channel="sms", started_at=T0 + timedelta(minutes=2))
    for kind, id in (("call", "c-1"), ("call", "c-3"), ("conversation", conv.id)):
        await store.mark_complaint(kind, id, WHY)  # type: ignore[arg-type]
    uses = await store.complaint_uses(T0, T0 + timedelta(days=1))
    assert [(u.call_id, u.intent) for u in uses] == [("c-1", "complaint"), (conv.id, "complaint")]


async def test_complaints_by_channel(store: Store) -> None:
    await store.start_call("c-1", transport="ws", started_at=T0)
    web = await store.start_conversation(channel="web", started_at=T0)
    sms = await store.start_conversation(channel="sms", started_at=T0)
    for kind, id in (("call", "c-1"), ("conversation", web.id), ("conversation", sms.id)):
        await store.mark_complaint(kind, id, WHY)  # type: ignore[arg-type]
    until = T0 + timedelta(days=1)
    assert [u.call_id for u in await store.complaint_uses(T0, until, "voice")] == ["c-1"]
    assert [u.call_id for u in await store.complaint_uses(T0, until, "sms")] == [sms.id]
    assert len(await store.complaint_uses(T0, until)) == 3


async def test_complaints_are_a_rising_topic_of_their_own(store: Store) -> None:
    """Five complaining contacts today (three calls, two chats) and one the day before:
    'complaint' is a topic in the series and rises, beside the intents the contacts asked
    for; per channel it counts that channel's contacts only."""
    day = Window.of(T0, T0 + timedelta(days=1))
    for i, at in enumerate(
        [T0 - timedelta(hours=20)] + [T0 + timedelta(hours=h) for h in (1, 2, 3)]
    ):
        await store.start_call(f"c-{i}", transport="ws", started_at=at)
        await store.add_turn(f"c-{i}", "recognized", node="main_menu", text="my bill",
                             intent="bill", at=at)  # fmt: skip
        await store.mark_complaint("call", f"c-{i}", WHY)
    for h in (4, 5):
        c = await store.start_conversation(channel="web", started_at=T0 + timedelta(hours=h))
        await store.mark_complaint("conversation", c.id, WHY)
    facts = FlowFacts.from_flow(load_flow(FLOW))
    got = await intents(store, day, "hour", facts, UTC_ZONE)
    totals = {s["intent"]: s["total"] for s in got["series"]}
    assert totals == {"complaint": 5, "bill": 3}
    assert got["rising"] == [{"intent": "complaint", "count": 5, "previous": 1, "ratio": 5.0}]
    voice = await intents(store, day, "hour", facts, UTC_ZONE, "voice")
    assert {s["intent"]: s["total"] for s in voice["series"]} == {"complaint": 3, "bill": 3}
    assert voice["rising"] == []  # three calls: under the rising minimum of five
