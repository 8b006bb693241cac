"""Grammar tuning: validate a flow, test an utterance (text or audio)."""

from __future__ import annotations

from ivr.api.operation import Operation

OPERATIONS: tuple[Operation, ...] = ()
