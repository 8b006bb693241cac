"""After a crash: the calls this node left open are closed as `server_crash`.

A server killed mid-call (kill -9, out of memory, power) never wrote those calls' ends: in
analytics they would stay in progress forever, and no webhook consumer would hear
`call.ended`. At start-up, before it takes calls, a node closes every call it left open —
its own only (`node_id`): on a PostgreSQL database shared by several nodes, the other
nodes' open calls are live. Each call ends at its last recorded moment (its last turn, else
its start; the crash's own time is unknown) and gets its `call.ended` event in the same
transaction, with the payload the recorder writes (`{"call": call_json(record)}`).
"""

from __future__ import annotations

import logging
from zoneinfo import ZoneInfo

from ivr.callbacks.service import call_json
from ivr.store import Call, Conflict, Store

log = logging.getLogger(__name__)

CRASH_REASON = "server_crash"


async def close_crashed_calls(store: Store, node_id: str, tz: ZoneInfo) -> list[Call]:
    """Close the calls `node_id` left open; the closed records. Store errors propagate: a
    node that cannot write its records does not start."""
    closed: list[Call] = []
    while calls := await store.open_calls(node_id, limit=500):
        for call in calls:
            turns = await store.list_turns(call.id)
            ended_at = max([call.started_at, *(t.at for t in turns)])
            try:
                async with store.transaction() as tx:
                    record = await tx.end_call(call.id, CRASH_REASON, ended_at=ended_at)
                    await tx.add_event("call.ended", {"call": call_json(record, tz)})
            except Conflict:  # ended meanwhile (another process on the same data)
                continue
            closed.append(record)
    if closed:
        log.warning(
            "crash recovery: closed %d calls the previous run of node %s left open (%s)",
            len(closed),
            node_id,
            CRASH_REASON,
        )
    return closed
