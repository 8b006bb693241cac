"""How far behind real time a call's inbound audio is handled.

The far end sends audio as it is spoken, so a frame handled later than the moment its last
sample was captured (as the audio count since the first frame puts it) shows a backlog: in
the socket or in the call's queue. It is what tells an operator the server is not keeping up:
ends of speech are then detected late and every answer comes late with them.
"""

from __future__ import annotations

import time
from collections.abc import Callable

SAMPLE_EVERY_S = 1.0
REANCHOR_GAP_S = 1.0  # a pause in the far end's sending (e.g. DTX) is not a backlog


class InboundLag:
    def __init__(self, rate: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._bytes_per_s = rate * 2
        self._clock = clock
        self._anchor = 0.0  # real time at which audio offset 0 was captured
        self._audio = 0.0  # seconds of audio since the anchor
        self._last = -1e9
        self._floor = 0.0  # the smallest lag seen: the network's own delay, not a backlog
        self._next_sample = 0.0

    def heard(self, nbytes: int) -> float | None:
        """Count a frame just handled; once a second, the backlog (seconds) behind it."""
        now = self._clock()
        seconds = nbytes / self._bytes_per_s
        if now - self._last > REANCHOR_GAP_S:
            self._anchor, self._audio, self._floor = now - seconds, 0.0, 0.0
        self._audio += seconds
        self._last = now
        lag = now - (self._anchor + self._audio)
        self._floor = min(self._floor, lag)
        if now < self._next_sample:
            return None
        self._next_sample = now + SAMPLE_EVERY_S
        return lag - self._floor
