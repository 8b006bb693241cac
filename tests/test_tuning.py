"""Grammar tuning (ivr.tuning): every kind of problem at its line, the node as the dialog hears
it, and evaluation metrics computed exactly on a small text set.

The vocabulary checks use the real built-in engine (its dictionary decides which words it can
say); the flows are small files written for each test.
"""

from __future__ import annotations

import time
from datetime import date
from pathlib import Path

import pytest

from ivr.asr.pocketsphinx_engine import PocketsphinxEngine
from ivr.dialog import DialogEngine, Listen, Recognized, Start, Turn, load_flow
from ivr.tuning.check import FileReport, check_file, check_text, yaml_files
from ivr.tuning.evaluate import NONE, Report, SetError, read_set, run
from ivr.tuning.probe import TargetError, first_listening, judge, node_target, resolve
from ivr.tuning.problems import MAX_NODES, Problem

GRAMMARS = Path(__file__).resolve().parent.parent / "grammars"
UNSAYABLE = "zorblaxian"  # not in the built-in engine's dictionary

TINY = """\
name: tiny
start: main_menu
escalation: agent_handoff
globals:
  agent:
    phrases:
      - agent
      - operator
    dtmf: "0"
    goto: agent_handoff
nodes:
  main_menu:
    kind: menu
    prompt: "Say balance or press 1."
    choices:
      balance:
        phrases: [balance, check my balance]
        dtmf: "1"
        goto: balance
  balance:
    kind: answer
    fetch: {source: demo, item: balance,
            missing: agent_handoff}
    say: "Your balance is {balance}."
    next: main_menu
  agent_handoff:
    kind: handoff
    prompt: "Passing you to a person."
"""


@pytest.fixture(scope="module")
def engine() -> PocketsphinxEngine:
    return PocketsphinxEngine()


def line_of(text: str, fragment: str) -> int:
    """The 1-based line of the one line of `text` that holds `fragment`."""
    found = [i for i, line in enumerate(text.splitlines(), 1) if fragment in line]
    assert len(found) == 1, (fragment, found)
    return found[0]


def check(tmp_path: Path, text: str, engine: PocketsphinxEngine | None = None) -> FileReport:
    path = tmp_path / "flow.yaml"
    path.write_text(text, encoding="utf-8")
    return check_file(path, engine, GRAMMARS)


def only(report: FileReport) -> Problem:
    assert len(report.problems) == 1, report.lines()
    return report.problems[0]


def edit(old: str, new: str, text: str = TINY) -> str:
    assert text.count(old) == 1, old
    return text.replace(old, new)


def test_tiny_flow_is_ok(tmp_path: Path, engine: PocketsphinxEngine) -> None:
    report = check(tmp_path, TINY, engine)
    assert report.ok and report.kind == "flow"
    assert report.lines() == [
        f"{tmp_path / 'flow.yaml'}: OK (flow 'tiny': 3 nodes, 1 listening, 1 global and 0 FAQ "
        "intents, 4 phrases; words checked with pocketsphinx)"
    ]


def test_schema_error_at_its_line(tmp_path: Path) -> None:
    text = edit('    prompt: "Say', '    max_no_input: 0\n    prompt: "Say')
    p = only(check(tmp_path, text))
    assert p.line == line_of(text, "max_no_input: 0")
    assert p.where == "node 'main_menu': max_no_input"
    assert p.message == "Input should be greater than or equal to 1"
    assert str(p) == f"{tmp_path / 'flow.yaml'}:{p.line}: {p.where}: {p.message}"


def test_unknown_field_at_its_line(tmp_path: Path) -> None:
    text = edit('    prompt: "Say', '    promt: "Say')
    problems = check(tmp_path, text).problems
    extra = [p for p in problems if p.where == "node 'main_menu': promt"]
    assert [p.line for p in extra] == [line_of(text, "promt:")]
    missing = [p for p in problems if p.where == "node 'main_menu': prompt"]
    # a missing field is reported at the closest place that exists: the node
    assert [p.line for p in missing] == [line_of(text, "  main_menu:")]


def test_unknown_node_at_its_line(tmp_path: Path) -> None:
    text = edit("        goto: balance", "        goto: balace")
    p = only(check(tmp_path, text))
    assert (p.line, p.where) == (
        line_of(text, "goto: balace"),
        "node 'main_menu': choices.balance.goto",
    )
    assert p.message == "unknown node 'balace'"


