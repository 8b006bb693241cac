"""The inbound lag: how far behind real time caller audio is handled."""

from __future__ import annotations

from ivr.call.lag import InboundLag
from ivr.metrics import Metrics

FRAME = 320  # 20 ms at 8 kHz


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_real_time_audio_has_no_lag_and_a_backlog_shows() -> None:
    clock = Clock()
    lag = InboundLag(8000, clock)
    samples = []
    for _ in range(150):  # 3 s handled as it arrives, with a little network jitter
        clock.t += 0.02
        if (got := lag.heard(FRAME)) is not None:
            samples.append(got)
    assert samples and max(samples) < 0.03
    clock.t += 0.5  # the server stalls half a second, then works through the queue at once
    backlog = []
    for _ in range(25):
        clock.t += 0.0001
        lag._next_sample = 0  # sample every frame here
        backlog.append(lag.heard(FRAME))
    assert backlog[0] is not None and 0.45 < backlog[0] < 0.55
    assert backlog[-1] is not None and backlog[-1] < 0.05  # caught up


def test_a_pause_in_sending_is_not_a_backlog() -> None:
    clock = Clock()
    lag = InboundLag(8000, clock)
    for _ in range(50):
        clock.t += 0.02
        lag.heard(FRAME)
    clock.t += 5.0  # the far end sent nothing for 5 s (DTX, a hold)
    lag._next_sample = 0
    assert lag.heard(FRAME) == 0.0


def test_exposed_in_metrics() -> None:
    m = Metrics()
    m.inbound_lag_sample(0.3)
    body, _ = m.render()
    assert b'ivr_inbound_lag_seconds_bucket{le="0.5"} 1.0' in body
