"""When to call back: a caller's words (or keys) → an agent-callback slot inside business hours.

Pure: no I/O and no clock reads (the caller passes `now`), so dialogs can test and replay it.
Recognized text arrives lower-case as an ASR gives it ("tomorrow at three p m"); anything not
understood is ignored, and `phrases()` gives a recognizer grammar built from the same vocabulary.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from itertools import groupby, pairwise
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ivr.dialog.closed import NO_CLOSURES, ClosedDays

DAY_NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
END_OF_DAY = time.max  # a range closing at "24:00": datetime.time cannot say 24:00
DAY_START = time(9)  # "tomorrow" with no time: callers mean the start of the working day

Range = tuple[time, time]


class WhenError(ValueError):
    """A business-hours spec or time zone that cannot be used; the message says what is wrong."""


def _wall(day: date, at: time, tz: ZoneInfo) -> datetime:
    """`day` at wall-clock `at` in `tz`; a time skipped by a DST change becomes the real instant
    (02:30 on the spring-forward day → 03:30), so callers never see a nonexistent time."""
    return datetime.combine(day, at, tzinfo=tz).astimezone(UTC).astimezone(tz)


def _in_zone(at: datetime, tz: ZoneInfo) -> datetime:
    # A naive datetime is taken as already in the business-hours zone, not the host's.
    return at.replace(tzinfo=tz) if at.tzinfo is None else at.astimezone(tz)


DEFAULT_QUEUE = "default"
"""The queue a call is for until a node of its flow names another (`queue:`)."""


@dataclass(frozen=True)
class BusinessHours:
    """Open ranges per weekday (0 = Monday), each (open, close): open <= t < close; never on
    a day `closed` names (a public holiday, a dated closure)."""

    tz: ZoneInfo
    days: tuple[tuple[Range, ...], ...]
    closed: ClosedDays = NO_CLOSURES

    def __post_init__(self) -> None:
        if len(self.days) != 7:
            raise WhenError(f"business hours: need 7 days of ranges, got {len(self.days)}")
        if not any(self.days):  # next_open would never find an opening
            raise WhenError("business hours: no open day")

    @classmethod
    def parse(cls, spec: str, tz: str, closed: ClosedDays = NO_CLOSURES) -> BusinessHours:
        """E.g. "mon-fri 09:00-12:00 13:00-18:00, sat 10:00-14:00, sun closed" or "24/7"."""
        try:
            zone = ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError):
            raise WhenError(f"unknown time zone {tz!r}") from None
        where = f"business hours {spec!r}"
        text = re.sub(r"\s*-\s*", "-", spec.strip().lower())
        if text == "24/7":
            return cls(zone, tuple(((time(0), END_OF_DAY),) for _ in range(7)), closed)
        days: list[list[Range]] = [[] for _ in range(7)]
        group: list[str] = []  # day tokens waiting for their hours
        done = False  # whether `group` got hours (or "closed")
        for token in filter(None, re.split(r"[\s,]+", text)):
            if token[0].isdigit() or token == "closed":
                if not group:
                    raise WhenError(f"{where}: {token!r} without days before it")
                if token != "closed":
                    span = _parse_range(token, where)
                    for day in _parse_days(group, where):
                        days[day].append(span)
                done = True
            else:
                group, done = ([token] if done else [*group, token]), False
        if group and not done:
            raise WhenError(f"{where}: no hours given for {' '.join(group)!r}")
        for day, spans in enumerate(days):
            spans.sort()
            for a, b in pairwise(spans):
                if b[0] < a[1]:
                    raise WhenError(
                        f"{where}: {DAY_NAMES[day]} hours {_hhmm(a)} and {_hhmm(b)} overlap"
                    )
        return cls(zone, tuple(tuple(spans) for spans in days), closed)

    def is_open(self, at: datetime) -> bool:
        local = _in_zone(at, self.tz)
        t = local.time()
        return any(o <= t and (t < c or c == END_OF_DAY) for o, c in self.opening(local.date()))

    def opening(self, day: date) -> tuple[Range, ...]:
        """The day's open ranges: its weekday's, or none on a closed day."""
        spans = self.days[day.weekday()]
        return () if spans and self.closed.reason(day) is not None else spans

    def closed_on(self, at: datetime) -> str | None:
        """Why the day of `at` (in self.tz) is closed, as said: a public holiday's name, a
        closure's; None on an ordinary day, open or not."""
        return self.closed.reason(_in_zone(at, self.tz).date())

    def next_open(self, at: datetime) -> datetime:
        """`at` (in self.tz) when open, else the next opening. Candidates are built on the wall
        clock, day by day, so a DST change between now and then cannot shift them; closed
        days (holidays, closures) are passed over."""
        local = _in_zone(at, self.tz)
        if self.is_open(local):
            return local
        # A week and a day reaches every weekday after today's closing; closures and a
        # year's holidays put an opening off by at most the days they close.
        for ahead in range(8 + self.closed.span() + (366 if self.closed.country else 0)):
            day = local.date() + timedelta(days=ahead)
            for opens, _ in self.opening(day):
                start = _wall(day, opens, self.tz)
                if start > local:
                    return start
        raise AssertionError("unreachable: __post_init__ requires an open day")

    def describe(self) -> str:
        """Spoken: "Monday to Friday, 9 AM to 6 PM; Saturday, 10 AM to 2 PM"."""
        all_day = ((time(0), END_OF_DAY),)
        if all(spans == all_day for spans in self.days):
            return "24 hours a day, 7 days a week"
        parts: list[str] = []
        for spans, run in groupby(range(7), key=self.days.__getitem__):  # consecutive days alike
            names = [DAY_NAMES[d].title() for d in run]
            if spans:
                days = " and ".join(names) if len(names) < 3 else f"{names[0]} to {names[-1]}"
                said = " and ".join(f"{_clock(o)} to {_clock(c)}" for o, c in spans)
                parts.append(f"{days}, {'all day' if spans == all_day else said}")
        return ", ".join(filter(None, ("; ".join(parts), self.closed.describe())))


