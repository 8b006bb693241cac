"""Serving flows while ops edit them: a reload that fails keeps the last good version.

A FlowStore holds the served version of one flow file with the exact text it was compiled
from, a short history of versions and the last rejected attempt. Validation (`validate`) is
pure, so callers may run it off the event loop; `accept` / `reject` switch the state.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from ivr.dialog.flow import Flow, FlowError, flow_from_bytes, flow_grammar_dir

log = logging.getLogger(__name__)

Source = Literal["startup", "file", "grammars", "api"]
"""What brought a version: start-up, an edit of the flow file, of a grammar it uses, an upload."""

FlowCheck = Callable[[Flow], None]
"""An extra check of a compiled flow that raises FlowError (e.g. against the ASR engine)."""

HISTORY = 10  # versions remembered (the served one included)


@dataclass(frozen=True)
class FlowVersion:
    version: str
    loaded_at: datetime
    source: Source


@dataclass(frozen=True)
class Rejection:
    errors: tuple[str, ...]
    at: datetime
    source: Source


def _now() -> datetime:
    return datetime.now(UTC)


class FlowStore:
    """One flow file. `flow` is the last version that loaded (`text` its YAML); `errors` those
    of the last reload ([] when it succeeded).

    The first load must succeed (FlowError otherwise): there is nothing older to serve.
    """

    def __init__(
        self,
        path: str | Path,
        grammar_dir: Path | None = None,
        check: FlowCheck | None = None,
        clock: Callable[[], datetime] = _now,
    ) -> None:
        self.path = Path(path)
        # The same default as load_flow: the flow's own folder if it has digits.yaml, else
        # the bundled grammars (resolved once: the folder does not move while we serve).
        self.grammar_dir = grammar_dir or flow_grammar_dir(self.path)
        self.check = check
        self.clock = clock
        self.text = ""  # the YAML of the served version
        self.errors: list[str] = []
        self.last_rejected: Rejection | None = None
        self.history: deque[FlowVersion] = deque(maxlen=HISTORY)
        raw = self.read()
        self._flow = self.validate(raw, rename=True)
        self._accept(self._flow, raw, "startup")

    @property
    def flow(self) -> Flow:
        return self._flow

    @property
    def name(self) -> str:
        return self._flow.name

    @property
    def loaded_at(self) -> datetime:
        return self.history[-1].loaded_at

    def read(self) -> bytes:
        try:
            return self.path.read_bytes()
        except OSError as exc:
            raise FlowError([f"{self.path}: cannot read: {exc}"]) from exc

    def validate(self, raw: bytes, *, rename: bool = False) -> Flow:
        """The flow these bytes of our file would be, fully checked (schema, cross-references,
        grammars, `check`); FlowError otherwise. Changes nothing, so it may run in a thread.
        The name may not change (`rename`: only for the first load): calls and the API know
        the flow by it."""
        flow = flow_from_bytes(raw, str(self.path), self.grammar_dir)
        if not rename and flow.name != self.name:
            raise FlowError(
                [
                    f"{self.path}: name: the flow is served as {self.name!r}; it cannot be"
                    f" renamed to {flow.name!r} while the server runs"
                ]
            )
        if self.check is not None:
            self.check(flow)
        return flow

    def accept(self, flow: Flow, raw: bytes, source: Source) -> None:
        """Serve `flow` (validated from `raw`) to calls that start from now on."""
        self._accept(flow, raw, source)
        log.info("flow %s: serving version %s (%s)", flow.name, flow.version, source)

    def _accept(self, flow: Flow, raw: bytes, source: Source) -> None:
        self._flow, self.text, self.errors = flow, raw.decode("utf-8"), []
        self.history.append(FlowVersion(flow.version, self.clock(), source))

    def reject(self, errors: list[str], source: Source) -> None:
        self.errors = list(errors)
        self.last_rejected = Rejection(tuple(errors), self.clock(), source)
        for error in errors:
            log.warning("flow %s: rejected (%s): %s", self.name, source, error)
        log.warning("flow %s: still serving version %s", self.name, self._flow.version)

    def reload(self, source: Source = "file") -> list[str]:
        """Load the file again; on errors keep serving the previous Flow and return them."""
        try:
            raw = self.read()
            flow = self.validate(raw)
        except FlowError as exc:
            self.reject(exc.errors, source)
            return list(exc.errors)
        self.accept(flow, raw, source)
        return []
