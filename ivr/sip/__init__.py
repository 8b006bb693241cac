"""Native SIP: `ivr serve` as a SIP user agent that phones, PBXs and proxies call directly.

Each answered INVITE is one call behind the same `CallSession` as every other transport: its
leg (`ivr.sip.call.SipLeg`) hands the session the caller's RTP audio (decoded to 16-bit PCM
at 8 kHz) and keys, and sends the session's audio as RTP. SIP is not a byte stream per call,
so it is no `Serializer` (`ivr.transports`): the pieces are

* pure, no I/O, tested alone: `message` (SIP framing, parsing, responses and requests;
  `sipmessage` reads the header grammar), `sdp` (offer/answer), `rtp` (packets, jitter
  buffer, RFC 4733 keys, our packets' numbering);
* I/O: `transport` (UDP and TCP on one port), `media` (one call's RTP socket from the port
  range), `call` (one dialog and its leg), `endpoint` (the user agent: transactions,
  dispatch, start-up from the settings).

`ivr.app` starts it (`start_sip`) beside the AudioSocket listener.
"""
