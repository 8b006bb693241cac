"""Yes or no, as callers answer a yes/no question: "yeah that's fine", "no thanks",
"definitely not", "that's not right", "mm-hm, correct". Word rules, not similarity: a single
"not" turns "that's right" into a no, which sentence embeddings barely notice.
"""

from __future__ import annotations

import re
from typing import Literal

Polarity = Literal["yes", "no"]

YES = frozenset(
    "yes yeah yep yup yea ya aye sure correct right affirmative absolutely definitely "
    "certainly ok okay fine exactly indeed true please mhm mm-hm uh-huh".split()
)
NO = frozenset("no nope nah negative incorrect wrong never".split())
NOT = frozenset(
    "not don't isn't doesn't didn't wasn't aren't haven't hasn't can't won't wouldn't".split()
)
YES_PHRASES = ("of course", "go ahead", "sounds good", "that's it", "please do", "i do", "it is")
NO_PHRASES = ("i don't think so", "not really", "not at all", "no way", "rather not")
UNSURE = ("don't know", "not sure", "no idea", "can't remember", "what do you mean", "maybe")
_TOKEN = re.compile(r"[a-z]+(?:[-'][a-z]+)*")


def polarity(text: str) -> Polarity | None:
    """ "yes", "no", or None when the answer is neither (or unsure)."""
    words = _TOKEN.findall(text.lower().replace("’", "'"))
    said = f" {' '.join(words)} "
    if not words or any(f" {u} " in said for u in UNSURE):
        return None
    if any(f" {p} " in said for p in NO_PHRASES):
        return "no"
    for i, word in enumerate(words):
        if word in NO:
            return "no"
        if word in NOT:
            return "no"
        if word in YES:
            follows = words[i + 1] if i + 1 < len(words) else ""
            return "no" if follows in NOT else "yes"  # "definitely not"
    if any(f" {p} " in said for p in YES_PHRASES):
        return "yes"
    return None