def agents_in(hours: BusinessHours, now: datetime) -> dict[str, str]:
    """The call variables that say whether agents are in `now`: open_now ("yes"/"no"),
    business_hours (their hours as said) and, on a holiday or closure, closed_today (its
    name, as said: "Thanksgiving Day")."""
    out = {"open_now": "yes" if hours.is_open(now) else "no", "business_hours": hours.describe()}
    closed = hours.closed_on(now)
    return out if closed is None else {**out, "closed_today": closed}


def _parse_days(tokens: list[str], where: str) -> list[int]:
    out: list[int] = []
    for token in tokens:
        first, _, last = token.partition("-")
        a = _parse_day(first, where)
        b = _parse_day(last, where) if last else a
        out += [(a + k) % 7 for k in range((b - a) % 7 + 1)]  # "fri-mon" wraps the weekend
    return out


def _parse_day(name: str, where: str) -> int:
    for i, full in enumerate(DAY_NAMES):
        if len(name) >= 3 and full.startswith(name):
            return i
    raise WhenError(f"{where}: unknown day {name!r}")


def _parse_range(token: str, where: str) -> Range:
    m = re.fullmatch(r"(\d{1,2}):([0-5]\d)-(\d{1,2}):([0-5]\d)", token)
    if m is None:
        raise WhenError(f"{where}: bad hours {token!r}, want HH:MM-HH:MM")
    h1, m1, h2, m2 = map(int, m.groups())
    for h, mm, last in ((h1, m1, 23), (h2, m2, 24)):  # 24:00 closes at midnight; opens never
        if h > last or (h == 24 and mm):
            raise WhenError(f"{where}: no such time {h:02d}:{mm:02d} in {token!r}")
    opens, closes = time(h1, m1), END_OF_DAY if h2 == 24 else time(h2, m2)
    if closes <= opens:
        raise WhenError(f"{where}: {token!r} closes before it opens (use 24:00 for midnight)")
    return opens, closes


def _hhmm(span: Range) -> str:
    return "-".join("24:00" if t == END_OF_DAY else t.strftime("%H:%M") for t in span)


def _clock(t: time) -> str:
    """Spoken time: "9 AM", "3 30 PM", "3 oh 5 PM", "noon", "midnight"."""
    if t in (time(0), END_OF_DAY):
        return "midnight"
    if t == time(12):
        return "noon"
    minutes = "" if t.minute == 0 else f" oh {t.minute}" if t.minute < 10 else f" {t.minute}"
    return f"{t.hour % 12 or 12}{minutes} {'AM' if t.hour < 12 else 'PM'}"


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


@dataclass(frozen=True)
class Slot:
    due_at: datetime  # timezone-aware, in the business-hours zone
    spoken: str  # for the read-back: "tomorrow at 3 PM"
    asap: bool
    adjusted: bool  # the asked time was closed and moved to the next opening


