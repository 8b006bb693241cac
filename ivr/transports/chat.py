"""The web chat's protocol (WebSocket /v1/chat, `ivr.server.chat`): small JSON text messages
named by `type`, simple enough for a web page to speak without a library.

Client → server:
  {"type": "start"}                                   first, once; no number: the flow asks
  {"type": "start", "number": "+15551230001", "identity": "1767225600.5c1f…"}
                                                      a logged-in customer (`ivr.chat.identity`)
  {"type": "message", "text": "how much credit have I got"}
  {"type": "choice", "text": "balance"}               a quick reply the bot offered, tapped
  {"type": "end"}                                     the customer closes the chat

Server → client:
  {"type": "started", "conversation_id": "…", "number": "+15551230001" | null}
  {"type": "bot", "text": "…", "quick_replies": ["yes", "no"], "last": true}
                                                      one per bot message; `last` on the
                                                      last of an answer: the bot waits
  {"type": "ended", "reason": "callback_booked"}      then the server closes the socket (1000)
  {"type": "error", "code": "bad_message", "message": "…"}   then it closes (1003, 1008, 1009)

Unknown keys are ignored (later versions may add some); anything else malformed is a
ProtocolError naming what is wrong. Pure: text in, typed messages out, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

from ivr.transports.jsonwire import Json, JsonWire, dumps
from ivr.transports.messages import ProtocolError

MAX_TEXT = 2000
"""Characters of one customer message (as the REST chat's)."""
MAX_CHAT_MESSAGE = 16 * 1024
"""Of one JSON text message: a MAX_TEXT text with every character escaped fits."""
MAX_FIELD = 200  # a number or an identity
TYPES = ("start", "message", "choice", "end")
_JSON = JsonWire("type")


@dataclass(frozen=True, slots=True)
class Start:
    number: str | None = None
    identity: str | None = None


@dataclass(frozen=True, slots=True)
class Say:
    """A message the customer wrote (`choice`: a quick reply they tapped)."""

    text: str
    choice: bool = False


@dataclass(frozen=True, slots=True)
class End:
    pass


ClientMessage = Start | Say | End


def _optional(msg: Json, key: str) -> str | None:
    value = msg.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ProtocolError(f"'{msg['type']}' message: {key} is not a string: {value!r}")
    if len(value) > MAX_FIELD:
        raise ProtocolError(f"'{msg['type']}' message: {key} is over {MAX_FIELD} characters")
    return value


def parse(text: str | bytes) -> ClientMessage:
    """One client message; ProtocolError when it is malformed or of an unknown type."""
    if len(text) > MAX_CHAT_MESSAGE:
        raise ProtocolError(f"message of {len(text)} bytes is over {MAX_CHAT_MESSAGE}")
    kind, msg = _JSON.load(text)
    if kind == "start":
        return Start(_optional(msg, "number"), _optional(msg, "identity"))
    if kind in ("message", "choice"):
        said = _JSON.get(msg, "text", str)
        if not said.strip():
            raise ProtocolError(f"'{kind}' message: text is empty")
        if len(said) > MAX_TEXT:
            raise ProtocolError(f"'{kind}' message: text is over {MAX_TEXT} characters")
        return Say(said.strip(), choice=kind == "choice")
    if kind == "end":
        return End()
    raise ProtocolError(f"unknown message type {kind[:40]!r} (known: {', '.join(TYPES)})")


def started(conversation_id: str, number: str | None) -> str:
    return dumps({"type": "started", "conversation_id": conversation_id, "number": number})


def bot(text: str, quick_replies: tuple[str, ...] = (), last: bool = True) -> str:
    return dumps({"type": "bot", "text": text, "quick_replies": list(quick_replies), "last": last})


def ended(reason: str) -> str:
    return dumps({"type": "ended", "reason": reason})


def error(code: str, message: str) -> str:
    return dumps({"type": "error", "code": code, "message": message})
