"""Adopting an unrecognized phrase: add it to a menu choice's `phrases`, a global intent's
`phrases` or an FAQ's `questions` in the flow file's text.

A YAML round trip would drop the file's comments and reflow it, so the phrase is inserted as
text, at the end of the list as the parser located it (following anchors and `<<` merges to
where the list is written). The result must parse to exactly the old document plus the phrase
(checked here); the caller then validates it as a flow before writing it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, cast

import yaml

from ivr.dialog.schema import FlowSpec, MenuNode
from ivr.grammar import normalize
from ivr.yamlio import compose_yaml, load_yaml

Loc = tuple[str, ...]
WIDTH = 100  # a flow-style list longer than this continues on a new line
_PLAIN = re.compile(r"[A-Za-z0-9][A-Za-z0-9 '.!?-]*")


class AdoptError(ValueError):
    """The phrase cannot go there; `field` names the request field at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


@dataclass(frozen=True)
class Adopted:
    text: str | None
    """The new file text; None when the list already has the phrase."""
    target: Loc
    """The list's place in the flow (as the flow reads it: a merged choice is its node's)."""
    line: int | None
    """1-based line of the inserted phrase."""


def clean(phrase: str) -> str:
    return " ".join(phrase.split())


def target(spec: FlowSpec, node: str, intent: str) -> Loc:
    """The phrase list `intent` at `node` listens with: the menu choice's, else the global
    intent's (where the node listens to globals), else the FAQ's (on an FAQ menu)."""
    if node not in spec.nodes:
        raise AdoptError("node", f"no node {node!r} in the flow")
    n = spec.nodes[node]
    if isinstance(n, MenuNode) and intent in n.choices:
        return ("nodes", node, "choices", intent, "phrases")
    if n.globals and intent in spec.globals:
        return ("globals", intent, "phrases")
    if isinstance(n, MenuNode) and n.faq and intent in spec.faq:
        return ("faq", intent, "questions")
    raise AdoptError(
        "intent", f"{intent!r} is not a choice of {node!r}, a global intent or an FAQ there"
    )


def adopt(text: str, spec: FlowSpec, node: str, intent: str, phrase: str) -> Adopted:
    """`text` (the flow file, whose parsed form is `spec`) with `phrase` added to the list
    `intent` at `node` listens with. AdoptError when there is no such list or the text
    cannot be edited safely."""
    phrase = clean(phrase)
    if not phrase:
        raise AdoptError("phrase", "empty")
    loc = target(spec, node, intent)
    data = load_yaml(text)
    current = _get(data, loc)
    if current is not None and normalize(phrase) in {normalize(str(p)) for p in current}:
        return Adopted(None, loc, None)
    holder = _find(compose_yaml(text), loc[:-1])
    if holder is None:
        raise AdoptError("intent", f"cannot find {'.'.join(loc[:-1])} in the flow file")
    seq = _value(holder, loc[-1])
    if isinstance(seq, yaml.SequenceNode):
        new, at = _append(text, seq, _scalar(phrase))
    elif seq is None:
        new, at = _add_key(text, holder, loc[-1], _scalar(phrase))
    else:
        raise AdoptError("intent", f"{'.'.join(loc)} is not a list in the flow file")
    if current is None:
        _put(data, loc, [phrase])
    else:
        current.append(phrase)
    try:
        same = load_yaml(new) == data
    except yaml.YAMLError:  # a YamlLimitError too: the phrase took it over a bound
        same = False
    if not same:  # e.g. a layout this editor does not know: better no change than a wrong one
        raise AdoptError("phrase", "the flow file's layout there cannot be edited automatically")
    return Adopted(new, loc, new.count("\n", 0, at) + 1)


def _scalar(phrase: str) -> str:
    """The phrase as a YAML scalar: plain when that reads back as the same string (not a
    number, boolean or null), else double-quoted (JSON strings are valid YAML)."""
    if _PLAIN.fullmatch(phrase) and load_yaml(phrase) == phrase:
        return phrase
    return json.dumps(phrase, ensure_ascii=False)


# --- the parsed document ----------------------------------------------------------------------


def _get(data: Any, loc: Loc) -> list[Any] | None:
    for key in loc:
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    return data if isinstance(data, list) else None


def _put(data: Any, loc: Loc, value: Any) -> None:
    for key in loc[:-1]:
        data = data[key]
    data[loc[-1]] = value


# --- the composed document (nodes with their places in the text) ------------------------------


def _value(mapping: yaml.MappingNode, key: str) -> yaml.Node | None:
    """The value of `key` in a composed mapping: its own, else one merged in with `<<`
    (YAML's rule: explicit keys win, then the merged mappings in order)."""
    merged: list[yaml.Node] = []
    for k, v in mapping.value:
        if k.value == "<<":
            merged += v.value if isinstance(v, yaml.SequenceNode) else [v]
        elif k.value == key:
            return cast(yaml.Node, v)
    for m in merged:
        if isinstance(m, yaml.MappingNode) and (found := _value(m, key)) is not None:
            return found
    return None


def _find(root: yaml.Node | None, loc: Loc) -> yaml.MappingNode | None:
    node = root
    for key in loc:
        if not isinstance(node, yaml.MappingNode):
            return None
        node = _value(node, key)
    return node if isinstance(node, yaml.MappingNode) else None


# --- text edits ---------------------------------------------------------------------------------


def _line_end(text: str, index: int) -> int:
    end = text.find("\n", index)
    return len(text) if end < 0 else end


def _append(text: str, seq: yaml.SequenceNode, item: str) -> tuple[str, int]:
    """`text` with `item` after the last item of `seq`; and where it went."""
    if seq.flow_style:  # [a, b]
        if not seq.value:
            at = seq.end_mark.index - 1  # just inside the "]"
            return text[:at] + item + text[at:], at
        at = seq.value[-1].end_mark.index
        line_start = text.rfind("\n", 0, at) + 1
        if _line_end(text, at) - line_start + len(item) + 2 > WIDTH:
            indent = " " * seq.value[0].start_mark.column
            return text[:at] + ",\n" + indent + item + text[at:], at + 2 + len(indent)
        return text[:at] + ", " + item + text[at:], at + 2
    # block: "- a" lines; the new item goes after the last one's line (and its comment)
    at = _line_end(text, seq.value[-1].end_mark.index)
    insert = "\n" + " " * seq.start_mark.column + "- "
    return text[:at] + insert + item + text[at:], at + len(insert)


def _add_key(text: str, mapping: yaml.MappingNode, key: str, item: str) -> tuple[str, int]:
    """`text` with `key: [item]` added to `mapping` (a choice without phrases yet)."""
    if mapping.flow_style:  # {goto: x}
        at = mapping.value[-1][1].end_mark.index
        insert = f", {key}: "
        return text[:at] + insert + "[" + item + "]" + text[at:], at + len(insert) + 1
    at = _line_end(text, mapping.value[-1][1].end_mark.index)
    if mapping.value[-1][1].end_mark.line > mapping.value[-1][0].start_mark.line:
        raise AdoptError("intent", "the choice ends in a multi-line value: add phrases by hand")
    insert = "\n" + " " * mapping.value[0][0].start_mark.column + f"{key}: ["
    return text[:at] + insert + item + "]" + text[at:], at + len(insert)
