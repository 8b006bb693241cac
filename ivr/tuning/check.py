"""Validating flow and grammar files, every problem with its line (``ivr grammar check``,
``POST /v1/grammar/validate``).

Besides what loading checks (YAML, the schema, the flow's cross-checks, the compiled
grammars), an ASR engine can be asked whether it can say every word the caller may say: the
start-up check of the server (`ivr.app.check_flow_grammars`), here with the phrase that holds
each unknown word.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ValidationError

from ivr.asr.base import Engine
from ivr.chat.text import voice_only
from ivr.dialog.checks import Loc
from ivr.dialog.flow import Flow, FlowError, flow_grammar_dir, parse_flow, version_of
from ivr.dialog.schema import FlowSpec, MenuNode, Prompt
from ivr.dialog.types import Say
from ivr.grammar import Grammar, GrammarError, normalize, parse_grammar
from ivr.tuning.problems import BadDocument, Document, Problem

Kind = Literal["flow", "grammar"]
_PROBE = "word check"  # source name of the one-word grammars that find the unknown words


@dataclass
class FileReport:
    file: str
    kind: Kind | None = None  # None: not even YAML
    problems: list[Problem] = field(default_factory=list)
    summary: str = ""  # what the file holds, e.g. "flow 'hotline': 31 nodes, ..."
    # What works but reads badly somewhere: a prompt that makes no sense in a text channel.
    warnings: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def lines(self) -> list[str]:
        """What `ivr grammar check` prints: each problem, or one OK line; then the warnings."""
        head = [f"{self.file}: OK ({self.summary})"] if self.ok else [str(p) for p in self.problems]
        return head + [f"warning: {w}" for w in self.warnings]


def yaml_files(paths: Iterable[Path]) -> list[Path]:
    """The files to check: folders stand for their ``*.yaml`` files."""
    out: list[Path] = []
    for path in paths:
        out += sorted(path.glob("*.yaml")) if path.is_dir() else [path]
    return out


def check_file(path: Path, engine: Engine | None, grammar_dir: Path | None = None) -> FileReport:
    """Check one file. Flows take digits/yesno from `grammar_dir` (default: as `load_flow`
    does, the file's own folder when it has them, else the bundled grammars)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return FileReport(str(path), None, [Problem(str(path), None, "", f"cannot read: {exc}")])
    return check_text(text, str(path), engine, grammar_dir or flow_grammar_dir(path))


def check_text(text: str, file: str, engine: Engine | None, grammar_dir: Path) -> FileReport:
    """Check a flow or grammar document given as text; `file` names it in the problems."""
    try:
        doc = Document(file, text)
    except BadDocument as exc:
        return FileReport(file, None, [exc.problem])
    data = doc.data
    if isinstance(data, dict) and "intents" in data and "nodes" not in data:
        report = _check_grammar(doc, engine)
    else:  # anything else is reported as the flow it should have been
        version = version_of(text.encode("utf-8"))
        report = _check_flow(doc, version, engine, grammar_dir)
    report.problems[:0] = doc.duplicate_keys()
    report.problems.sort(key=lambda p: (p.line is not None, p.line or 0))  # in file order
    return report


def _check_flow(
    doc: Document, version: str, engine: Engine | None, grammar_dir: Path
) -> FileReport:
    report = FileReport(doc.file, "flow")
    try:
        flow = parse_flow(doc.data, doc.file, version, grammar_dir)
    except FlowError as exc:
        report.problems = [doc.problem(p.loc, p.message, p.where) for p in exc.problems]
        if not exc.problems:  # not from the document's content (cannot happen today)
            report.problems = [Problem(doc.file, None, "", e) for e in exc.errors]
        try:  # the schema held (the cross-checks failed): the words can still be checked
            spec = FlowSpec.model_validate(doc.data)
        except ValidationError:
            return report
        if engine is not None:
            report.problems += _unsayable(doc, engine, list(_flow_phrases(spec)))
        return report
    spec = flow.spec
    if engine is not None:
        report.problems = _unsayable(doc, engine, list(_flow_phrases(spec)), _listening(flow))
    report.warnings = _not_for_text(doc, spec)
    phrases = sum(1 for _ in _flow_phrases(spec))
    report.summary = (
        f"flow {flow.name!r}: {len(spec.nodes)} nodes, {len(flow.grammars)} listening, "
        f"{len(spec.globals)} global and {len(spec.faq)} FAQ intents, {phrases} phrases; "
        + _words_note(engine)
    )
    return report


def _check_grammar(doc: Document, engine: Engine | None) -> FileReport:
    report = FileReport(doc.file, "grammar")
    try:
        grammar = parse_grammar(doc.data, doc.file)
    except GrammarError as exc:
        # the message names the file and the field; the line says where the field is
        message = str(exc).removeprefix(f"{doc.file}: ")
        report.problems = [Problem(doc.file, doc.line(exc.loc), "", message)]
        return report
    if engine is not None:
        phrases: list[tuple[Loc, str]] = [
            (("intents", intent, i), phrase)
            for intent, items in grammar.intents.items()
            for i, phrase in enumerate(items)
        ]
        report.problems = _unsayable(doc, engine, phrases, [("", grammar)])
    report.summary = (
        f"grammar {grammar.name!r}: {len(grammar.intents)} intents, "
        f"{len(grammar.phrases)} phrases; " + _words_note(engine)
    )
    return report


def _words_note(engine: Engine | None) -> str:
    return f"words checked with {engine.name}" if engine is not None else "words not checked"


# --- prompts that make no sense written ---------------------------------------------------------


def _not_for_text(doc: Document, spec: FlowSpec) -> list[Problem]:
    """A warning at each prompt that a chat or SMS would show with words only a call makes
    sense of ("press 2", "please hold"), unless it has a `chat:` wording. No-input prompts
    are left out: a text channel never waits on silence."""
    out: list[Problem] = []
    for loc, prompt in _prompts_in(spec, ()):
        if "no_input" in loc:
            continue
        words = voice_only(Say(prompt.text, chat=prompt.chat))
        if words:
            said = ", ".join(repr(w) for w in words)
            message = f"makes no sense in a chat or SMS ({said}): give it a `chat:` wording"
            out.append(doc.problem(loc, message))
    return out


def _prompts_in(model: BaseModel, loc: Loc) -> Iterator[tuple[Loc, Prompt]]:
    """Every prompt of a flow's model, with its place in the document, defaults included."""
    for name, value in model:
        yield from _prompts_of(value, (*loc, name))


def _prompts_of(value: object, loc: Loc) -> Iterator[tuple[Loc, Prompt]]:
    if isinstance(value, Prompt):
        yield loc, value
    elif isinstance(value, BaseModel):
        yield from _prompts_in(value, loc)
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            yield from _prompts_of(item, (*loc, i))
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _prompts_of(item, (*loc, str(key)))


# --- words the engine cannot say --------------------------------------------------------------


def _listening(flow: Flow) -> list[tuple[str, Grammar]]:
    """Every grammar the flow listens with, by its node ("" for the confirmations and the
    FAQ): what `ivr.app.check_flow_grammars` checks at start-up, and a little more."""
    out: list[tuple[str, Grammar]] = list(flow.grammars.items())
    for node in flow.nodes:
        hint = flow.hint(node)
        if hint is not None:
            out.append((node, hint))
    out += [("", g) for g in flow.confirm_grammars.values()]
    if flow.faq_grammar is not None:
        out.append(("", flow.faq_grammar))
    return out


def _unsayable(
    doc: Document,
    engine: Engine,
    phrases: Sequence[tuple[Loc, str]],
    grammars: Sequence[tuple[str, Grammar]] = (),
) -> list[Problem]:
    """A problem at each phrase with words the engine refuses, in the engine's own words;
    then each of `grammars` (by node) that the engine still refuses, at its node: words the
    file does not hold (a built-in vocabulary), or a reason other than words."""
    words = {w for _, phrase in phrases for w in normalize(phrase).split()}
    verdicts: dict[str, bool] = {}
    if words and _refusal(engine, " ".join(sorted(words))):  # else none is refused
        verdicts = {w: not _refusal(engine, w) for w in words}
    problems: dict[tuple[int | None, str], Problem] = {}
    refused: set[str] = set()
    for loc, phrase in phrases:
        bad = [w for w in normalize(phrase).split() if not verdicts.get(w, True)]
        if bad:
            refused.update(bad)
            problem = doc.problem(loc, _refusal(engine, " ".join(dict.fromkeys(bad))))
            # a phrase shared through an anchor (``<<: *topics``): once, where it is written
            problems.setdefault((problem.line, problem.message), problem)
    seen = set()
    for node, grammar in grammars:
        if grammar.key in seen or grammar.words() & refused:
            continue
        seen.add(grammar.key)
        try:
            engine.create(grammar)
        except GrammarError as exc:
            # the message names the grammar (e.g. "node 'x'") after the file
            at: Loc = ("nodes", node, "type") if node else ()
            problem = doc.problem(at, str(exc).removeprefix(f"{doc.file}: "), "")
            problems.setdefault((problem.line, problem.message), problem)
    return list(problems.values())


def _refusal(engine: Engine, words: str) -> str:
    """The engine's message for a grammar of just these words ("" if it takes them)."""
    try:
        engine.create(Grammar(name="words", intents={"words": [words]}, source=_PROBE))
    except GrammarError as exc:
        return str(exc).removeprefix(f"{_PROBE}: ")
    return ""


def _flow_phrases(spec: FlowSpec) -> Iterator[tuple[Loc, str]]:
    """Every phrase written in the flow, with its place in the document."""
    for gid, g in spec.globals.items():
        for i, phrase in enumerate(g.phrases):
            yield ("globals", gid, "phrases", i), phrase
    for fid, f in spec.faq.items():
        for i, phrase in enumerate(f.questions):
            yield ("faq", fid, "questions", i), phrase
    for name, node in spec.nodes.items():
        if isinstance(node, MenuNode):
            for cid, choice in node.choices.items():
                for i, phrase in enumerate(choice.phrases):
                    yield ("nodes", name, "choices", cid, "phrases", i), phrase
