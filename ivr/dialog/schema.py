"""Pydantic models of a flow file (the YAML ops edit). Cross-checks live in `flow.py`."""

from __future__ import annotations

from typing import Annotated, Literal, get_args

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictBool, field_validator


def _scalar(value: object) -> object:
    """YAML 1.1 reads ``yes``/``no`` as booleans and ``1`` as a number: take them as text."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value) if isinstance(value, int | float) else value


def _keys(value: object) -> object:
    return {_scalar(k): v for k, v in value.items()} if isinstance(value, dict) else value


def _items(value: object) -> object:
    return [_scalar(v) for v in value] if isinstance(value, list) else value


Text = Annotated[str, BeforeValidator(_scalar)]
Phrases = Annotated[list[str], BeforeValidator(_items)]
DtmfKey = Annotated[str, BeforeValidator(_scalar), Field(pattern=r"^[0-9*#]{1,8}$")]
Probability = Annotated[float, Field(ge=0.0, le=1.0)]
QUEUE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Prompt(_Model):
    """TTS text with ``{placeholders}``; `key` names a recorded prompt played instead."""

    text: str = Field(min_length=1)
    key: str | None = None
    # The prompt in text channels (chat, SMS; `ivr.chat`), for one whose spoken wording makes
    # no sense written ("press 1", "key it in and press hash"); None: the text, keypad hints
    # left out.
    chat: str | None = Field(default=None, min_length=1)


def _prompt(value: object) -> object:
    return {"text": value} if isinstance(value, str) else value


def _prompts(value: object) -> object:
    if isinstance(value, str | dict):
        value = [value]
    return [_prompt(v) for v in value] if isinstance(value, list) else value


class _WithPrompts(_Model):
    @field_validator("prompt", "fallback", "say", mode="before", check_fields=False)
    @classmethod
    def _one(cls, value: object) -> object:
        return _prompt(value)

    @field_validator("reprompts", "no_input", "no_match", mode="before", check_fields=False)
    @classmethod
    def _many(cls, value: object) -> object:
        return _prompts(value)


class Choice(_Model):
    """One menu intent: phrases the caller may say, a keypad key, and where it goes."""

    phrases: Phrases = Field(default_factory=list)
    dtmf: DtmfKey | None = None
    goto: str
    title: str | None = None  # read back in "Did you say ...?"; default: first phrase
    reason: str | None = None  # why the caller is handed to a person, if this leads there


class GlobalIntent(_Model):
    """An intent reachable from every node (unless the node sets ``globals: false``)."""

    phrases: Phrases = Field(min_length=1)
    dtmf: DtmfKey | None = None
    action: Literal["goto", "repeat"] = "goto"
    goto: str | None = None
    title: str | None = None
    reason: str | None = None  # e.g. agent_requested: recorded with the callback it leads to


class FaqIntent(_Model):
    questions: Phrases = Field(min_length=1)
    answer: Prompt
    title: str | None = None  # used in "Did you mean A or B?"; default: the id, spaced
    next: str | None = None  # default: the flow's faq_next

    @field_validator("answer", mode="before")
    @classmethod
    def _answer(cls, value: object) -> object:
        return _prompt(value)


class FetchSpec(_Model):
    source: Literal["demo", "http"]
    item: str = Field(min_length=1)
    url: str | None = None
    timeout_ms: int = Field(default=2000, ge=100, le=30000)
    values: list[str] | None = None  # names the fetch provides (placeholders); default [item]
    params: list[str] | None = None  # variables sent; default: all call variables
    missing: str | None = None  # node to go to when the lookup answers "not_found"
    on_error: str | None = None  # after the fallback, go here (reason fulfillment_failed)


class _Node(_WithPrompts):
    prompt: Prompt | None = None
    reprompts: list[Prompt] = Field(default_factory=list)
    no_input: list[Prompt] = Field(default_factory=list)
    no_match: list[Prompt] = Field(default_factory=list)
    max_no_input: int | None = Field(default=None, ge=1)
    max_no_match: int | None = Field(default=None, ge=1)
    no_input_ms: int | None = Field(default=None, ge=500)
    confirm_below: Probability | None = None
    barge_in: bool = True
    globals: bool = True
    escalation: str | None = None  # where this node's no-input/no-match maximum goes
    # The agents' queue the call is for from this node on (IVR_QUEUES; "default": the
    # service's own hours): its hours, holidays and closures set open_now, business_hours
    # and closed_today here, and the callback times offered after. Put it on the node that
    # leads to people (an escalation branch, a transfer, a callback).
    queue: str | None = Field(default=None, pattern=QUEUE_PATTERN)


class MenuNode(_Node):
    kind: Literal["menu"]
    prompt: Prompt
    choices: Annotated[dict[str, Choice], BeforeValidator(_keys)] = Field(min_length=1)
    faq: bool = False
    faq_next: str | None = None


class QuestionNode(_Node):
    kind: Literal["question"]
    prompt: Prompt
    # phone: a number to call back (digits, 7 to 15); when: a callback time in the caller's
    # words or by keypad option, resolved against business hours (value: ISO 8601);
    # rating: 1 to 5, said ("four", "five stars", "excellent") or keyed
    type: Literal["digits", "yesno", "date", "time", "text", "phone", "when", "rating"]
    var: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    survey: bool = False  # rating only: the answer is the call's post-call survey score
    # An account number, a PIN...: what the caller says or keys here (and the variable, read
    # back in prompts) is masked in transcripts, call records, events, webhooks, chat
    # histories and logs (`ivr.dialog.sensitive`), and the call recording is silent while
    # the question listens. The dialog itself uses the real value. YAML true/false only.
    sensitive: StrictBool = False
    next: str | None = None
    branches: Annotated[dict[str, Text], BeforeValidator(_keys)] = Field(
        default_factory=dict
    )  # value → node (yesno: yes/no)
    min_digits: int = Field(default=1, ge=1)
    max_digits: int = Field(default=12, ge=1, le=32)
    terminator: DtmfKey | None = "#"


class AnswerNode(_Node):
    kind: Literal["answer"]
    fetch: FetchSpec | None = None
    say: Prompt | None = None  # spoken after a successful fetch
    fallback: Prompt | None = None  # spoken when the fetch fails; default: flow default
    next: str


class BranchNode(_Node):
    """Go on by a call variable's value: `cases` first, then `present` for any other
    non-empty value, else `default`."""

    kind: Literal["branch"]
    var: str
    cases: Annotated[dict[str, Text], BeforeValidator(_keys)] = Field(default_factory=dict)
    present: str | None = None
    default: str


class CallbackNode(_Node):
    """Book an agent callback to the first set variable of `number` at the time in `when`
    (the ISO value of a `when` question). One open callback per number: a repeat request
    updates it. Then `say` (or `fallback` if it could not be stored) and go to `next`."""

    kind: Literal["callback"]
    number: list[str] = Field(default_factory=lambda: ["callback_number", "caller"])
    when: str = "callback_at"
    say: Prompt
    fallback: Prompt | None = None  # said when the booking could not be stored
    failed: str | None = None  # then go here (default: next)
    next: str


class TransferNode(_Node):
    """Put the caller through to a person now (a live, blind transfer) at `target`, or at the
    server's agent address (IVR_AGENT_URI): a SIP call by a REFER, a call over a media stream
    by the ``call.transfer_requested`` webhook (its provider takes the call away). The
    `prompt` is said to its end first ("Please hold..."); `reason` goes with the transfer
    unless the way here gave one (``agent_requested``, ``no_match_max``...). When the transfer
    fails or no agent answers within `timeout_ms` (default IVR_TRANSFER_TIMEOUT_SECONDS),
    `fallback` is said and the call goes on at `failed` (in the hotline: the callback
    booking). With no address to transfer to, the call goes on at `failed` at once, saying
    nothing here."""

    kind: Literal["transfer"]
    target: str | None = Field(default=None, min_length=1)  # a SIP URI, e.g. sip:sales@pbx
    reason: str = "agent_requested"
    timeout_ms: int | None = Field(default=None, ge=1000, le=600_000)
    fallback: Prompt | None = None  # said when the transfer fails
    failed: str


class HandoffNode(_Node):
    kind: Literal["handoff"]
    reason: str = "caller_request"


class HangupNode(_Node):
    kind: Literal["hangup"]
    reason: str = "caller_goodbye"


Node = Annotated[
    MenuNode
    | QuestionNode
    | AnswerNode
    | BranchNode
    | CallbackNode
    | TransferNode
    | HandoffNode
    | HangupNode,
    Field(discriminator="kind"),
]
"""Every node kind. A new kind is a class added here; then mypy names each `match` over nodes
that does not handle it yet (see `ivr.dialog.nodes`)."""
NODE_KINDS: tuple[str, ...] = tuple(
    get_args(cls.model_fields["kind"].annotation)[0] for cls in get_args(get_args(Node)[0])
)
"""The ``kind:`` of each, in the union's order: menu, question, answer, ..."""


