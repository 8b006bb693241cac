"""Live transfer to agents in the bundled hotline flow: the dialog engine alone. Asking for an
agent while agents are in reaches the transfer node: its "please hold", then the Transfer
action; transferred ends the call; a failure says so and books the callback as before. No
agent address, or closed hours: the callback, exactly as without transfers."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from ivr.dialog import (
    DialogEngine,
    Disconnect,
    DtmfEntered,
    FetchDone,
    Listen,
    Say,
    Start,
    Transfer,
    TransferDone,
    load_flow,
)
from ivr.dialog.flow import Flow, flow_from_bytes
from ivr.dialog.when import BusinessHours

HOTLINE = Path(__file__).resolve().parent.parent / "grammars" / "hotline.yaml"
FLOW = load_flow(HOTLINE)
HOURS = BusinessHours.parse("mon-fri 08:00-20:00", "UTC")
TUESDAY = datetime(2026, 11, 24, 10, 17, tzinfo=ZoneInfo("UTC"))
SUNDAY = datetime(2026, 11, 29, 10, 17, tzinfo=ZoneInfo("UTC"))
AGENTS = "sip:agents@pbx.example"


def engine(agents: str | None = AGENTS, now: datetime = TUESDAY, flow: Flow = FLOW
           ) -> DialogEngine:  # fmt: skip
    return DialogEngine(flow, clock=lambda: now, hours=HOURS, agents=agents)


def said(actions: Sequence[object]) -> list[str]:
    return [a.text for a in actions if isinstance(a, Say)]


def test_asking_for_an_agent_while_agents_are_in_transfers_after_the_hold_prompt() -> None:
    e = engine()
    state, _ = e.start(Start(caller="+15551230001"))
    e.handle(state, DtmfEntered("1"))  # balance: an intent in the history first
    e.handle(state, FetchDone({"balance": "5 dollars"}))
    actions = e.handle(state, DtmfEntered("0"))  # "agent", at anything_else
    assert said(actions) == ["Please hold while I put you through to one of our team."]
    hold = next(a for a in actions if isinstance(a, Say))
    assert not hold.barge_in  # heard to its end before the caller is moved
    assert actions[-1] == Transfer(AGENTS, "agent_requested", ("balance", "agent"))
    assert state.node == "transfer_to_agent" and state.waiting == "transfer"
    assert not any(isinstance(a, Listen) for a in actions)
    assert e.handle(state, DtmfEntered("5")) == []  # keys while it transfers: nothing
    assert e.handle(state, TransferDone(True)) == [Disconnect("transferred")]
    assert state.ended and state.end_reason == "transferred"


def test_a_failed_transfer_says_so_and_goes_on_to_the_callback() -> None:
    e = engine()
    state, _ = e.start(Start(caller="+15551230001"))
    e.handle(state, DtmfEntered("0"))
    actions = e.handle(state, TransferDone(False, "the transfer failed: 486 Busy Here"))
    assert said(actions)[:2] == [
        "Sorry, no one from our team is free to take your call right now.",
        "I'll arrange for one of our team to call you back.",
    ]
    assert state.node == "confirm_callback_number" and state.waiting == "input"
    assert state.variables["transfer_error"] == "the transfer failed: 486 Busy Here"
    assert state.variables["handoff_reason"] == "agent_requested"  # the callback's reason


def test_without_an_agent_address_or_after_hours_the_callback_comes_at_once() -> None:
    for e in (engine(agents=None), engine(now=SUNDAY)):
        state, _ = e.start(Start(caller="+15551230001"))
        actions = e.handle(state, DtmfEntered("0"))
        assert not any(isinstance(a, Transfer) for a in actions)
        assert "Please hold" not in " ".join(said(actions))
        assert state.node == "confirm_callback_number"


def test_a_node_names_its_own_target_timeout_and_reason_of_the_way_there() -> None:
    text = HOTLINE.read_text().replace(
        "    failed: callback_intro",
        "    failed: callback_intro\n    target: sip:sales@pbx.example\n    timeout_ms: 5000",
    )
    flow = flow_from_bytes(text.encode(), "hotline-sales", HOTLINE.parent)
    e = engine(agents=None, flow=flow)  # the node's own target needs no server setting
    state, _ = e.start(Start(caller="+15551230001"))
    actions: list[object] = []
    for _ in range(3):  # no option 9 at the main menu, three times: the flow's escalation
        actions = list(e.handle(state, DtmfEntered("9")))
    transfer = next(a for a in actions if isinstance(a, Transfer))
    assert transfer.target == "sip:sales@pbx.example" and transfer.timeout_ms == 5000
    assert transfer.reason == "no_match_max"
    assert e.handle(state, TransferDone(False, "timeout"))  # then the callback path
    assert state.variables["handoff_reason"] == "no_match_max"
