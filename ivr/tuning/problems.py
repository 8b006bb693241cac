"""Problems with a file and line: ``grammars/hotline.yaml:142: node 'balance': fetch.missing: ...``.

The validators name a problem's place as a path of keys and list positions (`Loc`). The line is
found by following that path through the YAML node tree (`yaml.compose`: every node carries
its position), including merge keys (``<<: *topics``) and aliases, whose lines are where the
text actually is. A path that leads to something the file does not have (a missing field)
stops at the closest place that exists.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import yaml

from ivr.dialog.checks import Loc, describe
from ivr.dialog.flow import MAX_YAML_VALUES, YamlLimitError, compose_yaml, load_yaml

MERGE_TAG = "tag:yaml.org,2002:merge"
BOOL_TAG = "tag:yaml.org,2002:bool"
_TRUE = frozenset({"yes", "true", "on", "y"})
MAX_NODES = MAX_YAML_VALUES  # values a document may have with its aliases expanded


@dataclass(frozen=True)
class Problem:
    file: str
    line: int | None  # 1-based; None when the problem is not at one place in the file
    where: str  # the node and field, as the flow's own messages name them ("" if none)
    message: str

    def __str__(self) -> str:
        place = f"{self.file}:{self.line}" if self.line is not None else self.file
        return ": ".join(part for part in (place, self.where, self.message) if part)

    def json(self) -> dict[str, Any]:
        return {"line": self.line, "where": self.where, "message": self.message}


class Document:
    """A YAML text's node tree (for lines) and its data (for the validators)."""

    def __init__(self, file: str, text: str) -> None:
        """Raises `BadDocument` with a located problem for text that is not usable YAML."""
        self.file = file
        try:
            # Two passes: building the data rewrites merged mappings in the node tree, which
            # must keep the keys where they are written.
            self.root: yaml.Node | None = compose_yaml(text)
            self.data: Any = load_yaml(text)
        except YamlLimitError as exc:  # the same bounds as loading a flow
            problem = Problem(file, exc.line, "", f"not valid YAML: {exc.problem}")
            raise BadDocument(problem) from None
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line = mark.line + 1 if mark is not None else None
            problem = Problem(file, line, "", f"not valid YAML: {_yaml_reason(exc)}")
            raise BadDocument(problem) from None
        except yaml.YAMLError as exc:
            raise BadDocument(Problem(file, None, "", f"not valid YAML: {exc}")) from None
        except RecursionError:
            raise BadDocument(Problem(file, None, "", "nested too deeply")) from None

    def problem(self, loc: Loc, message: str, where: str | None = None) -> Problem:
        """A problem at `loc` (named `describe(loc)` unless `where` is given)."""
        return Problem(
            self.file, self.line(loc), describe(loc) if where is None else where, message
        )

    def line(self, loc: Loc) -> int | None:
        """The 1-based line of the value at `loc`, or of its closest existing parent;
        None for the document as a whole (an empty `loc`)."""
        if self.root is None or not loc:
            return None
        node, line = self.root, self.root.start_mark.line + 1
        for part in loc:
            found = _child(node, part)
            if found is None:
                break
            line, node = found
        return line

    def duplicate_keys(self) -> list[Problem]:
        """Keys given twice in one mapping: YAML keeps the last silently, so an edit that adds
        a second ``balance:`` choice quietly replaces the first."""
        problems = []
        for loc, mapping in _mappings(self.root):
            seen: dict[str, int] = {}
            for key, _ in mapping.value:
                if not isinstance(key, yaml.ScalarNode) or key.tag == MERGE_TAG:
                    continue
                line = key.start_mark.line + 1
                if key.value in seen:
                    message = (
                        f"duplicate key {key.value!r} (also on line {seen[key.value]}): "
                        "only the last one counts"
                    )
                    problems.append(Problem(self.file, line, describe(loc), message))
                seen.setdefault(key.value, line)
        return problems


class BadDocument(ValueError):
    def __init__(self, problem: Problem) -> None:
        super().__init__(str(problem))
        self.problem = problem


def _yaml_reason(exc: yaml.MarkedYAMLError) -> str:
    parts = [exc.context, exc.problem]
    return "; ".join(p for p in parts if p) or type(exc).__name__


def _key_is(key: yaml.Node, part: str | int) -> bool:
    """Whether a mapping key node is the key the validators call `part`: they see keys after
    YAML typing (``yes`` is a boolean, which flows read as "yes" and grammars as "True")."""
    if not isinstance(key, yaml.ScalarNode):
        return False
    if key.tag == BOOL_TAG:
        truth = key.value.lower() in _TRUE
        return str(part) in ({"yes", "True", "true"} if truth else {"no", "False", "false"})
    return bool(key.value == str(part))


def _child(node: yaml.Node, part: str | int) -> tuple[int, yaml.Node] | None:
    """(line, node) of `part` under `node`: a mapping key's line, or a list item's."""
    if isinstance(node, yaml.SequenceNode) and isinstance(part, int):
        if 0 <= part < len(node.value):
            item = node.value[part]
            return item.start_mark.line + 1, item
        return None
    if not isinstance(node, yaml.MappingNode):
        return None
    merged: list[yaml.Node] = []
    found: tuple[int, yaml.Node] | None = None
    for key, value in node.value:
        if key.tag == MERGE_TAG:
            merged += value.value if isinstance(value, yaml.SequenceNode) else [value]
        elif _key_is(key, part):
            found = key.start_mark.line + 1, value  # a key given twice: the last one counts
    if found is not None:
        return found
    for source in merged:  # keys written in the mapping itself win over merged ones
        found = _child(source, part)
        if found is not None:
            return found
    return None


def _mappings(root: yaml.Node | None) -> Iterator[tuple[Loc, yaml.MappingNode]]:
    """Every mapping once (an alias is the same node object), with its path."""
    seen: set[int] = set()
    stack: list[tuple[Loc, yaml.Node]] = [((), root)] if root is not None else []
    while stack:
        loc, node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            yield loc, node
            for key, value in reversed(node.value):
                name = key.value if isinstance(key, yaml.ScalarNode) else "?"
                stack.append((loc if key.tag == MERGE_TAG else (*loc, name), value))
        elif isinstance(node, yaml.SequenceNode):
            stack += [((*loc, i), item) for i, item in reversed(list(enumerate(node.value)))]
