"""What the caller heard of the bot's prompts: where a barge-in cut one.

Each prompt is queued with marks through the player (`queue`): `prompt-<n>:<ms>` after each
`MARK_EVERY_MS` of its audio and at its end (`<ms>` its length), each sent right after the
audio before it. A far end that echoes marks as its playback reaches them (Twilio, the
browser softphone) tells us what was heard; once it has echoed one, a cut is placed at the
last mark echoed ("mark": heard at least that much, `MARK_EVERY_MS` at most short of it).
Before that, and on legs without marks (AudioSocket), at what the player has sent ("sent":
at most the player's lead and the far end's buffer ahead of what was heard).

Echoes of marks this module does not know, or no longer needs (of prompts heard to their
end, or cut: Twilio echoes every pending mark at once when told to clear), are ignored.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any, Literal

from ivr.call.player import Player
from ivr.transports.messages import FRAME_MS

MARK_EVERY_MS = 1000
"""A mark each second of a prompt: the heard position is that fine (Twilio then sends a
mark message for every ten audio messages)."""


@dataclass
class Prompt:
    number: int  # of the call's prompts, from 1
    text: str
    ms: int  # its length in whole frames (the pause queued after it not included)
    start: int  # its first frame's index among all the player ever queued
    turn: dict[str, Any] | None = None  # its entry in the call's transcript, once recorded
    marks: tuple[str, ...] = ()


@dataclass(frozen=True)
class Cut:
    """A barge-in stopped `prompt` `heard_ms` into it; `unheard` were queued after it."""

    prompt: Prompt
    heard_ms: int
    heard_by: Literal["mark", "sent"]
    unheard: tuple[Prompt, ...]


class Prompts:
    """The call's prompts still playing (or not yet known to be heard) and the marks in them."""

    def __init__(self) -> None:
        self._count = 0
        self._playing: deque[Prompt] = deque()
        self._marks: dict[str, tuple[Prompt, int]] = {}  # name → (its prompt, ms into it)
        self._heard: tuple[Prompt, int] | None = None  # the last mark echoed
        self.echoes = 0  # marks echoed in this call: the leg echoes them

    def queue(self, player: Player, pcm: bytes, text: str, *, barge_in: bool) -> Prompt:
        """Queue `pcm` (a prompt's audio) on `player`, its marks among it."""
        self._count += 1
        if len(pcm) % player.frame_bytes:  # whole frames, as the player would pad it
            pcm += b"\x00" * (player.frame_bytes - len(pcm) % player.frame_bytes)
        ms = len(pcm) * 1000 // player.bytes_per_s
        prompt = Prompt(self._count, text, ms, player.frames_queued)
        step = player.bytes_per_s * MARK_EVERY_MS // 1000
        for offset in range(0, len(pcm), step):
            player.enqueue(pcm[offset : offset + step], barge_in=barge_in)
            at = min(ms, (offset + step) * 1000 // player.bytes_per_s)
            name = f"prompt-{prompt.number}:{at}"
            self._marks[name] = (prompt, at)
            prompt.marks += (name,)
            player.mark(name)
        self._playing.append(prompt)
        return prompt

    def recorded(self, turn: dict[str, Any]) -> None:
        """The transcript's entry for the prompt queued last (its Turn follows its Say)."""
        if self._playing and self._playing[-1].turn is None:
            if self._playing[-1].text == turn.get("text"):
                self._playing[-1].turn = turn

    def echoed(self, name: str) -> None:
        """The far end's playback reached the mark `name`."""
        found = self._marks.get(name)
        if found is None:
            return
        self.echoes += 1
        prompt, at = found
        self._heard = found
        while self._playing and self._playing[0].number < prompt.number:
            self._forget(self._playing.popleft())
        if at >= prompt.ms and self._playing and self._playing[0] is prompt:
            self._forget(self._playing.popleft())

    def played_out(self) -> None:
        """The player sent everything: nothing queued can be cut any more."""
        while self._playing:
            self._forget(self._playing.popleft())

    def cut(self, player: Player) -> Cut | None:
        """A barge-in stops the player now: where it cut, and what it dropped. None when no
        prompt was cut (only the pause after the last one was still playing)."""
        position = player.position
        for i, prompt in enumerate(self._playing):
            heard = self._heard_of(prompt, position)
            if heard < prompt.ms:
                by: Literal["mark", "sent"] = "mark" if self.echoes else "sent"
                cut = Cut(prompt, heard, by, tuple(list(self._playing)[i + 1 :]))
                for entry, ms in [(prompt, heard)] + [(p, 0) for p in cut.unheard]:
                    if entry.turn is not None:
                        entry.turn["heard_ms"] = ms
                self.played_out()
                return cut
        self.played_out()
        return None

    def _heard_of(self, prompt: Prompt, position: int) -> int:
        if not self.echoes:
            return max(0, min(prompt.ms, (position - prompt.start) * FRAME_MS))
        if self._heard is None:
            return 0
        last, at = self._heard
        if prompt.number < last.number:
            return prompt.ms
        return at if prompt is last else 0

    def _forget(self, prompt: Prompt) -> None:
        for name in prompt.marks:
            self._marks.pop(name, None)