def test_unknown_node_inside_a_flow_mapping_spanning_lines(tmp_path: Path) -> None:
    text = edit("missing: agent_handoff}", "missing: ask_acount}")
    p = only(check(tmp_path, text))
    assert p.line == line_of(text, "missing: ask_acount")
    assert (p.where, p.message) == ("node 'balance': fetch.missing", "unknown node 'ask_acount'")


def test_unknown_placeholder_at_its_line(tmp_path: Path) -> None:
    text = edit("{balance}.", "{balanse}.")
    p = only(check(tmp_path, text))
    assert (p.line, p.where) == (line_of(text, "{balanse}"), "node 'balance': say")
    assert p.message.startswith("unknown placeholder {balanse} (known: ")


def test_bad_yaml_at_the_mark(tmp_path: Path) -> None:
    text = edit("    next: main_menu", "    next: main_menu: again")
    report = check(tmp_path, text)
    p = only(report)
    assert report.kind is None
    assert p.line == line_of(text, "next: main_menu: again")
    assert p.message == "not valid YAML: mapping values are not allowed here"


def test_phrase_clash_in_the_compiled_grammar_at_the_phrase(tmp_path: Path) -> None:
    text = edit("[balance, check my balance]", "[balance, operator]")
    p = only(check(tmp_path, text))
    # the menu's own phrases come first: the global's phrase is the one that clashes
    assert p.line == line_of(text, "- operator")
    assert p.message == (
        "node 'main_menu': phrases of intent agent: phrase 'operator' already belongs to "
        "intent 'balance'"
    )


def test_word_without_pronunciation_at_its_phrase(
    tmp_path: Path, engine: PocketsphinxEngine
) -> None:
    text = edit("      - operator", f"      - talk to {UNSAYABLE}")
    p = only(check(tmp_path, text, engine))
    assert (p.line, p.where) == (line_of(text, UNSAYABLE), "globals.agent.phrases[1]")
    assert p.message.startswith(
        f"the built-in English engine has no pronunciation for {UNSAYABLE!r}"
    )
    unchecked = check(tmp_path, text, None)  # --no-asr
    assert unchecked.ok and unchecked.summary.endswith("words not checked")


def test_words_are_checked_even_when_the_flow_has_other_problems(
    tmp_path: Path, engine: PocketsphinxEngine
) -> None:
    text = edit("[balance, check my balance]", f"[balance, {UNSAYABLE} balance]")
    text = edit("        goto: balance", "        goto: balace", text)
    problems = check(tmp_path, text, engine).problems
    assert [(p.line, p.where) for p in problems] == [
        (line_of(text, UNSAYABLE), "node 'main_menu': choices.balance.phrases[1]"),
        (line_of(text, "goto: balace"), "node 'main_menu': choices.balance.goto"),
    ]  # in file order


def test_merged_choices_point_at_the_anchor_and_own_keys_at_themselves(tmp_path: Path) -> None:
    text = edit(
        "  balance:\n    kind: answer",
        "  again:\n"
        "    kind: menu\n"
        '    prompt: "Anything else?"\n'
        "    choices:\n"
        "      <<: *topics\n"
        "      done: {phrases: [done], goto: nowhere}\n"
        "  balance:\n    kind: answer",
    )
    text = edit("    choices:\n      balance:", "    choices: &topics\n      balance:", text)
    text = edit("        goto: balance", "        goto: balace", text)
    lines = {(p.where, p.line) for p in check(tmp_path, text).problems}
    anchor = line_of(text, "goto: balace")
    assert lines == {
        ("node 'main_menu': choices.balance.goto", anchor),
        ("node 'again': choices.balance.goto", anchor),  # written once, under the anchor
        ("node 'again': choices.done.goto", line_of(text, "goto: nowhere")),
    }


def test_duplicate_keys_are_reported(tmp_path: Path) -> None:
    text = edit("        goto: balance", "        goto: balance\n        goto: main_menu")
    p = only(check(tmp_path, text))
    first = line_of(text, "goto: balance")
    assert p.line == line_of(text, "goto: main_menu")
    assert p.where == "node 'main_menu': choices.balance"
    assert p.message == f"duplicate key 'goto' (also on line {first}): only the last one counts"


