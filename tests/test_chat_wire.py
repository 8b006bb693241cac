"""The web chat's wire format (`ivr.transports.chat`) and signed identities
(`ivr.chat.identity`), pure: text in, typed messages out."""

from __future__ import annotations

import json

import pytest

from ivr.chat.identity import check_identity, sign_number
from ivr.transports.chat import MAX_CHAT_MESSAGE, End, Say, Start, bot, ended, error, parse
from ivr.transports.messages import ProtocolError

SECRET = "a-chat-identity-secret-0123"


def test_client_messages() -> None:
    assert parse('{"type": "start"}') == Start()
    assert parse('{"type": "start", "number": "+15551230001", "identity": "1.ab"}') == Start(
        "+15551230001", "1.ab"
    )
    assert parse('{"type": "message", "text": "  my balance "}') == Say("my balance")
    assert parse('{"type": "choice", "text": "yes"}') == Say("yes", choice=True)
    assert parse('{"type": "end", "later": "ignored"}') == End()


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("{", "not valid JSON"),
        ("[]", "not a JSON object"),
        ('{"text": "hi"}', "no 'type'"),
        ('{"type": 1}', "type is not a string"),
        ('{"type": "shout"}', "unknown message type 'shout' (known: start, message, choice, end)"),
        ('{"type": "message"}', "missing text"),
        ('{"type": "message", "text": ""}', "text is empty"),
        ('{"type": "message", "text": "' + "a" * 2001 + '"}', "over 2000 characters"),
        ('{"type": "start", "number": 15551230001}', "number is not a string"),
        ('{"type": "start", "identity": "' + "f" * 201 + '"}', "identity is over 200"),
        ('{"type": "message", "text": "' + "b" * MAX_CHAT_MESSAGE + '"}', "over 16384"),
        ("{" * 33 + "}" * 33, "deeper than 32"),
        ('{"type": "message", "text": "\\ud800"}', "lone surrogate"),
    ],
)
def test_malformed_messages_name_what_is_wrong(text: str, why: str) -> None:
    with pytest.raises(ProtocolError, match=why.replace("(", r"\(").replace(")", r"\)")):
        parse(text)


def test_server_messages() -> None:
    assert json.loads(bot("Hi", ("yes", "no"), last=False)) == {
        "type": "bot", "text": "Hi", "quick_replies": ["yes", "no"], "last": False,
    }  # fmt: skip
    assert json.loads(ended("idle")) == {"type": "ended", "reason": "idle"}
    assert json.loads(error("too_big", "x")) == {"type": "error", "code": "too_big", "message": "x"}


def test_identities() -> None:
    identity = sign_number(SECRET, "+15551230001", 2_000_000_000)
    assert check_identity(SECRET, "+15551230001", identity, 1_999_999_999) is None
    assert check_identity(SECRET, "+15551230002", identity, 1_999_999_999) == (
        "identity is not signed for this number"
    )
    assert check_identity("another-secret-0123456789", "+15551230001", identity, 0) is not None
    assert check_identity(SECRET, "+15551230001", identity, 2_000_000_001) == (
        "identity has expired"
    )
    expiry, mac = identity.split(".")
    forged = f"{int(expiry) + 1}.{mac}"  # a later expiry is another signature
    assert check_identity(SECRET, "+15551230001", forged, 0) == (
        "identity is not signed for this number"
    )
    for bad in ("", "123", "abc.def", f"{expiry}.{mac.upper()}"):
        assert "EXPIRY.SIGNATURE" in (check_identity(SECRET, "+15551230001", bad, 0) or "")
