"""Prompt placeholders and the values question nodes collect (digits, yes/no, date, time,
rating)."""

from __future__ import annotations

import string
from collections.abc import Mapping
from datetime import date, timedelta

from ivr.dialog.schema import Prompt, QuestionNode

YESNO_DTMF = {"1": "yes", "2": "no"}
PHONE_DIGITS = (7, 15)  # shortest local number .. longest E.164 number

# A rating's intents are its values, "1" (worst) to "5" (best); keys 1-5 give the same.
RATING_PHRASES: dict[str, list[str]] = {
    "1": ["one", "one star", "one out of five", "terrible", "awful", "very bad", "very poor"],
    "2": ["two", "two stars", "two out of five", "bad", "poor"],
    "3": ["three", "three stars", "three out of five", "okay", "average", "so so"],
    "4": ["four", "four stars", "four out of five", "good", "pretty good"],
    "5": ["five", "five stars", "five out of five", "excellent", "very good", "great", "perfect"],
}

DATE_PHRASES: dict[str, list[str]] = {
    "today": ["today", "for today"],
    "tomorrow": ["tomorrow", "for tomorrow"],
    "day_after_tomorrow": ["the day after tomorrow", "day after tomorrow"],
}
TIME_PHRASES: dict[str, list[str]] = {
    "morning": ["morning", "in the morning"],
    "noon": ["noon", "midday", "lunchtime"],
    "afternoon": ["afternoon", "in the afternoon"],
    "evening": ["evening", "in the evening"],
}
_DAY_OFFSETS = {"today": 0, "tomorrow": 1, "day_after_tomorrow": 2}
_TIMES = {"morning": "09:00", "noon": "12:00", "afternoon": "15:00", "evening": "18:00"}


def placeholders(text: str) -> list[str]:
    """Names of the ``{placeholders}`` in `text`; ValueError for malformed braces."""
    return [name for _, name, _, _ in string.Formatter().parse(text) if name is not None]


def render(prompt: Prompt, variables: Mapping[str, str]) -> tuple[str, list[str]]:
    """`prompt` with placeholders filled from `variables`, and the names that were missing."""
    missing: list[str] = []
    parts: list[str] = []
    for literal, name, _, _ in string.Formatter().parse(prompt.text):
        parts.append(literal)
        if name is None:
            continue
        if name in variables:
            parts.append(str(variables[name]))
        else:
            missing.append(name)
    return "".join(parts), missing


def question_value(node: QuestionNode, intent: str, today: date) -> str | None:
    """The value a grammar intent (or keyed digits) gives `node`, or None if it is not one."""
    if node.type == "yesno":
        return intent if intent in ("yes", "no") else None
    if node.type == "digits":
        ok = intent.isdigit() and node.min_digits <= len(intent) <= node.max_digits
        return intent if ok else None
    if node.type == "phone":
        ok = intent.isdigit() and PHONE_DIGITS[0] <= len(intent) <= PHONE_DIGITS[1]
        return intent if ok else None
    if node.type == "date":
        return _date_value(intent, today)
    if node.type == "time":
        return _time_value(intent)
    if node.type == "rating":
        return intent if intent in RATING_PHRASES else None
    return None


def keyed_value(node: QuestionNode, digits: str, today: date) -> str | None:
    """The value keypad input gives `node` (terminator stripped), or None."""
    if node.type == "yesno":
        return YESNO_DTMF.get(digits)
    if node.type in ("text", "when"):  # when: keypad options are the Interpreter's
        return None
    if node.type == "rating":
        return digits if digits in RATING_PHRASES else None
    if node.terminator and digits.endswith(node.terminator):
        digits = digits[: -len(node.terminator)]
    return question_value(node, digits, today) if digits.isdigit() else None


def readback(node: QuestionNode, value: str) -> str:
    """How a collected value is read back in "Did you say ...?"."""
    if node.type in ("digits", "phone"):
        return spell(value)
    return value


def spell(number: str) -> str:
    """Digits for TTS one by one ("+1 555" → "1 5 5 5"), so numbers are read as digits."""
    return " ".join(ch for ch in number if ch.isdigit())


def _date_value(intent: str, today: date) -> str | None:
    if intent in _DAY_OFFSETS:
        return (today + timedelta(days=_DAY_OFFSETS[intent])).isoformat()
    if not intent.isdigit() or len(intent) not in (4, 8):
        return None
    year = today.year if len(intent) == 4 else int(intent[:4])
    month, day = int(intent[-4:-2]), int(intent[-2:])
    try:
        return date(year, month, day).isoformat()
    except ValueError:
        return None


def _time_value(intent: str) -> str | None:
    if intent in _TIMES:
        return _TIMES[intent]
    if not intent.isdigit() or len(intent) not in (3, 4):
        return None
    hour, minute = int(intent[:-2]), int(intent[-2:])
    if hour > 23 or minute > 59:
        return None
    return f"{hour:02d}:{minute:02d}"
