"""Wire formats of telephony legs, and nothing else: pure serializers, no sockets.

Each transport turns its wire messages into the typed inbound messages of
`ivr.transports.messages` and renders outbound ones back to the wire, through one protocol,
`ivr.transports.base.Serializer`. The server's generic legs (`ivr.server.leg`) drive any
serializer over a WebSocket or a TCP connection; nothing else sees a wire format.

Adding a transport: one file and one line
-----------------------------------------
1. Write `ivr/transports/<name>.py`: a class with the methods of `Serializer`, holding one
   connection's state (a new one per connection).

   - `parse(data)`: one WebSocket message (str for text, bytes for binary), or what one
     TCP read returned (keep a partial frame for the next), as a list of inbound messages:
     first a `CallStart` (the far end's id for the call, the wire codec, the sample `rate`,
     and `ptime_ms`, how much audio one outbound message carries: 20 ms unless the far end
     buffers more), then `CallerAudio`, `Dtmf`, `Mark` (a `SetMark` of ours was played),
     `CallerHangup`, `TransportError`. Anything malformed raises `ProtocolError`; its text
     is the call's end reason.
   - `end()`: the far end closed the connection; the call ends as the caller's hang-up.
     [] unless the close says more (AudioSocket: a close inside a frame is a ProtocolError).
   - `answer(start)`: what to send as soon as the call started; [] unless the far end
     waits to be told something (the softphone's `started`).
   - `render(msg)`: wire messages for `PlayAudio`, `SetMark`, `ClearAudio`, `EndCall`. A
     `PlayAudio` is one piece of `ptime_ms`, cut already by the player: send it as one
     message (cut it only past the format's largest payload). [] for what the format
     cannot say; after `EndCall` the leg closes the connection.
   - `ready`: False while `render` has nobody to address (before the stream's `start`);
     `call_id`: None, so the call session names the call, unless the far end must be told
     an id the server chose (the softphone).

   Audio both ways is 16-bit little-endian PCM at `CallStart.rate`: decode and encode the
   wire codec with `ivr.audio.codecs`. `ivr.transports.jsonwire` reads and writes JSON
   messages, within the bounds of `ivr.transports.limits`.

2. Add its line to `WEBSOCKETS` in `ivr/server/transports.py`:

       WebSocketTransport("/v1/<name>", "<name>", <Name>Serializer),

   The route, its heartbeat and message size limit, the receive loop and the call session
   come with it; "<name>" is the transport in the call's record and logs. `admit=` checks
   the far end before the upgrade (the softphone's token).

A TCP transport is the same serializer on a `StreamTransport` line beside `AUDIOSOCKET`;
its listener also needs a port setting, and a `StreamServer` started in `ivr.app` as
AudioSocket's is. `tests/test_transport_seam.py` adds a transport by these steps.
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
