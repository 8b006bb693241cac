"""Analytics from the recorded calls: containment, nodes, intents, unrecognized speech, surveys."""

from __future__ import annotations

from ivr.api.operation import Operation

OPERATIONS: tuple[Operation, ...] = ()
