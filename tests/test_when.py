"""ivr.dialog.when: business hours, callback-time phrases → slots, keypad, recognizer phrases."""

from __future__ import annotations

import re
import time as clock
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from audio_fixtures import concat, recording

from ivr.asr.pocketsphinx_engine import PocketsphinxEngine
from ivr.audio.pcm import read_wav
from ivr.dialog.when import (
    KEYPAD,
    KEYPAD_PROMPT,
    BusinessHours,
    Slot,
    WhenError,
    phrases,
    resolve,
    resolve_keys,
)
from ivr.grammar import from_phrases

SH = ZoneInfo("Asia/Shanghai")
BERLIN = ZoneInfo("Europe/Berlin")
SPEC = "mon-fri 09:00-18:00, sat 10:00-14:00"


def at(y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: int = 0, tz: ZoneInfo = SH) -> datetime:
    return datetime(y, mo, d, h, mi, s, tzinfo=tz)


@pytest.fixture(scope="module")
def hours() -> BusinessHours:
    return BusinessHours.parse(SPEC, "Asia/Shanghai")


# --- business hours ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "spoken"),
    [
        (SPEC, "Monday to Friday, 9 AM to 6 PM; Saturday, 10 AM to 2 PM"),
        ("mon-fri 09:00-12:00 13:00-18:00", "Monday to Friday, 9 AM to noon and 1 PM to 6 PM"),
        (
            "mon,wed 09:00-12:00, sat-sun 10:00-14:30",
            "Monday, 9 AM to noon; Wednesday, 9 AM to noon; Saturday and Sunday, 10 AM to 2 30 PM",
        ),
        ("Monday - Friday 08:30-17:00, sun closed", "Monday to Friday, 8 30 AM to 5 PM"),
        ("fri-mon 20:00-24:00", "Monday, 8 PM to midnight; Friday to Sunday, 8 PM to midnight"),
        ("mon 09:00-12:00, mon 13:00-14:00", "Monday, 9 AM to noon and 1 PM to 2 PM"),
        ("24/7", "24 hours a day, 7 days a week"),
        ("sat 00:00-24:00", "Saturday, all day"),
    ],
)
def test_parse_and_describe(spec: str, spoken: str) -> None:
    assert BusinessHours.parse(spec, "Asia/Shanghai").describe() == spoken


def test_parse_structure() -> None:
    h = BusinessHours.parse("mon-fri 09:00-12:00 13:00-18:00, sat 10:00-14:00", "Europe/Berlin")
    assert h.tz == BERLIN
    assert h.days[0] == ((time(9), time(12)), (time(13), time(18)))
    assert h.days[5] == ((time(10), time(14)),) and h.days[6] == ()


@pytest.mark.parametrize(
    ("spec", "tz", "message"),
    [
        ("mon-fry 09:00-18:00", "UTC", "business hours 'mon-fry 09:00-18:00': unknown day 'fry'"),
        ("mo 09:00-18:00", "UTC", "business hours 'mo 09:00-18:00': unknown day 'mo'"),
        (
            "mon-fri 9-18",
            "UTC",
            "business hours 'mon-fri 9-18': bad hours '9-18', want HH:MM-HH:MM",
        ),
        (
            "mon 09:00-25:00",
            "UTC",
            "business hours 'mon 09:00-25:00': no such time 25:00 in '09:00-25:00'",
        ),
        ("mon 24:00-24:00", "UTC", "no such time 24:00 in '24:00-24:00'"),
        ("mon 09:60-10:00", "UTC", "bad hours '09:60-10:00'"),
        ("mon 18:00-09:00", "UTC", "'18:00-09:00' closes before it opens (use 24:00 for midnight)"),
        ("mon 09:00-12:00 11:00-13:00", "UTC", "monday hours 09:00-12:00 and 11:00-13:00 overlap"),
        ("09:00-18:00", "UTC", "business hours '09:00-18:00': '09:00-18:00' without days before"),
        ("closed", "UTC", "'closed' without days before it"),
        ("mon-fri 09:00-18:00, sat", "UTC", "no hours given for 'sat'"),
        ("sat-sun closed", "UTC", "business hours: no open day"),
        ("", "UTC", "business hours: no open day"),
        (SPEC, "Mars/Olympus_Mons", "unknown time zone 'Mars/Olympus_Mons'"),
        (SPEC, "", "unknown time zone ''"),
    ],
)
def test_parse_errors(spec: str, tz: str, message: str) -> None:
    with pytest.raises(WhenError, match=re.escape(message)):
        BusinessHours.parse(spec, tz)


