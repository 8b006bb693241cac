"""What the caller heard of the prompts: where a barge-in cut one (ivr.call.heard)."""

from __future__ import annotations

from typing import Any

from ivr.call.heard import Prompts
from ivr.call.player import Player
from ivr.transports.messages import OutboundMessage, SetMark

RATE = 8000


async def _nowhere(message: OutboundMessage) -> None:
    raise AssertionError("the player is not started in these tests")


def seconds(s: float) -> bytes:
    return b"\x01\x00" * int(RATE * s)


def queued(*lengths: float) -> tuple[Player, Prompts, list[dict[str, Any]]]:
    """A player (not started: what it sent is set by hand) with prompts of `lengths` s."""
    player, prompts = Player(_nowhere, RATE), Prompts()
    turns = []
    for n, length in enumerate(lengths, 1):
        prompts.queue(player, seconds(length), f"prompt {n}", barge_in=True)
        turns.append({"kind": "prompt", "text": f"prompt {n}"})
        prompts.recorded(turns[-1])
        player.enqueue(b"\x00" * 800)  # the pause after each
    return player, prompts, turns


def test_marks_each_second_and_at_the_end_of_each_prompt() -> None:
    player, _, _ = queued(2.5, 1.0)
    marks = [item.name for item in player._queue if isinstance(item, SetMark)]
    assert marks == ["prompt-1:1000", "prompt-1:2000", "prompt-1:2500", "prompt-2:1000"]


def test_without_echoes_a_cut_is_where_the_player_was() -> None:
    player, prompts, turns = queued(2.5, 1.0)
    player.frames_sent = 60  # 1.2 s
    cut = prompts.cut(player)
    assert cut is not None and cut.heard_by == "sent"
    assert (cut.prompt.number, cut.heard_ms, cut.prompt.ms) == (1, 1200, 2500)
    assert [p.number for p in cut.unheard] == [2]
    assert [t.get("heard_ms") for t in turns] == [1200, 0]  # the transcript says so
    # The next prompts start after all that was queued (sent or dropped).
    player.frames_dropped = player.frames_queued - player.frames_sent
    prompts.queue(player, seconds(1.0), "next", barge_in=True)
    player.frames_sent += 10
    cut = prompts.cut(player)
    assert cut is not None and (cut.prompt.text, cut.heard_ms) == ("next", 200)


def test_with_echoes_a_cut_is_at_the_last_mark_the_caller_echoed() -> None:
    player, prompts, turns = queued(2.5, 1.0, 1.0)
    player.frames_sent = player.frames_queued  # all sent ahead: only the echoes tell
    prompts.echoed("prompt-1:1000")
    prompts.echoed("who-knows")  # not ours: ignored
    prompts.echoed("prompt-1:2500")  # prompt 1 heard to its end
    prompts.echoed("prompt-2:1000")  # and prompt 2
    cut = prompts.cut(player)
    assert cut is not None and cut.heard_by == "mark"
    assert (cut.prompt.number, cut.heard_ms) == (3, 0)  # prompt 3: no mark of it yet
    assert [t.get("heard_ms") for t in turns] == [None, None, 0]
    assert prompts.echoes == 3
    # What the far end echoes when it clears (every pending mark) is not what was heard.
    prompts.echoed("prompt-3:1000")
    assert prompts.echoes == 3
    prompts.queue(player, seconds(2.0), "after", barge_in=True)
    cut = prompts.cut(player)
    assert cut is not None and (cut.prompt.text, cut.heard_ms) == ("after", 0)


def test_a_mark_inside_a_prompt_and_nothing_to_cut_once_played_out() -> None:
    player, prompts, _ = queued(3.0)
    prompts.echoed("prompt-1:2000")
    cut = prompts.cut(player)
    assert cut is not None and (cut.heard_ms, cut.unheard) == (2000, ())
    player, prompts, _ = queued(1.0)
    prompts.played_out()
    assert prompts.cut(player) is None