def test_grammar_file_errors_at_their_lines(tmp_path: Path, engine: PocketsphinxEngine) -> None:
    good = "name: colors\nintents:\n  red: [red, crimson]\n  blue:\n    - blue\n    - navy\n"
    path = tmp_path / "colors.yaml"
    unsayable = f"the built-in English engine has no pronunciation for {UNSAYABLE!r}"
    cases = [  # (old, new, text on the problem's line, message)
        ("    - navy\n", "    - navy\n    - crimson\n", "- crimson",
         "intents.blue: phrase 'crimson' already belongs to intent 'red'"),
        ("intents:", "threshold: 2\nintents:", "threshold",
         "threshold: must be a number between 0 and 1"),
        ("  red: [red, crimson]", "  red: {a: 1}", "red: {a: 1}",
         "intents.red: must be a list of phrases"),
        ("    - navy", f"    - {UNSAYABLE}", UNSAYABLE, unsayable),
    ]  # fmt: skip
    for old, new, at, message in cases:
        text = edit(old, new, good)
        path.write_text(text, encoding="utf-8")
        report = check_file(path, engine)
        assert report.kind == "grammar"
        p = only(report)
        assert p.line == line_of(text, at), (p, text)
        assert p.message.startswith(message), p
    path.write_text(good, encoding="utf-8")
    assert check_file(path, engine).lines() == [
        f"{path}: OK (grammar 'colors': 2 intents, 4 phrases; words checked with pocketsphinx)"
    ]


def test_alias_bomb_is_refused_before_validation(tmp_path: Path) -> None:
    levels = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    levels += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    started = time.monotonic()
    p = only(check(tmp_path, "\n".join(levels) + "\n"))
    assert time.monotonic() - started < 5
    assert p.message == f"not valid YAML: more than {MAX_NODES} values once aliases are expanded"


def test_bundled_grammar_folder_is_clean(engine: PocketsphinxEngine) -> None:
    reports = [check_file(path, engine) for path in yaml_files([GRAMMARS])]
    assert [(Path(r.file).name, r.kind, r.ok) for r in reports] == [
        ("digits.yaml", "grammar", True),
        ("hotline.yaml", "flow", True),
        ("yesno.yaml", "grammar", True),
    ]


def test_check_text_names_the_file_it_is_given() -> None:
    report = check_text("nodes: [", "upload.yaml", None, GRAMMARS)
    assert [str(p) for p in report.problems] == [
        "upload.yaml:1: not valid YAML: while parsing a flow node; expected the node content, "
        "but found '<stream end>'"
    ]


# --- the node as the dialog hears it ----------------------------------------------------------


def test_nodes_listen_as_the_dialog_engine_listens() -> None:
    """The Listen the real dialog engine emits at the main menu and at a yes/no question."""
    flow = load_flow(GRAMMARS / "hotline.yaml")
    dialog = DialogEngine(flow, today=lambda: date(2030, 1, 7))
    state, actions = dialog.start(Start(caller="+15551230001"))
    assert first_listening(flow) == state.node == "main_menu"
    listen = next(a for a in actions if isinstance(a, Listen))
    menu = node_target(flow, None)
    assert (listen.grammar, listen.hint) == (menu.listen, menu.hint)
    assert menu.listen is None and menu.hint is flow.hint("main_menu")  # FAQ menu: free speech

    actions = dialog.handle(state, Recognized("report a fault", 1.0))
    listen = next(a for a in actions if isinstance(a, Listen))
    fault = node_target(flow, "fault")
    assert state.node == "fault"
    assert (
        (listen.grammar, listen.hint)
        == (fault.listen, fault.hint)
        == (flow.grammars["fault"], None)
    )


@pytest.mark.parametrize(
    "text",
    ["check my balance", "option two", "my bill", "no signal", "operator", "roaming charges",
     "when are you open", "start over", "the weather in paris", "banana"],
)  # fmt: skip
def test_judge_agrees_with_the_dialog(text: str) -> None:
    flow = load_flow(GRAMMARS / "hotline.yaml")
    dialog = DialogEngine(flow)
    state, _ = dialog.start(Start(caller="+15551230001"))
    turn = next(a for a in dialog.handle(state, Recognized(text, 1.0)) if isinstance(a, Turn))
    assert judge(node_target(flow, "main_menu"), text).intent == turn.intent


def test_judge_explains() -> None:
    flow = load_flow(GRAMMARS / "hotline.yaml")
    menu = node_target(flow, None)
    v = judge(menu, "check my balance")
    assert (v.intent, v.score, v.phrase, v.reason) == (
        "balance",
        1.0,
        "check my balance",
        "closest phrase 'check my balance'",
    )
    assert v.runner_up is not None and v.runner_up[0] != "balance" and v.runner_up[1] < 0.8
    v = judge(menu, "when are you open")
    assert (v.intent, v.reason) == ("opening_hours", "FAQ: closest phrase 'when are you open'")
    v = judge(menu, "the weather in paris")
    assert (
        v.intent is None
        and v.reason.startswith("menu: best phrase ")
        and "; FAQ: best phrase " in v.reason
    )
    v = judge(menu, "check my balance", confidence=0.1)
    assert v.intent is None and "confidence 0.10 below 0.25" in v.reason


