"""Node kinds: where each kind's behaviour is, and the facts about a node that several parts ask.

A flow's nodes are the `Node` union of `ivr.dialog.schema` (one class per ``kind:``). Code that
does something per kind `match`es the node with a case for every kind and `assert_never` last,
so the type checker (mypy strict) proves that every kind is handled: a kind added to the union
and not to a match is a type error there, not a branch silently missed. Those matches:

- the engine's step into a node, `ivr.dialog.engine.DialogEngine._enter` (and, for the kinds
  that wait, `_fetch_done`);
- what input means there, `ivr.dialog.interpret.Interpreter.keys` and `.intent`;
- the flow's checks, `ivr.dialog.checks._check_node` and `_provided`;
- the grammar it listens with, `ivr.dialog.flow._Compiler.node_grammar`;
- the path a caller takes to the first question, `ivr.tuning.probe.first_listening`;
- here: the nodes it leads to (`successors`: the checks, analytics' agent path), how it
  hears the caller (`hearing`: the engine's Listen and the tuning probe) and the keys it
  takes as one entry (`keypad`: the engine's Listen).

Code that only reads one kind's own fields (a menu's choices) tests that kind with
`isinstance`: a new kind is not a menu, so nothing is missed there.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import NamedTuple, assert_never

from ivr.dialog.schema import (
    AnswerNode,
    BranchNode,
    CallbackNode,
    HandoffNode,
    HangupNode,
    MenuNode,
    Node,
    QuestionNode,
    TransferNode,
)
from ivr.dialog.values import PHONE_DIGITS


class Edge(NamedTuple):
    """A node named by another node's field."""

    loc: tuple[str, ...]  # the field, in the node, e.g. ("choices", "balance", "goto")
    to: str | None  # None: the field is not set
    reason: str | None = None  # the handoff reason the edge declares (a menu choice's)


def successors(node: Node) -> Iterator[Edge]:
    """The nodes `node` leads to by its own fields (not the global intents, which lead
    anywhere), in the order of its fields."""
    yield Edge(("escalation",), node.escalation)
    match node:
        case MenuNode():
            yield Edge(("faq_next",), node.faq_next)
            for cid, choice in node.choices.items():
                yield Edge(("choices", cid, "goto"), choice.goto, choice.reason)
        case QuestionNode():
            yield Edge(("next",), node.next)
            yield from (Edge(("branches", v), to) for v, to in node.branches.items())
        case AnswerNode():
            yield Edge(("next",), node.next)
            if node.fetch is not None:
                yield Edge(("fetch", "missing"), node.fetch.missing)
                yield Edge(("fetch", "on_error"), node.fetch.on_error)
        case BranchNode():
            yield from (Edge(("cases", v), to) for v, to in node.cases.items())
            yield Edge(("present",), node.present)
            yield Edge(("default",), node.default)
        case CallbackNode():
            yield Edge(("next",), node.next)
            yield Edge(("failed",), node.failed)
        case TransferNode():
            yield Edge(("failed",), node.failed)  # transferred: the call ends there
        case HandoffNode() | HangupNode():
            pass  # the call ends there
        case _:
            assert_never(node)


@dataclass(frozen=True)
class Hearing:
    """How a node hears the caller (all False for a node that does not listen)."""

    free: bool = False
    """Free speech: the recognizer decodes with the node's phrases as a hint (tried first),
    not against its grammar (an FAQ menu, a free-text question)."""
    faq: bool = False
    """The FAQ questions are heard there too, after the node's own grammar (an FAQ menu)."""
    number: bool = False
    """A digit string: callers pause between groups of digits, so an utterance ends after the
    flow's ``digits_end_silence_ms`` of silence (digits and phone questions)."""


def hearing(node: Node) -> Hearing:
    """How `node` hears the caller."""
    match node:
        case MenuNode():
            return Hearing(free=node.faq, faq=node.faq)
        case QuestionNode():
            return Hearing(free=node.type == "text", number=node.type in ("digits", "phone"))
        case AnswerNode() | BranchNode() | CallbackNode() | TransferNode():
            return Hearing()  # they say, look up, book or transfer: no Listen
        case HandoffNode() | HangupNode():
            return Hearing()
        case _:
            assert_never(node)


def keypad(node: Node, global_dtmf: Mapping[str, str]) -> tuple[int, str | None]:
    """The most keys `node` takes as one entry, and the key that ends an entry early
    (`global_dtmf`: the flow's global intents' keys, which menus take too)."""
    match node:
        case MenuNode():
            keys = [c.dtmf for c in node.choices.values() if c.dtmf]
            keys += list(global_dtmf) if node.globals else []
            return max((len(k) for k in keys), default=1), None
        case QuestionNode():
            if node.type in ("yesno", "when", "rating", "text"):  # single keys
                return 1, None
            digits = {"digits": node.max_digits, "date": 8, "time": 4, "phone": PHONE_DIGITS[1]}
            return digits[node.type], node.terminator
        case AnswerNode() | BranchNode() | CallbackNode() | TransferNode():
            raise AssertionError(f"a {node.kind} node does not listen")
        case HandoffNode() | HangupNode():
            raise AssertionError(f"a {node.kind} node does not listen")
        case _:
            assert_never(node)