def test_error_message_is_exact_and_a_value_error() -> None:
    with pytest.raises(ValueError) as err:
        BusinessHours.parse("mon-fry 09:00-18:00", "UTC")
    assert str(err.value) == "business hours 'mon-fry 09:00-18:00': unknown day 'fry'"
    with pytest.raises(WhenError, match="no open day"):
        BusinessHours(SH, ((),) * 7)


def test_open_and_next_open_with_a_lunch_break() -> None:
    h = BusinessHours.parse("mon-fri 09:00-12:00 13:00-18:00", "Asia/Shanghai")
    # Tue 2026-11-24; open at `open`, closed at `close`
    assert h.is_open(at(2026, 11, 24, 9)) and h.is_open(at(2026, 11, 24, 11, 59, 59))
    assert not h.is_open(at(2026, 11, 24, 12)) and not h.is_open(at(2026, 11, 24, 18))
    assert not h.is_open(at(2026, 11, 24, 8, 59))
    assert h.next_open(at(2026, 11, 24, 10, 5)) == at(2026, 11, 24, 10, 5)
    assert h.next_open(at(2026, 11, 24, 12, 30)) == at(2026, 11, 24, 13)
    assert h.next_open(at(2026, 11, 24, 18)) == at(2026, 11, 25, 9)
    # over the weekend
    assert h.next_open(at(2026, 11, 27, 18, 0)) == at(2026, 11, 30, 9)
    assert h.next_open(at(2026, 11, 28, 12)) == at(2026, 11, 30, 9)
    assert h.next_open(at(2026, 11, 29, 23, 59)) == at(2026, 11, 30, 9)


def test_other_zones_and_naive_times() -> None:
    h = BusinessHours.parse(SPEC, "Asia/Shanghai")
    utc = datetime(2026, 11, 24, 0, 30, tzinfo=UTC)  # 08:30 in Shanghai
    got = h.next_open(utc)
    assert got == at(2026, 11, 24, 9) and got.tzinfo == SH
    assert h.is_open(datetime(2026, 11, 24, 2, 0, tzinfo=UTC))  # 10:00 Shanghai
    assert h.is_open(datetime(2026, 11, 24, 10, 0))  # naive: taken as Shanghai wall clock


def test_until_midnight_and_always_open() -> None:
    h = BusinessHours.parse("mon-sun 20:00-24:00", "Asia/Shanghai")
    assert h.is_open(at(2026, 11, 24, 23, 59, 59)) and not h.is_open(at(2026, 11, 25, 0, 0))
    assert h.next_open(at(2026, 11, 25, 0, 0)) == at(2026, 11, 25, 20)
    always = BusinessHours.parse("24/7", "Europe/Berlin")
    moment = datetime(2026, 3, 29, 2, 30, tzinfo=UTC)
    assert always.is_open(moment) and always.next_open(moment) == moment


def test_next_open_across_dst_in_berlin() -> None:
    h = BusinessHours.parse("mon-fri 09:00-18:00", "Europe/Berlin")
    # Spring forward on Sunday 2026-03-29: Monday's 09:00 is CEST (+02:00), 07:00 UTC.
    got = h.next_open(at(2026, 3, 27, 19, tz=BERLIN))
    assert (got.hour, got.minute, got.day) == (9, 0, 30)
    assert got.utcoffset() == timedelta(hours=2)
    assert got.astimezone(UTC) == datetime(2026, 3, 30, 7, tzinfo=UTC)
    # Fall back on Sunday 2026-10-25: Monday's 09:00 is CET (+01:00), 08:00 UTC.
    got = h.next_open(datetime(2026, 10, 23, 16, 30, tzinfo=UTC))  # Fri 18:30 CEST
    assert got.astimezone(UTC) == datetime(2026, 10, 26, 8, tzinfo=UTC)
    # An opening inside the skipped hour is the real instant just after the gap.
    sunday = BusinessHours.parse("sun 02:30-05:00", "Europe/Berlin")
    got = sunday.next_open(at(2026, 3, 28, 12, tz=BERLIN))
    assert got.astimezone(UTC) == datetime(2026, 3, 29, 1, 30, tzinfo=UTC)
    assert (got.hour, got.minute) == (3, 30) and sunday.is_open(got)


# --- resolve ----------------------------------------------------------------------------------

TUE = at(2026, 11, 24, 10, 17, 33)  # Tuesday, open
SAT_NIGHT = at(2026, 11, 28, 21, 30)  # Saturday, closed until Monday 09:00
FRI_NIGHT = at(2026, 11, 27, 22, 0)


@pytest.mark.parametrize(
    ("now", "text", "due", "spoken", "asap", "adjusted"),
    [
        (TUE, "tomorrow at three p m", (25, 15, 0), "tomorrow at 3 PM", False, False),
        (TUE, "tomorrow three p m", (25, 15, 0), "tomorrow at 3 PM", False, False),
        (TUE, "[unk] tomorrow at three p m please", (25, 15, 0), "tomorrow at 3 PM", False, False),
        (TUE, "um <unk> around tomorrow at 3 pm", (25, 15, 0), "tomorrow at 3 PM", False, False),
        (TUE, "this afternoon", (24, 14, 0), "today at 2 PM", False, False),
        (TUE, "monday morning", (30, 9, 0), "Monday the 30th at 9 AM", False, False),
        (TUE, "on monday", (30, 9, 0), "Monday the 30th at 9 AM", False, False),
        (TUE, "next tuesday", (1, 9, 0), "Tuesday the 1st at 9 AM", False, False),
        (TUE, "tuesday at nine", (1, 9, 0), "Tuesday the 1st at 9 AM", False, False),  # past
        (TUE, "tuesday at four", (24, 16, 0), "today at 4 PM", False, False),
        (TUE, "the day after tomorrow", (26, 9, 0), "Thursday the 26th at 9 AM", False, False),
        (
            TUE,
            "day after tomorrow at noon",
            (26, 12, 0),
            "Thursday the 26th at noon",
            False,
            False,
        ),
        (TUE, "as soon as possible", (24, 10, 17), "as soon as possible", True, False),
        (TUE, "right now please", (24, 10, 17), "as soon as possible", True, False),
        (TUE, "any time tomorrow", (25, 9, 0), "tomorrow at 9 AM", False, False),
        (TUE, "saturday evening", (30, 9, 0), "Monday the 30th at 9 AM", False, True),
        (TUE, "saturday", (28, 10, 0), "Saturday the 28th at 10 AM", False, False),
        (TUE, "today", (24, 10, 17), "today at 10 17 AM", False, False),
        (TUE, "tomorrow at three thirty p m", (25, 15, 30), "tomorrow at 3 30 PM", False, False),
        (TUE, "ten fifteen a m tomorrow", (25, 10, 15), "tomorrow at 10 15 AM", False, False),
        (TUE, "tomorrow at ten oh five", (25, 10, 5), "tomorrow at 10 oh 5 AM", False, False),
        (TUE, "at nine o'clock", (25, 9, 0), "tomorrow at 9 AM", False, False),
        (TUE, "half past two", (24, 14, 30), "today at 2 30 PM", False, False),
        (TUE, "quarter to five", (24, 16, 45), "today at 4 45 PM", False, False),
        (TUE, "three in the afternoon", (24, 15, 0), "today at 3 PM", False, False),
        (TUE, "tomorrow morning at eleven", (25, 11, 0), "tomorrow at 11 AM", False, False),
        (TUE, "tomorrow at seven a m", (25, 9, 0), "tomorrow at 9 AM", False, True),
        (TUE, "at twelve", (24, 12, 0), "today at noon", False, False),
        (TUE, "at 15:45", (24, 15, 45), "today at 3 45 PM", False, False),
        (SAT_NIGHT, "as soon as possible", (30, 9, 0), "Monday the 30th at 9 AM", True, True),
        (SAT_NIGHT, "tomorrow morning", (30, 9, 0), "Monday the 30th at 9 AM", False, True),
        (
            SAT_NIGHT,
            "monday at ten thirty",
            (30, 10, 30),
            "Monday the 30th at 10 30 AM",
            False,
            False,
        ),
        (FRI_NIGHT, "tomorrow", (28, 10, 0), "tomorrow at 10 AM", False, False),
        (FRI_NIGHT, "tomorrow morning", (28, 10, 0), "tomorrow at 10 AM", False, True),
        (FRI_NIGHT, "asap", (28, 10, 0), "tomorrow at 10 AM", True, True),
        (FRI_NIGHT, "at nine", (28, 10, 0), "tomorrow at 10 AM", False, True),
        (FRI_NIGHT, "in the afternoon", (30, 9, 0), "Monday the 30th at 9 AM", False, True),
        # callers' own sentences: the parser skips the words around the time
        (TUE, "could you ring me tomorrow at 3pm", (25, 15, 0), "tomorrow at 3 PM", False, False),
        (TUE, "tomorrow afternoon at 3", (25, 15, 0), "tomorrow at 3 PM", False, False),
        (TUE, "not before 2pm tomorrow", (25, 14, 0), "tomorrow at 2 PM", False, False),
        # from now: "two" here is a count, not two o'clock
        (TUE, "in two hours", (24, 12, 17), "today at 12 17 PM", False, False),
        (TUE, "call me back in an hour", (24, 11, 17), "today at 11 17 AM", False, False),
        (TUE, "in half an hour", (24, 10, 47), "today at 10 47 AM", False, False),
        (TUE, "in 45 minutes", (24, 11, 2), "today at 11 oh 2 AM", False, False),
        (TUE, "in forty five minutes", (24, 11, 2), "today at 11 oh 2 AM", False, False),
        (TUE, "in a couple of hours", (24, 12, 17), "today at 12 17 PM", False, False),
        (TUE, "in an hour and a half", (24, 11, 47), "today at 11 47 AM", False, False),
        (TUE, "in nine hours", (25, 9, 0), "tomorrow at 9 AM", False, True),  # closed: next
        (TUE, "next week", (30, 9, 0), "Monday the 30th at 9 AM", False, False),
        (TUE, "thursday next week at 3", (3, 15, 0), "Thursday the 3rd at 3 PM", False, False),
        (TUE, "next week tuesday", (1, 9, 0), "Tuesday the 1st at 9 AM", False, False),
    ],
)
def test_resolve(
    hours: BusinessHours,
    now: datetime,
    text: str,
    due: tuple[int, int, int],
    spoken: str,
    asap: bool,
    adjusted: bool,
) -> None:
    slot = resolve(text, now, hours)
    assert slot is not None, text
    day, hour, minute = due
    month = 12 if day < 20 else 11
    assert slot.due_at == at(2026, month, day, hour, minute), slot
    assert slot.due_at.tzinfo == SH and slot.due_at.second == slot.due_at.microsecond == 0
    assert (slot.spoken, slot.asap, slot.adjusted) == (spoken, asap, adjusted)


