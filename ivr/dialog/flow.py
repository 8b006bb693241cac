"""Loading a flow file: YAML → pydantic models → cross-checks → compiled grammars.

Every problem is reported as a FlowError whose messages name file, node and field, e.g.
``grammars/bad.yaml: node 'main_menu': choices.balance.goto: unknown node 'balace'``; its
`problems` hold the same as structured FlowProblems (with the place in the document as a path,
for tools that point at the line: ``ivr grammar check``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, assert_never

import yaml
from pydantic import ValidationError

from ivr.dialog.checks import FlowProblem, Loc, flow_problems
from ivr.dialog.nodes import hearing
from ivr.dialog.schema import (
    NODE_KINDS,
    AnswerNode,
    BranchNode,
    CallbackNode,
    FlowSpec,
    HandoffNode,
    HangupNode,
    MenuNode,
    Node,
    QuestionNode,
    TransferNode,
)
from ivr.dialog.values import DATE_PHRASES, RATING_PHRASES, TIME_PHRASES
from ivr.dialog.when import phrases as when_phrases
from ivr.grammar import Grammar, GrammarError, load_grammar

# The bounded YAML reader (now ivr.yamlio, for the ASR layer too) is still importable here.
from ivr.yamlio import MAX_YAML_CHARS as MAX_YAML_CHARS
from ivr.yamlio import MAX_YAML_DEPTH as MAX_YAML_DEPTH
from ivr.yamlio import MAX_YAML_VALUES as MAX_YAML_VALUES
from ivr.yamlio import YamlLimitError as YamlLimitError
from ivr.yamlio import compose_yaml as compose_yaml
from ivr.yamlio import load_yaml as load_yaml

BUNDLED_GRAMMARS = Path(__file__).resolve().parents[2] / "grammars"


class FlowError(ValueError):
    """A flow file that cannot be used; `errors` holds one message per problem, and `problems`
    the same problems structured, when they come from the document's content (parse_flow)."""

    def __init__(self, errors: list[str], problems: list[FlowProblem] | None = None) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors
        self.problems = problems or []


def _flow_error(source: str, problems: list[FlowProblem]) -> FlowError:
    return FlowError([f"{source}: {p}" for p in problems], problems)


@dataclass(frozen=True)
class Flow:
    """A validated flow with its grammars compiled. `version` is a short hash of the file."""

    spec: FlowSpec
    source: str
    version: str
    grammars: dict[str, Grammar]  # per menu/question node: phrases it listens for (+ globals)
    confirm_grammars: dict[bool, Grammar]  # yes/no, with (True) or without the globals
    faq_grammar: Grammar | None
    global_dtmf: dict[str, str]  # key → global intent id

    def hint(self, node: str) -> Grammar | None:
        """For a node that listens to free speech: the phrases callers are likely to say
        there (its own, the globals, the FAQ questions). Recognizers try these first."""
        # Built once per node (a Listen happens every turn); the frozen dataclass only bars
        # assigning fields, and this cache is not one.
        cache: dict[str, Grammar | None] = self.__dict__.setdefault("_hints", {})
        if node not in cache:
            cache[node] = self._hint(node)
        return cache[node]

    def _hint(self, node: str) -> Grammar | None:
        sources = [self.grammars[node]] if node in self.grammars else []
        here = self.spec.nodes.get(node)
        if here is not None and hearing(here).faq and self.faq_grammar is not None:
            sources.append(self.faq_grammar)
        intents: dict[str, list[str]] = {}
        seen: set[str] = set()
        for grammar in sources:  # each phrase once, under its first intent
            for phrase in grammar.phrases:
                if phrase not in seen:
                    seen.add(phrase)
                    intents.setdefault(grammar.intent_of(phrase), []).append(phrase)
        if not intents:
            return None
        # the out-of-scope examples too: the recognizer's n-best rescoring reads them
        negatives = tuple(dict.fromkeys(n for g in sources for n in g.negatives))
        return Grammar(
            name=f"{node}-hint", intents=intents, language=self.spec.language, negatives=negatives
        )

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def sensitive_vars(self) -> frozenset[str]:
        """The variables of the questions marked ``sensitive: true``: records keep them
        masked (`ivr.dialog.sensitive`), wherever the value came from (a lookup too)."""
        return frozenset(
            n.var for n in self.spec.nodes.values() if isinstance(n, QuestionNode) and n.sensitive
        )

    def is_sensitive(self, node: str) -> bool:
        """Whether `node` is a question marked ``sensitive: true``."""
        here = self.spec.nodes.get(node)
        return isinstance(here, QuestionNode) and here.sensitive

    @property
    def nodes(self) -> dict[str, Node]:
        return self.spec.nodes

    def listen_grammars(self) -> list[Grammar]:
        """Every grammar a call of this flow may listen with (menus, questions, yes/no
        confirmations, free-speech hints), each once."""
        found = [
            *self.grammars.values(),
            *self.confirm_grammars.values(),
            *(hint for node in self.nodes if (hint := self.hint(node)) is not None),
        ]
        return list({g.key: g for g in found}.values())

    def title(self, intent: str, node: Node | None = None) -> str:
        """A spoken name for an intent (global, choice of `node`, or FAQ)."""
        if isinstance(node, MenuNode) and intent in node.choices:
            choice = node.choices[intent]
            return choice.title or (choice.phrases[0] if choice.phrases else intent)
        if intent in self.spec.globals:
            g = self.spec.globals[intent]
            return g.title or g.phrases[0]
        if intent in self.spec.faq:
            return self.spec.faq[intent].title or intent.replace("_", " ")
        return intent


