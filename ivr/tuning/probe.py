"""What an utterance means to a grammar, or to a flow's node as the dialog hears it there
(``ivr grammar test``, ``POST /v1/grammar/test``, and each row of ``ivr grammar eval``).

A node listens the way `ivr.dialog.engine.DialogEngine._listen` sets it up: a menu that also
answers FAQ questions, and a free-text question, decode free speech with the node's phrases as
the recognizer's hint (tried first); every other node decodes against its grammar. The text is
then matched the way `ivr.dialog.interpret.Interpreter.speech` does: the node's grammar (with
the global intents), then, at an FAQ menu, the FAQ questions.
"""

from __future__ import annotations

import base64
import binascii
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any, assert_never

import numpy as np
import soundfile as sf

from ivr.asr.base import RecognitionResult
from ivr.asr.runner import AsrRunner
from ivr.audio.codecs import ulaw_decode, ulaw_encode
from ivr.audio.pcm import Audio
from ivr.audio.vad import Endpointer, EndpointerConfig
from ivr.dialog.engine import DialogEngine
from ivr.dialog.flow import Flow, FlowError, flow_grammar_dir, parse_flow
from ivr.dialog.nodes import hearing
from ivr.dialog.schema import (
    AnswerNode,
    BranchNode,
    CallbackNode,
    Defaults,
    HandoffNode,
    HangupNode,
    MenuNode,
    QuestionNode,
    TransferNode,
)
from ivr.dialog.state import DialogState
from ivr.events import SpeechEnded
from ivr.grammar import Grammar, Match, parse_grammar
from ivr.tuning.problems import BadDocument, Document

MAX_AUDIO_SECONDS = 30.0  # one answer to a prompt; longer is not an utterance
NUMBER_END_SILENCE_MS: int = Defaults.model_fields["digits_end_silence_ms"].default


class TargetError(ValueError):
    """No such grammar, flow or node, or a node that does not listen."""


@dataclass(frozen=True)
class Target:
    """What hears the caller: a grammar, or a flow's node."""

    name: str  # "digits", "hotline: node 'main_menu'"
    grammar: Grammar  # matched first (a node's grammar holds the global intents too)
    listen: Grammar | None  # the recognizer's grammar; None: free speech, `hint` first
    hint: Grammar | None = None
    faq: Grammar | None = None  # tried when `grammar` has no match (an FAQ menu)
    faq_margin: float = 0.0  # FAQ answers this close: the caller is asked which one
    node: str | None = None  # a flow's node
    flow: Flow | None = None  # its flow: the dialog's own interpreter decides there
    end_silence_ms: int | None = None  # the node's own (digit strings), else the server's

    @property
    def intents(self) -> frozenset[str]:
        """Every intent an utterance can get here."""
        return frozenset(self.grammar.intents) | frozenset(self.faq.intents if self.faq else ())


@dataclass(frozen=True)
class Verdict:
    """What the caller said (as recognized) and what it means here."""

    text: str
    confidence: float
    intent: str | None
    score: float
    phrase: str | None
    runner_up: tuple[str, float] | None
    reason: str

    def json(self) -> dict[str, Any]:
        runner_up = None
        if self.runner_up is not None:
            runner_up = {"intent": self.runner_up[0], "score": self.runner_up[1]}
        return {
            "text": self.text,
            "confidence": self.confidence,
            "intent": self.intent,
            "score": self.score,
            "phrase": self.phrase,
            "runner_up": runner_up,
            "reason": self.reason,
        }


def judge(target: Target, text: str, confidence: float = 1.0) -> Verdict:
    """The intent of recognized `text` (with the recognizer's `confidence`) at `target`.

    At a flow's node the dialog engine's own interpreter decides (menu choices, globals and
    FAQs on one scale, question values), so this hears what a call hears."""
    m = target.grammar.match(text, confidence)
    f = target.faq.match(text, confidence) if target.faq is not None else None
    shown = f if f is not None and f.score > m.score else m  # the closest phrase, wherever
    if target.flow is None or target.node is None:
        return _verdict(text, confidence, m, m.reason)
    state = DialogState(target.node, target.flow.version, {})
    interp, reason = DialogEngine(target.flow).interpret.speech(state, text, confidence)
    if interp is None:
        return Verdict(text, confidence, None, shown.score, shown.phrase, shown.runner_up, reason)
    intent: str | None = interp.intent
    if interp.kind == "ambiguous":  # no intent yet, as the call records it
        intent = None
        first, second = interp.options
        reason = f"{first!r} and {second!r} are as close: the caller is asked which one"
    elif interp.kind == "faq" and f is not None:
        shown, reason = f, f"FAQ: {f.reason}"
    return Verdict(text, confidence, intent, shown.score, shown.phrase, shown.runner_up, reason)


def _verdict(text: str, confidence: float, m: Match, reason: str) -> Verdict:
    return Verdict(text, confidence, m.intent, m.score, m.phrase, m.runner_up, reason)


LINE_RATE = 8000  # a telephone call: μ-law at 8 kHz
LEAD_S, TAIL_S = 1.0, 2.0  # the caller's silence before and after the clip


