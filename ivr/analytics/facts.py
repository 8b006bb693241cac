"""What analytics need to know about the flow: its agent path, its topics, handoff reasons.

Call records name nodes and intents but not what they are; the served flow says it. The agent
path is where a caller is handed to a person (in the hotline: the callback booking). Its roots
are the flow's `escalation` node and the targets of choices and global intents that carry a
handoff `reason`; it is every node reachable from a root (menus excluded: a menu is the IVR
itself) that a call cannot also reach from `start` without passing a root. So a goodbye shared
by everyone is not on it, and the callback questions are.

Topics are what callers ask for: menu choices, global intents and FAQs, except those that only
steer the dialog (`steers`): an action such as `repeat`, a way to another menu ("main menu";
`yes` at "anything else?", which goes back to the main menu) or one that only ends the call
(`goodbye`; `no`, which leads through the survey question to the goodbye). A choice that
hands the caller to a person (`agent`) is a topic: callers asked for one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from ivr.dialog.flow import Flow
from ivr.dialog.nodes import successors
from ivr.dialog.schema import HangupNode, MenuNode, Node, QuestionNode


@dataclass(frozen=True)
class FlowFacts:
    agent_nodes: frozenset[str] = frozenset()
    choices: Mapping[str, frozenset[str]] = field(default_factory=dict)
    """Menu node → its choice ids that are topics (not those that only steer the dialog)."""
    anywhere: frozenset[str] = frozenset()
    """Global intents (but those that only steer the dialog) and FAQ ids: topics anywhere."""
    reasons: Mapping[str, str] = field(default_factory=dict)
    """Intent → the handoff reason its choice or global intent declares."""
    known: bool = False
    """False for the empty facts (no flow): then every intent counts as a topic."""

    @classmethod
    def from_flow(cls, flow: Flow) -> FlowFacts:
        spec = flow.spec
        nodes = spec.nodes
        roots = {spec.escalation}
        reasons: dict[str, str] = {}
        steering = set()
        for gid, g in spec.globals.items():
            if g.reason and g.goto:
                roots.add(g.goto)
                reasons[gid] = g.reason
            elif g.action != "goto" or steers(nodes, g.goto):
                steering.add(gid)
        choices: dict[str, frozenset[str]] = {}
        for name, node in nodes.items():
            if isinstance(node, MenuNode):
                choices[name] = frozenset(
                    cid for cid, c in node.choices.items() if c.reason or not steers(nodes, c.goto)
                )
                for cid, choice in node.choices.items():
                    if choice.reason:
                        roots.add(choice.goto)
                        reasons.setdefault(cid, choice.reason)
        agent = _reach(nodes, roots, stop=lambda n: isinstance(nodes[n], MenuNode))
        normal = _reach(nodes, {spec.start}, stop=lambda n: n in roots)
        return cls(
            agent_nodes=frozenset(agent - normal - {n for n in agent if _exit(nodes[n])}),
            choices=choices,
            anywhere=frozenset(set(spec.globals) - steering) | frozenset(spec.faq),
            reasons=reasons,
            known=True,
        )

    def is_topic(self, node: str | None, intent: str) -> bool:
        """Whether `intent` at `node` is something the caller asked for (a menu choice, a
        global intent or an FAQ) rather than an answer to a question (digits, yes...)."""
        if not self.known:
            return True
        return intent in self.anywhere or intent in self.choices.get(node or "", frozenset())


def steers(nodes: Mapping[str, Node], goto: str | None) -> bool:
    """Whether going to `goto` only steers the dialog: to a menu (the caller picks a topic
    there), or to the call's end (every node on from there is a question, like the survey,
    or a hangup: nothing is answered, looked up or booked for the caller)."""
    if goto is None or goto not in nodes or isinstance(nodes[goto], MenuNode):
        return True
    on = _reach(nodes, {goto}, stop=lambda n: False, escalations=False)
    return all(isinstance(nodes[n], QuestionNode | HangupNode) for n in on)


def _exit(node: Node) -> bool:
    # A hangup ends calls of every kind; a call that reached one on the agent path passed
    # through the path's other nodes first.
    return isinstance(node, HangupNode)


def _edges(node: Node, escalations: bool = True) -> Iterator[str | None]:
    """The nodes `node` itself leads to (not the global intents, which lead anywhere), but not
    by a choice that hands the caller to a person: that one leads to a root. Without
    `escalations`, not by the node's escalation either (where a caller who fails goes)."""
    return (
        edge.to
        for edge in successors(node)
        if not edge.reason and (escalations or edge.loc != ("escalation",))
    )


def _reach(
    nodes: Mapping[str, Node],
    roots: Iterable[str],
    stop: Callable[[str], bool],
    escalations: bool = True,
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
        for nxt in _edges(nodes[name], escalations):
            if nxt is not None and nxt in nodes and nxt not in seen and not stop(nxt):
                todo.append(nxt)
    return seen
