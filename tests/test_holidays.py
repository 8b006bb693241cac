"""Business hours with public holidays and dated closures, and queues with hours of their own:
the calendar (ivr/dialog/closed.py, ivr/dialog/when.py), its settings, and the dialog engine
on a flow whose nodes name queues. tests/test_e2e_holidays.py calls a real server on one.

Thanksgiving 2030 is Thursday 28 November; California also closes on the Friday after it.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ivr.app import check_flow_queues
from ivr.config import ConfigError, load_settings
from ivr.dialog import DialogEngine, DtmfEntered, FetchDone, Say, Start
from ivr.dialog.closed import ClosedDays, ClosedError, Closure
from ivr.dialog.flow import Flow, FlowError, load_flow
from ivr.dialog.state import DialogState
from ivr.dialog.types import Action, BookCallback, Disconnect
from ivr.dialog.when import BusinessHours, resolve, resolve_keys

LA = ZoneInfo("America/Los_Angeles")
WEEK = "mon-fri 08:00-20:00, sat 09:00-17:00"
US_CA = ClosedDays.parse("us", "ca")


def at(d: int, hour: int, minute: int = 0, month: int = 11) -> datetime:
    return datetime(2030, month, d, hour, minute, tzinfo=LA)


# --- the closed days --------------------------------------------------------------------


def test_public_holidays_by_country_and_subdivision() -> None:
    assert US_CA.reason(date(2030, 11, 28)) == "Thanksgiving Day"
    assert US_CA.reason(date(2030, 11, 29)) == "Day After Thanksgiving"  # California's
    assert ClosedDays.parse("US", None).reason(date(2030, 11, 29)) is None  # not federal
    assert US_CA.reason(date(2030, 11, 27)) is None
    assert US_CA.reason(date(2033, 12, 26)) == "Christmas Day (observed)"  # the 25th: a Sunday
    # a country whose names are its own language's is read in English where the package can
    assert ClosedDays.parse("DE", "BE").reason(date(2030, 12, 26)) == "Second Day of Christmas"


def test_dated_closures_one_day_or_a_range_with_a_name() -> None:
    closed = ClosedDays.parse(None, None, ["2030-12-24", "2030-12-27/2030-12-31 the year end"])
    assert closed.reason(date(2030, 12, 24)) == "a company closure"
    assert [closed.reason(date(2030, 12, d)) for d in (26, 27, 31)] == [None, *["the year end"] * 2]
    assert Closure.parse("2030-12-27..2030-12-31") == Closure(
        date(2030, 12, 27), date(2030, 12, 31)
    )
    assert str(Closure.parse(" 2030-12-27 / 2030-12-31  the year end ")) == (
        "2030-12-27/2030-12-31 the year end"
    )


@pytest.mark.parametrize(
    ("country", "subdivision", "closures", "error"),
    [
        ("XX", None, [], "no public holidays known for 'XX'"),
        ("US", "ZZ", [], "US has no subdivision 'ZZ' for public holidays (it has: AK, AL"),
        (None, "CA", [], "holiday subdivision 'CA' without a country"),
        (None, None, ["2030-02-30"], "closure '2030-02-30': day is out of range for month"),
        (None, None, ["2030-12-31/2030-12-01"], "ends before it starts"),
        (None, None, ["2030-01-01/2031-06-01"], "longer than a year"),
        (None, None, ["24.12.2030"], "expected YYYY-MM-DD or YYYY-MM-DD/YYYY-MM-DD"),
    ],
)
def test_what_cannot_be_used_says_why(
    country: str | None, subdivision: str | None, closures: list[str], error: str
) -> None:
    with pytest.raises(ClosedError, match=error.replace("(", r"\(").replace(")", r"\)")):
        ClosedDays.parse(country, subdivision, closures)


# --- business hours around them ---------------------------------------------------------


HOURS = BusinessHours.parse(
    WEEK, "America/Los_Angeles", ClosedDays.parse("US", "CA", ["2030-11-30"])
)


def test_agents_are_out_on_a_holiday_and_the_next_opening_skips_closed_days() -> None:
    assert HOURS.is_open(at(27, 10)) and not HOURS.is_open(at(28, 10))  # Wed; Thanksgiving
    assert HOURS.closed_on(at(28, 10)) == "Thanksgiving Day" and HOURS.closed_on(at(27, 10)) is None
    # Thu Thanksgiving, Fri the day after (CA), Sat the closure, Sun closed: Monday 08:00
    assert HOURS.next_open(at(28, 10)) == at(2, 8, month=12)
    assert HOURS.next_open(at(27, 19, 59)) == at(27, 19, 59)
    assert HOURS.next_open(at(27, 20)) == at(2, 8, month=12)
    assert HOURS.describe() == (
        "Monday to Friday, 8 AM to 8 PM; Saturday, 9 AM to 5 PM, except public holidays"
    )


def test_callback_times_proposed_on_a_holiday_skip_the_closed_days() -> None:
    asap = resolve("as soon as possible", at(28, 10), HOURS)
    assert asap is not None and asap.due_at == at(2, 8, month=12)
    assert asap.spoken == "Monday the 2nd at 8 AM" and asap.adjusted
    friday = resolve("friday at three p m", at(28, 10), HOURS)  # the day after: closed
    assert friday is not None and friday.due_at == at(2, 8, month=12) and friday.adjusted
    tomorrow = resolve_keys("3", at(27, 10), HOURS)  # "tomorrow morning" is Thanksgiving
    assert tomorrow is not None and tomorrow.due_at == at(2, 8, month=12), tomorrow
    plain = BusinessHours.parse(WEEK, "America/Los_Angeles")  # no holidays: as before
    assert plain.next_open(at(28, 10)) == at(28, 10)


def test_a_long_closure_puts_the_opening_off_past_it() -> None:
    closed = ClosedDays.parse(None, None, ["2030-12-01/2031-03-31"])
    hours = BusinessHours.parse("mon 09:00-10:00", "UTC", closed)
    assert hours.next_open(datetime(2030, 12, 1, tzinfo=UTC)) == datetime(2031, 4, 7, 9, tzinfo=UTC)


DAYS = st.dates(date(2030, 1, 1), date(2031, 12, 31))


@given(
    st.datetimes(datetime(2030, 1, 1), datetime(2031, 12, 31), timezones=st.just(UTC)),
    st.lists(st.tuples(DAYS, st.integers(0, 20)), max_size=4),
    st.sampled_from([None, "US", "GB", "DE"]),
)
def test_the_next_opening_is_open_and_nothing_opens_before_it(
    now: datetime, spans: list[tuple[date, int]], country: str | None
) -> None:
    closures = [f"{d}/{d + timedelta(days=n)}" for d, n in spans]
    hours = BusinessHours.parse(WEEK, "UTC", ClosedDays.parse(country, None, closures))
    got = hours.next_open(now)
    assert got >= now and hours.is_open(got) and hours.closed_on(got) is None
    if got != now:  # a range's opening, with nothing open from now up to it
        assert got.time() in (time(8), time(9))
        day = now.date()
        while day < got.date():
            assert not hours.opening(day) or (
                day == now.date() and all(c <= now.time() for _, c in hours.opening(day))
            )
            day += timedelta(days=1)


# --- the settings -----------------------------------------------------------------------


def test_settings_give_each_queue_its_hours_holidays_and_closures() -> None:
    settings = load_settings(
        timezone="America/Los_Angeles",
        holidays_country="US",
        holidays_subdivision="CA",
        closures="2030-11-30",
        queues={
            "billing": {"business_hours": "mon-fri 09:00-17:00", "closures": ["2030-11-27"]},
            "support": {"holidays_country": ""},  # the default's hours, no holidays
            "london": {"holidays_country": "GB"},  # not California's subdivision then
        },
    )
    cal = settings.business_calendar()
    assert set(cal) == {"default", "billing", "support", "london"}
    assert cal["default"].closed == ClosedDays.parse("US", "CA", ["2030-11-30"])
    assert cal["billing"].closed == ClosedDays.parse("US", "CA", ["2030-11-27"])
    assert cal["billing"].days[0] == ((time(9), time(17)),)
    assert cal["support"].closed == ClosedDays.parse(None, None, ["2030-11-30"])
    assert cal["support"].days == cal["default"].days
    assert cal["london"].closed == ClosedDays.parse("GB", None, ["2030-11-30"])


def test_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IVR_HOLIDAYS_COUNTRY", "US")
    monkeypatch.setenv("IVR_HOLIDAYS_SUBDIVISION", "CA")
    monkeypatch.setenv("IVR_CLOSURES", "2026-12-24, 2026-12-31/2027-01-02 the year end")
    monkeypatch.setenv("IVR_QUEUES", '{"billing": {"business_hours": "mon-fri 09:00-17:00"}}')
    settings = load_settings()
    assert settings.closures == ["2026-12-24", "2026-12-31/2027-01-02 the year end"]
    assert settings.business_calendar()["billing"].closed.country == "US"


def test_yaml_dates_are_closures(tmp_path: Path) -> None:
    config = tmp_path / "ivr.yaml"
    config.write_text("closures: [2026-12-24, 2026-12-31/2027-01-02]\n")
    assert load_settings(config).closures == ["2026-12-24", "2026-12-31/2027-01-02"]


@pytest.mark.parametrize(
    ("settings", "error"),
    [
        ({"holidays_country": "XX"}, "no public holidays known for 'XX'"),
        ({"closures": "2030-02-30"}, "closure '2030-02-30'"),
        ({"queues": {"b": {"business_hours": "mon 25:00-26:00"}}}, "queue b: business hours"),
        ({"queues": {"b": {"closures": ["soon"]}}}, "queue b: closure 'soon'"),
        ({"queues": {"default": {}}}, "queue 'default' is the service's own hours"),
        ({"queues": {"a b": {}}}, "queue name 'a b'"),
        ({"queues": {"b": {"hours": "24/7"}}}, "queues.b.hours: Extra inputs"),
    ],
)
def test_settings_that_cannot_be_used_stop_start_up(settings: dict[str, Any], error: str) -> None:
    with pytest.raises(ConfigError, match=error):
        load_settings(**settings)


# --- a flow's queues --------------------------------------------------------------------

FLOW = """
name: queues
start: menu
escalation: bye
nodes:
  menu:
    kind: menu
    prompt: "Press 1 for sales or 2 for billing."
    choices:
      sales: {phrases: [sales], dtmf: "1", goto: agents, reason: agent_requested}
      billing: {phrases: [billing], dtmf: "2", goto: billing_agents, reason: agent_requested}
  billing_agents: {kind: branch, queue: billing, var: open_now, cases: {"no": closed},
                   default: open}
  agents: {kind: branch, var: open_now, cases: {"no": closed}, default: open}
  open: {kind: hangup, prompt: "Putting you through.", reason: open}
  closed: {kind: branch, var: closed_today, present: holiday, default: hours}
  holiday: {kind: answer, prompt: "We are out today for {closed_today}.", next: hours}
  hours: {kind: answer, prompt: "We work {business_hours}.", next: ask_time}
  ask_time: {kind: question, type: when, var: callback_at, prompt: "When?", next: book}
  book: {kind: callback, number: [caller], say: "Booked {callback_at_spoken}.", failed: bye,
         next: bye}
  bye: {kind: hangup, prompt: "Bye."}
