"""Cross-checks on a parsed flow that pydantic's per-field validation cannot see.

Each message names the node (when there is one) and the field: ``node 'x': choices.a.goto: ...``.
"""

from __future__ import annotations

from collections.abc import Iterator

from ivr.dialog.schema import (
    AnswerNode,
    BranchNode,
    CallbackNode,
    FlowSpec,
    MenuNode,
    Node,
    Prompt,
    QuestionNode,
)
from ivr.dialog.values import YESNO_DTMF, placeholders

BUILTIN_VARIABLES = frozenset(
    # set by the engine: at start, on the way to a callback, and by a booked callback
    {"caller", "caller_spoken", "account", "open_now", "business_hours", "handoff_reason",
     "callback_reason", "callback_id"}
)  # fmt: skip


def check_flow(spec: FlowSpec) -> list[str]:
    errors: list[str] = []
    nodes = spec.nodes

    def target(where: str, name: str | None) -> None:
        if name is not None and name not in nodes:
            errors.append(f"{where}: unknown node {name!r}")

    target("start", spec.start)
    target("escalation", spec.escalation)
    target("faq_next", spec.faq_next)
    for gid, g in spec.globals.items():
        where = f"globals.{gid}"
        if g.action == "goto" and g.goto is None:
            errors.append(f"{where}.goto: required for action 'goto'")
        if g.action == "repeat" and g.goto is not None:
            errors.append(f"{where}.goto: not allowed with action 'repeat'")
        target(f"{where}.goto", g.goto)
    for fid, f in spec.faq.items():
        target(f"faq.{fid}.next", f.next)
    for name, node in nodes.items():
        errors += [f"node {name!r}: {msg}" for msg in _check_node(spec, node)]
    errors += _check_placeholders(spec)
    errors += _check_answer_loops(spec)
    return errors


def _check_node(spec: FlowSpec, node: Node) -> Iterator[str]:
    def target(where: str, name: str | None) -> Iterator[str]:
        if name is not None and name not in spec.nodes:
            yield f"{where}: unknown node {name!r}"

    yield from target("escalation", node.escalation)
    keys: dict[str, str] = {}
    if node.globals:
        keys = {g.dtmf: f"globals.{gid}" for gid, g in spec.globals.items() if g.dtmf}
    if isinstance(node, MenuNode):
        if node.faq and not spec.faq:
            yield "faq: the flow has no 'faq' intents"
        yield from target("faq_next", node.faq_next)
        for cid, choice in node.choices.items():
            where = f"choices.{cid}"
            yield from target(f"{where}.goto", choice.goto)
            if node.globals and cid in spec.globals:
                yield f"{where}: same id as a global intent"
            if not choice.phrases and not choice.dtmf:
                yield f"{where}: needs phrases or a dtmf key"
            if choice.dtmf:
                yield from _dtmf_clash(keys, choice.dtmf, f"{where}.dtmf")
    elif isinstance(node, QuestionNode):
        yield from target("next", node.next)
        for value, goto in node.branches.items():
            yield from target(f"branches.{value}", goto)
        if node.type == "yesno":
            for value in set(node.branches) - {"yes", "no"}:
                yield f"branches.{value}: a yesno question only answers 'yes' or 'no'"
            for key, value in YESNO_DTMF.items():
                yield from _dtmf_clash(keys, key, f"dtmf for {value!r}")
        if node.next is None and not (node.type == "yesno" and {"yes", "no"} <= set(node.branches)):
            yield "next: required (a yesno question may give branches for both yes and no)"
        if node.min_digits > node.max_digits:
            yield f"min_digits: {node.min_digits} is more than max_digits {node.max_digits}"
    elif isinstance(node, BranchNode):
        for value, goto in node.cases.items():
            yield from target(f"cases.{value}", goto)
        yield from target("present", node.present)
        yield from target("default", node.default)
    elif isinstance(node, CallbackNode):
        yield from target("next", node.next)
        yield from target("failed", node.failed)
        if node.failed is None and node.fallback is None:
            yield "failed: required (or a fallback prompt): what happens when booking fails"
        known = _known_variables(spec)
        for field, names in (("number", node.number), ("when", [node.when])):
            for var in names:
                if var not in known:
                    yield f"{field}: unknown variable {var!r}"
    elif isinstance(node, AnswerNode):
        yield from target("next", node.next)
        if node.fetch is None:
            if node.prompt is None:
                yield "prompt: required (or 'fetch' with 'say')"
            for field in ("say", "fallback"):
                if getattr(node, field) is not None:
                    yield f"{field}: only used with 'fetch'"
        else:
            if node.say is None:
                yield "say: required with 'fetch'"
            if node.fetch.source == "http" and not node.fetch.url:
                yield "fetch.url: required for source 'http'"
            yield from target("fetch.missing", node.fetch.missing)
            yield from target("fetch.on_error", node.fetch.on_error)


