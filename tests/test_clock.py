"""The dialog's calendar clock (IVR_CLOCK_START) and "today" in the configured zone."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from ivr.clock import shifted_clock, system_clock, today_in
from ivr.config import ConfigError, load_settings


def test_no_start_is_the_system_clock() -> None:
    assert shifted_clock(None) is system_clock


def test_a_shifted_clock_starts_at_its_instant_and_runs_on() -> None:
    start = datetime(2030, 1, 6, 3, 0, tzinfo=ZoneInfo("Europe/Berlin"))
    clock = shifted_clock(start)
    first = clock()
    assert abs(first - start) < timedelta(seconds=1)
    assert clock() >= first


def test_today_is_the_zones_date_not_the_hosts() -> None:
    # 23:30 UTC on 31 December is already 1 January in Shanghai and still 31 December in
    # New York, whatever zone the host is in.
    clock = shifted_clock(datetime(2029, 12, 31, 23, 30, tzinfo=UTC))
    assert today_in(clock, ZoneInfo("Asia/Shanghai"))() == date(2030, 1, 1)
    assert today_in(clock, ZoneInfo("America/New_York"))() == date(2029, 12, 31)


def test_across_a_dst_change_the_local_date_holds() -> None:
    # Europe/Berlin leaves summer time at 03:00 local on 27 October 2030 (01:00 UTC).
    clock = shifted_clock(datetime(2030, 10, 27, 0, 30, tzinfo=UTC))
    assert today_in(clock, ZoneInfo("Europe/Berlin"))() == date(2030, 10, 27)


def test_the_setting_needs_an_offset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IVR_CLOCK_START", "2030-01-06T03:00:00")
    with pytest.raises(ConfigError, match="clock_start needs a UTC offset"):
        load_settings()
    monkeypatch.setenv("IVR_CLOCK_START", "2030-01-06T03:00:00+01:00")
    assert load_settings().clock_start == datetime(2030, 1, 6, 2, 0, tzinfo=UTC)
