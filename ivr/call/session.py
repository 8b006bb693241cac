"""One call's pipeline: transport frames → VAD endpointer → recognizer → dialog engine →
TTS/prompt audio → transport.

A single consumer loop handles every input of the call in order (caller audio and keys from
the receiver task, recognition and fetch results from their tasks, the end of playback), so
the dialog state has one writer and needs no locks. Every task the call starts is owned by
the session and cancelled when it ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ivr.asr.base import RecognitionResult
from ivr.audio.codecs import Encoding
from ivr.audio.vad import Endpointer, EndpointerConfig
from ivr.call.lag import InboundLag
from ivr.call.leg import Leg
from ivr.call.player import Player
from ivr.call.recorder import CallRecorder
from ivr.call.recording import CallAudio, recording_path
from ivr.call.registry import Admission
from ivr.call.services import CallLimits, CallServices
from ivr.callbacks import InvalidNumber
from ivr.clock import today_in
from ivr.dialog.engine import DialogEngine
from ivr.dialog.state import DialogState
from ivr.dialog.types import (
    Action,
    BookCallback,
    Disconnect,
    DtmfEntered,
    Fetch,
    FetchDone,
    Handoff,
    Listen,
    NoInput,
    Recognized,
    Say,
    Start,
    Survey,
    Turn,
)
from ivr.events import NoSpeech, SpeechEnded, SpeechStarted
from ivr.nlu.classifier import prepare as prepare_meaning
from ivr.transports.messages import (
    CallerAudio,
    CallerHangup,
    CallStart,
    Dtmf,
    EndCall,
    InboundMessage,
    Mark,
    OutboundMessage,
    ProtocolError,
    SetMark,
    TransportError,
)

__all__ = ["CallLimits", "CallServices", "CallSession", "end_reason", "new_call_id"]

log = logging.getLogger(__name__)

MAX_PENDING_INBOUND = 200  # caller messages (4 s of 20 ms frames) queued before reading waits
MAX_PROVIDER_ID = 128  # a far-end call id longer than this is refused
MAX_REASON = 200  # characters of an end reason
LEG_LIMIT_S = 5.0  # for each of hanging up and closing the leg
PROMPT_LIMIT_S = 10.0  # for the "call too long" prompt

_TEARDOWNS: set[asyncio.Task[None]] = set()
"""Teardowns still running after their call's task was cancelled (see CallSession.run)."""


@dataclass
class _Input:
    kind: str  # inbound | asr | fetch | drained | closed | error | dtmf_timeout
    value: Any = None


