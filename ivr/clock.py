"""The dialog's calendar clock: what "now" and "today" mean to a call for business hours,
callback times and dates the caller says.

Production runs on the system clock. `IVR_CLOCK_START` starts the calendar at a chosen
instant and lets it run on from there (a demo of after-hours behaviour, or tests that must
give the same result at any hour). Only the dialog reads it: records, the webhook outbox and
the callback dispatcher stay on the system clock (a shifted clock there would stamp events in
the future and hold them back), and timers, timeouts and pacing use the loop's monotonic
clock.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

Clock = Callable[[], datetime]


def system_clock() -> datetime:
    return datetime.now(UTC)


def shifted_clock(start: datetime | None) -> Clock:
    """The system clock, or one that read `start` when this was called and runs on from it."""
    if start is None:
        return system_clock
    if start.tzinfo is None:
        raise ValueError("the clock's start needs a UTC offset")
    offset = start - datetime.now(UTC)
    return lambda: datetime.now(UTC) + offset


def today_in(clock: Clock, tz: ZoneInfo) -> Callable[[], date]:
    """Today's date in `tz` by `clock` (not the host's local zone)."""
    return lambda: clock().astimezone(tz).date()
