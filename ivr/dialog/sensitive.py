"""What records keep of answers to a question marked ``sensitive: true`` (an account number,
a PIN, a card's digits): masked. The dialog itself uses the real value (lookups, bookings);
transcripts, call records, the events feed, webhooks, chat histories and logs get these.

`mask` is for a value the question collected: every digit (and ``*``) becomes ``•``, except
that a number of `KEEP_FROM` digits or more keeps its last `KEEP` (as a card receipt shows
its last digits), so a PIN or a short code shows nothing but its length; a keyed terminator
(``#``) stays. `redact` is for free words said or typed at such a question: digits and the
words for them are masked, one ``•`` each (so not even a word's length is left), other words
kept: "agent" stays, "nine oh two" is "• • •".
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from ivr.dialog.schema import Prompt
from ivr.dialog.state import Interp
from ivr.dialog.types import Say
from ivr.dialog.values import render

MASK = "•"
KEEP = 2  # digits kept at the end of a long number
KEEP_FROM = 8  # shorter numbers (PINs, short codes) are masked whole

_DIGIT_WORDS = re.compile(
    r"\b(?:zero|oh|o|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|"
    r"thirteen|fourteen|fifteen|sixteen|seventeen|eighteen|nineteen|twenty|thirty|forty|"
    r"fifty|sixty|seventy|eighty|ninety|hundred|thousand|double|triple|"
    r"for|to|too|won|ate)\b",
    re.IGNORECASE,
)
_KEYS = re.compile(r"[0-9*]")


def mask(value: str) -> str:
    """`value` as records keep it: digits masked, the last `KEEP` of a long number kept."""
    digits = sum(c.isdigit() for c in value)
    keep = KEEP if digits >= KEEP_FROM else 0
    out: list[str] = []
    for c in reversed(value):
        if c.isdigit() and keep:
            keep -= 1
            out.append(c)
        elif c.isalnum() or c == "*":
            out.append(MASK)
        else:
            out.append(c)
    return "".join(reversed(out))


def redact(text: str) -> str:
    """Words said or typed at a sensitive question: digits and number words masked."""
    text = _DIGIT_WORDS.sub(MASK, text)
    return _KEYS.sub(MASK, text)


def hidden(variables: Mapping[str, str], names: Iterable[str]) -> dict[str, str]:
    """The values of the sensitive variables `names` in `variables`, and their read-backs
    (``<name>_spoken``), masked."""
    out: dict[str, str] = {}
    for name in names:
        if name in variables:
            out[name] = mask(variables[name])
            if f"{name}_spoken" in variables:
                out[f"{name}_spoken"] = out[name]
    return out


def kept_say(prompt: Prompt, variables: Mapping[str, str], masked: Mapping[str, str],
             barge_in: bool) -> Say:  # fmt: skip
    """`prompt` said with `variables`; as kept (`Say.kept`) with `masked` where that differs."""
    text = render(prompt, variables)[0]
    chat = render(Prompt(text=prompt.chat), variables)[0] if prompt.chat else None
    kept = kept_chat = None
    if masked != variables:
        kept = render(prompt, masked)[0]
        kept_chat = render(Prompt(text=prompt.chat), masked)[0] if prompt.chat else None
    return Say(text, prompt.key, barge_in, chat, None if kept == text else kept,
               None if kept_chat == chat else kept_chat)  # fmt: skip


def kept_input(text: str, interp: Interp | None) -> tuple[str, str | None]:
    """What a turn keeps of input at a sensitive question (its text, its intent): an answer
    masked, other words redacted; an intent that is no answer (a global's id) as it is."""
    if interp is not None and interp.kind == "value":
        return mask(interp.value or ""), mask(interp.intent)
    intent = interp.intent if interp is not None and interp.kind != "ambiguous" else None
    return redact(text), intent


INTERNAL = ("open_now", "business_hours", "closed_today", "handoff_reason")
"""Variables the engine sets for prompts and branches: no news to an agent."""


def for_agent(variables: Mapping[str, str], names: Iterable[str]) -> dict[str, str]:
    """What the caller gave, as a booked callback keeps it for the agent: without the
    engine's own variables and read-backs, the sensitive variables `names` masked."""
    hide = set(names)
    return {
        k: mask(v) if k in hide else v
        for k, v in variables.items()
        if k not in INTERNAL and not k.endswith("_spoken")
    }
