"""Dialog stage: flow files (YAML) → validated Flow → pure engine (state + event → actions).

flow = load_flow("grammars/hotline.yaml")
engine = DialogEngine(flow)
state, actions = engine.start(Start(caller="+15551230001"))
actions = engine.handle(state, Recognized("check my balance", 0.9))
"""

from ivr.dialog.demo import DemoProvider, lookup
from ivr.dialog.engine import DialogEngine
from ivr.dialog.flow import Flow, FlowError, load_flow
from ivr.dialog.state import DialogState, Interp, Pending
from ivr.dialog.store import FlowStore
from ivr.dialog.types import (
    Action,
    Disconnect,
    DtmfEntered,
    Event,
    Fetch,
    FetchDone,
    Handoff,
    Listen,
    NoInput,
    Recognized,
    Say,
    Start,
    Survey,
    Transfer,
    TransferDone,
    Turn,
)

__all__ = [
    "Action",
    "DemoProvider",
    "DialogEngine",
    "DialogState",
    "Disconnect",
    "DtmfEntered",
    "Event",
    "Fetch",
    "FetchDone",
    "Flow",
    "FlowError",
    "FlowStore",
    "Handoff",
    "Interp",
    "Listen",
    "NoInput",
    "Pending",
    "Recognized",
    "Say",
    "Start",
    "Survey",
    "Transfer",
    "TransferDone",
    "Turn",
    "load_flow",
    "lookup",
]
