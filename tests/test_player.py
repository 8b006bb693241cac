"""The player: outbound audio in pieces of the leg's ptime, paced at real time."""

from __future__ import annotations

import asyncio

import pytest

from ivr.call.player import HOLD_AFTER_MS, LEAD_MS, Player
from ivr.transports.messages import ClearAudio, OutboundMessage, PlayAudio, SetMark

RATE = 8000
FRAME = 320  # 20 ms at 8 kHz, 16-bit


class Far:
    """The far end: when each message arrived (loop time)."""

    def __init__(self, delay: float = 0.0, fail_after: int | None = None) -> None:
        self.got: list[tuple[float, OutboundMessage]] = []
        self.delay = delay
        self.fail_after = fail_after

    async def send(self, message: OutboundMessage) -> None:
        if self.fail_after is not None and len(self.got) >= self.fail_after:
            raise ConnectionResetError("gone")
        if self.delay:
            await asyncio.sleep(self.delay)
        self.got.append((asyncio.get_running_loop().time(), message))


@pytest.mark.parametrize("ptime", [20, 100])
async def test_pieces_of_the_ptime_paced_at_real_time(ptime: int) -> None:
    far = Far()
    player = Player(far.send, RATE, ptime)
    firsts: list[int] = []
    player.on_first_frame = lambda: firsts.append(len(far.got))
    player.start()
    t0 = asyncio.get_running_loop().time()
    player.enqueue(b"\x01\x00" * (RATE * 6 // 10) + b"\x01\x00" * 10)  # 0.6 s + a bit
    await asyncio.wait_for(player.drained(), 5)
    elapsed = asyncio.get_running_loop().time() - t0
    await player.close()
    sizes = [len(m.pcm) for _, m in far.got if isinstance(m, PlayAudio)]
    piece = FRAME * ptime // 20
    assert sizes[:-1] == [piece] * (len(sizes) - 1)
    assert sizes[-1] % FRAME == 0  # the end padded to a whole frame, never a partial one
    assert sum(sizes) == RATE * 6 // 10 * 2 + FRAME  # the 10 extra samples became a frame
    assert player.frames_sent == sum(sizes) // FRAME
    # Not a burst: the last piece leaves LEAD_MS before it plays (0.62 s of audio).
    assert elapsed >= 0.62 - LEAD_MS / 1000 - ptime / 1000 - 0.05
    assert player.underruns == 0 and firsts == [1]  # right after the first send


async def test_first_frame_of_every_prompt_reported() -> None:
    far = Far()
    player = Player(far.send, RATE, 100)
    firsts: list[int] = []
    player.on_first_frame = lambda: firsts.append(len(far.got))
    player.start()
    for _ in range(2):
        player.enqueue(b"\x00" * FRAME * 3)
        await asyncio.wait_for(player.drained(), 5)
        await asyncio.sleep(0.05)
    await player.close()
    assert firsts == [1, 2]  # one piece each (60 ms < 100 ms)


async def test_a_slow_leg_counts_underruns_and_does_not_burst() -> None:
    far = Far(delay=0.15)  # each 100 ms piece takes 150 ms to send: the far end runs dry
    player = Player(far.send, RATE, 100)
    player.start()
    player.enqueue(b"\x00" * FRAME * 25)  # 0.5 s, 5 pieces
    await asyncio.wait_for(player.drained(), 5)
    await player.close()
    assert player.underruns >= 2


async def test_stop_clears_and_a_failed_send_drains() -> None:
    far = Far()
    player = Player(far.send, RATE, 100)
    player.start()
    player.enqueue(b"\x00" * FRAME * 100)  # 2 s
    await asyncio.sleep(0.15)
    await player.stop()
    assert not player.playing and isinstance(far.got[-1][1], ClearAudio)
    broken = Far(fail_after=1)
    errors: list[BaseException] = []
    p2 = Player(broken.send, RATE, 100)
    p2.on_error = errors.append
    p2.start()
    p2.enqueue(b"\x00" * FRAME * 50)
    await asyncio.wait_for(p2.drained(), 5)
    await p2.close()
    assert isinstance(p2.failed, ConnectionResetError) and len(errors) == 1
    await player.close()


def test_ptime_must_be_whole_frames() -> None:
    with pytest.raises(ValueError, match="whole number of 20 ms frames"):
        Player(Far().send, RATE, 30)


async def test_a_mark_is_sent_after_the_audio_queued_before_it() -> None:
    far = Far()
    player = Player(far.send, RATE, 100)
    player.start()
    player.enqueue(b"\x00" * FRAME * 12)  # two pieces (100 ms + 40 ms)
    player.mark("a")
    player.enqueue(b"\x00" * FRAME * 5)
    player.mark("b")
    await asyncio.wait_for(player.drained(), 5)
    await asyncio.sleep(0.05)
    await player.close()
    kinds = [
        m.name if isinstance(m, SetMark) else len(m.pcm) // FRAME
        for _, m in far.got
        if isinstance(m, SetMark | PlayAudio)
    ]
    assert kinds == [5, 5, 2, "a", 5, "b"] and len(kinds) == len(far.got)


async def test_audio_that_must_be_heard_holds_barge_in_until_sent_and_a_little_more() -> None:
    far = Far()
    player = Player(far.send, RATE)  # 20 ms pieces
    released: list[int] = []
    free = asyncio.Event()

    def interruptible() -> None:
        released.append(player.frames_sent)
        free.set()

    player.on_interruptible = interruptible
    player.start()
    player.enqueue(b"\x00" * FRAME * 10, barge_in=False)
    player.enqueue(b"\x00" * FRAME * 40)  # interruptible, after it
    assert not player.interruptible and player.playing
    await asyncio.wait_for(free.wait(), 5)
    hold = (LEAD_MS + HOLD_AFTER_MS + 20) // 20  # frames sent after the held audio
    assert released == [10 + hold] and player.playing  # the rest may be cut now
    await player.stop()
    assert player.position == player.frames_queued == 50  # sent and dropped: all queued
    assert player.frames_dropped == 50 - player.frames_sent
    # A hold ends at the latest when the queue runs dry.
    player.enqueue(b"\x00" * FRAME * 3, barge_in=False)
    assert not player.interruptible
    await asyncio.wait_for(player.drained(), 5)
    assert player.interruptible and len(released) == 2
    await player.close()