class CallSession:
    """One call, from its first message to its teardown.

    `run()` is the call's supervisor: it owns every task the call starts, turns any failure
    of any of them (any exception, BaseException subclasses included; cancellation of the
    whole call too) into an end reason, and whatever happened runs the same bounded
    teardown exactly once (see `_teardown`). The call's id is the server's (`call_id`); the
    far end's own id for it is `provider_call_id`.
    """

    def __init__(self, leg: Leg, services: CallServices, call_id: str | None = None) -> None:
        self.leg = leg
        self.s = services
        self.call_id = call_id or new_call_id()
        self.provider_call_id: str | None = None
        self.end_reason = "unknown"
        self._inputs: asyncio.Queue[_Input] = asyncio.Queue()
        # Caller messages waiting in _inputs: the receiver stops reading the socket at this
        # many, so a far end that floods frames fills its own TCP window, not our memory.
        self._inbound_room = asyncio.Semaphore(MAX_PENDING_INBOUND)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._listen: Listen | None = None
        self._digits = ""
        self._dtmf_timer: asyncio.TimerHandle | None = None
        self._ending: str | None = None  # set by Disconnect/Handoff: end once playback drains
        self._utterance = 0  # ignore recognition results of utterances overtaken by events
        self._speech_end_at: float | None = None
        self._admitted = False
        self._torn_down = False
        self.turn_latencies: list[float] = []  # caller's input decided → first bot audio
        self.transcript: list[dict[str, Any]] = []  # kept with a callback booked in the call
        self.recorder = CallRecorder(None, "")
        self.recording: CallAudio | None = None
        self._player: Player | None = None  # from the call's start (see `player`)
        self._unmatched = b""  # audio of the utterance the dialog just found no match for

    @property
    def player(self) -> Player:
        """The call's audio out; it exists from the start of `_serve` (or of `_busy`)."""
        assert self._player is not None, "no player before the call started"
        return self._player

    @player.setter
    def player(self, player: Player) -> None:
        self._player = player

    # --- lifecycle ------------------------------------------------------------------------

    async def run(self) -> str:
        try:
            first = await asyncio.wait_for(self.leg.receive(), self.s.limits.start_s)
        except TimeoutError:
            return await self._abort("no start message")
        except ProtocolError as exc:
            return await self._abort(end_reason(f"protocol error: {exc}"))
        except Exception as exc:
            log.warning("call on %s: reading its start failed: %r", self.leg.name, exc)
            return await self._abort("transport error")
        if not isinstance(first, CallStart):
            return await self._abort(f"expected the call to start, got {type(first).__name__}")
        if len(first.call_id) > MAX_PROVIDER_ID:
            return await self._abort("protocol error: the call id is too long")
        if first.call_id and first.call_id != self.call_id:
            self.provider_call_id = first.call_id
        admission = self.s.registry.admit(self.call_id, self.provider_call_id)
        if admission is Admission.DUPLICATE:
            log.warning(
                "call %s refused: a call with the far-end id %r is in progress",
                self.call_id,
                self.provider_call_id,
            )
            return await self._abort("duplicate call id")
        if admission is Admission.BUSY:
            log.warning(
                "call %s rejected: %d calls in progress", self.call_id, self.s.registry.active
            )
            await self._busy(first)
            return "busy"
        self._admitted = True
        self.recorder = CallRecorder(
            self.s.store,
            self.call_id,
            tz=self.s.hours.tz,
            data_dir=self.s.data_dir,
            writer=self.s.records,
        )
        cancelled = False
        try:
            async with asyncio.timeout(self.s.limits.max_call_s) as deadline:
                await self._serve(first)
        except TimeoutError:
            if deadline.expired():
                self.end_reason = "max_duration"
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(
                        self._say_now(self.s.limits.too_long_prompt, first.rate), PROMPT_LIMIT_S
                    )
            else:
                log.exception("call %s failed", self.call_id)
                self.end_reason = "internal_error"
        except ConnectionError as exc:  # a send to the leg: the caller is gone
            log.info("call %s: the connection was lost: %r", self.call_id, exc)
            self.end_reason = "connection_lost"
        except asyncio.CancelledError:  # the server shuts down, or the peer vanished
            # (aiohttp cancels a handler whose connection is lost, with handler_cancellation)
            self.end_reason = "server_shutdown" if self.s.shutting_down else "connection_lost"
            cancelled = True
        except BaseException:  # anything at all: the call still ends, and ends cleanly
            log.exception("call %s failed", self.call_id)
            if self.end_reason == "unknown":
                self.end_reason = "internal_error"
        # In its own task: a second cancellation (or a deadline of the caller's) cannot cut
        # the teardown short, so the slot and the record are always released.
        teardown = asyncio.create_task(self._teardown(), name=f"{self.call_id}:teardown")
        _TEARDOWNS.add(teardown)
        teardown.add_done_callback(_TEARDOWNS.discard)
        try:
            await asyncio.shield(teardown)
        except asyncio.CancelledError:
            cancelled = True
        if cancelled:
            raise asyncio.CancelledError
        return self.end_reason

    async def _abort(self, reason: str) -> str:
        """End a call that never got a slot (no start, a bad one, a duplicate id)."""
        log.warning("call on %s ended: %s", self.leg.name, reason)
        self.end_reason = reason
        self.s.metrics.call_ended(reason)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.leg.send(EndCall(reason)), LEG_LIMIT_S)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.leg.close(), LEG_LIMIT_S)
        return reason

    async def _busy(self, start: CallStart) -> None:
        self._rate = start.rate
        self.player = player = Player(self.leg.send, start.rate, start.ptime_ms)
        player.start()
        try:
            await asyncio.wait_for(self._say_now(self.s.limits.busy_prompt, start.rate), 30)
        except Exception as exc:
            log.warning("call %s: the busy prompt failed: %r", self.call_id, exc)
        finally:
            await player.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.leg.send(EndCall("busy")), LEG_LIMIT_S)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.leg.close(), LEG_LIMIT_S)
            self._publish({"event": "hangup", "reason": "busy"})
            self.s.registry.end(self.call_id)
            self.s.metrics.call_ended("busy")

    async def _say_now(self, text: str, rate: int) -> None:
        """A prompt outside the flow (busy, call too long), played to the end."""
        self._publish({"event": "prompt", "node": None, "text": text})
        pcm = await self.s.prompts.render(text, rate=rate, encoding=Encoding.PCM16)
        self.player.enqueue(pcm)
        await self.player.drained()

    async def _teardown(self) -> None:
        """End the call exactly once: stop our own work, hang up the leg, stop reading from
        it, finish the recording and the record, then free the slot. Each step is bounded
        and isolated: one that fails or hangs is logged, and the next still runs."""
        if self._torn_down:
            return
        self._torn_down = True
        steps: list[tuple[str, Callable[[], Awaitable[None]], float]] = [
            ("stop tasks", self._stop_tasks, 5),
            ("stop playback", self._stop_player, 5),
            ("hang up", self._hang_up, 2 * LEG_LIMIT_S + 1),
            ("stop reading", self._stop_receiving, 5),
            ("finish recording", self._finish_recording, 30),
            # The record, then the event: a feed consumer may fetch the finished call at once.
            ("finish record", lambda: self.recorder.finish(self.end_reason), 15),
        ]
        try:
            for name, step, limit in steps:
                try:
                    await asyncio.wait_for(step(), limit)
                except TimeoutError:
                    log.error("call %s: %s took over %g s", self.call_id, name, limit)
                except Exception as exc:
                    log.error("call %s: %s failed: %r", self.call_id, name, exc)
        finally:
            self._release()

    async def _stop_tasks(self) -> None:
        if self._dtmf_timer is not None:
            self._dtmf_timer.cancel()
        await _cancel([t for t in self._tasks if not t.get_name().endswith(":receive")])

    async def _stop_player(self) -> None:
        if self._player is not None:
            await self._player.close()

    async def _hang_up(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.leg.send(EndCall(self.end_reason)), LEG_LIMIT_S)
        await asyncio.wait_for(self.leg.close(), LEG_LIMIT_S)

    async def _stop_receiving(self) -> None:
        await _cancel([t for t in self._tasks if t.get_name().endswith(":receive")])

    async def _finish_recording(self) -> None:
        if self.recording is not None:  # before the hangup event: then it can be fetched
            await self.recording.finish()

    def _release(self) -> None:
        """Free the call's slot and close its feed: nothing here awaits or may fail."""
        player = self._player
        sent = player.frames_sent if player is not None else 0
        underruns = player.underruns if player is not None else 0
        steps: tuple[Callable[[], None], ...] = (
            lambda: self._publish({"event": "hangup", "reason": self.end_reason}),
            lambda: self.s.registry.end(self.call_id),
            lambda: self.s.registry.release(self.call_id, sent, underruns, self.turn_latencies),
            lambda: self.s.metrics.call_ended(self.end_reason),
        )
        for step in steps:
            try:
                step()
            except Exception:
                log.exception("call %s: releasing it failed", self.call_id)
        log.info("call %s ended: %s", self.call_id, self.end_reason)

    def _spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> None:
        task = asyncio.create_task(coro, name=f"{self.call_id}:{name}")
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        """A task of the call ended: one that failed ends the call (never silently)."""
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            stage = task.get_name().rsplit(":", 1)[-1]
            log.error("call %s: %s failed", self.call_id, stage, exc_info=exc)
            self._inputs.put_nowait(_Input("error", f"internal_error: {stage}"))

    def _player_failed(self, exc: BaseException) -> None:
        log.info("call %s: sending audio failed (%r): the caller is gone", self.call_id, exc)
        self._inputs.put_nowait(_Input("error", "connection_lost"))

    async def _play(self, message: OutboundMessage) -> None:
        """The player's way to the leg: what the caller hears is recorded on the way."""
        if self.recording is not None:
            self.recording.sent(message)
        await self.leg.send(message)

    def _publish(self, event: dict[str, Any]) -> None:
        event.setdefault("at", round(time.time(), 3))
        self.s.registry.publish(self.call_id, event)

    # --- the call -------------------------------------------------------------------------

    async def _serve(self, start: CallStart) -> None:
        self._rate = start.rate
        self._lag = InboundLag(start.rate)
        self.endpointer = Endpointer(
            start.rate, EndpointerConfig(end_silence_ms=self.s.limits.end_silence_ms)
        )
        if self.s.recordings is not None:
            path = recording_path(self.s.recordings, self.call_id)
            self.recording = CallAudio(path, start.rate, self.s.limits.max_call_s)
        self.player = Player(self._play, start.rate, start.ptime_ms)
        self.player.on_first_frame = self._first_bot_frame
        self.player.on_drained = lambda: self._inputs.put_nowait(_Input("drained"))
        self.player.on_error = self._player_failed
        self.player.start()
        self._spawn(self._receive(), "receive")
        flow = self.s.flow
        self.recorder.start(
            transport=self.leg.name,
            caller=start.caller,
            flow=flow.name,
            flow_version=flow.version,
            provider_call_id=self.provider_call_id,
            node_id=self.s.node_id or None,
        )
        self._publish(
            {
                "event": "call_started",
                "call_id": self.call_id,
                "provider_call_id": self.provider_call_id,
                "caller": start.caller,
                "transport": self.leg.name,
                "flow": flow.name,
                "flow_version": flow.version,
            }
        )
        clock, hours = self.s.clock, self.s.hours
        self.engine = DialogEngine(flow, today_in(clock, hours.tz), clock, hours)
        self.state: DialogState
        self.state, actions = self.engine.start(Start(caller=start.caller, params=start.params))
        if self.state.refused_params:  # the far end tried to set what the flow sets itself
            names = ", ".join(self.state.refused_params)
            log.warning(
                "call %s: call parameters not taken (the flow sets them): %s", self.call_id, names
            )
        await self._act(actions)
        while self.end_reason == "unknown":
            item = await self._inputs.get()
            await self._handle(item)

    async def _receive(self) -> None:
        idle = self.s.limits.idle_s
        loop = asyncio.get_running_loop()
        try:
            # One deadline, moved on at most once a second (so it ends the call between
            # `idle` and `idle` + 1 s after the last message): a wait_for per message made a
            # task and a timer for each of the 50 frames a second of every call.
            async with asyncio.timeout(idle + 1) as deadline:
                moved = loop.time()
                while (msg := await self.leg.receive()) is not None:
                    await self._inbound_room.acquire()  # released once the message is handled
                    self._inputs.put_nowait(_Input("inbound", msg))
                    if (now := loop.time()) - moved >= 1.0:
                        moved = now
                        deadline.reschedule(now + idle + 1)
        except TimeoutError:
            self._inputs.put_nowait(_Input("error", f"idle for {idle:g} s"))
            return
        except ProtocolError as exc:
            self._inputs.put_nowait(_Input("error", f"protocol error: {exc}"))
            return
        self._inputs.put_nowait(_Input("closed"))

    async def _handle(self, item: _Input) -> None:
        if item.kind == "inbound":
            self._inbound_room.release()
            await self._inbound(item.value)
        elif item.kind == "asr":
            utterance, result, audio = item.value
            if utterance == self._utterance and self._listen is not None:
                await self._recognized(result, audio)
        elif item.kind == "fetch":
            await self._dialog(item.value)
        elif item.kind == "drained":
            if self.player.playing:
                return  # stale: a barge-in stop, and new prompts are already queued
            self.endpointer.prompt_finished()
            if self._ending is not None:
                self.end_reason = self._ending
        elif item.kind == "dtmf_timeout":
            if self._digits and self._listen is not None:
                await self._submit_digits()
        elif item.kind == "closed":
            self.end_reason = "caller_hangup"
        elif item.kind == "error":
            log.warning("call %s: %s", self.call_id, item.value)
            self.end_reason = end_reason(str(item.value))

    async def _inbound(self, msg: InboundMessage) -> None:
        if isinstance(msg, CallerAudio):
            if (lag := self._lag.heard(len(msg.pcm))) is not None:
                self.s.metrics.inbound_lag_sample(lag)
            if self.recording is not None:
                self.recording.caller(msg.pcm)
            for event in self.endpointer.feed(msg.pcm):
                await self._vad(event)
        elif isinstance(msg, Dtmf):
            await self._dtmf(msg.digit)
        elif isinstance(msg, CallerHangup):
            self.end_reason = "caller_hangup"
        elif isinstance(msg, TransportError):
            self.end_reason = end_reason(f"transport error: {msg.message}")
        elif isinstance(msg, CallStart):
            self.end_reason = "protocol error: a second start message"
        elif isinstance(msg, Mark):
            pass  # playback position is tracked by the player itself

    async def _vad(self, event: SpeechStarted | SpeechEnded | NoSpeech) -> None:
        if self._listen is None:
            return
        if isinstance(event, SpeechStarted):
            if event.barge_in and self.player.playing:
                await self.player.stop()
                self._publish({"event": "barge_in", "node": self.state.node})
        elif isinstance(event, SpeechEnded):
            # The caller answered: no "no input" while the recognizer works on it (a slow
            # decode must not turn into a reprompt); the dialog's next Listen re-arms it.
            self.endpointer.cancel_no_input_timer()
            self._utterance += 1
            self._speech_end_at = time.perf_counter()
            self._spawn(self._recognize(self._utterance, event.audio, self._listen), "asr")
        else:
            self._utterance += 1
            await self._dialog(NoInput())

    async def _recognize(self, utterance: int, audio: bytes, listen: Listen) -> None:
        started = time.perf_counter()
        try:
            result = await self.s.asr.recognize(
                audio, listen.grammar, rate=self._rate, hint=listen.hint
            )
        except Exception:  # the caller hears a no-match reprompt rather than silence
            log.exception("call %s: recognition failed", self.call_id)
            result = RecognitionResult("", 0.0, "error")
        if result.text:
            try:  # the sentence embedding, off the loop: the dialog then finds it cached
                await self.s.asr.run(prepare_meaning, result.text)
            except Exception:
                log.exception("call %s: sentence embedding failed", self.call_id)
        mode = "grammar" if listen.grammar is not None else "free"
        self.s.metrics.asr_time(mode, time.perf_counter() - started)
        self._inputs.put_nowait(_Input("asr", (utterance, result, audio)))

    async def _recognized(self, result: RecognitionResult, audio: bytes) -> None:
        self._listen = None  # as in _dialog: a new Listen comes with the engine's answer
        actions = self.engine.handle(self.state, Recognized(result.text, result.confidence))
        kinds = [a.kind for a in actions if isinstance(a, Turn)]
        if kinds[:2] == ["recognized", "no_match"]:
            # Speech the flow could not use: its recording (kept with the recognized turn)
            # shows grammar tuners what callers say. Only these, so disk use stays small.
            self._unmatched = audio
        await self._act(actions)

    async def _dtmf(self, digit: str) -> None:
        listen = self._listen
        if listen is None:
            return
        if self.player.playing:
            await self.player.stop()  # a key press interrupts the prompt, like speech
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
                self.s.limits.interdigit_ms / 1000,
                lambda: self._inputs.put_nowait(_Input("dtmf_timeout")),
            )

    async def _submit_digits(self) -> None:
        digits, self._digits = self._digits, ""
        if self._dtmf_timer is not None:
            self._dtmf_timer.cancel()
            self._dtmf_timer = None
        self._speech_end_at = time.perf_counter()
        await self._dialog(DtmfEntered(digits))

    async def _dialog(self, event: Any) -> None:
        self._listen = None  # a new Listen comes with the engine's answer
        await self._act(self.engine.handle(self.state, event))

    # --- actions --------------------------------------------------------------------------

    async def _act(self, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, Say):
                pcm = await self.s.prompts.render(
                    action.text, key=action.prompt_key, rate=self._rate, encoding=Encoding.PCM16
                )
                self.player.enqueue(pcm)
                self.player.enqueue(b"\x00" * (self._rate // 10))  # a short pause between prompts
                self.endpointer.prompt_started()
                await self.leg.send(SetMark(f"prompt-{self.player.frames_sent}"))
            elif isinstance(action, Listen):
                self._listen = action
                self._digits = ""
                self.endpointer.set_no_input_ms(action.no_input_ms)
                self.endpointer.set_end_silence_ms(action.end_silence_ms)
                if not self.player.playing:
                    self.endpointer.prompt_finished()
                self._publish({"event": "listen", "node": self.state.node})
            elif isinstance(action, Fetch):
                self._spawn(self._fetch(action), "fetch")
            elif isinstance(action, BookCallback):
                self._spawn(self._book(action), "book")
            elif isinstance(action, Handoff | Disconnect):
                reason = (
                    action.reason if isinstance(action, Disconnect) else f"handoff: {action.reason}"
                )
                self._listen = None
                if self.player.playing:
                    self._ending = reason
                else:
                    self.end_reason = reason
            elif isinstance(action, Turn):
                self._turn(action)
            elif isinstance(action, Survey):
                self.recorder.survey(action.score)

    async def _fetch(self, action: Fetch) -> None:
        done: FetchDone = await self.s.fulfillment.fetch(action)
        self._inputs.put_nowait(_Input("fetch", done))

    async def _book(self, action: BookCallback) -> None:
        done = FetchDone(error="callbacks are not configured")
        if self.s.callbacks is not None:
            internal = ("open_now", "business_hours", "handoff_reason")
            given = {
                k: v
                for k, v in action.variables.items()
                if k not in internal and not k.endswith("_spoken")
            }
            transcript = {
                "call_id": self.call_id,
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
                )
            except InvalidNumber as exc:  # no number to call: the caller hears the fallback
                log.warning("call %s: %s", self.call_id, exc)
                done = FetchDone(error=f"booking failed: {exc}")
            except Exception as exc:  # the store is down: the caller hears the fallback
                log.exception("call %s: booking a callback failed", self.call_id)
                done = FetchDone(error=f"booking failed: {exc}")
            else:
                done = FetchDone({"callback_id": cb.id})
                self._publish(
                    {
                        "event": "callback_booked",
                        "callback_id": cb.id,
                        "number": cb.number,
                        "due_at": action.due_at,
                        "reason": cb.reason,
                        "created": created,
                    }
                )
        self._inputs.put_nowait(_Input("fetch", done))

    def _turn(self, turn: Turn) -> None:
        self.s.metrics.dialog_turn(turn.kind, turn.node)
        self.transcript.append(
            {
                "node": turn.node,
                "kind": turn.kind,
                "text": turn.text,
                "intent": turn.intent,
                "confidence": turn.confidence,
            }
        )
        audio = b""
        if turn.kind == "recognized":
            audio, self._unmatched = self._unmatched, b""
        self.recorder.turn(
            turn.kind,
            node=turn.node,
            text=turn.text,
            intent=turn.intent,
            confidence=turn.confidence,
            audio=audio,
            rate=self._rate,
        )
        event: dict[str, Any] = {"event": turn.kind, "node": turn.node}
        if turn.kind == "prompt":
            event["text"] = turn.text
        elif turn.kind == "dtmf":
            event.update(digits=turn.text, intent=turn.intent)
        else:
            event.update(text=turn.text, intent=turn.intent, confidence=turn.confidence)
        self._publish(event)

    def _first_bot_frame(self) -> None:
        if self._speech_end_at is not None:
            latency = time.perf_counter() - self._speech_end_at
            self.turn_latencies.append(latency)
            self.s.metrics.turn_latency.observe(latency)
            self._speech_end_at = None


def end_reason(text: str) -> str:
    """A reason as stored, sent in events and webhooks: the far end's words in it (an
    unknown event's name, say) are cut short."""
    return text if len(text) <= MAX_REASON else text[: MAX_REASON - 1] + "…"


def new_call_id() -> str:
    """The server's id for a new call."""
    return str(uuid.uuid4())


async def _cancel(tasks: list[asyncio.Task[Any]]) -> None:
    for task in tasks:
        task.cancel()
    if tasks:
        # Bounded: a task stuck in a transport read must not keep the call open.
        await asyncio.wait(tasks, timeout=2)