class Defaults(_WithPrompts):
    max_no_input: int = Field(default=3, ge=1)
    max_no_match: int = Field(default=3, ge=1)
    no_input_ms: int = Field(default=5000, ge=500)
    # Callers pause between groups of digits ("five five five ... one two three"): at digit
    # and phone questions an utterance ends after this much silence, not the server's usual.
    digits_end_silence_ms: int = Field(default=1300, ge=100, le=5000)
    confirm_below: Probability = 0.5
    faq_threshold: Probability = 0.7  # unused since intents match by meaning; kept for old flows
    faq_margin: Probability = 0.05
    no_input: list[Prompt] = Field(
        default_factory=lambda: [Prompt(text="Sorry, I didn't hear you.")]
    )
    no_match: list[Prompt] = Field(
        default_factory=lambda: [Prompt(text="Sorry, I didn't understand.")]
    )
    confirm: Prompt = Prompt(text="Did you say {choice}?")
    confirm_rejected: Prompt = Prompt(text="Sorry about that.")
    disambiguate: Prompt = Prompt(text="Did you mean {first}, or {second}?")
    fallback: Prompt = Prompt(text="Sorry, I can't look that up right now.")
    not_found: Prompt = Prompt(text="Sorry, I couldn't find that account.")

    @field_validator("confirm", "confirm_rejected", "disambiguate", "not_found", mode="before")
    @classmethod
    def _single(cls, value: object) -> object:
        return _prompt(value)


class FlowSpec(_Model):
    name: str = Field(min_length=1)
    language: str = "en"
    start: str
    escalation: str
    faq_next: str | None = None
    variables: list[str] = Field(default_factory=list)  # documented Start params / placeholders
    defaults: Defaults = Defaults()
    globals: dict[str, GlobalIntent] = Field(default_factory=dict)
    faq: dict[str, FaqIntent] = Field(default_factory=dict)
    # What callers ask that this line does not handle: speech closest to one of these is a
    # no-match at menus, not the nearest intent (examples, like intents' phrases).
    out_of_scope: list[str] = Field(default_factory=list)
    nodes: dict[str, Node] = Field(min_length=1)
