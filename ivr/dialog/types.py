"""Events the dialog engine consumes and actions it asks the call pipeline to perform.

All are frozen dataclasses so a call's history can be logged, compared and replayed.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from ivr.grammar import Grammar
from ivr.transcript import TurnKind

# --- input events ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Start:
    """A call was answered. `params` (e.g. dialled number, language) become call variables."""

    caller: str | None = None
    params: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Recognized:
    """The recognizer's text for one utterance and its confidence in [0, 1]."""

    text: str
    confidence: float = 1.0


@dataclass(frozen=True)
class DtmfEntered:
    """Keypad input collected per the last Listen (may end with the terminator, e.g. ``1234#``)."""

    digits: str


@dataclass(frozen=True)
class NoInput:
    """Neither speech nor keys arrived within the Listen's ``no_input_ms``."""


@dataclass(frozen=True)
class FetchDone:
    """Result of a Fetch or a BookCallback: `values` on success, else `error`
    (``not_found``, ``timeout``, ...)."""

    values: dict[str, str] | None = None
    error: str | None = None


@dataclass(frozen=True)
class TransferDone:
    """How a Transfer ended: `transferred` (the caller is with a person: the call ends), else
    `error` says why not (refused, failed, no answer in time)."""

    transferred: bool
    error: str | None = None


Event = Start | Recognized | DtmfEntered | NoInput | FetchDone | TransferDone

# --- output actions -------------------------------------------------------------------------


@dataclass(frozen=True)
class Say:
    """Speak `text` (TTS), or play the recorded prompt `prompt_key` when one exists. `chat`:
    the prompt's own wording for text channels, if it has one (`Prompt.chat`). `kept` and
    `kept_chat`: the same as records keep them, when they read back a sensitive answer
    (masked, `ivr.dialog.sensitive`); None: as said."""

    text: str
    prompt_key: str | None = None
    barge_in: bool = True
    chat: str | None = None
    kept: str | None = None
    kept_chat: str | None = None

    @property
    def recorded(self) -> str:
        """The text as transcripts, events and logs keep it."""
        return self.text if self.kept is None else self.kept

    def as_kept(self) -> Say:
        """This prompt as records keep it (what a text channel shows and stores)."""
        if self.kept is None and self.kept_chat is None:
            return self
        return replace(self, text=self.recorded, chat=self.kept_chat or self.chat,
                       kept=None, kept_chat=None)  # fmt: skip


@dataclass(frozen=True)
class Listen:
    """Listen for speech and keys. `grammar` None means free speech (no grammar constraint);
    `hint` then lists the phrases likely said, which a recognizer may try first."""

    grammar: Grammar | None
    dtmf_max_digits: int
    dtmf_terminator: str | None
    no_input_ms: int
    hint: Grammar | None = None
    end_silence_ms: int | None = None  # the silence that ends an utterance; None: the server's
    # A question marked sensitive listens: its answer is masked in records, and the call's
    # recording is silent until the answer is taken (`ivr.call.conversation`).
    sensitive: bool = False


@dataclass(frozen=True)
class Fetch:
    """Look up `item` from `source` (``demo`` or ``http``); answer with a FetchDone event."""

    source: str
    item: str
    url: str | None
    params: dict[str, str]
    timeout_ms: int


@dataclass(frozen=True)
class BookCallback:
    """Book an agent callback (one open per number); answer with a FetchDone event whose
    values hold ``callback_id``. `due_at` is ISO 8601 with offset; `intents` the call's
    intent history, `variables` what the caller gave (for the agent)."""

    number: str
    due_at: str
    reason: str
    intents: tuple[str, ...]
    variables: dict[str, str]


@dataclass(frozen=True)
class Transfer:
    """Put the caller through to a person at `target` now (a live, blind transfer); answer
    with a TransferDone event. `reason` and `intents` (the call's intent history) go with it
    for the agent; `timeout_ms` None: the server's."""

    target: str
    reason: str
    intents: tuple[str, ...]
    timeout_ms: int | None = None


@dataclass(frozen=True)
class Handoff:
    """Hand the call to a person (for now: the pipeline ends the call politely)."""

    reason: str


@dataclass(frozen=True)
class Disconnect:
    """End the call after any queued prompts have played."""

    reason: str


@dataclass(frozen=True)
class Survey:
    """The caller answered the flow's post-call survey: keep `score` (1-5) with the call."""

    score: int


@dataclass(frozen=True)
class Turn:
    """Transcript / analytics record of one thing that happened at `node`."""

    node: str
    kind: TurnKind
    text: str
    intent: str | None = None
    confidence: float | None = None


Action = Say | Listen | Fetch | BookCallback | Transfer | Handoff | Disconnect | Survey | Turn
