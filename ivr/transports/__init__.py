"""Wire formats of telephony legs, and nothing else: pure serializers, no sockets.

Each transport turns its wire messages into the typed inbound messages of
`ivr.transports.messages` and renders outbound ones back to the wire.
"""

from ivr.transports.audiosocket import (
    AudioSocketSerializer,
    encode_audio,
    encode_dtmf,
    encode_error,
    encode_hangup,
    encode_uuid,
)
from ivr.transports.base import Serializer, Wire
from ivr.transports.browser import BrowserClient, BrowserSerializer
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
    "AudioSocketSerializer",
    "BrowserClient",
    "BrowserSerializer",
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
    "Serializer",
    "SetMark",
    "TransportError",
    "TwilioClient",
    "TwilioSerializer",
    "Wire",
    "encode_audio",
    "encode_dtmf",
    "encode_error",
    "encode_hangup",
    "encode_uuid",
]
