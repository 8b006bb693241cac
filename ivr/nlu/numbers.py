"""Numbers as callers say them and as recognizers write them.

Whisper writes "4, 1, 2.", "1234", "555-123" or "five five five"; callers say "oh seven",
"double four", "triple nine". `spoken_digits` gives the digit string such an utterance
means, or None when it holds anything but digits (and fillers); `digits_as_words` writes a
recognizer's digits as the words a grammar's phrases use ("option 2" → "option two").
"""

from __future__ import annotations

import re

WORD_DIGITS = {
    "zero": "0", "oh": "0", "o": "0", "nought": "0", "nil": "0",
    "one": "1", "two": "2", "to": "2", "too": "2", "three": "3", "four": "4", "for": "4",
    "five": "5", "six": "6", "seven": "7", "eight": "8", "nine": "9",
}  # fmt: skip
DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
REPEATS = {"double": 2, "triple": 3}
TEENS = {
    "ten": "10", "eleven": "11", "twelve": "12", "thirteen": "13", "fourteen": "14",
    "fifteen": "15", "sixteen": "16", "seventeen": "17", "eighteen": "18", "nineteen": "19",
}  # fmt: skip
# Said around a number without changing it.
FILLERS = frozenset(
    "um uh er erm ah hmm so okay ok yes yeah it's its is it the my number account "
    "and then that's thats".split()
)
# Homophones of digits that are ordinary words too: they count only beside real digits.
_WEAK = frozenset({"to", "too", "for", "o"})
_TOKEN = re.compile(r"\d+|[a-z']+")


def spoken_digits(text: str) -> str | None:
    """The digits `text` spells out, in order; None if it says anything else."""
    out: list[str] = []
    repeat = 1
    weak: list[str] = []
    for token in _TOKEN.findall(text.lower()):
        if token.isdigit():
            out.append(token * repeat)
        elif token in REPEATS:
            repeat = REPEATS[token]
            continue
        elif token in WORD_DIGITS:
            if token in _WEAK:
                weak.append(token)
            out.append(WORD_DIGITS[token] * repeat)
        elif token in TEENS and repeat == 1:
            out.append(TEENS[token])
        elif token in FILLERS and repeat == 1:
            continue
        else:
            return None
        repeat = 1
    if not out or repeat != 1:
        return None
    if weak and len(weak) == len(out):  # "for", "to": words, not digits, on their own
        return None
    return "".join(out)


def reader_words() -> frozenset[str]:
    """Every word `spoken_digits` reads: digits, "oh", "double", teens and fillers. A
    recognizer that writes only these (and a grammar's own words) at a number question
    cannot turn a digit into an ordinary word."""
    return frozenset(WORD_DIGITS) | frozenset(REPEATS) | frozenset(TEENS) | FILLERS


def digits_as_words(text: str) -> str:
    """Each digit of each number in `text` as its word: "option 2" → "option two"."""
    return re.sub(r"\d", lambda m: f" {DIGIT_WORDS[int(m.group())]} ", text)