def load_flow(path: str | Path, grammar_dir: Path | None = None) -> Flow:
    """Read, validate and compile the flow in `path` (digits/yesno grammars from `grammar_dir`,
    default: the flow's own folder, else the bundled ``grammars/``)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise FlowError([f"{path}: cannot read: {exc}"]) from exc
    return flow_from_bytes(raw, str(path), grammar_dir or flow_grammar_dir(path))


def version_of(raw: bytes) -> str:
    """A flow's version: a short hash of its file's bytes."""
    return hashlib.sha256(raw).hexdigest()[:10]


def flow_from_bytes(raw: bytes, source: str, grammar_dir: Path) -> Flow:
    """The flow a file with these bytes would be (e.g. an upload not yet on disk)."""
    try:
        data = load_yaml(raw.decode("utf-8"))
    except YamlLimitError as exc:
        raise FlowError([f"{source}: {exc}"]) from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise FlowError([f"{source}: not valid YAML: {exc}"]) from exc
    return parse_flow(data, source, version_of(raw), grammar_dir)


def parse_flow(data: Any, source: str, version: str, grammar_dir: Path) -> Flow:
    if not isinstance(data, dict):
        expected = "expected a mapping with 'start', 'escalation' and 'nodes'"
        raise _flow_error(source, [FlowProblem((), expected, "")])
    try:
        spec = FlowSpec.model_validate(data)
    except ValidationError as exc:
        raise _flow_error(source, [_pydantic_problem(err) for err in exc.errors()]) from exc
    problems = flow_problems(spec)
    if problems:
        raise _flow_error(source, problems)
    return _compile(spec, source, version, grammar_dir)


def flow_grammar_dir(path: Path) -> Path:
    """Where the flow in `path` takes the digits and yesno grammars from when no folder is
    configured: its own folder if that has them, else the bundled ``grammars/``."""
    own = path.resolve().parent
    return own if (own / "digits.yaml").is_file() else BUNDLED_GRAMMARS


def _pydantic_problem(err: Any) -> FlowProblem:
    loc: list[str | int] = list(err["loc"])
    msg = str(err["msg"])
    if err["type"] in ("union_tag_invalid", "union_tag_not_found"):
        loc.append("kind")
        tag = err.get("input", {}).get("kind") if isinstance(err.get("input"), dict) else None
        msg = f"unknown node kind {tag!r}" if tag is not None else "missing"
        msg += f" (expected one of: {', '.join(NODE_KINDS)})"
    if len(loc) >= 2 and loc[0] == "nodes":
        # pydantic puts the node's kind (the union member) into the path: not in the document
        rest = loc[3:] if len(loc) > 2 and loc[2] in NODE_KINDS else loc[2:]
        label = f"node {str(loc[1])!r}: {'.'.join(map(str, rest)) or 'node'}"
        return FlowProblem(("nodes", loc[1], *rest), msg, label)
    return FlowProblem(tuple(loc), msg, ".".join(map(str, loc)) or "flow")


def _compile(spec: FlowSpec, source: str, version: str, grammar_dir: Path) -> Flow:
    try:
        digits = load_grammar("digits", grammar_dir)
        yesno = load_grammar("yesno", grammar_dir)
    except GrammarError as exc:
        raise _flow_error(source, [FlowProblem((), str(exc), "")]) from exc
    c = _Compiler(spec, source, digits, yesno)
    grammars: dict[str, Grammar] = {}
    for name, node in spec.nodes.items():
        grammar = c.node_grammar(name, node)
        if grammar is not None:
            grammars[name] = grammar
    confirm = {
        True: c.build("confirmation", dict(yesno.intents) | c.globals, yesno, yes_no=True),
        False: replace(yesno, yes_no=True),
    }
    faq = None
    if spec.faq:
        questions = {fid: list(f.questions) for fid, f in spec.faq.items()}
        faq = c.build("faq", questions, negatives=c.negatives)
    if c.problems:
        raise _flow_error(source, c.problems)
    dtmf = {g.dtmf: gid for gid, g in spec.globals.items() if g.dtmf}
    return Flow(spec, source, version, grammars, confirm, faq, dtmf)


class _Compiler:
    """Builds a flow's grammars, collecting the problems of the phrases they refuse."""

    def __init__(self, spec: FlowSpec, source: str, digits: Grammar, yesno: Grammar) -> None:
        self.spec, self.source, self.digits, self.yesno = spec, source, digits, yesno
        self.globals = {gid: list(g.phrases) for gid, g in spec.globals.items()}
        self.negatives = tuple(spec.out_of_scope)
        self.problems: list[FlowProblem] = []

    def node_grammar(self, name: str, node: Node) -> Grammar | None:
        """What `node` listens for (with the global intents, where it takes them)."""
        extra = self.globals if node.globals else {}
        match node:
            case MenuNode():
                own = {cid: list(c.phrases) for cid, c in node.choices.items() if c.phrases}
                return self.build(name, own | extra, negatives=self.negatives)
            case QuestionNode():
                return self._question(name, node, extra)
            case AnswerNode() | BranchNode() | CallbackNode() | TransferNode():
                return None  # these do not listen
            case HandoffNode() | HangupNode():
                return None  # they do not listen
            case _:
                assert_never(node)

    def _question(self, name: str, node: QuestionNode, extra: dict[str, list[str]]
                  ) -> Grammar | None:  # fmt: skip
        yesno, digits = self.yesno, self.digits
        if node.type == "yesno":
            return self.build(name, dict(yesno.intents) | extra, yesno, yes_no=True)
        if node.type == "when":
            times = {p: [p] for p in when_phrases()}
            return self.build(name, times | extra, match_by="spelling")
        if node.type == "rating":
            return self.build(name, dict(RATING_PHRASES) | extra)
        if node.type in ("digits", "date", "time", "phone"):
            words = {"date": DATE_PHRASES, "time": TIME_PHRASES}.get(node.type, {})
            return self.build(name, dict(digits.intents) | words | extra, digits)
        return self.build(name, extra) if extra else None  # free text: only the globals

    def build(self, label: str, intents: dict[str, list[str]], base: Grammar | None = None,
              **kwargs: Any) -> Grammar:  # fmt: skip
        """A grammar named `label` (a node, "faq", "confirmation"), its decoding settings from
        `base`; one whose phrases are refused is a problem (and yes/no stands in for it)."""
        if base is not None:
            kwargs |= {
                "sequence": base.sequence,
                "threshold": base.threshold,
                "min_confidence": base.min_confidence,
            }
        spec = self.spec
        where = f"node {label!r}" if label in spec.nodes else label
        try:
            return Grammar(
                name=f"{spec.name}.{label}",
                intents=intents,
                language=spec.language,
                source=f"{self.source}: {where}",
                **kwargs,
            )
        except GrammarError as exc:
            message = str(exc).replace(": intents.", ": phrases of intent ", 1)
            loc = _phrase_loc(spec, label, exc.loc)
            self.problems.append(FlowProblem(loc, message.removeprefix(f"{self.source}: "), ""))
            return self.yesno


def _phrase_loc(spec: FlowSpec, label: str, loc: Loc) -> Loc:
    """The place in the flow document of a phrase that a compiled grammar (`label`: a node,
    "faq" or "confirmation") refused, from its place in the grammar (("intents", id, i))."""
    if len(loc) < 2 or loc[0] != "intents":
        return ("nodes", label) if label in spec.nodes else ()
    intent, rest = str(loc[1]), loc[2:]
    node = spec.nodes.get(label)
    if isinstance(node, MenuNode) and intent in node.choices:
        return ("nodes", label, "choices", intent, "phrases", *rest)
    if intent in spec.globals:
        return ("globals", intent, "phrases", *rest)
    if label == "faq" and intent in spec.faq:
        return ("faq", intent, "questions", *rest)
    # a built-in grammar's intent (digits, yesno, times): the node's `type` brings it in
    return ("nodes", label, "type") if node is not None else ()
