"""Node kinds: every kind is handled wherever code does something per kind, and the type
checker proves it.

Each per-kind dispatch over a flow's nodes is a `match` that ends in `assert_never(node)` (the
list is in `ivr.dialog.nodes`). mypy, with the project's strict settings, checks those modules
here as if the schema had one more kind that no code handles: it must fail at every such match,
and nowhere else. Then: the kinds' own facts (where each leads) as the flow checks use them.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ivr.dialog.checks import flow_problems
from ivr.dialog.nodes import hearing, successors
from ivr.dialog.schema import NODE_KINDS, FlowSpec, Node

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = ROOT / "ivr" / "dialog" / "schema.py"
UNION = re.compile(
    r"^Node = Annotated\[\n(?P<kinds>.*?),\n    Field\(discriminator", re.MULTILINE | re.DOTALL
)
NEW_KIND = '''
class PageNode(_Node):
    """A kind added to the schema and to no match."""

    kind: Literal["page"]
    number: str


'''


def dispatch_sites() -> set[tuple[str, int]]:
    """Every ``assert_never(node)`` in ivr/: the last case of a match over node kinds."""
    return {
        (path.relative_to(ROOT).as_posix(), number)
        for path in sorted((ROOT / "ivr").rglob("*.py"))
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if "assert_never(node)" in line
    }


def test_a_new_kind_that_a_match_does_not_handle_fails_type_checking(tmp_path: Path) -> None:
    sites = dispatch_sites()
    modules = sorted({file.removesuffix(".py").replace("/", ".") for file, _ in sites})
    # the engine's step, the checks, the grammars, the facts analytics use, the tuning probe
    assert {"ivr.dialog.engine", "ivr.dialog.checks", "ivr.dialog.flow", "ivr.dialog.nodes",
            "ivr.dialog.interpret", "ivr.tuning.probe"} <= set(modules)  # fmt: skip
    text = SCHEMA.read_text(encoding="utf-8")
    union = UNION.search(text)
    assert union is not None, "the Node union is not where this test looks for it"
    shadow = tmp_path / "schema.py"
    shadow.write_text(
        text[: union.start()] + NEW_KIND.lstrip("\n")
        + text[union.start() : union.end("kinds")] + " | PageNode"
        + text[union.end("kinds") :],
        encoding="utf-8",
    )  # fmt: skip
    out = subprocess.run(
        [sys.executable, "-m", "mypy", "--cache-dir", str(tmp_path / "cache"),
         "--follow-imports", "silent", "--shadow-file", str(SCHEMA), str(shadow),
         *[arg for module in modules for arg in ("-m", module)]],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    unhandled = re.compile(
        r'^(ivr/\S+\.py):(\d+): error: Argument 1 to "assert_never" has incompatible type'
        r' "PageNode"',
        re.MULTILINE,
    )
    failed = {(file, int(number)) for file, number in unhandled.findall(out.stdout)}
    assert out.returncode == 1 and failed == sites, out.stdout + out.stderr
    assert out.stdout.count(": error:") == len(sites), out.stdout  # and nothing else


FLOW: dict[str, Any] = {
    "name": "kinds",
    "start": "menu",
    "escalation": "bye",
    "faq": {"hours": {"questions": ["when are you open"], "answer": "Always."}},
    "nodes": {
        "menu": {"kind": "menu", "prompt": "Hi.", "faq": True, "faq_next": "menu",
                 "choices": {"a": {"phrases": ["a"], "goto": "ask"},
                             "b": {"phrases": ["b"], "goto": "agent", "reason": "asked"}}},
        "ask": {"kind": "question", "prompt": "Yes?", "type": "yesno", "var": "ok",
                "branches": {"yes": "look", "no": "which"}},
        "look": {"kind": "answer", "next": "which", "say": "{balance}",
                 "fetch": {"source": "demo", "item": "balance", "missing": "ask",
                           "on_error": "agent"}},
        "which": {"kind": "branch", "var": "ok", "cases": {"yes": "book"}, "present": "menu",
                  "default": "bye"},
        "book": {"kind": "callback", "say": "Booked.", "number": ["caller"], "when": "caller",
                 "next": "bye",
                 "failed": "xfer"},
        "xfer": {"kind": "transfer", "target": "sip:agents@pbx.example", "failed": "agent"},
        "agent": {"kind": "handoff"},
        "bye": {"kind": "hangup", "prompt": "Bye."},
    },
}  # fmt: skip
TARGETS = [  # every field that names a node, as (node, path in it)
    ("menu", ("escalation",)),
    ("menu", ("faq_next",)),
    ("menu", ("choices", "a", "goto")),
    ("ask", ("next",)),
    ("ask", ("branches", "yes")),
    ("look", ("next",)),
    ("look", ("fetch", "missing")),
    ("look", ("fetch", "on_error")),
    ("which", ("cases", "yes")),
    ("which", ("present",)),
    ("which", ("default",)),
    ("book", ("next",)),
    ("book", ("failed",)),
    ("xfer", ("failed",)),
    ("agent", ("escalation",)),
]


def test_the_flow_has_every_kind() -> None:
    kinds = {node["kind"] for node in FLOW["nodes"].values()}
    assert kinds == set(NODE_KINDS) and flow_problems(FlowSpec.model_validate(FLOW)) == []


@pytest.mark.parametrize(("node", "loc"), TARGETS, ids=[".".join((n, *p)) for n, p in TARGETS])
def test_every_field_that_names_a_node_is_checked(node: str, loc: tuple[str, ...]) -> None:
    data = {**FLOW, "nodes": _set(FLOW["nodes"], (node, *loc), "nowhere")}
    problems = flow_problems(FlowSpec.model_validate(data))
    assert [(p.loc, p.message) for p in problems] == [
        (("nodes", node, *loc), "unknown node 'nowhere'")
    ]


def test_successors_and_the_agent_path() -> None:
    spec = FlowSpec.model_validate(FLOW)
    menu: Node = spec.nodes["menu"]
    edges = {edge.loc: (edge.to, edge.reason) for edge in successors(menu)}
    assert edges == {
        ("escalation",): (None, None),
        ("faq_next",): ("menu", None),
        ("choices", "a", "goto"): ("ask", None),
        ("choices", "b", "goto"): ("agent", "asked"),
    }
    assert list(successors(spec.nodes["bye"])) == [(("escalation",), None, None)]


def test_how_each_kind_hears_the_caller() -> None:
    spec = FlowSpec.model_validate(FLOW)
    heard = {name: hearing(node) for name, node in spec.nodes.items()}
    assert heard["menu"].free and heard["menu"].faq  # an FAQ menu: free speech
    assert not (heard["ask"].free or heard["ask"].faq or heard["ask"].number)
    assert all(h == type(h)() for n, h in heard.items() if n not in ("menu", "ask"))


def _set(tree: dict[str, Any], path: tuple[str, ...], value: str) -> dict[str, Any]:
    """A copy of `tree` with `value` at `path` (the dicts on the way copied)."""
    head, *rest = path
    if not rest:
        return {**tree, head: value}
    return {**tree, head: _set(dict(tree[head]), tuple(rest), value)}
