"""The `ComplaintStore` protocol: the complaint early warning's records (`ivr.store.complaints`),
one area of `ivr.store.protocols.Store`."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    from ivr.store.base import Callback, IntentUse


class ComplaintStore(Protocol):
    """The complaint early warning's records (`ivr.store.complaints`)."""

    async def mark_complaint(
        self, kind: Literal["call", "conversation"], id: str, complaint: Any
    ) -> None:
        """Mark a call or conversation as a complaint. NotFound for no such contact."""
        ...

    async def mark_callback_complaint(
        self, id: str, complaint: Any, boost: int, *, now: datetime | None = None
    ) -> tuple[Callback, bool]:
        """Set the callback's complaint and raise its priority by `boost`, the first time
        only: (callback, whether this changed it)."""
        ...

    async def add_contact_topic(
        self,
        number: str,
        topic: str,
        *,
        channel: str,
        contact_id: str,
        at: datetime | None = None,
    ) -> None: ...

    async def recent_topics(
        self, number: str, since: datetime, *, exclude: str | None = None
    ) -> list[str]:
        """Topics of `number`'s contacts since `since` (not `exclude`'s), once each."""
        ...

    async def complaint_uses(
        self, since: datetime, until: datetime, channel: str | None = None
    ) -> list[IntentUse]:
        """Calls and conversations started in [since, until) marked a complaint (`channel`
        voice: calls; another: its conversations; None: all)."""
        ...
