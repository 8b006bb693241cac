"""Small helpers shared by the bench scripts."""

from __future__ import annotations

import os
import statistics
from collections.abc import Sequence


def rss_mb() -> float:
    """Resident set size of this process in MB (Linux)."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 1e6


def pct(values: Sequence[float], q: float) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def summary(values: Sequence[float], unit: str = "", scale: float = 1.0) -> str:
    v = [x * scale for x in values]
    return (
        f"p50 {pct(v, 50):.4g}{unit}  p95 {pct(v, 95):.4g}{unit}  "
        f"max {max(v):.4g}{unit}  (n={len(v)})"
    )