@pytest.mark.parametrize(
    "said",
    [
        "three pm",
        "three p m",
        "three p.m.",
        "3 pm",
        "3pm",
        "15:00",
        "three o'clock",
        "three",
        "at 3",
        "3 p m",
    ],
)
def test_clock_spellings(hours: BusinessHours, said: str) -> None:
    slot = resolve(f"tomorrow {said}", TUE, hours)
    assert slot is not None and slot.due_at == at(2026, 11, 25, 15), said


@pytest.mark.parametrize(
    ("said", "hour"),
    [
        ("eight", 8),
        ("eleven", 11),
        ("twelve", 12),
        ("one", 13),
        ("seven", 19),
        ("nine a m", 9),
        ("twelve a m", 0),
        ("five a.m.", 5),
    ],
)
def test_hour_without_am_pm_means_business_hours(said: str, hour: int) -> None:
    always = BusinessHours.parse("24/7", "Asia/Shanghai")
    slot = resolve(f"tomorrow at {said}", TUE, always)
    assert slot is not None and slot.due_at == at(2026, 11, 25, hour)


def test_at_three_after_three_is_tomorrow(hours: BusinessHours) -> None:
    slot = resolve("at three", at(2026, 11, 24, 16), hours)
    assert slot is not None and slot.due_at == at(2026, 11, 25, 15)
    assert slot.spoken == "tomorrow at 3 PM"


@pytest.mark.parametrize(
    ("text", "now"),
    [
        ("today at nine a m", at(2026, 11, 24, 11)),
        ("this morning", at(2026, 11, 24, 15)),
        ("this afternoon", at(2026, 11, 24, 17, 30)),
        ("this evening", FRI_NIGHT),
        ("", TUE),
        ("hello I would like a pizza", TUE),
        ("[unk] [unk]", TUE),
        ("um please", TUE),
        ("this", TUE),
    ],
)
def test_resolve_none(hours: BusinessHours, text: str, now: datetime) -> None:
    assert resolve(text, now, hours) is None


