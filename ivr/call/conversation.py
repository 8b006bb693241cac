"""A call's turn-taking: the dialog engine's actions carried out (prompts queued with their
marks, listening, lookups, bookings, the transcript), and the caller's speech and keys taken
to it: endpointing, barge-in, the keys of one answer, recognition.

It runs on the call's one consumer loop (`ivr.call.session`): the session hands it the
caller's audio, keys and echoed marks, and the results its own tasks post back (`handle`),
so the dialog state has one writer.

Barge-in. A caller's speech or key stops an interruptible prompt at once (the far end's
buffer cleared); where it was cut, by what the caller had heard (`ivr.call.heard`), goes in
the `barge_in` event (speech; `heard_ms`, `prompt_ms`, `heard_by`), the transcript entries
of the prompts cut (`heard_ms`, 0 for those queued after) and the call's log. A prompt from
a `Say` with `barge_in` False (a flow's `barge_in: false`) plays to its end, with what is
queued before it (see `ivr.call.player`), over the caller's speech and keys:

* speech that begins while it plays is no answer: that utterance is dropped, not recognized
  (as VoiceXML discards input during a prompt that cannot be barged in on);
* keys pressed while it plays are kept (typeahead, at most MAX_TYPEAHEAD) and count, in
  order, toward the bot's next Listen once it has played: as if pressed right then.

So are keys pressed while nothing listens (a lookup under way, an answer read out): ``1``
then ``90210#`` in the greeting is the balance, then that account number. A transfer, a
handoff or the call's end discards them. While a question marked sensitive listens, the
recording is paused (`CallAudio.pause`) until its answer is taken; the dialog's turns come
masked (`ivr.dialog.sensitive`), so the transcript, feed and store do; so do the variables
kept with a callback, and no no-match audio is kept there.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Coroutine
from datetime import datetime
from typing import Any, Literal, Protocol

from ivr.asr.base import RecognitionResult
from ivr.audio.codecs import Encoding
from ivr.audio.vad import Endpointer, EndpointerConfig
from ivr.call.complaints import CallComplaints
from ivr.call.heard import Cut, Prompts
from ivr.call.leg import Leg
from ivr.call.player import Player
from ivr.call.recorder import CallRecorder
from ivr.call.recording import CallAudio
from ivr.call.services import CallServices
from ivr.call.transfer import transfer
from ivr.callbacks import InvalidNumber
from ivr.clock import today_in
from ivr.dialog.engine import DialogEngine
from ivr.dialog.flow import Flow
from ivr.dialog.sensitive import for_agent
from ivr.dialog.state import DialogState
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
from ivr.events import NoSpeech, SpeechEnded, SpeechStarted
from ivr.nlu.classifier import prepare as prepare_meaning
from ivr.transports.messages import CallStart

log = logging.getLogger(__name__)

MAX_TYPEAHEAD = 32  # keys kept for the next Listen (see the module doc); more are dropped


class CallPort(Protocol):
    """What the conversation uses of its call (`ivr.call.session.CallSession`)."""

    call_id: str
    s: CallServices
    recorder: CallRecorder
    recording: CallAudio | None
    leg: Leg

    @property
    def player(self) -> Player: ...

    def publish(self, event: dict[str, Any]) -> None: ...

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> None: ...

    def post(self, kind: str, value: Any = None) -> None:
        """Hand `value` back to `handle(kind, value)` on the call's loop."""
        ...

    def end(self, reason: str) -> None: ...


