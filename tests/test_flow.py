"""Flow files: the bundled hotline flow, validation errors naming file/node/field, reloads."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from ivr.dialog import FlowError, FlowStore, load_flow
from ivr.dialog.schema import AnswerNode, MenuNode, QuestionNode

GRAMMARS = Path(__file__).resolve().parent.parent / "grammars"

GOOD = """\
name: tiny
start: main_menu
escalation: agent_handoff
globals:
  agent: {phrases: [agent, operator], dtmf: "0", goto: agent_handoff}
  repeat: {phrases: [repeat], action: repeat}
nodes:
  main_menu:
    kind: menu
    prompt: "Say balance or press 1."
    choices:
      balance: {phrases: [balance], dtmf: "1", goto: balance}
  balance:
    kind: answer
    fetch: {source: demo, item: balance}
    say: "Your balance is {balance}."
    next: main_menu
  agent_handoff:
    kind: handoff
    prompt: "Passing you to a person."
"""


def write(tmp_path: Path, text: str, name: str = "flow.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def broken(tmp_path: Path, text: str) -> FlowError:
    path = write(tmp_path, text)
    with pytest.raises(FlowError) as info:
        load_flow(path, GRAMMARS)
    for error in info.value.errors:
        assert error.startswith(f"{path}: "), error
    return info.value


def test_bundled_flow_loads() -> None:
    flow = load_flow(GRAMMARS / "hotline.yaml")
    assert flow.name == "hotline" and re.fullmatch(r"[0-9a-f]{10}", flow.version)
    assert flow.spec.start == "greeting" and flow.spec.escalation == "agent_handoff"
    menu = flow.nodes["main_menu"]
    assert isinstance(menu, MenuNode) and menu.faq
    keys = {cid: c.dtmf for cid, c in menu.choices.items()}
    assert keys == {"balance": "1", "data_usage": "2", "bill": "3", "fault": "4"}
    assert flow.global_dtmf == {"0": "agent"}
    assert {"roaming", "opening_hours", "plan_change"} <= set(flow.spec.faq)
    assert all(len(f.questions) >= 3 for f in flow.spec.faq.values())
    # YAML merge keys: the account question is shared, only `next` differs.
    nexts = {n: flow.nodes[n].next for n in ("ask_account_usage", "ask_account_bill")}  # type: ignore[union-attr]
    assert nexts == {"ask_account_usage": "data_usage", "ask_account_bill": "bill"}
    anything_else = flow.nodes["anything_else"]
    assert isinstance(anything_else, MenuNode) and {"balance", "yes", "no"} <= set(
        anything_else.choices
    )
    balance = flow.nodes["balance"]
    assert isinstance(balance, AnswerNode) and balance.fetch is not None
    assert balance.fetch.source == "demo" and balance.fetch.missing == "ask_account_balance"
    ask = flow.nodes["ask_account_balance"]
    assert isinstance(ask, QuestionNode) and ask.type == "digits" and ask.terminator == "#"


def test_version_is_a_hash_of_the_content(tmp_path: Path) -> None:
    a = load_flow(write(tmp_path, GOOD, "a.yaml"), GRAMMARS)
    b = load_flow(write(tmp_path, GOOD, "b.yaml"), GRAMMARS)
    c = load_flow(write(tmp_path, GOOD + "# edited\n", "c.yaml"), GRAMMARS)
    assert a.version == b.version != c.version


def test_unknown_goto_names_file_node_and_field(tmp_path: Path) -> None:
    err = broken(tmp_path, GOOD.replace("goto: balance}", "goto: balace}"))
    assert err.errors == [
        f"{tmp_path / 'flow.yaml'}: node 'main_menu': choices.balance.goto: unknown node 'balace'"
    ]


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("start: main_menu", "start: menu", "start: unknown node 'menu'"),
        ("escalation: agent_handoff", "escalation: nobody", "escalation: unknown node 'nobody'"),
        ("    next: main_menu", "    next: nowhere", "node 'balance': next: unknown node"),
        ("goto: agent_handoff}", "goto: agent}", "globals.agent.goto: unknown node 'agent'"),
    ],
)
def test_unknown_node_references(tmp_path: Path, old: str, new: str, message: str) -> None:
    assert message in str(broken(tmp_path, GOOD.replace(old, new)))


def test_duplicate_dtmf_with_a_global(tmp_path: Path) -> None:
    err = broken(tmp_path, GOOD.replace('dtmf: "1", goto: balance', 'dtmf: "0", goto: balance'))
    assert (
        "node 'main_menu': choices.balance.dtmf: key '0' is already used by globals.agent"
        in str(err)
    )


def test_duplicate_dtmf_between_choices(tmp_path: Path) -> None:
    text = GOOD.replace(
        '      balance: {phrases: [balance], dtmf: "1", goto: balance}',
        '      balance: {phrases: [balance], dtmf: "1", goto: balance}\n'
        "      bill: {phrases: [bill], dtmf: 1, goto: balance}",
    )
    err = broken(tmp_path, text)
    assert "node 'main_menu': choices.bill.dtmf: key '1' is already used by choices.balance" in str(
        err
    )


def test_bad_yaml(tmp_path: Path) -> None:
    err = broken(tmp_path, GOOD + "  oops: [unclosed\n")
    assert "not valid YAML" in str(err)
    assert "expected a mapping" in str(broken(tmp_path, "- just\n- a list\n"))


def test_missing_prompt(tmp_path: Path) -> None:
    err = broken(tmp_path, GOOD.replace('    prompt: "Say balance or press 1."\n', ""))
    assert "node 'main_menu': prompt: Field required" in str(err)


def test_unknown_node_kind(tmp_path: Path) -> None:
    err = broken(tmp_path, GOOD.replace("kind: handoff", "kind: page"))
    assert "node 'agent_handoff': kind: unknown node kind 'page'" in str(err)
    assert "menu, question, answer, branch, callback, transfer, handoff, hangup" in str(err)


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ('prompt: "Say', 'promt: "Say', "node 'main_menu': promt: Extra inputs are not permitted"),
        ("{balance}.", "{balanse}.", "node 'balance': say: unknown placeholder {balanse}"),
        ('    say: "Your balance is {balance}."\n', "", "node 'balance': say: required"),
        ("source: demo", "source: ftp", "node 'balance': fetch.source: Input should be"),
        ("source: demo", "source: http", "node 'balance': fetch.url: required"),
        ("phrases: [balance]", "phrases: [operator]", "already belongs to intent"),
        ("kind: menu", "kind: menu\n    faq: true", "node 'main_menu': faq: the flow has no"),
        ("action: repeat}", "action: repeat, goto: main_menu}", "globals.repeat.goto: not"),
    ],
)
def test_other_validation_errors(tmp_path: Path, old: str, new: str, message: str) -> None:
    assert old in GOOD
    assert message in str(broken(tmp_path, GOOD.replace(old, new)))


def test_question_needs_next_or_both_branches(tmp_path: Path) -> None:
    data = yaml.safe_load(GOOD)
    data["nodes"]["ask"] = {
        "kind": "question", "type": "yesno", "var": "ok", "prompt": "OK?",
        "branches": {"yes": "main_menu", "maybe": "main_menu"},
    }  # fmt: skip
    err = str(broken(tmp_path, yaml.safe_dump(data)))
    assert "node 'ask': branches.maybe: a yesno question only answers" in err
    assert "node 'ask': next: required" in err


def test_answer_loop_is_rejected(tmp_path: Path) -> None:
    data = yaml.safe_load(GOOD)
    data["nodes"]["a"] = {"kind": "answer", "prompt": "A.", "next": "b"}
    data["nodes"]["b"] = {"kind": "answer", "prompt": "B.", "next": "a"}
    assert "node 'a': next: answer nodes loop" in str(broken(tmp_path, yaml.safe_dump(data)))


def test_yaml_booleans_are_read_as_yes_no(tmp_path: Path) -> None:
    data = yaml.safe_load(GOOD)
    data["nodes"]["ask"] = {
        "kind": "question", "type": "yesno", "var": "ok", "prompt": "OK?",
        "branches": {True: "main_menu", False: "agent_handoff"},
    }  # fmt: skip
    flow = load_flow(write(tmp_path, yaml.safe_dump(data)), GRAMMARS)
    assert flow.nodes["ask"].branches == {"yes": "main_menu", "no": "agent_handoff"}  # type: ignore[union-attr]


def test_reload_keeps_previous_good_version(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    store = FlowStore(path, GRAMMARS)
    good = store.flow
    path.write_text(GOOD.replace("goto: balance}", "goto: balace}"), encoding="utf-8")
    errors = store.reload()
    assert errors and "unknown node 'balace'" in errors[0]
    assert store.flow is good and store.errors == errors
    path.write_text("nodes: [\n", encoding="utf-8")
    assert "not valid YAML" in store.reload()[0] and store.flow is good
    path.write_text(GOOD.replace("Say balance", "Please say balance"), encoding="utf-8")
    assert store.reload() == [] and store.errors == []
    assert store.flow.version != good.version


def test_first_load_must_succeed(tmp_path: Path) -> None:
    with pytest.raises(FlowError, match="cannot read"):
        FlowStore(tmp_path / "missing.yaml", GRAMMARS)
