"""Text conversations in the store (migration 10), on SQLite and PostgreSQL: messages in
order both ways, the open conversation of a number, ending once, unknown ids."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ivr.store import Conflict, NotFound, Store

T0 = datetime(2030, 1, 7, 9, 0, tzinfo=UTC)


async def test_a_conversation_keeps_its_messages_in_order(store: Store) -> None:
    c = await store.start_conversation(
        channel="sms", number="+15551230001", flow="hotline", flow_version="1", started_at=T0
    )
    assert c.ended_at is None and c.last_message_at == T0 and c.number == "+15551230001"
    await store.add_message(c.id, "customer", "what's my balance", at=T0 + timedelta(seconds=1))
    m = await store.add_message(
        c.id, "bot", "Anything else?", node="anything_else", quick_replies=("yes", "no"),
        at=T0 + timedelta(seconds=2),
    )  # fmt: skip
    assert (m.seq, m.sender, m.quick_replies) == (2, "bot", ("yes", "no"))
    messages = await store.list_messages(c.id)
    assert [(x.seq, x.sender, x.text) for x in messages] == [
        (1, "customer", "what's my balance"),
        (2, "bot", "Anything else?"),
    ]
    assert messages[0].quick_replies == () and messages[1].node == "anything_else"
    got = await store.get_conversation(c.id)
    assert got.last_message_at == T0 + timedelta(seconds=2)


async def test_the_open_conversation_of_a_number_and_its_end(store: Store) -> None:
    old = await store.start_conversation(channel="sms", number="+15550001111", started_at=T0)
    await store.end_conversation(old.id, "idle", ended_at=T0 + timedelta(hours=1))
    new = await store.start_conversation(channel="sms", number="+15550001111")
    await store.start_conversation(channel="web", number="+15550001111")
    found = await store.open_conversation("sms", "+15550001111")
    assert found is not None and found.id == new.id
    assert await store.open_conversation("sms", "+15559999999") is None
    assert new.id in {c.id for c in await store.open_conversations()}
    ended = await store.end_conversation(new.id, "caller_goodbye", survey=4)
    assert (ended.end_reason, ended.survey) == ("caller_goodbye", 4) and ended.ended_at
    with pytest.raises(Conflict):
        await store.end_conversation(new.id, "again")
    assert await store.open_conversation("sms", "+15550001111") is None


async def test_unknown_and_malformed_ids_are_not_found(store: Store) -> None:
    for id in ("00000000-0000-4000-8000-000000000000", "not-a-uuid"):
        with pytest.raises(NotFound):
            await store.get_conversation(id)
        with pytest.raises(NotFound):
            await store.add_message(id, "customer", "hello")
        with pytest.raises(NotFound):
            await store.end_conversation(id, "x")
    assert await store.list_messages("00000000-0000-4000-8000-000000000000") == []


async def test_recent_conversations_with_their_last_message(store: Store) -> None:
    """The console's live page: open ones and those ended since a time, latest first, each
    with its last message."""
    gone = await store.start_conversation(channel="web", started_at=T0)
    await store.end_conversation(gone.id, "idle", ended_at=T0 + timedelta(minutes=5))
    done = await store.start_conversation(channel="sms", number="+15550002222", started_at=T0)
    await store.add_message(done.id, "customer", "hi", at=T0 + timedelta(minutes=10))
    await store.end_conversation(done.id, "caller_goodbye", ended_at=T0 + timedelta(minutes=11))
    quiet = await store.start_conversation(channel="web", started_at=T0 + timedelta(minutes=12))
    busy = await store.start_conversation(channel="web", number="+15550003333", started_at=T0)
    await store.add_message(busy.id, "customer", "balance", at=T0 + timedelta(minutes=20))
    await store.add_message(busy.id, "bot", "Your balance is 4 dollars.", node="balance",
                            at=T0 + timedelta(minutes=20, seconds=1))  # fmt: skip
    recent = await store.recent_conversations(T0 + timedelta(minutes=8))
    assert [c.id for c, _ in recent] == [busy.id, quiet.id, done.id]
    last = {c.id: m for c, m in recent}
    busy_last = last[busy.id]
    assert busy_last is not None and (busy_last.seq, busy_last.sender) == (2, "bot")
    assert busy_last.text == "Your balance is 4 dollars."
    assert last[quiet.id] is None
    done_last = last[done.id]
    assert done_last is not None and done_last.text == "hi"
    assert [c.id for c, _ in await store.recent_conversations(T0, limit=1)] == [busy.id]
