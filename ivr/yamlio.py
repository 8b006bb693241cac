"""Reading YAML with bounds: every YAML document the service reads (flows, grammars, the
configuration file, the validator's and the phrase editor's input) goes through here.

PyYAML composes recursively and expands aliases without limit, so a short document can be a
RecursionError or billions of values ("billion laughs"). `load_yaml` is `yaml.safe_load`
with bounds on length, nesting and values, and `compose_yaml` the node tree with the same
bounds; a document over one is a YamlLimitError (a `yaml.YAMLError`) naming the bound and
the line. A neutral module (YAML only), so the ASR layer reads grammars with it too.
"""

from __future__ import annotations

from typing import Any

import yaml

MAX_YAML_CHARS = 512 * 1024
"""Of a document (a flow file 30 times the bundled hotline's). PyYAML composes ~50 000 values
a second, so the worst text this long (a flat list) takes a few seconds, in a worker thread."""
MAX_YAML_DEPTH = 64
"""Nesting of mappings and lists, aliases followed. A flow nests about 8 deep; PyYAML composes
recursively (three frames a level), so ~300 levels were a RecursionError (a 500 on upload, a
traceback at start-up)."""
MAX_YAML_VALUES = 200_000
"""Values once aliases are expanded (as `ivr grammar check` bounds them): the validators walk
the expanded data, so a few lines of nested aliases ("billion laughs") must not get there."""


class YamlLimitError(yaml.YAMLError):
    """A document over one of the bounds above; the message says which, and where."""

    def __init__(self, problem: str, line: int | None = None) -> None:
        super().__init__(problem if line is None else f"line {line}: {problem}")
        self.problem = problem
        self.line = line


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader that refuses nesting past MAX_YAML_DEPTH before it recurses any deeper, and
    stops composing past MAX_YAML_VALUES nodes (before aliases: those are checked after)."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self._depth = 0
        self._nodes = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        self._nodes += 1
        if parent is not None and self._depth >= MAX_YAML_DEPTH:  # (the root is at depth 0)
            raise _limit(parent, f"nested more than {MAX_YAML_DEPTH} levels deep")
        if parent is not None and self._nodes > MAX_YAML_VALUES:
            raise _limit(parent, f"more than {MAX_YAML_VALUES} values")
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def load_yaml(text: str) -> Any:
    """`yaml.safe_load`, bounded: YamlLimitError for text over MAX_YAML_CHARS, nesting over
    MAX_YAML_DEPTH, or aliases that expand past MAX_YAML_VALUES or refer to themselves."""
    loader = _BoundedLoader(_bounded_text(text))
    try:
        root = _checked_root(loader)
        return None if root is None else loader.construct_document(root)
    finally:
        loader.dispose()


def compose_yaml(text: str) -> yaml.Node | None:
    """The node tree of `text` (for its lines), with the bounds of `load_yaml`."""
    loader = _BoundedLoader(_bounded_text(text))
    try:
        return _checked_root(loader)
    finally:
        loader.dispose()


def _bounded_text(text: str) -> str:
    if len(text) > MAX_YAML_CHARS:
        raise YamlLimitError(f"{len(text)} characters, over the {MAX_YAML_CHARS} a file may have")
    return text


def _checked_root(loader: _BoundedLoader) -> yaml.Node | None:
    root: yaml.Node | None = loader.get_single_node()
    if root is not None:
        _check_expansion(root)
    return root


def _check_expansion(root: yaml.Node) -> None:
    """Each node's size and depth with its aliases expanded, depth first without recursion;
    a shared node is measured once, so this is linear in the text."""
    measured: dict[int, tuple[int, int]] = {}  # id → (values, depth)
    open_ = {id(root)}  # the nodes on the current path: an alias to one of them is a cycle
    stack = [(root, iter(_children(root)))]
    while stack:
        node, children = stack[-1]
        child = next(children, None)
        if child is None:
            stack.pop()
            open_.discard(id(node))
            below = [measured[id(c)] for c in _children(node)]
            size = 1 + sum(n for n, _ in below)
            depth = 1 + max((d for _, d in below), default=0)
            expanded = "once aliases are expanded"
            if size > MAX_YAML_VALUES:
                raise _limit(node, f"more than {MAX_YAML_VALUES} values {expanded}")
            if depth > MAX_YAML_DEPTH:
                raise _limit(node, f"nested more than {MAX_YAML_DEPTH} levels deep {expanded}")
            measured[id(node)] = size, depth
        elif id(child) in open_:
            raise _limit(node, "an alias refers to a node that contains it")
        elif id(child) not in measured:
            open_.add(id(child))
            stack.append((child, iter(_children(child))))


def _limit(node: yaml.Node, problem: str) -> YamlLimitError:
    return YamlLimitError(problem, node.start_mark.line + 1)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []
