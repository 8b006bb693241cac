"""Wire formats of telephony legs, and nothing else: pure serializers, no sockets.

Each transport turns its wire messages into the typed inbound messages of
`ivr.transports.messages` and renders outbound ones back to the wire.
"""

from ivr.transports.audiosocket import (
    AudioSocketParser,
    encode_audio,
    encode_dtmf,
    encode_error,
    encode_hangup,
    encode_uuid,
)
from ivr.transports.audiosocket import render as render_audiosocket
from ivr.transports.messages import (
    CallerAudio,
    CallerHangup,
    CallStart,
    ClearAudio,
    Dtmf,
    EndCall,
    InboundMessage,
    Mark,
    OutboundMessage,
    PlayAudio,
    ProtocolError,
    SetMark,
    TransportError,
)
from ivr.transports.twilio import TwilioClient, TwilioSerializer

__all__ = [
    "AudioSocketParser",
    "CallStart",
    "CallerAudio",
    "CallerHangup",
    "ClearAudio",
    "Dtmf",
    "EndCall",
    "InboundMessage",
    "Mark",
    "OutboundMessage",
    "PlayAudio",
    "ProtocolError",
    "SetMark",
    "TransportError",
    "TwilioClient",
    "TwilioSerializer",
    "encode_audio",
    "encode_dtmf",
    "encode_error",
    "encode_hangup",
    "encode_uuid",
    "render_audiosocket",
]
