"""Server processes' heartbeats: the `NodeStore` operations, for both databases."""

from __future__ import annotations

from abc import abstractmethod
from datetime import datetime

from ivr.store.base import Node, NotFound
from ivr.store.queries import Queries
from ivr.store.rows import Row, now_or, ts


def _node(r: Row) -> Node:
    return Node(id=r["id"], started_at=ts(r["started_at"]), seen_at=ts(r["seen_at"]))


class NodeQueries(Queries):
    """Mixed into `SqlStore`."""

    async def node_seen(
        self, node_id: str, *, started: bool = False, now: datetime | None = None
    ) -> Node:
        at = now_or(now)
        async with self._unit() as c:
            rows = await c.fetch(
                "INSERT INTO nodes (id, started_at, seen_at) VALUES ($1, $2, $2)"
                " ON CONFLICT (id) DO UPDATE SET seen_at = excluded.seen_at"
                + (", started_at = excluded.started_at" if started else "")
                + " RETURNING *",
                node_id,
                at,
            )
        self._reached()
        return _node(rows[0])

    @abstractmethod
    def _reached(self) -> None:
        """A write committed: the database takes writes again (see `health.py`)."""

    async def get_node(self, id: str) -> Node:
        rows = await self._select("SELECT * FROM nodes WHERE id = $1", id)
        if not rows:
            raise NotFound("node", id)
        return _node(rows[0])
