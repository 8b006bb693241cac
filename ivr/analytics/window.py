"""The time window analytics cover, and its hour or day buckets in the configured zone."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

Bucket = Literal["hour", "day"]
Period = Literal["today", "24h", "7d"]

DEFAULT_SPAN = timedelta(hours=24)
MAX_BUCKETS = 1000  # six weeks of hours, or nearly three years of days: enough for a chart
# No call is older or newer than these; clamping to them keeps every zone and every step of
# the bucket arithmetic inside the calendar (years 1 and 9999 fall off it in some zones).
EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)


def _clamp(at: datetime) -> datetime:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"naive datetime {at!r}: pass a timezone-aware one")
    return min(max(at.astimezone(UTC), EARLIEST), LATEST)


@dataclass(frozen=True)
class Window:
    """The calls that started in [since, until) (aware UTC datetimes); empty when since is not
    before until (like a list filtered after > before)."""

    since: datetime
    until: datetime

    @classmethod
    def of(
        cls,
        since: datetime | None = None,
        until: datetime | None = None,
        now: datetime | None = None,
    ) -> Window:
        """Defaults: until now, since 24 hours before `until`; both within 1900-9000.
        ValueError for a naive datetime."""
        end = _clamp(until if until is not None else now or datetime.now(UTC))
        start = _clamp(since) if since is not None else max(end - DEFAULT_SPAN, EARLIEST)
        return cls(start, end)

    @property
    def span(self) -> timedelta:
        return max(self.until - self.since, timedelta(0))

    @classmethod
    def period(cls, period: Period, tz: ZoneInfo, now: datetime | None = None) -> Window:
        """A named window ending now: `today` from midnight in `tz` (the service's day, not
        the browser's), `24h` and `7d` the hours or days before now."""
        end = _clamp(now or datetime.now(UTC))
        if period == "today":
            return cls(bucket_start(end, "day", tz), end)
        return cls(end - (timedelta(days=7) if period == "7d" else DEFAULT_SPAN), end)

    def previous(self) -> Window:
        """The window of the same length just before this one."""
        return Window(self.since - min(self.span, self.since - EARLIEST), self.since)


@dataclass(frozen=True)
class Chart:
    """How a window is charted: the step, each bucket's start (UTC), and whether only the
    newest MAX_BUCKETS buckets of the window are shown."""

    bucket: Bucket
    starts: list[datetime]
    truncated: bool


def chart(window: Window, bucket: Bucket, tz: ZoneInfo) -> Chart:
    """Buckets covering `window` (the first may begin before `since`): by `bucket`, or by day
    when that would be more than MAX_BUCKETS hours; at most the newest MAX_BUCKETS days."""
    if bucket == "hour" and window.span > timedelta(hours=MAX_BUCKETS - 2):
        bucket = "day"  # a window of weeks: days
    since, truncated = window.since, False
    if bucket == "day" and window.span > timedelta(days=MAX_BUCKETS - 2):
        since, truncated = window.until - timedelta(days=MAX_BUCKETS - 2), True
    starts = [bucket_start(since, bucket, tz)]
    while (nxt := _next(starts[-1], bucket, tz)) < window.until:
        starts.append(nxt)
    return Chart(bucket, starts[-MAX_BUCKETS:], truncated or len(starts) > MAX_BUCKETS)


def bucket_start(at: datetime, bucket: Bucket, tz: ZoneInfo) -> datetime:
    """The start (UTC) of the local hour or day `at` falls in."""
    local = at.astimezone(tz)
    if bucket == "hour":
        start = local.replace(minute=0, second=0, microsecond=0)
    else:
        start = datetime.combine(local.date(), time(0), tzinfo=tz)
    return start.astimezone(UTC)


def _next(start: datetime, bucket: Bucket, tz: ZoneInfo) -> datetime:
    if bucket == "hour":
        # An hour later in UTC is the next local hour (zones shift by whole hours or half
        # hours, and then the floor puts it back on the local hour).
        nxt = bucket_start(start + timedelta(hours=1), bucket, tz)
        return nxt if nxt > start else start + timedelta(hours=1)
    day = start.astimezone(tz).date() + timedelta(days=1)  # 23 or 25 hours on DST days
    return datetime.combine(day, time(0), tzinfo=tz).astimezone(UTC)
