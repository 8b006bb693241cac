"""What the caller's speech or keys mean at the current node (menu, question, FAQ, pending)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import date, datetime
from typing import assert_never

from ivr.dialog.flow import Flow
from ivr.dialog.nodes import hearing
from ivr.dialog.schema import (
    AnswerNode,
    BranchNode,
    CallbackNode,
    HandoffNode,
    HangupNode,
    MenuNode,
    QuestionNode,
    TransferNode,
)
from ivr.dialog.state import DialogState, Interp
from ivr.dialog.values import YESNO_DTMF, keyed_value, question_value, readback
from ivr.dialog.when import DEFAULT_QUEUE, BusinessHours, Slot, resolve, resolve_keys
from ivr.grammar import Grammar, GrammarError, Match, normalize

TEXT_MIN_CONFIDENCE = 0.35  # free-text answers below this recognizer confidence are no-match
FIRST = ["the first", "the first one", "first", "first one"]
SECOND = ["the second", "the second one", "second", "second one"]
NEITHER = ["neither", "neither of them", "none of them", "no", "something else"]


class Interpreter:
    def __init__(
        self,
        flow: Flow,
        today: Callable[[], date],
        clock: Callable[[], datetime],
        hours: BusinessHours,
        queues: Mapping[str, BusinessHours] | None = None,
    ) -> None:
        self.flow = flow
        self.spec = flow.spec
        self.today = today
        self.clock = clock  # callback times ("when" questions) are resolved against these
        self.hours = hours  # the default queue's
        self.queues = dict(queues or {})  # each named queue's (one not named here: default)

    def hours_of(self, variables: Mapping[str, str]) -> BusinessHours:
        """The hours of the queue the call is for (its `queue` variable, set by the nodes
        that name one), else the default queue's."""
        return self.queues.get(variables.get("queue") or DEFAULT_QUEUE, self.hours)

    def speech(self, state: DialogState, text: str, conf: float) -> tuple[Interp | None, str]:
        """The interpretation of recognized text (None: no-match) and the matcher's reason.

        At a menu with FAQs, the menu's intents and the FAQ questions compete on one scale:
        the best wins, and two that score within `faq_margin` of each other (choices or FAQs
        with a title) make the caller choose ("Did you mean A, or B?")."""
        if state.pending is not None:
            m = state.pending.grammar.match(text, conf)
            return self.pending(state, m.intent), m.reason
        node = self.spec.nodes[state.node]
        if isinstance(node, QuestionNode) and node.type == "when" and conf >= TEXT_MIN_CONFIDENCE:
            # The time parser reads the caller's own sentence ("could you ring me tomorrow at
            # 3pm"); the phrase grammar would force it onto its nearest listed time.
            slot = resolve(normalize(text), self.clock(), self.hours_of(state.variables))
            if slot is not None:
                return _slot(text.strip(), slot), "callback time"
        grammar = self.flow.grammars.get(state.node)
        menu_reason, faq_reason = "no grammar", None
        found: list[tuple[float, Interp]] = []  # valid interpretations with their scores
        if grammar is not None:
            m = grammar.match(text, conf)
            menu_reason = m.reason
            interp = self.intent(state, m.intent)
            if interp is not None:
                found.append((m.score, interp))
                alt = self._runner_up(state, grammar, m)
                if alt is not None:
                    found.append(alt)
            elif m.intent is not None:
                menu_reason = f"{m.intent!r} is not a valid answer here"
        faq = self.flow.faq_grammar
        if hearing(node).faq and faq is not None:
            f = faq.match(text, conf)
            faq_reason = f.reason
            if f.intent is not None:
                found.append((f.score, Interp("faq", f.intent, title=self.flow.title(f.intent))))
                if f.runner_up is not None and f.runner_up[1] >= faq.reject:
                    other = Interp("faq", f.runner_up[0], title=self.flow.title(f.runner_up[0]))
                    found.append((f.runner_up[1], other))
        both = menu_reason if faq_reason is None else f"menu: {menu_reason}; FAQ: {faq_reason}"
        if found:
            found.sort(key=lambda x: -x[0])
            (score, best), rest = found[0], found[1:]
            close = [i for s, i in rest if score - s <= self.spec.defaults.faq_margin]
            if close and best.kind in ("choice", "faq") and close[0].kind in ("choice", "faq"):
                second = close[0]
                if second.intent != best.intent:
                    return Interp(
                        "ambiguous", best.intent, options=(best.intent, second.intent)
                    ), both
            return best, (faq_reason or "") if best.kind == "faq" else menu_reason
        if isinstance(node, QuestionNode) and node.type == "text":
            words = normalize(text).replace("\u2400", "").strip()
            if words and conf >= TEXT_MIN_CONFIDENCE:
                return Interp("value", "text", text.strip(), text.strip()), "free text"
        return None, both

    def _runner_up(
        self, state: DialogState, grammar: Grammar, m: Match
    ) -> tuple[float, Interp] | None:
        """The grammar's second intent, when it also clears the rejection and is valid here."""
        if m.runner_up is None or m.runner_up[1] < grammar.reject:
            return None
        interp = self.intent(state, m.runner_up[0])
        return None if interp is None else (m.runner_up[1], interp)

    def keys(self, state: DialogState, digits: str) -> Interp | None:
        """The interpretation of keypad input (None: no-match)."""
        node = self.spec.nodes[state.node]
        globals_ = self.flow.global_dtmf if node.globals else {}
        p = state.pending
        if p is not None:
            picks = dict(zip(("1", "2"), p.options, strict=False))
            intent = YESNO_DTMF.get(digits) if p.kind == "confirm" else picks.get(digits)
            return self.pending(state, intent or globals_.get(digits))
        match node:
            case MenuNode():
                cid = next((c for c, ch in node.choices.items() if ch.dtmf == digits), None)
                return self.intent(state, cid or globals_.get(digits))
            case QuestionNode() if node.type == "when":
                slot = resolve_keys(digits, self.clock(), self.hours_of(state.variables))
                if slot is not None:
                    return _slot(digits, slot)
                return self.intent(state, globals_.get(digits))
            case QuestionNode():
                value = keyed_value(node, digits, self.today())
                if value is not None:
                    return Interp("value", value, value, readback(node, value))
                if node.type in ("yesno", "text", "rating"):  # digits/date/time: keys answer
                    return self.intent(state, globals_.get(digits))
                return None
            case AnswerNode() | BranchNode() | CallbackNode() | TransferNode():
                return None  # these do not listen
            case HandoffNode() | HangupNode():
                return None  # these do not listen
            case _:
                assert_never(node)

    def intent(self, state: DialogState, intent: str | None) -> Interp | None:
        """A grammar intent (or key's intent) at the current node with nothing pending."""
        node = self.spec.nodes[state.node]
        if intent is None:
            return None
        if node.globals and intent in self.spec.globals:
            return Interp("global", intent, title=self.flow.title(intent))
        match node:
            case MenuNode():
                if intent not in node.choices:
                    return None
                return Interp("choice", intent, title=self.flow.title(intent, node))
            case QuestionNode() if node.type == "when":
                hours = self.hours_of(state.variables)
                return _slot(intent, resolve(intent, self.clock(), hours))
            case QuestionNode():
                value = question_value(node, intent, self.today())
                if value is None:
                    return None
                return Interp("value", intent, value, readback(node, value))
            case AnswerNode() | BranchNode() | CallbackNode() | TransferNode():
                return None  # these do not listen
            case HandoffNode() | HangupNode():
                return None  # these do not listen
            case _:
                assert_never(node)

    def pending(self, state: DialogState, intent: str | None) -> Interp | None:
        """An answer to the pending confirmation or "did you mean A or B" question."""
        p = state.pending
        assert p is not None
        if intent is None:
            return None
        if intent in self.spec.globals and self.spec.nodes[state.node].globals:
            return Interp("global", intent, title=self.flow.title(intent))
        if p.kind == "confirm" and intent in ("yes", "no"):
            return p.interp if intent == "yes" else Interp("reject", intent)
        if p.kind == "disambiguate" and intent in p.options:
            return self.option(state, intent)
        if intent == "neither":
            return Interp("reject", intent)
        return None

    def option(self, state: DialogState, intent: str) -> Interp | None:
        """One of the options of "Did you mean A, or B?": an FAQ or the node's intent."""
        if intent in self.spec.faq:
            return Interp("faq", intent, title=self.flow.title(intent))
        return self.intent(state, intent)

    def choice_grammar(self, state: DialogState, first: str, second: str) -> Grammar | None:
        """Grammar for "Did you mean A or B?" (titles, the first/the second, neither, globals);
        None when a title clashes with another phrase."""
        node = self.spec.nodes[state.node]
        intents = {
            first: [self.flow.title(first, node), *FIRST],
            second: [self.flow.title(second, node), *SECOND],
            "neither": NEITHER,
        }
        if self.spec.nodes[state.node].globals:
            intents |= {gid: list(g.phrases) for gid, g in self.spec.globals.items()}
        try:
            return Grammar(name="disambiguation", intents=intents, language=self.spec.language)
        except GrammarError:
            return None


def _slot(intent: str, slot: Slot | None) -> Interp | None:
    """A callback time as a question value: ISO 8601, read back as spoken."""
    return None if slot is None else Interp("value", intent, slot.due_at.isoformat(), slot.spoken)