def _dtmf_clash(keys: dict[str, str], key: str, where: str) -> Iterator[str]:
    if key in keys:
        yield f"{where}: key {key!r} is already used by {keys[key]}"
    keys[key] = where


def _known_variables(spec: FlowSpec) -> set[str]:
    known = set(BUILTIN_VARIABLES) | set(spec.variables)
    for node in spec.nodes.values():
        if isinstance(node, QuestionNode):
            known.add(node.var)
            if node.type in ("digits", "phone", "when"):
                known.add(f"{node.var}_spoken")
        if isinstance(node, AnswerNode) and node.fetch is not None:
            known.update(node.fetch.values or [node.fetch.item])
    return known


def _node_prompts(node: Node) -> Iterator[tuple[str, Prompt]]:
    if node.prompt is not None:
        yield "prompt", node.prompt
    for field in ("reprompts", "no_input", "no_match"):
        for i, p in enumerate(getattr(node, field)):
            yield f"{field}[{i}]", p
    for field in ("say", "fallback"):
        p = getattr(node, field, None)
        if p is not None:
            yield field, p


def _check_placeholders(spec: FlowSpec) -> list[str]:
    known = _known_variables(spec)
    found: list[tuple[str, Prompt, set[str]]] = []
    for name, node in spec.nodes.items():
        found += [(f"node {name!r}: {f}", p, known) for f, p in _node_prompts(node)]
    for fid, faq in spec.faq.items():
        found.append((f"faq.{fid}.answer", faq.answer, known))
    d = spec.defaults
    extra = {"confirm": {"choice"}, "disambiguate": {"first", "second"}}
    for field in ("confirm", "confirm_rejected", "disambiguate", "fallback", "not_found"):
        found.append((f"defaults.{field}", getattr(d, field), known | extra.get(field, set())))
    for field in ("no_input", "no_match"):
        found += [(f"defaults.{field}[{i}]", p, known) for i, p in enumerate(getattr(d, field))]
    errors = []
    for where, prompt, allowed in found:
        try:
            names = placeholders(prompt.text)
        except ValueError as exc:
            errors.append(f"{where}: bad placeholder braces: {exc}")
            continue
        for ph in names:
            if ph not in allowed:
                errors.append(
                    f"{where}: unknown placeholder {{{ph}}} (known: {', '.join(sorted(allowed))};"
                    " document call parameters under 'variables:')"
                )
    return errors


def _check_answer_loops(spec: FlowSpec) -> list[str]:
    """A cycle made only of answer nodes would never listen to the caller."""
    errors = []
    for start, node in spec.nodes.items():
        seen = {start}
        while isinstance(node, AnswerNode) and node.next in spec.nodes:
            if node.next == start:
                errors.append(f"node {start!r}: next: answer nodes loop back here without asking")
                break
            if node.next in seen:
                break
            seen.add(node.next)
            node = spec.nodes[node.next]
    return errors