def _slot(due: datetime, now: datetime, asap: bool, adjusted: bool) -> Slot:
    if asap and not adjusted:
        return Slot(due, "as soon as possible", asap, adjusted)
    ahead = (due.date() - now.date()).days
    day = f"{DAY_NAMES[due.weekday()].title()} the {_ordinal(due.day)}"
    day = {0: "today", 1: "tomorrow"}.get(ahead, day)
    return Slot(due, f"{day} at {_clock(due.time())}", asap, adjusted)


# --- the words callers use ------------------------------------------------------------------

_ASAP_TEXT = "as soon as possible|as soon as you can|asap|right now|now|straight away|anytime"
ASAP = (*_ASAP_TEXT.split("|"), "any time")
PARTS: dict[str, Range] = {  # start (the callback time) and end (after which it is past)
    "morning": (time(9), time(12)),
    "afternoon": (time(14), time(17)),
    "evening": (time(17), time(21)),
}
NOON = ("noon", "midday", "lunchtime")
HOUR_WORDS = tuple("one two three four five six seven eight nine ten eleven twelve".split())
_UNITS = {w: i for i, w in enumerate(HOUR_WORDS[:9], 1)}
_TEEN_WORDS = "ten eleven twelve thirteen fourteen fifteen sixteen seventeen eighteen nineteen"
_TEENS = {w: i for i, w in enumerate(_TEEN_WORDS.split(), 10)}
_TENS = {"twenty": 20, "thirty": 30, "forty": 40, "fifty": 50}
_UNKNOWN = frozenset({"[unk]", "<unk>"})
_AMPM = re.compile(r"\b([ap])\s*\.?\s*m\b\.?")  # "a m", "am", "a.m." → "am"


def _words(text: str) -> list[str]:
    kept = " ".join(w for w in text.lower().split() if w not in _UNKNOWN)
    kept = re.sub(r"(\d)([a-z])", r"\1 \2", kept)  # "3pm" → "3 pm"
    kept = re.sub(r"\bo'?\s*clock\b", "oclock", kept)
    kept = _AMPM.sub(r" \1m ", kept)
    return re.findall(r"[a-z0-9']+", kept.replace(":", " "))


def _peek(words: list[str], i: int, n: int) -> list[str]:
    """words[i : i + n], padded with "" past the end so it can be unpacked."""
    return [*words[i : i + n], *[""] * n][:n]


def _hour(word: str) -> int | None:
    if word in HOUR_WORDS:
        return HOUR_WORDS.index(word) + 1
    return int(word) if word.isdigit() and len(word) <= 2 and int(word) <= 23 else None


def _minutes(words: list[str], i: int) -> tuple[int, int] | None:
    """(minutes, words used) at words[i]: "fifteen", "forty five", "oh five", "30"."""
    w, nxt = _peek(words, i, 2)
    if w.isdigit() and len(w) == 2 and int(w) < 60:
        return int(w), 1
    if w in _TEENS:
        return _TEENS[w], 1
    if w in _TENS:
        return (_TENS[w] + _UNITS[nxt], 2) if nxt in _UNITS else (_TENS[w], 1)
    return (_UNITS[nxt], 2) if w in ("oh", "o") and nxt in _UNITS else None


def _clock_at(words: list[str], i: int) -> tuple[int, int, str | None, int] | None:
    """(hour as said, minutes after it, "am"/"pm"/None, words used) for a time at words[i];
    "quarter to nine" is nine with -15 minutes, so the am/pm guess goes by the hour said."""
    w, nxt, third = _peek(words, i, 3)
    if f"{w} {nxt}" in ("half past", "quarter past", "quarter to") and _hour(third) is not None:
        hour, used = _hour(third) or 0, 3
        minute = {"half": 30, "quarter": 15}[w] * (-1 if nxt == "to" else 1)
    elif (h := _hour(w)) is not None:
        hour, minute, used = h, 0, 1
        if (m := _minutes(words, i + 1)) is not None:
            minute, used = m[0], 1 + m[1]
    else:
        return None
    after = _peek(words, i + used, 1)[0]
    if after in ("am", "pm"):
        return hour, minute, after, used + 1
    return hour, minute, None, used + (after == "oclock")


