"""A voice flow read in a text channel: prompts without their keypad hints, the choices a
listening node offers as quick replies, and typed keys taken as keypad entries.

One flow file serves voice and text. A prompt's `chat:` variant (`Prompt.chat`) is its
text wording; a prompt without one is its spoken text with the keypad instructions cut
("or press 1 for yes, 2 for no", "or key it in and press hash"), since a chat has no
keypad: the options those keys stood for come as quick replies instead.
"""

from __future__ import annotations

import re

from ivr.dialog.flow import Flow
from ivr.dialog.schema import MenuNode, Node, QuestionNode
from ivr.dialog.state import DialogState
from ivr.dialog.types import Say
from ivr.dialog.when import KEYPAD

MAX_QUICK_REPLIES = 8  # more is a list to read, not a choice to tap

# Keypad instructions inside a sentence, with the "or"/"then" that joins them to the
# spoken alternative: ", or press 1 for yes, 2 for no", " or press 0", ", then press hash".
_KEYPAD_CLAUSE = re.compile(
    r",?\s*(?:\bor\s+(?:say\s+or\s+)?|\bthen\s+)"
    r"(?:press\b|key\s+it\s+in\b|key\s+in\b|enter\s+it\s+on\s+the\s+keypad\b)[^.?!]*",
    re.IGNORECASE,
)
# A sentence that is nothing but keypad instructions ("Or press 1 for ..., 2 for ...").
_KEYPAD_SENTENCE = re.compile(r"(?:^|(?<=[.?!]))\s*(?:or\s+)?press\b[^.?!]*[.?!]?", re.IGNORECASE)
_KEY_IN = re.compile(r"\bkey\s+in\b", re.IGNORECASE)
# "Say yes or no", ", say agent": in a chat the customer types it.
_SAY = re.compile(r"(?:^|(?<=[.?!,]\s))say\b", re.IGNORECASE)
# What only makes sense on a phone: keys, tones, hearing, holding the line.
_VOICE_ONLY = re.compile(
    r"\b(?:press(?:ing)?|keypad|key(?:ed)?\s+(?:it\s+)?in|hash|pound|star\s+key|dial|tone|"
    r"beep|hear|listen(?:ing)?|speak(?:ing)?\s+(?:to|with)|hold\s+the\s+line|please\s+hold|"
    r"hang\s+up|on\s+the\s+phone)\b",
    re.IGNORECASE,
)
_SPACES = re.compile(r"\s+")
_KEYS = re.compile(r"[0-9*#]+")
_NUMBER_SEPARATORS = re.compile(r"[\s().-]+")


def written(say: Say) -> str:
    """What a text channel shows for `say`: its `chat` wording, else its text without the
    keypad instructions (the whole text when that would leave nothing)."""
    if say.chat is not None:
        return say.chat
    text = _KEYPAD_SENTENCE.sub("", say.text)  # whole sentences first: then their stop goes
    text = _KEYPAD_CLAUSE.sub("", text)
    text = _KEY_IN.sub(lambda m: "Type" if m.group()[0] == "K" else "type", text)
    text = _SAY.sub(lambda m: "Type" if m.group()[0] == "S" else "type", text)
    text = _SPACES.sub(" ", text).strip()
    return text if text else say.text


def voice_only(say: Say) -> list[str]:
    """The words of `say` as a text channel shows it that only make sense in a call ("press",
    "hold the line", "speak to"): a prompt that needs a `chat:` wording. Empty when the
    text reads well, or its `chat:` wording is given."""
    if say.chat is not None:
        return []
    return list(dict.fromkeys(m.group().lower() for m in _VOICE_ONLY.finditer(written(say))))


def quick_replies(flow: Flow, state: DialogState) -> tuple[str, ...]:
    """The answers to offer as buttons where the dialog waits for input: a confirmation's
    yes/no, a "which one" question's two options, a menu's choices, a yes/no, rating or
    callback-time question's keypad options; none for free answers (numbers, text)."""
    node = flow.spec.nodes[state.node]
    pending = state.pending
    if pending is not None:
        if pending.kind == "confirm":
            return ("yes", "no")
        return tuple(flow.title(option, node) for option in pending.options)
    return _node_replies(flow, node)[:MAX_QUICK_REPLIES]


def _node_replies(flow: Flow, node: Node) -> tuple[str, ...]:
    if isinstance(node, MenuNode):
        choices = [flow.title(intent, node) for intent in node.choices]
        if node.globals:  # those with a key (the agent's "press 0"), as the keypad offers
            choices += [flow.title(name) for name, g in flow.spec.globals.items() if g.dtmf]
        return tuple(dict.fromkeys(choices))
    if isinstance(node, QuestionNode):
        if node.type == "yesno":
            return ("yes", "no")
        if node.type == "rating":
            return ("1", "2", "3", "4", "5")
        if node.type == "when":
            return tuple(KEYPAD.values())
    return ()


def typed_keys(text: str) -> str | None:
    """The keys a customer typed, when the message is only keypad characters ("2", "1234#",
    "555-123-4567": digits with a number's separators), so they count as keypad entries
    (the menus' and questions' keys); None for words, or a number written with `+`."""
    compact = _NUMBER_SEPARATORS.sub("", text.strip())
    return compact if compact and _KEYS.fullmatch(compact) else None