def test_part_of_today_under_way_is_now(hours: BusinessHours) -> None:
    slot = resolve("this afternoon", at(2026, 11, 24, 15, 20, 59), hours)
    assert slot == Slot(at(2026, 11, 24, 15, 20), "today at 3 20 PM", False, False)


def test_now_in_another_zone(hours: BusinessHours) -> None:
    now = datetime(2026, 11, 24, 2, 17, tzinfo=UTC)  # 10:17 in Shanghai
    slot = resolve("tomorrow at three p m", now, hours)
    assert slot is not None and slot.due_at == at(2026, 11, 25, 15)
    assert slot.spoken == "tomorrow at 3 PM"


# --- keypad -----------------------------------------------------------------------------------


def test_resolve_keys(hours: BusinessHours) -> None:
    expect = {
        "1": (at(2026, 11, 24, 10, 17), "as soon as possible", True),
        "2": (at(2026, 11, 24, 14), "today at 2 PM", False),
        "3": (at(2026, 11, 25, 9), "tomorrow at 9 AM", False),
        "4": (at(2026, 11, 25, 14), "tomorrow at 2 PM", False),
    }
    assert set(KEYPAD) == set(expect)
    for key, (due, spoken, asap) in expect.items():
        assert resolve_keys(key, TUE, hours) == Slot(due, spoken, asap, False)
        assert KEYPAD[key] in KEYPAD_PROMPT and f"{key} for {KEYPAD[key]}" in KEYPAD_PROMPT
    assert resolve_keys("3#", TUE, hours) == resolve_keys("3", TUE, hours)
    assert resolve_keys("9", TUE, hours) is None and resolve_keys("", TUE, hours) is None


def test_key_for_this_afternoon_when_past_gives_next_opening(hours: BusinessHours) -> None:
    slot = resolve_keys("2", at(2026, 11, 24, 17, 30), hours)  # open, afternoon over
    assert slot == Slot(at(2026, 11, 24, 17, 30), "today at 5 30 PM", False, True)
    slot = resolve_keys("2", FRI_NIGHT, hours)
    assert slot == Slot(at(2026, 11, 28, 10), "tomorrow at 10 AM", False, True)


# --- recognizer phrases -----------------------------------------------------------------------


def test_phrases_all_resolve(hours: BusinessHours) -> None:
    monday = at(2026, 11, 23, 8, 0)
    said = phrases()
    failed = [p for p in said if resolve(p, monday, hours) is None]
    assert not failed, failed[:20]


def test_phrases_shape() -> None:
    said = phrases()
    assert 500 < len(said) < 3000
    assert len(set(said)) == len(said) and said == phrases()
    assert not [p for p in said if re.search(r"\d|\bam\b|\bpm\b", p)]
    for p in (
        "as soon as possible",
        "tomorrow at three p m",
        "tomorrow three p m",
        "at three p m",
        "three p m",
        "monday at ten a m",
        "this afternoon",
        "monday afternoon",
        "tomorrow morning",
        "three thirty p m",
        "next friday at nine o'clock",
    ):
        assert p in said, p
    assert "three fifteen p m" not in said


def test_real_speech_through_the_grammar(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Allison saying "tomorrow" "3" "p-m" (8 kHz Asterisk prompts) through the built-in engine
    with a grammar of phrases(): every word must have a pronunciation, and it must decode."""
    parts = [recording(f"digits/{name}") for name in ("tomorrow", "3", "p-m")]
    audio = read_wav(concat(parts, tmp_path / "tomorrow-3-pm.wav"))
    engine = PocketsphinxEngine()  # in-process: one decoder, no worker pool
    started = clock.perf_counter()
    rec = engine.create(from_phrases(phrases(), "callback-time"), rate=audio.rate)
    rec.feed(audio.tobytes())
    result = rec.final()
    with capsys.disabled():
        print(
            f"\ncallback time from real speech: {result.text!r} "
            f"(confidence {result.confidence}, {clock.perf_counter() - started:.1f} s)"
        )
    slot = resolve(result.text, TUE, BusinessHours.parse(SPEC, "Asia/Shanghai"))
    assert slot is not None, result
    assert slot.due_at == at(2026, 11, 25, 15) and slot.spoken == "tomorrow at 3 PM"