def _hour24(hour: int, meridiem: str | None, part: str | None) -> int:
    if hour == 0 or hour > 12:  # a 24-hour numeral ("15:00")
        return hour
    if meridiem is not None:
        return hour % 12 + (12 if meridiem == "pm" else 0)
    if part is not None:
        return hour if part == "morning" or hour == 12 else hour + 12
    return hour + 12 if hour <= 7 else hour  # bare "three": callers mean business hours


@dataclass
class _Said:
    asap: bool = False
    offset: int | None = None  # days from today
    weekday: int | None = None
    strictly_after: bool = False  # "next monday": never today
    part: str | None = None
    clock: tuple[int, int, str | None] | None = None  # hour as said, minute, am/pm
    later: timedelta | None = None  # "in two hours", "in half an hour": from now
    next_week: bool = False  # "next week": its first working day

    def has_when(self) -> bool:
        said = (self.offset, self.weekday, self.part, self.clock, self.later)
        return self.next_week or any(v is not None for v in said)


_COUNTS = {"a": 1, "an": 1, "one": 1, "couple": 2, "few": 3, **_UNITS, **_TEENS, **_TENS}
_SPANS = {"hour": 60, "hours": 60, "minute": 1, "minutes": 1, "mins": 1, "min": 1}


def _later(words: list[str], i: int) -> tuple[timedelta, int] | None:
    """(how long from now, words used) for "in an hour", "in 2 hours", "in half an hour",
    "in forty five minutes", "in a couple of hours" at words[i] ("in")."""
    rest = [w for w in words[i + 1 : i + 6] if w not in ("of", "the")]
    skipped = len(words[i + 1 : i + 6]) - len(rest)
    if rest[:3] == ["half", "an", "hour"]:
        return timedelta(minutes=30), 4 + skipped
    if rest[:2] == ["an", "hour"] and rest[2:4] == ["and", "a"] and rest[4:5] == ["half"]:
        return timedelta(minutes=90), 6
    if rest[:1] == ["a"] and rest[1:2] in (["couple"], ["few"]):
        rest, skipped = rest[1:], skipped + 1  # "a couple of hours": two
    n: int | None = None
    used = 0
    if rest and rest[0].isdigit() and len(rest[0]) <= 3:
        n, used = int(rest[0]), 1
    elif rest and rest[0] in _TENS and rest[1:2] and rest[1] in _UNITS:
        n, used = _TENS[rest[0]] + _UNITS[rest[1]], 2
    elif rest and rest[0] in _COUNTS:
        n, used = _COUNTS[rest[0]], 1
    if n is None or rest[used : used + 1] == [] or rest[used] not in _SPANS:
        return None
    return timedelta(minutes=n * _SPANS[rest[used]]), 1 + used + 1 + skipped


def _parse(words: list[str]) -> _Said:
    said = _Said(asap=any(f" {p} " in f" {' '.join(words)} " for p in ASAP))
    i = 0
    while i < len(words):
        w, nxt = _peek(words, i, 2)
        if words[i : i + 3] == ["day", "after", "tomorrow"]:
            said.offset, i = 2, i + 3
            continue
        if w == "in" and (span := _later(words, i)) is not None:
            said.later, i = span[0], i + span[1]
            continue
        if w == "next" and nxt == "week":
            said.next_week, i = True, i + 2
            continue
        if w == "today" or (w == "this" and nxt in PARTS):
            said.offset = 0
        elif w == "tomorrow":
            said.offset = 1
        elif w in DAY_NAMES:
            said.weekday, said.strictly_after = DAY_NAMES.index(w), words[i - 1 : i] == ["next"]
        elif w in PARTS:
            said.part = w
        elif w in NOON:
            said.clock = (12, 0, "pm")
        elif said.clock is None and (found := _clock_at(words, i)) is not None:
            said.clock, i = found[:3], i + found[3]
            continue
        i += 1
    return said


