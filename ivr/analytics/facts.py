"""What analytics need to know about the flow: its agent path, its topics, handoff reasons.

Call records name nodes and intents but not what they are; the served flow says it. The agent
path is where a caller is handed to a person (in the hotline: the callback booking). Its roots
are the flow's `escalation` node and the targets of choices and global intents that carry a
handoff `reason`; it is every node reachable from a root (menus excluded: a menu is the IVR
itself) that a call cannot also reach from `start` without passing a root. So a goodbye shared
by everyone is not on it, and the callback questions are.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from ivr.dialog.flow import Flow
from ivr.dialog.nodes import successors
from ivr.dialog.schema import HangupNode, MenuNode, Node


@dataclass(frozen=True)
class FlowFacts:
    agent_nodes: frozenset[str] = frozenset()
    choices: Mapping[str, frozenset[str]] = field(default_factory=dict)
    """Menu node → its choice ids."""
    anywhere: frozenset[str] = frozenset()
    """Global intents and FAQ ids: topics at any node."""
    reasons: Mapping[str, str] = field(default_factory=dict)
    """Intent → the handoff reason its choice or global intent declares."""
    known: bool = False
    """False for the empty facts (no flow): then every intent counts as a topic."""

    @classmethod
    def from_flow(cls, flow: Flow) -> FlowFacts:
        spec = flow.spec
        roots = {spec.escalation}
        reasons: dict[str, str] = {}
        for gid, g in spec.globals.items():
            if g.reason and g.goto:
                roots.add(g.goto)
                reasons[gid] = g.reason
        choices: dict[str, frozenset[str]] = {}
        for name, node in spec.nodes.items():
            if isinstance(node, MenuNode):
                choices[name] = frozenset(node.choices)
                for cid, choice in node.choices.items():
                    if choice.reason:
                        roots.add(choice.goto)
                        reasons.setdefault(cid, choice.reason)
        nodes = spec.nodes
        agent = _reach(nodes, roots, stop=lambda n: isinstance(nodes[n], MenuNode))
        normal = _reach(nodes, {spec.start}, stop=lambda n: n in roots)
        return cls(
            agent_nodes=frozenset(agent - normal - {n for n in agent if _exit(nodes[n])}),
            choices=choices,
            anywhere=frozenset(spec.globals) | frozenset(spec.faq),
            reasons=reasons,
            known=True,
        )

    def is_topic(self, node: str | None, intent: str) -> bool:
        """Whether `intent` at `node` is something the caller asked for (a menu choice, a
        global intent or an FAQ) rather than an answer to a question (digits, yes...)."""
        if not self.known:
            return True
        return intent in self.anywhere or intent in self.choices.get(node or "", frozenset())


def _exit(node: Node) -> bool:
    # A hangup ends calls of every kind; a call that reached one on the agent path passed
    # through the path's other nodes first.
    return isinstance(node, HangupNode)


def _edges(node: Node) -> Iterator[str | None]:
    """The nodes `node` itself leads to (not the global intents, which lead anywhere), but not
    by a choice that hands the caller to a person: that one leads to a root."""
    return (edge.to for edge in successors(node) if not edge.reason)


def _reach(
    nodes: Mapping[str, Node], roots: Iterable[str], stop: Callable[[str], bool]
) -> set[str]:
    """Nodes reachable from `roots` by node edges, not entering (nor passing) `stop` nodes
    (a root is never stopped)."""
    seen: set[str] = set()
    todo = [r for r in roots if r in nodes]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for nxt in _edges(nodes[name]):
            if nxt is not None and nxt in nodes and nxt not in seen and not stop(nxt):
                todo.append(nxt)
    return seen
