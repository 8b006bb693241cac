"""Cross-checks on a parsed flow that pydantic's per-field validation cannot see.

Each problem is structured: `loc`, the path of keys and list positions to the offending value
in the flow document (so tools can find its line), and the message. As text it names the node
(when there is one) and the field: ``node 'x': choices.a.goto: unknown node 'b'``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import assert_never

from ivr.dialog.nodes import successors
from ivr.dialog.schema import (
    AnswerNode,
    BranchNode,
    CallbackNode,
    FlowSpec,
    HandoffNode,
    HangupNode,
    MenuNode,
    Node,
    Prompt,
    QuestionNode,
    TransferNode,
)
from ivr.dialog.values import RATING_PHRASES, YESNO_DTMF, placeholders
from ivr.dialog.variables import ENGINE_VARIABLES

LOOKUP_ACCOUNT = "account"
"""What an account lookup answers with besides its item (the demo's do), whatever the fetch's
`values`: prompts may use it as they use the engine's own variables."""

Loc = tuple[str | int, ...]
"""A place in a flow document: keys and list positions, e.g. ("nodes", "menu", "prompt")."""


@dataclass(frozen=True)
class FlowProblem:
    loc: Loc
    message: str
    label: str | None = None
    """How the place is named when it is not `describe(loc)`, e.g. the dotted form pydantic
    errors have always had; "" when the message names the place itself."""

    @property
    def where(self) -> str:
        return describe(self.loc) if self.label is None else self.label

    def __str__(self) -> str:
        return f"{self.where}: {self.message}" if self.where else self.message


def describe(loc: Loc) -> str:
    """``("nodes", "x", "reprompts", 0)`` → ``node 'x': reprompts[0]``; elsewhere dotted."""
    if len(loc) >= 2 and loc[0] == "nodes":
        return f"node {loc[1]!r}: {_dotted(loc[2:]) or 'node'}"
    return _dotted(loc) or "flow"


def _dotted(loc: Loc) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else f".{part}" if out else part
    return out


def flow_problems(spec: FlowSpec) -> list[FlowProblem]:
    problems: list[FlowProblem] = []
    nodes = spec.nodes

    def target(loc: Loc, name: str | None) -> None:
        if name is not None and name not in nodes:
            problems.append(FlowProblem(loc, f"unknown node {name!r}"))

    target(("start",), spec.start)
    target(("escalation",), spec.escalation)
    target(("faq_next",), spec.faq_next)
    for gid, g in spec.globals.items():
        goto: Loc = ("globals", gid, "goto")
        if g.action == "goto" and g.goto is None:
            problems.append(FlowProblem(goto, "required for action 'goto'"))
        if g.action == "repeat" and g.goto is not None:
            problems.append(FlowProblem(goto, "not allowed with action 'repeat'"))
        target(goto, g.goto)
    for fid, f in spec.faq.items():
        target(("faq", fid, "next"), f.next)
    for name, node in nodes.items():
        problems += _check_node(spec, name, node)
    problems += _check_placeholders(spec)
    problems += _check_answer_loops(spec)
    return problems


def _check_node(spec: FlowSpec, name: str, node: Node) -> Iterator[FlowProblem]:
    for edge in successors(node):
        if edge.to is not None and edge.to not in spec.nodes:
            yield FlowProblem(_at(name, *edge.loc), f"unknown node {edge.to!r}")
    keys: dict[str, str] = {}  # the keys taken at the node → who has them, as messages say
    if node.globals:
        keys = {g.dtmf: f"globals.{gid}" for gid, g in spec.globals.items() if g.dtmf}
    match node:
        case MenuNode():
            yield from _check_menu(spec, name, node, keys)
        case QuestionNode():
            yield from _check_question(name, node, keys)
        case CallbackNode():
            yield from _check_callback(spec, name, node)
        case AnswerNode():
            yield from _check_answer(name, node)
        case BranchNode() | TransferNode() | HandoffNode() | HangupNode():
            pass  # nothing but where they lead
        case _:
            assert_never(node)


def _at(name: str, *loc: str | int) -> Loc:
    return ("nodes", name, *loc)


def _check_menu(spec: FlowSpec, name: str, node: MenuNode, keys: dict[str, str]
                ) -> Iterator[FlowProblem]:  # fmt: skip
    if node.faq and not spec.faq:
        yield FlowProblem(_at(name, "faq"), "the flow has no 'faq' intents")
    for cid, choice in node.choices.items():
        if node.globals and cid in spec.globals:
            yield FlowProblem(_at(name, "choices", cid), "same id as a global intent")
        if not choice.phrases and not choice.dtmf:
            yield FlowProblem(_at(name, "choices", cid), "needs phrases or a dtmf key")
        if choice.dtmf:
            dtmf = _at(name, "choices", cid, "dtmf")
            yield from _dtmf_clash(keys, choice.dtmf, dtmf, f"choices.{cid}.dtmf")


def _check_question(name: str, node: QuestionNode, keys: dict[str, str]
                    ) -> Iterator[FlowProblem]:  # fmt: skip
    # The keys of yesno and rating questions come with the type: a clash is reported there.
    typed = {"yesno": {k: f"dtmf for {v!r}" for k, v in YESNO_DTMF.items()},
             "rating": {k: f"dtmf for rating {k}" for k in RATING_PHRASES}}  # fmt: skip
    for key, named in typed.get(node.type, {}).items():
        yield from _dtmf_clash(keys, key, _at(name, "type"), named, f"node {name!r}: {named}")
    if node.type == "yesno":
        for value in set(node.branches) - {"yes", "no"}:
            loc = _at(name, "branches", value)
            yield FlowProblem(loc, "a yesno question only answers 'yes' or 'no'")
    if node.survey and node.type != "rating":
        yield FlowProblem(_at(name, "survey"), "only a rating question can be the survey")
    if node.next is None and not (node.type == "yesno" and {"yes", "no"} <= set(node.branches)):
        yield FlowProblem(
            _at(name, "next"), "required (a yesno question may give branches for both yes and no)"
        )
    if node.min_digits > node.max_digits:
        message = f"{node.min_digits} is more than max_digits {node.max_digits}"
        yield FlowProblem(_at(name, "min_digits"), message)


def _check_callback(spec: FlowSpec, name: str, node: CallbackNode) -> Iterator[FlowProblem]:
    if node.failed is None and node.fallback is None:
        message = "required (or a fallback prompt): what happens when booking fails"
        yield FlowProblem(_at(name, "failed"), message)
    known = _known_variables(spec)
    for i, var in enumerate(node.number):
        if var not in known:
            loc = _at(name, "number", i)
            yield FlowProblem(loc, f"unknown variable {var!r}", f"node {name!r}: number")
    if node.when not in known:
        yield FlowProblem(_at(name, "when"), f"unknown variable {node.when!r}")


def _check_answer(name: str, node: AnswerNode) -> Iterator[FlowProblem]:
    if node.fetch is None:
        if node.prompt is None:
            yield FlowProblem(_at(name, "prompt"), "required (or 'fetch' with 'say')")
        for field in ("say", "fallback"):
            if getattr(node, field) is not None:
                yield FlowProblem(_at(name, field), "only used with 'fetch'")
        return
    if node.say is None:
        yield FlowProblem(_at(name, "say"), "required with 'fetch'")
    if node.fetch.source == "http" and not node.fetch.url:
        yield FlowProblem(_at(name, "fetch", "url"), "required for source 'http'")


def _dtmf_clash(
    keys: dict[str, str], key: str, loc: Loc, named: str, label: str | None = None
) -> Iterator[FlowProblem]:
    """`keys` maps each key taken so far to how its owner is named in messages."""
    if key in keys:
        yield FlowProblem(loc, f"key {key!r} is already used by {keys[key]}", label)
    keys[key] = named


def _known_variables(spec: FlowSpec) -> set[str]:
    known = set(ENGINE_VARIABLES) | {LOOKUP_ACCOUNT} | set(spec.variables)
    for node in spec.nodes.values():
        known.update(_provided(node))
    return known


def _provided(node: Node) -> Iterator[str]:
    """The variables `node` sets, for the prompts after it (the engine's own aside)."""
    match node:
        case QuestionNode():
            yield node.var
            if node.type in ("digits", "phone", "when"):  # read back as said
                yield f"{node.var}_spoken"
        case AnswerNode():
            if node.fetch is not None:
                yield from node.fetch.values or [node.fetch.item]
        case MenuNode() | BranchNode() | CallbackNode() | TransferNode():
            pass  # a callback's id, a transfer's error: the engine's (ENGINE_VARIABLES)
        case HandoffNode() | HangupNode():
            pass
        case _:
            assert_never(node)


def _node_prompts(node: Node) -> Iterator[tuple[Loc, Prompt]]:
    if node.prompt is not None:
        yield ("prompt",), node.prompt
    for field in ("reprompts", "no_input", "no_match"):
        for i, p in enumerate(getattr(node, field)):
            yield (field, i), p
    for field in ("say", "fallback"):
        p = getattr(node, field, None)
        if p is not None:
            yield (field,), p


def _check_placeholders(spec: FlowSpec) -> list[FlowProblem]:
    known = _known_variables(spec)
    found: list[tuple[Loc, Prompt, set[str]]] = []
    for name, node in spec.nodes.items():
        found += [(("nodes", name, *loc), p, known) for loc, p in _node_prompts(node)]
    for fid, faq in spec.faq.items():
        found.append((("faq", fid, "answer"), faq.answer, known))
    d = spec.defaults
    extra = {"confirm": {"choice"}, "disambiguate": {"first", "second"}}
    for field in ("confirm", "confirm_rejected", "disambiguate", "fallback", "not_found"):
        found.append((("defaults", field), getattr(d, field), known | extra.get(field, set())))
    for field in ("no_input", "no_match"):
        found += [(("defaults", field, i), p, known) for i, p in enumerate(getattr(d, field))]
    problems = []
    for loc, prompt, allowed in found:
        try:
            names = placeholders(prompt.text)
        except ValueError as exc:
            problems.append(FlowProblem(loc, f"bad placeholder braces: {exc}"))
            continue
        for ph in names:
            if ph not in allowed:
                problems.append(
                    FlowProblem(
                        loc,
                        f"unknown placeholder {{{ph}}} (known: {', '.join(sorted(allowed))};"
                        " document call parameters under 'variables:')",
                    )
                )
    return problems


def _check_answer_loops(spec: FlowSpec) -> list[FlowProblem]:
    """A cycle made only of answer nodes would never listen to the caller."""
    problems = []
    for start, node in spec.nodes.items():
        seen = {start}
        while isinstance(node, AnswerNode) and node.next in spec.nodes:
            if node.next == start:
                loc = ("nodes", start, "next")
                problems.append(FlowProblem(loc, "answer nodes loop back here without asking"))
                break
            if node.next in seen:
                break
            seen.add(node.next)
            node = spec.nodes[node.next]
    return problems