def _moment(said: _Said, now: datetime, hours: BusinessHours) -> datetime | None:
    """The moment asked for, before snapping into business hours; None when already past."""
    today = now.date()
    clock = None
    if said.clock is not None:
        hour, minute, meridiem = said.clock
        base = datetime.combine(today, time(_hour24(hour, meridiem, said.part)))
        clock = (base + timedelta(minutes=minute)).time()

    def on(day: date) -> datetime | None:
        if clock is not None:
            at = _wall(day, clock, hours.tz)
            return at if at >= now else None
        if said.part is not None:
            start, end = PARTS[said.part]
        else:  # a day alone: 09:00, or the day's opening when that is later
            opens = [o for o, _ in hours.opening(day)]
            start, end = max([DAY_START, *opens[:1]]), END_OF_DAY
        if _wall(day, end, hours.tz) <= now:
            return None
        return max(_wall(day, start, hours.tz), now)  # asked for a part already under way

    if said.later is not None:
        return now + said.later
    if said.offset is not None:
        return on(today + timedelta(days=said.offset))
    if said.next_week:  # the weekday said in next week, else its first day with an opening
        monday = today + timedelta(days=7 - today.weekday())
        if said.weekday is not None:
            return on(monday + timedelta(days=said.weekday))
        return next(filter(None, (on(monday + timedelta(days=k)) for k in range(7))), None)
    if said.weekday is not None:
        ahead = (said.weekday - today.weekday()) % 7 or (7 if said.strictly_after else 0)
        # "monday" said on a Monday once Monday's moment is past means next week's
        return on(today + timedelta(days=ahead)) or on(today + timedelta(days=ahead + 7))
    return on(today) or on(today + timedelta(days=1))


def resolve(text: str, now: datetime, hours: BusinessHours) -> Slot | None:
    """The callback slot `text` asks for, snapped into business hours; None when `text` names
    no time we understand or a moment already past on the day it names."""
    said = _parse(_words(text))
    now = _in_zone(now, hours.tz).replace(second=0, microsecond=0)
    if not said.has_when():  # an explicit day or time wins over "any time tomorrow"'s asap
        if not said.asap:
            return None
        due = hours.next_open(now)
        return _slot(due, now, asap=True, adjusted=due != now)
    moment = _moment(said, now, hours)
    if moment is None:
        return None
    due = hours.next_open(moment)
    return _slot(due, now, asap=False, adjusted=due != moment)


KEYPAD: dict[str, str] = {
    "1": "as soon as possible",
    "2": "this afternoon",
    "3": "tomorrow morning",
    "4": "tomorrow afternoon",
}
KEYPAD_PROMPT = (
    "press 1 for as soon as possible, 2 for this afternoon, 3 for tomorrow morning, "
    "or 4 for tomorrow afternoon"
)


def resolve_keys(digits: str, now: datetime, hours: BusinessHours) -> Slot | None:
    """The slot for a keypad choice; None for a key not offered."""
    phrase = KEYPAD.get(digits.strip().rstrip("#"))
    if phrase is None:
        return None
    slot = resolve(phrase, now, hours)
    if slot is None:  # "this afternoon" is over: a key press cannot be re-asked, so offer next
        local = _in_zone(now, hours.tz).replace(second=0, microsecond=0)
        slot = _slot(hours.next_open(local), local, asap=False, adjusted=True)
    return slot


def phrases() -> list[str]:
    """What a grammar-constrained recognizer should accept for the callback-time question.

    Number words only (recognizers output words) and "a m"/"p m" as two words; minutes only
    :00 and :30 to keep the list near 2,500. "today" gets only times that can be ahead of a
    working-day `now` (no "today at three a m").
    """
    days = ["today", "tomorrow", "the day after tomorrow", *DAY_NAMES]
    days += [f"{p} {d}" for p in ("on", "next") for d in DAY_NAMES]
    out = [*ASAP, *days, "next week", "in half an hour", "in an hour"]
    out += [f"in {n} hours" for n in ("two", "three", "four")]
    out += [f"in {n} minutes" for n in ("ten", "fifteen", "twenty", "thirty", "forty five")]
    for part in PARTS:
        out += [f"this {part}", f"in the {part}", f"tomorrow {part}"]
        out += [f"{d} {part}" for d in days[3:]]
    for day in ("", "today ", "tomorrow ", *(f"{d} " for d in DAY_NAMES)):
        out += [f"{day}at {n}" for n in NOON]
    times = [
        f"{h}{m}{s}"
        for h in HOUR_WORDS
        for m in ("", " thirty")
        for s in ("", " a m", " p m", " o'clock")
        if not (m and s == " o'clock")
    ]
    today = [
        t for t in times if "a m" not in t or t.split()[0] in ("eight", "nine", "ten", "eleven")
    ]
    for day, said in (("", times), ("today ", today), *((f"{d} ", times) for d in days[1:10])):
        out += [f"{day}at {t}" for t in said] + [f"{day}{t}" for t in said]
    out += [f"next {d} at {t}" for d in DAY_NAMES for t in times]
    return list(dict.fromkeys(out))