class Conversation:
    def __init__(self, call: CallPort, rate: int) -> None:
        self.call = call
        self.s = call.s
        self.rate = rate
        self.endpointer = Endpointer(
            rate, EndpointerConfig(end_silence_ms=self.s.limits.end_silence_ms)
        )
        self.prompts = Prompts()
        self._listen: Listen | None = None
        self._digits = ""
        self._typeahead: deque[str] = deque()
        self._dtmf_timer: asyncio.TimerHandle | None = None
        self._ending: str | None = None  # set by Disconnect/Handoff: end once playback drains
        self._transfer: Transfer | None = None  # to start once the prompts before it played
        self.transferring = False  # a transfer is under way: the far end's leaving ends it
        self._utterance = 0  # ignore recognition results of utterances overtaken by events
        self._deaf = False  # the utterance in progress began over a prompt to be heard out
        self._speech_end_at: float | None = None
        self._unmatched = b""  # audio of the utterance the dialog just found no match for
        self._paused = False  # the recording is paused: a sensitive question listens
        self.turn_latencies: list[float] = []  # caller's input decided → first bot audio
        self.transcript: list[dict[str, Any]] = []  # kept with a callback booked in the call

    @property
    def player(self) -> Player:
        return self.call.player

    @property
    def node(self) -> str | None:
        """The dialog's node now (None before the flow starts): on the call's log records."""
        state: DialogState | None = getattr(self, "state", None)
        return state.node if state is not None else None

    async def start(self, flow: Flow, start: CallStart) -> None:
        clock, hours = self.s.clock, self.s.hours
        agents = self.s.transfers.agents
        self.engine = DialogEngine(
            flow, today_in(clock, hours.tz), clock, hours, queues=self.s.queues, agents=agents
        )
        self.state: DialogState
        self.state, actions = self.engine.start(Start(caller=start.caller, params=start.params))
        if self.state.refused_params:  # the far end tried to set what the flow sets itself
            names = ", ".join(self.state.refused_params)
            log.warning("call %s: call parameters not taken (the flow sets them): %s",
                        self.call.call_id, names, extra={"event": "params_refused"})  # fmt: skip
        self.complaints = CallComplaints(self.call, flow, start.caller)  # ivr.call.complaints
        await self.complaints.start()
        await self._act(actions)

    def stop(self) -> None:
        """The call ends: no more timers."""
        if self._dtmf_timer is not None:
            self._dtmf_timer.cancel()

    # --- what happens -----------------------------------------------------------------------

    async def handle(self, kind: str, value: Any) -> None:
        """A result posted back to the call's loop (see `CallPort.post`)."""
        if kind == "asr":
            utterance, result, audio = value
            if utterance == self._utterance and self._listen is not None:
                await self._recognized(result, audio)
        elif kind == "fetch":
            await self._dialog(value)
        elif kind == "drained":
            if self.player.playing:
                return  # stale: a barge-in stop, and new prompts are already queued
            self.prompts.played_out()
            self.endpointer.prompt_finished()
            if self._ending is not None:
                self.call.end(self._ending)
            elif self._transfer is not None:
                self._start_transfer()
        elif kind == "transfer":
            self.transferring = value.transferred
            await self._dialog(value)
        elif kind == "dtmf_timeout":
            if self._digits and self._listen is not None:
                await self._submit_digits()
        elif kind == "typeahead":
            await self._flush_typeahead()

    async def audio(self, pcm: bytes) -> None:
        for event in self.endpointer.feed(pcm):
            await self._vad(event)

    def echoed(self, mark: str) -> None:
        """The caller's playback reached `mark`."""
        self.prompts.echoed(mark)

    def first_bot_frame(self) -> None:
        if self._speech_end_at is not None:
            latency = time.perf_counter() - self._speech_end_at
            self.turn_latencies.append(latency)
            self.s.metrics.turn_latency.observe(latency)
            self._speech_end_at = None

    # --- the caller's speech ----------------------------------------------------------------

    async def _vad(self, event: SpeechStarted | SpeechEnded | NoSpeech) -> None:
        if isinstance(event, SpeechStarted):
            self._deaf = not self.player.interruptible
            if self._deaf or self._listen is None:
                return
            if event.barge_in and self.player.playing:
                cut = await self._interrupt("speech")
                barge: dict[str, Any] = {"event": "barge_in", "node": self.state.node}
                if cut is not None:
                    barge.update(text=cut.prompt.text, heard_ms=cut.heard_ms,
                                 prompt_ms=cut.prompt.ms, heard_by=cut.heard_by)  # fmt: skip
                self.call.publish(barge)
        elif isinstance(event, SpeechEnded):
            if self._deaf:  # begun over a prompt to be heard out: no answer (module doc)
                self._deaf = False
                log.info(
                    "call %s: %.1f s of speech over a prompt that cannot be interrupted: not taken",
                    self.call.call_id,
                    event.end - event.start,
                    extra={"event": "speech_not_taken"},
                )
            elif self._listen is not None:
                # The caller answered: no "no input" while the recognizer works on it (a
                # slow decode must not turn into a reprompt); the next Listen re-arms it.
                self.endpointer.cancel_no_input_timer()
                self._utterance += 1
                self._speech_end_at = time.perf_counter()
                self.call.spawn(self._recognize(self._utterance, event.audio, self._listen), "asr")
        elif self._listen is not None:
            self._utterance += 1
            await self._dialog(NoInput())

    async def _interrupt(self, by: Literal["speech", "key"]) -> Cut | None:
        """Stop the prompts playing; say where they were cut."""
        cut = self.prompts.cut(self.player)
        await self.player.stop()
        if cut is not None:
            log.info(
                "call %s: barge-in at %d of %d ms of prompt %d (by %s; heard by %s): %r",
                self.call.call_id,
                cut.heard_ms,
                cut.prompt.ms,
                cut.prompt.number,
                by,
                cut.heard_by,
                cut.prompt.text[:80],
                extra={"event": "barge_in"},
            )
        return cut

    async def _recognize(self, utterance: int, audio: bytes, listen: Listen) -> None:
        started = time.perf_counter()
        try:
            result = await self.s.asr.recognize(
                audio, listen.grammar, rate=self.rate, hint=listen.hint
            )
        except Exception:  # the caller hears a no-match reprompt rather than silence
            log.exception(
                "call %s: recognition failed", self.call.call_id, extra={"event": "asr_failed"}
            )
            result = RecognitionResult("", 0.0, "error")
        if result.text:
            try:  # the sentence embedding, off the loop: the dialog then finds it cached
                await self.s.asr.run(prepare_meaning, result.text)
            except Exception:
                log.exception(
                    "call %s: sentence embedding failed",
                    self.call.call_id,
                    extra={"event": "embedding_failed"},
                )
        mode = "grammar" if listen.grammar is not None else "free"
        self.s.metrics.asr_time(mode, time.perf_counter() - started)
        self.call.post("asr", (utterance, result, audio))

    async def _recognized(self, result: RecognitionResult, audio: bytes) -> None:
        self._listen = None  # as in _dialog: a new Listen comes with the engine's answer
        private = self.engine.flow.is_sensitive(self.state.node)
        self._secure(False)
        actions = self.engine.handle(self.state, Recognized(result.text, result.confidence))
        kinds = [a.kind for a in actions if isinstance(a, Turn)]
        if kinds[:2] == ["recognized", "no_match"] and not private:
            # Speech the flow could not use: its recording (kept with the recognized turn)
            # shows grammar tuners what callers say. Only these, so disk use stays small.
            self._unmatched = audio
        await self._act(actions)

    # --- the caller's keys ------------------------------------------------------------------

    async def dtmf(self, digit: str) -> None:
        if self.transferring or self._transfer is not None:
            return  # on the way to a person: no menu will take them (module doc)
        if self._typeahead or not self.player.interruptible or self._listen is None:
            if len(self._typeahead) < MAX_TYPEAHEAD:  # to the next Listen (module doc)
                self._typeahead.append(digit)
            await self._flush_typeahead()
        else:
            await self._key(digit)

    async def _flush_typeahead(self) -> None:
        while self._typeahead and self._listen is not None and self.player.interruptible:
            await self._key(self._typeahead.popleft())

    async def _key(self, digit: str) -> None:
        listen = self._listen
        if listen is None:
            return
        if self.player.playing:
            await self._interrupt("key")  # a key press interrupts the prompt, like speech
        self._utterance += 1  # a key press overrides speech being recognized
        self.endpointer.cancel_no_input_timer()
        self._digits += digit
        if self._dtmf_timer is not None:
            self._dtmf_timer.cancel()
        done = len(self._digits) >= listen.dtmf_max_digits or digit == listen.dtmf_terminator
        if done:
            await self._submit_digits()
        else:
            loop = asyncio.get_running_loop()
            self._dtmf_timer = loop.call_later(
                self.s.limits.interdigit_ms / 1000, self.call.post, "dtmf_timeout"
            )

    async def _submit_digits(self) -> None:
        digits, self._digits = self._digits, ""
        if self._dtmf_timer is not None:
            self._dtmf_timer.cancel()
            self._dtmf_timer = None
        self._speech_end_at = time.perf_counter()
        await self._dialog(DtmfEntered(digits))

    async def _dialog(self, event: Event) -> None:
        self._listen = None  # a new Listen comes with the engine's answer
        self._secure(False)
        await self._act(self.engine.handle(self.state, event))

    # --- the dialog's actions ---------------------------------------------------------------

    async def _act(self, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, Say):
                await self._say(action)
            elif isinstance(action, Listen):
                self._listen_for(action)
            elif isinstance(action, Fetch):
                self.call.spawn(self._fetch(action), "fetch")
            elif isinstance(action, BookCallback):
                self.call.spawn(self._book(action), "book")
            elif isinstance(action, Handoff | Disconnect):
                reason = (
                    action.reason if isinstance(action, Disconnect) else f"handoff: {action.reason}"
                )
                self._listen = None
                self._typeahead.clear()  # no question will come (module doc)
                if self.player.playing:
                    self._ending = reason
                else:
                    self.call.end(reason)
            elif isinstance(action, Transfer):
                self._listen, self._transfer = None, action
                self._typeahead.clear()  # the caller is put through: no menu to take them
                if not self.player.playing:  # else once "please hold" has been heard
                    self._start_transfer()
            elif isinstance(action, Turn):
                self._turn(action)
            elif isinstance(action, Survey):
                self.call.recorder.survey(action.score)

    async def _say(self, say: Say) -> None:
        pcm = await self.s.prompts.render(
            say.text, key=say.prompt_key, rate=self.rate, encoding=Encoding.PCM16
        )
        # Named as the transcript keeps it (a sensitive answer masked) in events and logs.
        self.prompts.queue(self.player, pcm, say.recorded, barge_in=say.barge_in)
        pause = b"\x00" * (self.rate // 10)  # a short pause between prompts
        self.player.enqueue(pause, barge_in=say.barge_in)
        self.endpointer.prompt_started()

    def _start_transfer(self) -> None:
        action, self._transfer = self._transfer, None
        assert action is not None
        self.transferring = True
        self.call.spawn(self._transferring(action), "transfer")

    async def _transferring(self, action: Transfer) -> None:
        error = await transfer(self.call, action)  # ivr.call.transfer
        if error is not None:
            log.info("call %s: the transfer failed: %s", self.call.call_id, error)
        self.call.post("transfer", TransferDone(error is None, error))

    def _secure(self, on: bool) -> None:
        """Pause (`on`) or resume the call's recording for a sensitive question."""
        recording, was = self.call.recording, self._paused
        self._paused = on
        if recording is not None and on != was:
            recording.pause() if on else recording.resume()
            named = {"event": "recording_paused"} if on else {"event": "recording_resumed"}
            log.info("call %s: recording %s (sensitive question %s)", self.call.call_id,
                     "paused" if on else "resumed", self.state.node, extra=named)  # fmt: skip

    def _listen_for(self, listen: Listen) -> None:
        self._listen = listen
        self._digits = ""
        self._secure(listen.sensitive)
        self.endpointer.set_no_input_ms(listen.no_input_ms)
        self.endpointer.set_end_silence_ms(listen.end_silence_ms)
        if not self.player.playing:
            self.endpointer.prompt_finished()
        self.call.publish({"event": "listen", "node": self.state.node})
        if self._typeahead:  # after this batch of actions, not in the middle of it
            self.call.post("typeahead")

    async def _fetch(self, action: Fetch) -> None:
        done: FetchDone = await self.s.fulfillment.fetch(action)
        self.call.post("fetch", done)

    async def _book(self, action: BookCallback) -> None:
        done = FetchDone(error="callbacks are not configured")
        if self.s.callbacks is not None:
            given = for_agent(action.variables, self.engine.flow.sensitive_vars)
            transcript = {
                "call_id": self.call.call_id,
                "reason": action.reason,
                "intents": list(action.intents),
                "variables": given,
                "turns": list(self.transcript),
            }
            try:
                cb, created = await self.s.callbacks.book(
                    action.number,
                    datetime.fromisoformat(action.due_at),
                    reason=action.reason,
                    segment=self.s.fulfillment.segment(action.variables),
                    transcript=transcript,
                    complaint=self.complaints.for_booking(),  # raises the priority
                )
            except InvalidNumber as exc:  # no number to call: the caller hears the fallback
                log.warning(
                    "call %s: %s", self.call.call_id, exc, extra={"event": "booking_failed"}
                )
                done = FetchDone(error=f"booking failed: {exc}")
            except Exception as exc:  # the store is down: the caller hears the fallback
                log.exception(
                    "call %s: booking a callback failed",
                    self.call.call_id,
                    extra={"event": "booking_failed"},
                )
                done = FetchDone(error=f"booking failed: {exc}")
            else:
                done = FetchDone({"callback_id": cb.id})
                self.complaints.booked(cb.id)  # a complaint after this raises it
                self.call.publish({"event": "callback_booked", "callback_id": cb.id,
                                   "number": cb.number, "due_at": action.due_at,
                                   "reason": cb.reason, "created": created})  # fmt: skip
        self.call.post("fetch", done)

    def _turn(self, turn: Turn) -> None:
        self.s.metrics.dialog_turn(turn.kind, turn.node)
        entry = {
            "node": turn.node,
            "kind": turn.kind,
            "text": turn.text,
            "intent": turn.intent,
            "confidence": turn.confidence,
        }
        self.transcript.append(entry)
        if turn.kind == "prompt":
            self.prompts.recorded(entry)  # a barge-in adds how much of it was heard
        audio = b""
        if turn.kind == "recognized":
            audio, self._unmatched = self._unmatched, b""
        self.call.recorder.turn(
            turn.kind,
            node=turn.node,
            text=turn.text,
            intent=turn.intent,
            confidence=turn.confidence,
            audio=audio,
            rate=self.rate,
        )
        event: dict[str, Any] = {"event": turn.kind, "node": turn.node}
        if turn.kind == "prompt":
            event["text"] = turn.text
        elif turn.kind == "dtmf":
            event.update(digits=turn.text, intent=turn.intent)
        else:
            event.update(text=turn.text, intent=turn.intent, confidence=turn.confidence)
        self.call.publish(event)
        self.complaints.turn(turn)  # the complaint early warning watches every turn
