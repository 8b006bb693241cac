"""Flows as ops edit them: read, upload (validated, hot-reloaded), versions."""

from __future__ import annotations

from ivr.api.operation import Operation

OPERATIONS: tuple[Operation, ...] = ()