def test_resolve_names_paths_and_nodes(tmp_path: Path) -> None:
    digits = resolve("digits", None, GRAMMARS)
    assert (digits.name, digits.listen) == ("digits", digits.grammar)
    assert judge(digits, "four one two").intent == "412"
    # a digit-string grammar hears as number questions do; others after the server's silence
    account = node_target(load_flow(GRAMMARS / "hotline.yaml"), "ask_account_balance")
    assert digits.end_silence_ms == account.end_silence_ms == 1300
    assert resolve("yesno", None, GRAMMARS).end_silence_ms is None
    by_path = resolve(str(GRAMMARS / "hotline.yaml"), "ask_account_bill", tmp_path)
    assert (
        by_path.node == "ask_account_bill" and judge(by_path, "one two three four").intent == "1234"
    )
    with pytest.raises(TargetError, match="no such node"):
        resolve("hotline", "main_men", GRAMMARS)
    with pytest.raises(TargetError, match="this answer node has no grammar"):
        resolve("hotline", "greeting", GRAMMARS)
    with pytest.raises(TargetError, match=r"known in .*: digits, hotline, yesno"):
        resolve("hotlin", None, GRAMMARS)
    with pytest.raises(TargetError, match="--node is for flows"):
        resolve("digits", "main_menu", GRAMMARS)


# --- evaluation -------------------------------------------------------------------------------

COLORS = "name: colors\nintents:\n  balance: [balance, check my balance]\n  bill: [bill, my bill]\n"
SET = """\
input,expected
check my balance,balance
balance,balance
my bill,bill
# a comment line, skipped
balance,bill
zzzz qqqq,none
my bill,
qqqq zzzz,balance
"""


async def test_eval_metrics_are_exact(tmp_path: Path) -> None:
    (tmp_path / "colors.yaml").write_text(COLORS)
    (tmp_path / "set.csv").write_text(SET)
    target = resolve(str(tmp_path / "colors.yaml"), None, GRAMMARS)
    rows = read_set(tmp_path / "set.csv")
    assert [(r.line, r.expected, r.audio) for r in rows][3:6] == [
        (6, "bill", None),
        (7, None, None),
        (8, None, None),
    ]
    report = Report(target, await run(target, rows, None, progress=False))
    assert report.correct == 4 and report.accuracy == pytest.approx(4 / 7)
    assert report.labels == ["balance", "bill", NONE]
    stats = {label: (s.precision, s.recall, s.f1, s.support) for label, s in report.stats.items()}
    assert stats == {
        "balance": pytest.approx((2 / 3, 2 / 3, 2 / 3, 3)),
        "bill": pytest.approx((1 / 2, 1 / 2, 1 / 2, 2)),
        NONE: pytest.approx((1 / 2, 1 / 2, 1 / 2, 2)),
    }
    assert report.confusion == [[2, 0, 1], [1, 1, 0], [0, 1, 1]]
    # wrong intents first (most confident first), then the rejection
    assert [(o.row.line, o.expected, o.got) for o in report.misses()] == [
        (6, "bill", "balance"), (8, NONE, "bill"), (9, "balance", NONE)
    ]  # fmt: skip
    doc = report.json()
    assert (doc["rows"], doc["correct"], doc["accuracy"]) == (7, 4, 0.5714)
    assert doc["confusion"] == {"labels": ["balance", "bill", "none"], "matrix": report.confusion}
    assert doc["labels"]["bill"] == {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2}
    text = report.text()
    assert "accuracy: 0.571 (4/7)" in text
    assert "  balance  0.667      0.667   0.667  3" in text.splitlines()
    assert "worst misses (3 of 3):" in text


def test_unreadable_sets(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    for content, message in [
        ("text,label\nhello,none\n", "the first row must name the columns input,expected"),
        ("input,expected\nmissing.wav,balance\n", f"{bad}:2: no such audio file"),
        ("input,expected\n,balance\n", f"{bad}:2: empty input"),
        ("input,expected\n", "no rows"),
    ]:
        bad.write_text(content)
        with pytest.raises(SetError, match=message):
            read_set(bad)
    with pytest.raises(SetError, match="cannot read"):
        read_set(tmp_path / "nope.csv")
