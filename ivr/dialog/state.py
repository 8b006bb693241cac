"""Per-call dialog state: a plain mutable dataclass the engine updates and tests inspect."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ivr.dialog.types import Say
from ivr.grammar import Grammar

InterpKind = Literal["choice", "global", "faq", "value", "ambiguous", "reject"]


@dataclass(frozen=True)
class Interp:
    """What an input meant at the current node.

    `intent` is the grammar intent (menu choice, global, FAQ id, or the question's grammar
    intent such as ``412`` or ``yes``); `value` is what a question stores; `title` is how the
    interpretation is read back in "Did you say ...?"; `options` are the FAQ ids of an
    ambiguous match.
    """

    kind: InterpKind
    intent: str
    value: str | None = None
    title: str = ""
    options: tuple[str, ...] = ()


@dataclass
class Pending:
    """A question the engine asked about the caller's input: a confirmation or a choice."""

    kind: Literal["confirm", "disambiguate"]
    question: Say
    grammar: Grammar
    interp: Interp | None = None  # what a "yes" confirms
    options: tuple[str, ...] = ()  # FAQ ids offered as "the first" / "the second"


@dataclass
class DialogState:
    node: str
    flow_version: str
    variables: dict[str, str] = field(default_factory=dict)
    no_input: int = 0  # counters of the current node (reset on entering a node)
    no_match: int = 0
    not_found: int = 0  # lookups answered "not_found" in a row
    pending: Pending | None = None
    last_prompts: list[Say] = field(default_factory=list)  # what "repeat" replays
    intents: list[str] = field(default_factory=list)  # history of acted-on intents
    waiting: Literal["input", "fetch", "transfer", "ended"] = "input"
    end_reason: str | None = None
    refused_params: list[str] = field(default_factory=list)  # call parameters not taken

    @property
    def ended(self) -> bool:
        return self.waiting == "ended"