def as_on_a_call(audio: Audio, end_silence_ms: int = 600) -> bytes | None:
    """What the recognizer gets of `audio` in a call: 8 kHz, through μ-law and back, cut by
    the call's endpointer (its first utterance, pre-roll included); None if it hears none."""
    line = audio.to_rate(LINE_RATE).samples
    line = ulaw_decode(ulaw_encode(line))
    lead = np.zeros(int(LEAD_S * LINE_RATE), dtype=np.int16)
    tail = np.zeros(int(TAIL_S * LINE_RATE), dtype=np.int16)
    stream = np.concatenate([lead, line, tail]).astype("<i2").tobytes()
    endpointer = Endpointer(LINE_RATE, EndpointerConfig(end_silence_ms=end_silence_ms))
    for event in endpointer.feed(stream):
        if isinstance(event, SpeechEnded):
            return event.audio
    return None


async def hear(asr: AsrRunner, target: Target, audio: Audio) -> RecognitionResult:
    """Recognize one utterance as a call at `target` would hear it (see `as_on_a_call`),
    with the server's own runner."""
    silence = target.end_silence_ms
    pcm = as_on_a_call(audio) if silence is None else as_on_a_call(audio, silence)
    if pcm is None:
        return RecognitionResult("", 0.0, "endpointer")
    return await asr.recognize(pcm, target.listen, LINE_RATE, hint=target.hint)


def decode_audio(data: bytes) -> Audio:
    """A sound file's bytes (WAV, or any format libsndfile reads) as mono 16-bit audio."""
    try:
        samples, rate = sf.read(io.BytesIO(data), dtype="int16", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        raise ValueError(f"not a sound file: {exc}") from None
    if rate <= 0 or not len(samples):
        raise ValueError("no audio in the file")
    if len(samples) / rate > MAX_AUDIO_SECONDS:
        raise ValueError(f"longer than {MAX_AUDIO_SECONDS:g} s: send one utterance")
    mono = samples.mean(axis=1).astype(np.int16) if samples.shape[1] > 1 else samples[:, 0]
    return Audio(np.ascontiguousarray(mono, dtype=np.int16), int(rate))


def decode_base64_audio(text: str) -> Audio:
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"not base64: {exc}") from None
    return decode_audio(data)


# --- what to test -----------------------------------------------------------------------------


def resolve(name_or_path: str, node: str | None, grammar_dir: Path) -> Target:
    """A grammar or flow file (a path, or a name in `grammar_dir`) as a Target; for a flow,
    `node` (default: the first node that listens after the start)."""
    path = Path(name_or_path)
    by_name = not path.is_file()
    if by_name:
        path = grammar_dir / f"{name_or_path}.yaml"
        if not path.is_file():
            known = ", ".join(sorted(p.stem for p in grammar_dir.glob("*.yaml"))) or "none"
            raise TargetError(
                f"{name_or_path!r}: no such file, and no {path} (known in {grammar_dir}: {known})"
            )
    try:
        text = path.read_text(encoding="utf-8")
        doc = Document(str(path), text)
    except (OSError, UnicodeDecodeError) as exc:
        raise TargetError(f"{path}: cannot read: {exc}") from None
    except BadDocument as exc:
        raise TargetError(str(exc.problem)) from None
    data = doc.data
    if isinstance(data, dict) and "intents" in data and "nodes" not in data:
        if node is not None:
            raise TargetError(f"{path} is a grammar: --node is for flows")
        grammar = parse_grammar(data, str(path))
        # a digit-string grammar is what number questions listen with: heard as they hear
        silence = NUMBER_END_SILENCE_MS if grammar.sequence is not None else None
        return Target(grammar.name, grammar, grammar, end_silence_ms=silence)
    flow_dir = grammar_dir if by_name else flow_grammar_dir(path)
    return node_target(parse_flow(data, str(path), "", flow_dir), node)


def node_target(flow: Flow, node: str | None) -> Target:
    """The flow's `node` (default: `first_listening`) as the dialog listens there."""
    name = node if node is not None else first_listening(flow)
    spec = flow.nodes.get(name)
    grammar = flow.grammars.get(name)
    if spec is None or grammar is None:
        listening = ", ".join(flow.grammars) or "none"
        what = "no such node" if spec is None else f"this {spec.kind} node has no grammar"
        raise TargetError(f"{flow.name}: {name!r}: {what} (nodes that listen: {listening})")
    hears = hearing(spec)  # as the dialog's Listen there
    faq = flow.faq_grammar if hears.faq else None
    listen, hint = (None, flow.hint(name)) if hears.free else (grammar, None)
    margin = flow.spec.defaults.faq_margin
    label = f"{flow.name}: node {name!r}"
    silence = flow.spec.defaults.digits_end_silence_ms if hears.number else None
    return Target(label, grammar, listen, hint, faq, margin, name, flow, silence)


def first_listening(flow: Flow) -> str:
    """Where a caller is first asked something: from the start, through answers and branches
    (their defaults), to the first node with a grammar (usually the main menu)."""
    name, seen = flow.spec.start, set()
    while name not in seen and name in flow.nodes:
        if name in flow.grammars:
            return name
        seen.add(name)
        node = flow.nodes[name]
        match node:
            case AnswerNode():
                name = node.next
            case BranchNode():
                name = node.default
            case CallbackNode() | TransferNode() | HandoffNode() | HangupNode():
                break  # the path to a question stops at a booking, a transfer or the end
            case MenuNode() | QuestionNode():
                break  # listens, with no grammar (a free-text question without the globals)
            case _:
                assert_never(node)
    first = next(iter(flow.grammars), None)
    if first is None:
        raise FlowError([f"{flow.source}: no node listens for speech"])
    return first
