"""The SIP caller simulator (ivr.sip.dial, what bench/calls.py --transport sip drives) against
a real `ivr serve`: INVITE/200/ACK, speech as RTP (flite, μ-law, 20 ms), keys as RFC 4733
events, the server's prompts heard as RTP, the caller's BYE; and a refusal raised."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from live_server import FEED_TOKEN, free_port, live_server
from test_e2e_calls import KNOWN, intents, prompts, said

from ivr.dial import CallerTurn
from ivr.sip.dial import SipCaller, SipCallFailed


def test_a_sip_caller_speaks_keys_and_hangs_up(tmp_path: Path) -> None:
    balance = said(tmp_path, "balance", "slt")
    sip_port = free_port()
    with live_server(tmp_path, IVR_SIP_PORT=str(sip_port)) as server:
        caller = SipCaller(
            f"sip:hotline@127.0.0.1:{sip_port}",
            f"http://127.0.0.1:{server.port}",
            [
                CallerTurn(wav=balance),
                CallerTurn(dtmf="1"),  # yes, if "Did you say balance?" (a low confidence)
                CallerTurn(dtmf="0"),
            ],
            KNOWN,
            out=None,
            max_seconds=120,
            token=FEED_TOKEN,
        )
        report = asyncio.run(caller.run())
        log = server.log_text()
    keyed = [(e["digits"], e["intent"]) for e in report.events if e.get("event") == "dtmf"]
    assert intents(report)[0] == "balance", (report.events, log[-3000:])
    assert keyed[-1] == ("0", "agent") and len(keyed) == 2, report.events
    assert "23 dollars and 50 cents" in prompts(report)
    assert report.hangup == "caller_hangup", report.events
    assert report.bot_frames > 100 and len(report.latencies) >= 2  # prompts heard as RTP
    assert f"sip:{KNOWN}" in log or KNOWN in log


def test_a_refused_invite_raises(tmp_path: Path) -> None:
    sip_port = free_port()
    with live_server(tmp_path, IVR_SIP_PORT=str(sip_port), IVR_SIP_ALLOW="10.0.0.0/8") as server:
        caller = SipCaller(
            f"sip:hotline@127.0.0.1:{sip_port}",
            f"http://127.0.0.1:{server.port}",
            [],
            KNOWN,
            out=None,
            max_seconds=30,
            token=FEED_TOKEN,
        )
        with pytest.raises(SipCallFailed) as refused:
            asyncio.run(caller.run())
    assert refused.value.status == 403  # not from an allowed network
