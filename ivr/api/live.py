"""Calls in progress for the console: the live list and the all-calls event feed."""

from __future__ import annotations

from ivr.api.operation import Operation

OPERATIONS: tuple[Operation, ...] = ()
