"""The dialog engine: a pure function of (state, event) → actions. No I/O, no asyncio.

The call pipeline executes the actions (Say, Listen, Fetch, BookCallback, Transfer, Handoff,
Disconnect; Turn is for the transcript) and feeds what happens back as events (Recognized,
DtmfEntered, NoInput, FetchDone, TransferDone). Matching uses the flow's compiled grammars
(`ivr.grammar`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Literal, assert_never

from ivr.clock import Clock, system_clock, today_in
from ivr.dialog.flow import Flow
from ivr.dialog.interpret import Interpreter
from ivr.dialog.nodes import hearing, keypad
from ivr.dialog.schema import (
    AnswerNode,
    BranchNode,
    CallbackNode,
    FetchSpec,
    HandoffNode,
    HangupNode,
    MenuNode,
    Node,
    Prompt,
    QuestionNode,
    TransferNode,
)
from ivr.dialog.sensitive import hidden, kept_input, kept_say, mask, redact
from ivr.dialog.state import DialogState, Interp, Pending
from ivr.dialog.types import (
    Action,
    BookCallback,
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
from ivr.dialog.values import render, spell
from ivr.dialog.variables import assigned_variables, booking_variables, is_internal, is_reserved
from ivr.dialog.when import BusinessHours, agents_in

ALWAYS_OPEN = BusinessHours.parse("24/7", "UTC")

MAX_HOPS = 32  # answer → answer → ... chain length before the call is ended as a flow bug


@dataclass
class _Out:
    actions: list[Action] = field(default_factory=list)
    said: list[Say] = field(default_factory=list)  # repeatable prompts of this step
    listened: bool = False


class DialogEngine:
    """Runs one flow. `clock` (timezone-aware) and `hours` resolve callback times and say
    whether agents are in; `today` is the date for date answers (default: `clock`'s date in
    the hours' zone); `agents` is where transfer nodes put callers through (the server's
    IVR_AGENT_URI; a node's own target wins; None: they transfer nowhere). All injectable."""

    def __init__(
        self,
        flow: Flow,
        today: Callable[[], date] | None = None,
        clock: Clock = system_clock,
        hours: BusinessHours = ALWAYS_OPEN,
        agents: str | None = None,
        queues: Mapping[str, BusinessHours] | None = None,
    ) -> None:
        self.flow = flow
        self.agents = agents
        self.spec = flow.spec
        self.clock = clock
        self.hours = hours  # the default queue's; `queues`: those a node may name (`queue:`)
        today = today or today_in(clock, hours.tz)
        self.interpret = Interpreter(flow, today, clock, hours, queues)
        self.booked_from = booking_variables(flow.spec)
        self.sensitive = flow.sensitive_vars
        self.assigned = assigned_variables(flow.spec)
        # A parameter may set what the flow assigns only where the flow takes it as an input.
        self.not_params = self.assigned - set(flow.spec.variables)

    def start(self, event: Start) -> tuple[DialogState, list[Action]]:
        # Call parameters are the far end's (Twilio customParameters, a page's start): they
        # may not set what the engine or the flow's own nodes set (the callback number...).
        variables = {k: v for k, v in event.params.items() if self._param_ok(k)}
        if event.caller:
            variables["caller"] = event.caller
            variables["caller_spoken"] = spell(event.caller)
        self._agents_now(variables)
        state = DialogState(self.spec.start, self.flow.version, variables)
        state.refused_params = sorted(  # a transport's own copy of the caller ID is no news
            k for k, v in event.params.items() if not self._param_ok(k) and variables.get(k) != v
        )
        out = _Out()
        self._goto(state, self.spec.start, out)
        return state, self._finish(state, out)

    def handle(self, state: DialogState, event: Event) -> list[Action]:
        """Actions for `event`; events that do not fit the state (e.g. after the end) → []."""
        out = _Out()
        if isinstance(event, FetchDone):
            if state.waiting == "fetch":
                self._fetch_done(state, event, out)
        elif isinstance(event, TransferDone):
            if state.waiting == "transfer":
                self._transfer_done(state, event, out)
        elif state.waiting == "input":
            if isinstance(event, NoInput):
                self._failed(state, "no_input", "", out)
            elif isinstance(event, Recognized):
                self._recognized(state, event, out)
            elif isinstance(event, DtmfEntered):
                self._dtmf(state, event, out)
        return self._finish(state, out)

    def _agents_now(self, variables: dict[str, str]) -> None:
        variables.pop("closed_today", None)  # the queue's own say (`agents_in`)
        variables.update(agents_in(self.interpret.hours_of(variables), self.clock()))

    def _param_ok(self, name: str) -> bool:
        return not is_reserved(name) and name not in self.not_params

    def _fetched(self, state: DialogState, fetch: FetchSpec, values: dict[str, str]
                 ) -> dict[str, str]:  # fmt: skip
        """Of a lookup's values, those it may set: never what the engine sets; what a
        callback node books from (number, time) only when the fetch names it in `values`;
        a question's answer only while the caller has not given it (an account found by
        the caller ID is remembered, a spoken one is not replaced)."""
        own, v = set(fetch.values or [fetch.item]), state.variables
        return {
            k: str(x)
            for k, x in values.items()
            if not is_reserved(k)
            and (k in own or (k not in self.booked_from and not (k in self.assigned and v.get(k))))
        }

    # --- moving between nodes -------------------------------------------------------------

    def _finish(self, state: DialogState, out: _Out) -> list[Action]:
        if out.listened and out.said:
            state.last_prompts = list(out.said)
        return out.actions

    def _node(self, state: DialogState) -> Node:
        return self.spec.nodes[state.node]

    def _goto(self, state: DialogState, name: str, out: _Out, reason: str | None = None) -> None:
        if reason is not None:  # e.g. no_match_max: kept with a callback booked from here
            state.variables["handoff_reason"] = reason
        for _ in range(MAX_HOPS):
            node = self.spec.nodes[name]
            state.node, state.no_input, state.no_match, state.pending = name, 0, 0, None
            if node.queue is not None:  # the call is for this queue now: its agents' hours
                state.variables["queue"] = node.queue
                self._agents_now(state.variables)
            step = self._enter(state, node, out, reason)
            if step is None:
                return
            name = step
        self._end(state, out, Disconnect("flow_loop"))

    def _enter(self, state: DialogState, node: Node, out: _Out, reason: str | None
               ) -> str | None:  # fmt: skip
        """The step into `node`: the node to go on to, or None when the call waits there (for
        the caller, a lookup, a booking) or ends. `reason`: why the call was sent here (an
        end node records it, else its own)."""
        match node:
            case MenuNode() | QuestionNode():
                self._say(state, out, node.prompt)
                self._listen(state, out)
                return None
            case BranchNode():
                self._announce(state, node, out)
                value = state.variables.get(node.var, "")
                return node.cases.get(value) or (value and node.present) or node.default
            case CallbackNode():
                self._announce(state, node, out)
                return None if self._book(state, node, out) else node.failed or node.next
            case AnswerNode():
                self._announce(state, node, out)
                return self._fetch(state, node, out)
            case TransferNode():
                return self._transfer(state, node, out, reason)
            case HandoffNode():
                self._announce(state, node, out, final=True)
                self._end(state, out, Handoff(reason or node.reason))
                return None
            case HangupNode():
                self._announce(state, node, out, final=True)
                self._end(state, out, Disconnect(reason or node.reason))
                return None
            case _:
                assert_never(node)

    def _announce(self, state: DialogState, node: Node, out: _Out, final: bool = False) -> None:
        """Say the prompt of a node that does not listen, if it has one; `final`: the call's
        last words, which the caller cannot interrupt."""
        if node.prompt is not None:
            self._say(state, out, node.prompt, final=final)

    def _end(self, state: DialogState, out: _Out, end: Handoff | Disconnect) -> None:
        state.waiting, state.end_reason = "ended", end.reason
        out.actions.append(end)

    def _fetch(self, state: DialogState, node: AnswerNode, out: _Out) -> str | None:
        """Ask the pipeline for the node's lookup (None), or go on to `next` without one."""
        if node.fetch is None:
            return node.next
        f, v = node.fetch, state.variables
        params = (
            {k: x for k, x in v.items() if not is_internal(k)}
            if f.params is None
            else {k: v[k] for k in f.params if k in v}
        )
        out.actions.append(Fetch(f.source, f.item, f.url, params, f.timeout_ms))
        state.waiting = "fetch"
        return None

    def _transfer(self, state: DialogState, node: TransferNode, out: _Out, reason: str | None
                  ) -> str | None:  # fmt: skip
        """Ask the pipeline to put the caller through (None), or go on to `failed` at once
        when there is nowhere to transfer to."""
        target = node.target or self.agents
        if target is None:
            return node.failed
        self._announce(state, node, out, final=True)  # "Please hold": heard before the move
        why = reason or state.variables.get("handoff_reason") or node.reason
        out.actions.append(Transfer(target, why, tuple(state.intents), node.timeout_ms))
        state.waiting = "transfer"
        return None

    def _transfer_done(self, state: DialogState, ev: TransferDone, out: _Out) -> None:
        node = self._node(state)
        assert isinstance(node, TransferNode)  # only a transfer node waits for one
        if ev.transferred:  # the caller is with a person: nothing more to say
            self._end(state, out, Disconnect("transferred"))
            return
        state.variables["transfer_error"] = ev.error or "failed"
        if node.fallback is not None:
            self._say(state, out, node.fallback)
        self._goto(state, node.failed, out, state.variables.get("handoff_reason") or node.reason)

    def _book(self, state: DialogState, node: CallbackNode, out: _Out) -> bool:
        """Ask the pipeline to book the callback (True), or say why not and go on (False)."""
        v = state.variables
        number = next((v[name] for name in node.number if v.get(name)), "")
        due_at = v.get(node.when, "")
        if not number or not due_at:  # a flow that reached here without asking: its bug
            if node.fallback is not None:
                self._say(state, out, node.fallback)
            return False
        reason = v.get("handoff_reason") or "caller_request"
        if reason == "agent_requested" and not self.interpret.hours_of(v).is_open(self.clock()):
            reason = "after_hours"
        v["callback_reason"] = reason
        out.actions.append(BookCallback(number, due_at, reason, tuple(state.intents), dict(v)))
        state.waiting = "fetch"
        return True

    def _say(self, state: DialogState, out: _Out, prompt: Prompt, repeatable: bool = True,
             final: bool = False, **extra: str) -> Say:  # fmt: skip
        """Say `prompt` (placeholders from call variables and `extra`; missing ones → "");
        the caller may barge in where the node allows it, unless these are `final` words.
        Kept masked where it reads back a sensitive answer (`Say.kept`; at a sensitive
        question, its "Did you say ...?" too)."""
        v = state.variables
        said = extra if not self._is_sensitive(state) else {k: redact(x) for k, x in extra.items()}
        masked = v | hidden(v, self.sensitive) | said
        say = kept_say(prompt, v | extra, masked, self._node(state).barge_in and not final)
        out.actions += [say, Turn(state.node, "prompt", say.recorded)]
        if repeatable:
            out.said.append(say)
        return say

    def _is_sensitive(self, state: DialogState) -> bool:
        return self.flow.is_sensitive(state.node)

    def _listen(self, state: DialogState, out: _Out) -> None:
        node, d = self._node(state), self.spec.defaults
        hears = hearing(node)
        grammar = None if hears.free else self.flow.grammars.get(state.node)
        max_digits, terminator = keypad(node, self.flow.global_dtmf)
        if state.pending is not None:  # a yes/no or "which one": single keys
            grammar, max_digits, terminator = state.pending.grammar, 1, None
        no_input_ms = node.no_input_ms or d.no_input_ms
        hint = self.flow.hint(state.node) if grammar is None else None
        number = hears.number and state.pending is None
        end_silence = d.digits_end_silence_ms if number else None
        args = (grammar, max_digits, terminator, no_input_ms, hint, end_silence)
        out.actions.append(Listen(*args, sensitive=self._is_sensitive(state)))
        out.listened, state.waiting = True, "input"

    # --- input --------------------------------------------------------------------------

    def _recognized(self, state: DialogState, ev: Recognized, out: _Out) -> None:
        was_pending = state.pending is not None
        interp, reason = self.interpret.speech(state, ev.text, ev.confidence)
        intent = interp.intent if interp is not None and interp.kind != "ambiguous" else None
        text = ev.text
        if self._is_sensitive(state):  # kept masked (ivr.dialog.sensitive)
            text, intent = kept_input(text, interp)
        out.actions.append(Turn(state.node, "recognized", text, intent, ev.confidence))
        if interp is None:
            self._failed(state, "no_match", reason, out)
        else:
            self._act(state, interp, 1.0 if was_pending else ev.confidence, out)

    def _dtmf(self, state: DialogState, ev: DtmfEntered, out: _Out) -> None:
        interp = self.interpret.keys(state, ev.digits)
        intent, text = interp.intent if interp is not None else None, ev.digits
        if self._is_sensitive(state):
            text, intent = mask(text), kept_input(text, interp)[1]
        out.actions.append(Turn(state.node, "dtmf", text, intent, None))
        if interp is None:
            self._failed(state, "no_match", f"key {ev.digits!r} is not an option here", out)
        else:
            self._act(state, interp, 1.0, out)

    # --- acting on input ----------------------------------------------------------------

    def _act(self, state: DialogState, interp: Interp, confidence: float, out: _Out) -> None:
        node, d = self._node(state), self.spec.defaults
        assert isinstance(node, MenuNode | QuestionNode)
        g = self.spec.globals.get(interp.intent) if interp.kind == "global" else None
        if g is not None and g.action == "repeat":
            state.intents.append(interp.intent)
            self._repeat(state, out)
            return
        confirm_below = d.confirm_below if node.confirm_below is None else node.confirm_below
        if interp.kind not in ("ambiguous", "reject") and confidence < confirm_below:
            grammar = self.flow.confirm_grammars[node.globals]
            say = self._say(state, out, d.confirm, choice=interp.title)
            state.pending = Pending("confirm", say, grammar, interp=interp)
            self._listen(state, out)
            return
        state.pending = None
        if interp.kind == "ambiguous":
            self._disambiguate(state, interp, out)
        elif interp.kind == "reject":
            self._say(state, out, d.confirm_rejected, repeatable=False)
            self._say(state, out, node.prompt)
            self._listen(state, out)
        elif interp.kind == "value":
            assert isinstance(node, QuestionNode)
            state.variables[node.var] = interp.value or ""
            if node.type in ("digits", "phone", "when"):  # how prompts read it back
                state.variables[f"{node.var}_spoken"] = interp.title
            if node.survey and interp.value:
                out.actions.append(Survey(int(interp.value)))
            yesno = node.type == "yesno"
            state.intents.append(f"{node.var}={interp.value}" if yesno else node.var)
            target = node.branches.get(interp.value or "", node.next)
            assert target is not None  # load-time check: next, or yes and no branches
            self._goto(state, target, out)
        else:
            state.intents.append(interp.intent)
            state.variables.pop("handoff_reason", None)  # a new request: any earlier one is over
            if g is not None and g.goto is not None:
                self._goto(state, g.goto, out, g.reason)
            elif interp.kind == "choice":
                assert isinstance(node, MenuNode)
                choice = node.choices[interp.intent]
                self._goto(state, choice.goto, out, choice.reason)
            else:
                self._faq_answer(state, interp.intent, out)

    def _faq_answer(self, state: DialogState, faq_id: str, out: _Out) -> None:
        node, faq = self._node(state), self.spec.faq[faq_id]
        self._say(state, out, faq.answer)
        default = node.faq_next if isinstance(node, MenuNode) else None
        self._goto(state, faq.next or default or self.spec.faq_next or state.node, out)

    def _disambiguate(self, state: DialogState, interp: Interp, out: _Out) -> None:
        first, second = interp.options
        grammar = self.interpret.choice_grammar(state, first, second)
        if grammar is None:  # a title clashes with another phrase: take the best match
            best = self.interpret.option(state, first)
            if best is not None:
                self._act(state, best, 1.0, out)
            return
        node = self._node(state)
        t1, t2 = self.flow.title(first, node), self.flow.title(second, node)
        say = self._say(state, out, self.spec.defaults.disambiguate, first=t1, second=t2)
        state.pending = Pending("disambiguate", say, grammar, options=(first, second))
        self._listen(state, out)

    def _repeat(self, state: DialogState, out: _Out) -> None:
        node = self._node(state)
        prompts = state.last_prompts
        if not prompts and node.prompt is not None:
            self._say(state, out, node.prompt, repeatable=False)
        for say in prompts:
            out.actions += [say, Turn(state.node, "prompt", say.recorded)]
        self._listen(state, out)

    # --- failures -----------------------------------------------------------------------

    def _failed(self, state: DialogState, kind: Literal["no_input", "no_match"], why: str,
                out: _Out) -> None:  # fmt: skip
        """Escalating message + re-prompt, or the flow's escalation node at the limit."""
        node, d = self._node(state), self.spec.defaults
        why = redact(why) if self._is_sensitive(state) else why
        out.actions.append(Turn(state.node, kind, why))
        if kind == "no_input":
            state.no_input += 1
            count, limit = state.no_input, node.max_no_input or d.max_no_input
            messages = node.no_input or d.no_input
        else:
            state.no_match += 1
            count, limit = state.no_match, node.max_no_match or d.max_no_match
            messages = node.no_match or d.no_match
        if count >= limit:
            target = node.escalation or self.spec.escalation
            self._goto(state, target, out, reason=f"{kind}_max")
            return
        if messages:
            self._say(state, out, messages[min(count, len(messages)) - 1], repeatable=False)
        if state.pending is not None:
            say = state.pending.question
            out.actions += [say, Turn(state.node, "prompt", say.recorded)]
            out.said.append(say)
        elif node.reprompts:
            self._say(state, out, node.reprompts[min(count, len(node.reprompts)) - 1])
        elif node.prompt is not None:
            self._say(state, out, node.prompt)
        self._listen(state, out)

    # --- fetch results ------------------------------------------------------------------

    def _fetch_done(self, state: DialogState, ev: FetchDone, out: _Out) -> None:
        node = self._node(state)
        match node:
            case CallbackNode():
                self._booked(state, node, ev, out)
            case AnswerNode():
                self._looked_up(state, node, ev, out)
            case MenuNode() | QuestionNode() | BranchNode() | TransferNode():
                raise AssertionError(f"a {node.kind} node does not wait for a fetch")
            case HandoffNode() | HangupNode():
                raise AssertionError(f"a {node.kind} node does not wait for a fetch")
            case _:
                assert_never(node)

    def _booked(self, state: DialogState, node: CallbackNode, ev: FetchDone, out: _Out) -> None:
        if ev.values is not None and ev.error is None:
            state.variables.update(ev.values)
            self._say(state, out, node.say)
            self._goto(state, node.next, out)
            return
        if node.fallback is not None:
            self._say(state, out, node.fallback)
        self._goto(state, node.failed or node.next, out)

    def _looked_up(self, state: DialogState, node: AnswerNode, ev: FetchDone, out: _Out) -> None:
        d = self.spec.defaults
        assert node.fetch is not None  # only an answer with a fetch waits for one
        if ev.values is not None and ev.error is None:
            state.not_found = 0
            state.variables.update(self._fetched(state, node.fetch, ev.values))
            assert node.say is not None  # load-time check
            _, missing = render(node.say, state.variables)
            self._say(state, out, node.fallback or d.fallback if missing else node.say)
        elif ev.error == "not_found" and node.fetch.missing is not None:
            state.not_found += 1
            if state.not_found > (node.max_no_match or d.max_no_match):
                self._goto(state, self.spec.escalation, out, reason="not_found_max")
                return
            if state.not_found > 1:
                self._say(state, out, d.not_found, repeatable=False)
            self._goto(state, node.fetch.missing, out)
            return
        else:
            self._say(state, out, node.fallback or d.fallback)
            if node.fetch.on_error is not None:
                self._goto(state, node.fetch.on_error, out, reason="fulfillment_failed")
                return
        self._goto(state, node.next, out)