"""
QUEUES = {"billing": {"business_hours": "mon-fri 09:00-17:00", "holidays_country": "",
                      "closures": ["2030-11-28"]}}  # fmt: skip


@pytest.fixture(scope="module")
def flow(tmp_path_factory: pytest.TempPathFactory) -> Flow:
    path = tmp_path_factory.mktemp("flow") / "queues.yaml"
    path.write_text(FLOW)
    return load_flow(path)


def call(flow: Flow, now: datetime, key: str) -> tuple[DialogState, list[str], list[Action]]:
    """Press `key` at the menu, then 1 (as soon as possible) if asked when."""
    settings = load_settings(timezone="America/Los_Angeles", holidays_country="US", queues=QUEUES)
    cal = settings.business_calendar()
    engine = DialogEngine(flow, clock=lambda: now, hours=cal["default"], queues=cal)
    state, actions = engine.start(Start(caller="+15551230001"))
    actions += engine.handle(state, DtmfEntered(key))
    if state.node == "ask_time":
        actions += engine.handle(state, DtmfEntered("1"))
    for a in list(actions):
        if isinstance(a, BookCallback):
            actions += engine.handle(state, FetchDone({"callback_id": "cb-1"}))
    return state, [a.text for a in actions if isinstance(a, Say)], actions


def booked(actions: list[Action]) -> str:
    (booking,) = [a for a in actions if isinstance(a, BookCallback)]
    return booking.due_at


def test_the_default_queue_is_out_on_a_holiday_and_offers_the_callback(flow: Flow) -> None:
    state, said, actions = call(flow, at(28, 10), "1")  # sales on Thanksgiving
    assert "We are out today for Thanksgiving Day." in said, said
    assert "We work Monday to Friday, 8 AM to 8 PM; Saturday, 9 AM to 5 PM, except public" \
        " holidays." in said  # fmt: skip
    assert booked(actions) == at(29, 8).isoformat()  # Friday: not a federal holiday
    assert "queue" not in state.variables  # no node named one


def test_a_named_queue_has_its_own_hours_holidays_and_closures(flow: Flow) -> None:
    # Billing keeps no public holidays, but Thanksgiving is its own closure: out, so said
    state, said, actions = call(flow, at(28, 10), "2")
    assert state.variables["queue"] == "billing"
    assert "We are out today for a company closure." in said, said
    assert booked(actions) == at(29, 9).isoformat()  # its own hours: 9 AM
    state, said, actions = call(flow, at(27, 18), "2")  # Wednesday 6 PM: billing is closed
    assert "We work Monday to Friday, 9 AM to 5 PM." in said and "out today" not in " ".join(said)
    assert booked(actions) == at(29, 9).isoformat()  # Thursday: billing's closure
    state, said, actions = call(flow, at(27, 18), "1")  # sales at the same hour: in
    assert said[-1] == "Putting you through." and isinstance(actions[-1], Disconnect)


def test_a_flow_naming_a_queue_that_is_not_configured_is_refused(flow: Flow) -> None:
    check_flow_queues(flow, frozenset({"default", "billing"}))
    with pytest.raises(FlowError, match=r"nodes.billing_agents.queue: 'billing' is not a config"):
        check_flow_queues(flow, frozenset({"default"}))
