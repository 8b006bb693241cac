"""What every call shares, built once by the app, and the limits each call keeps to."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ivr.asr.runner import AsrRunner
from ivr.call.recorder import StoreWriter
from ivr.call.registry import CallRegistry
from ivr.callbacks import Callbacks
from ivr.callerid import DEFAULT_REGION
from ivr.clock import Clock, system_clock
from ivr.dialog.engine import ALWAYS_OPEN
from ivr.dialog.flow import Flow
from ivr.dialog.store import FlowStore
from ivr.dialog.when import BusinessHours
from ivr.fulfillment import Fulfillment
from ivr.metrics import Metrics
from ivr.store import Store
from ivr.tts import PromptRenderer


@dataclass(frozen=True)
class CallLimits:
    max_call_s: float = 1800.0
    idle_s: float = 10.0  # no message at all from the far end for this long ends the call
    start_s: float = 5.0  # the far end must say who is calling within this
    interdigit_ms: int = 3000
    end_silence_ms: int = 600
    busy_prompt: str = "All our lines are busy. Please call again later. Goodbye."
    too_long_prompt: str = "We have to end the call now. Goodbye."


@dataclass(frozen=True)
class TransferSettings:
    """Live transfers to agents (`ivr.call.transfer`)."""

    agents: str | None = None  # IVR_AGENT_URI: where transfer nodes put callers through
    timeout_s: float = 30.0  # IVR_TRANSFER_TIMEOUT_SECONDS: for an agent to take the call
    api_url: str = ""  # IVR_PUBLIC_URL: the API as agents' desktops reach it (the link)


@dataclass
class CallServices:
    """What every call shares; built once by the app."""

    asr: AsrRunner
    prompts: PromptRenderer
    fulfillment: Fulfillment
    registry: CallRegistry
    flow_store: FlowStore  # the served flow; hot-reloaded (see ivr.flows_watch)
    limits: CallLimits = field(default_factory=CallLimits)
    store: Store | None = None  # call records; None keeps no records
    records: StoreWriter | None = None  # writes every call's records (batched) to `store`
    callbacks: Callbacks | None = None  # agent callbacks; None: booking fails politely
    hours: BusinessHours = ALWAYS_OPEN  # when agents work (callback times, after-hours)
    queues: Mapping[str, BusinessHours] = field(default_factory=dict)  # a node's `queue:`
    clock: Clock = system_clock  # the calendar: business hours, callback times, dates
    region: str = DEFAULT_REGION  # whose national numbers caller IDs are (E.164 from them)
    recordings: Path | None = None  # whole-call WAVs go here; None records none
    data_dir: Path | None = None  # unrecognized utterances' WAVs go to its audio/; None: none
    metrics: Metrics = field(default_factory=Metrics)  # for GET /metrics
    transfers: TransferSettings = field(default_factory=TransferSettings)
    node_id: str = ""  # this server process (IVR_NODE_ID), written on each call record
    shutting_down: bool = False  # set when the server stops: calls cut then say so

    @property
    def flow(self) -> Flow:
        """The version served now. A call reads it once, at its start, and keeps that Flow
        to its end, so a reload never changes a call in progress."""
        return self.flow_store.flow
