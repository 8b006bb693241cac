"""One call's pipeline: transport frames → VAD endpointer → recognizer → dialog engine →
TTS/prompt audio → transport.

A single consumer loop handles every input of the call in order (caller audio and keys from
the receiver task, recognition and fetch results from their tasks, the end of playback), so
the dialog state has one writer and needs no locks. Every task the call starts is owned by
the session and cancelled when it ends.

The session is the call's I/O: its start and admission, the receive loop, the audio out
(the player) and the recording, the supervision of its tasks and the teardown. What is said
and heard in turn — listening, keys, barge-in, recognition, the dialog's actions — is its
`Conversation` (`ivr.call.conversation`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, replace
from typing import Any

from ivr.audio.codecs import Encoding
from ivr.call import calllog
from ivr.call.conversation import Conversation
from ivr.call.lag import InboundLag
from ivr.call.leg import Leg
from ivr.call.player import Player
from ivr.call.recorder import CallRecorder
from ivr.call.recording import CallAudio, recording_path
from ivr.call.registry import Admission
from ivr.call.services import CallLimits, CallServices
from ivr.callerid import caller_number
from ivr.logs import CALL, CallFields, event
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
    kind: str  # inbound | closed | error; else the conversation's (Conversation.handle)
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
        self.caller: str | None = None  # from the far end's start message
        self.end_reason = "unknown"
        self._began = time.monotonic()  # the far end is connected: the call's duration
        # The call's fields on every record made while it is served (ivr.logs).
        self.log_fields = CallFields(self.call_id, node=self._node)
        self._inputs: asyncio.Queue[_Input] = asyncio.Queue()
        # Caller messages waiting in _inputs: the receiver stops reading the socket at this
        # many, so a far end that floods frames fills its own TCP window, not our memory.
        self._inbound_room = asyncio.Semaphore(MAX_PENDING_INBOUND)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._admitted = False
        self._torn_down = False
        self.recorder = CallRecorder(None, "")
        self.recording: CallAudio | None = None
        self._player: Player | None = None  # from the call's start (see `player`)
        self.talk: Conversation | None = None  # the turn-taking, once the call is served

    @property
    def player(self) -> Player:
        """The call's audio out; it exists from the start of `_serve` (or of `_busy`)."""
        assert self._player is not None, "no player before the call started"
        return self._player

    @player.setter
    def player(self, player: Player) -> None:
        self._player = player

    def _node(self) -> str | None:
        return self.talk.node if self.talk is not None else None

    @property
    def turn_latencies(self) -> list[float]:
        """Caller's input decided → first bot audio, for each turn of the call."""
        return self.talk.turn_latencies if self.talk is not None else []

    # --- what the conversation uses (see ivr.call.conversation.CallPort) -------------------

    def publish(self, event: dict[str, Any]) -> None:
        event.setdefault("at", round(time.time(), 3))
        self.s.registry.publish(self.call_id, event)

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> None:
        task = asyncio.create_task(coro, name=f"{self.call_id}:{name}")
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def post(self, kind: str, value: Any = None) -> None:
        self._inputs.put_nowait(_Input(kind, value))

    def end(self, reason: str) -> None:
        self.end_reason = reason

    # --- lifecycle ------------------------------------------------------------------------

    async def run(self) -> str:
        # Every record of the call (this task's and those it starts) carries its fields.
        fields = CALL.set(self.log_fields)
        try:
            return await self._run()
        finally:
            CALL.reset(fields)

    async def _run(self) -> str:
        start = await self._start()
        if start is None:
            return self.end_reason
        self.caller = self.log_fields.caller = start.caller
        admission = self.s.registry.admit(self.call_id, self.provider_call_id)
        if admission is Admission.DUPLICATE:
            log.warning(
                "call %s refused: a call with the far-end id %r is in progress",
                self.call_id,
                self.provider_call_id,
                extra=event("call_refused"),
            )
            return await self._abort("duplicate call id")
        if admission is Admission.BUSY:
            log.warning(
                "call %s rejected: %d calls in progress", self.call_id, self.s.registry.active
            )
            await self._busy(start)
            return "busy"
        self._admitted = True
        self.recorder = CallRecorder(
            self.s.store,
            self.call_id,
            tz=self.s.hours.tz,
            data_dir=self.s.data_dir,
            writer=self.s.records,
        )
        cancelled = await self._supervise(start)
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

    async def _start(self) -> CallStart | None:
        """The far end's start message, checked; None when the call was aborted."""
        try:
            first = await asyncio.wait_for(self.leg.receive(), self.s.limits.start_s)
        except TimeoutError:
            await self._abort("no start message")
            return None
        except ProtocolError as exc:
            await self._abort(end_reason(f"protocol error: {exc}"))
            return None
        except Exception as exc:
            log.warning("call on %s: reading its start failed: %r", self.leg.name, exc)
            await self._abort("transport error")
            return None
        if not isinstance(first, CallStart):
            await self._abort(f"expected the call to start, got {type(first).__name__}")
            return None
        if len(first.call_id) > MAX_PROVIDER_ID:
            await self._abort("protocol error: the call id is too long")
            return None
        if first.call_id and first.call_id != self.call_id:
            self.provider_call_id = first.call_id
        return self._e164(first)

    def _e164(self, start: CallStart) -> CallStart:
        """The caller ID in E.164, national numbers read as IVR_DEFAULT_REGION's (the
        transports checked it is a number; they know no region), and so the far end's own
        copy of it among the parameters."""
        region = self.s.region
        params = dict(start.params)
        if params.get("caller"):
            params["caller"] = caller_number(params["caller"], region) or params["caller"]
        return replace(start, caller=caller_number(start.caller, region), params=params)

    async def _supervise(self, start: CallStart) -> bool:
        """Serve the call; whatever ends it becomes its end reason. True if cancelled."""
        try:
            async with asyncio.timeout(self.s.limits.max_call_s) as deadline:
                await self._serve(start)
        except TimeoutError:
            if deadline.expired():
                self.end_reason = "max_duration"
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(
                        self._say_now(self.s.limits.too_long_prompt, start.rate), PROMPT_LIMIT_S
                    )
            else:
                log.exception("call %s failed", self.call_id, extra=event("call_failed"))
                self.end_reason = "internal_error"
        except ConnectionError as exc:  # a send to the leg: the caller is gone
            log.info("call %s: the connection was lost: %r", self.call_id, exc)
            self.end_reason = "connection_lost"
        except asyncio.CancelledError:  # the server shuts down, or the peer vanished
            # (aiohttp cancels a handler whose connection is lost, with handler_cancellation)
            self.end_reason = "server_shutdown" if self.s.shutting_down else "connection_lost"
            return True
        except BaseException:  # anything at all: the call still ends, and ends cleanly
            log.exception("call %s failed", self.call_id, extra=event("call_failed"))
            if self.end_reason == "unknown":
                self.end_reason = "internal_error"
        return False

    async def _abort(self, reason: str) -> str:
        """End a call that never got a slot (no start, a bad one, a duplicate id)."""
        self.end_reason = reason
        self._log_end(logging.WARNING)
        self.s.metrics.call_ended(reason)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.leg.send(EndCall(reason)), LEG_LIMIT_S)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.leg.close(), LEG_LIMIT_S)
        return reason

    async def _busy(self, start: CallStart) -> None:
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
            self.publish({"event": "hangup", "reason": "busy"})
            self.s.registry.end(self.call_id)
            self.s.metrics.call_ended("busy")
            self.end_reason = "busy"
            self._log_end(logging.INFO)

    async def _say_now(self, text: str, rate: int) -> None:
        """A prompt outside the flow (busy, call too long), played to the end."""
        self.publish({"event": "prompt", "node": None, "text": text})
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
        if self.talk is not None:
            self.talk.stop()
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
            lambda: self.publish({"event": "hangup", "reason": self.end_reason}),
            lambda: self.s.registry.end(self.call_id),
            lambda: self.s.registry.release(self.call_id, sent, underruns, self.turn_latencies),
            lambda: self.s.metrics.call_ended(self.end_reason),
        )
        for step in steps:
            try:
                step()
            except Exception:
                log.exception("call %s: releasing it failed", self.call_id)
        self._log_end(logging.INFO)

    def _log_end(self, level: int) -> None:
        took = time.monotonic() - self._began
        calllog.ended(level, self.call_id, self.end_reason, self.caller, took, self.leg.name)

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

    # --- the call -------------------------------------------------------------------------

    async def _serve(self, start: CallStart) -> None:
        self._lag = InboundLag(start.rate)
        if self.s.recordings is not None:
            path = recording_path(self.s.recordings, self.call_id)
            self.recording = CallAudio(path, start.rate, self.s.limits.max_call_s)
        self.player = Player(self._play, start.rate, start.ptime_ms)
        self.talk = talk = Conversation(self, start.rate)
        self.player.on_first_frame = talk.first_bot_frame
        self.player.on_drained = lambda: self.post("drained")
        self.player.on_interruptible = lambda: self.post("typeahead")
        self.player.on_error = self._player_failed
        self.player.start()
        self.spawn(self._receive(), "receive")
        flow = self.s.flow
        self.recorder.start(
            transport=self.leg.name,
            caller=start.caller,
            flow=flow.name,
            flow_version=flow.version,
            provider_call_id=self.provider_call_id,
            node_id=self.s.node_id or None,
        )
        flow_id = (flow.name, flow.version)
        calllog.started(self.call_id, start.caller, self.leg.name, flow_id, self.provider_call_id)
        self.publish(
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
        await talk.start(flow, start)
        while self.end_reason == "unknown":
            item = await self._inputs.get()
            await self._handle(item, talk)

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

    async def _handle(self, item: _Input, talk: Conversation) -> None:
        if item.kind == "inbound":
            self._inbound_room.release()
            await self._inbound(item.value, talk)
        elif item.kind == "closed":
            self.end_reason = self._hung_up()
        elif item.kind == "error":
            log.warning("call %s: %s", self.call_id, item.value, extra=event("call_error"))
            self.end_reason = end_reason(str(item.value))
        else:  # the results of the conversation's own work, and the player's news
            await talk.handle(item.kind, item.value)

    def _hung_up(self) -> str:
        """The far end left: during a transfer, that is the caller taken away to the agent
        (`ivr.call.transfer`)."""
        transferring = self.talk is not None and self.talk.transferring
        return "transferred" if transferring else "caller_hangup"

    async def _inbound(self, msg: InboundMessage, talk: Conversation) -> None:
        if isinstance(msg, CallerAudio):
            if (lag := self._lag.heard(len(msg.pcm))) is not None:
                self.s.metrics.inbound_lag_sample(lag)
            if self.recording is not None:
                self.recording.caller(msg.pcm)
            await talk.audio(msg.pcm)
        elif isinstance(msg, Dtmf):
            await talk.dtmf(msg.digit)
        elif isinstance(msg, Mark):
            talk.echoed(msg.name)  # the caller's playback reached it
        elif isinstance(msg, CallerHangup):
            self.end_reason = self._hung_up()
        elif isinstance(msg, TransportError):
            self.end_reason = end_reason(f"transport error: {msg.message}")
        elif isinstance(msg, CallStart):
            self.end_reason = "protocol error: a second start message"


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
