"""JSON text messages named by one key (Twilio's `event`, the softphone's `type`): loaded
within the bounds of `ivr.transports.limits`, read with their types checked, written compact.

Every failure is a ProtocolError that names the message and the field, so a call record
says what the far end got wrong.
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

from ivr.transports.limits import load_json
from ivr.transports.messages import ProtocolError

Json = dict[str, Any]
T = TypeVar("T")
_TYPE_NAMES: dict[type[Any], str] = {str: "a string", int: "an integer", dict: "an object"}


class JsonWire:
    """The JSON messages of one wire format, each named by its `key` field."""

    def __init__(self, key: str) -> None:
        self.key = key

    def load(self, text: str | bytes) -> tuple[str, Json]:
        """(name, message) of one text message: a JSON object with a string `key`."""
        msg = load_json(text)
        if not isinstance(msg, dict):
            raise ProtocolError(f"message is not a JSON object but {type(msg).__name__}")
        name = msg.get(self.key)
        if name is None:
            raise ProtocolError(f"message has no '{self.key}'")
        if not isinstance(name, str):
            raise ProtocolError(f"{self.key} is not a string: {name!r}")
        return name, msg

    def get(self, msg: Json, path: str, kind: type[T]) -> T:
        """The value at dotted `path` of a loaded message, which must exist and be a `kind`
        (an integer is never a bool)."""
        cur: Any = msg
        parts = path.split(".")
        for i, part in enumerate(parts):
            if not isinstance(cur, dict):
                raise ProtocolError(f"{'.'.join(parts[:i])} is not an object: {cur!r}")
            if part not in cur:
                raise ProtocolError(f"'{msg[self.key]}' message is missing {path}")
            cur = cur[part]
        if not isinstance(cur, kind) or (kind is int and isinstance(cur, bool)):
            raise ProtocolError(f"{path} is not {_TYPE_NAMES[kind]}: {cur!r}")
        return cur


def dumps(msg: Json) -> str:
    """One text message: compact JSON."""
    return json.dumps(msg, separators=(",", ":"))
