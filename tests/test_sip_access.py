"""Who may call over SIP (ivr.sip.access): the digest computation against RFC 2617's own
example, the settings' syntax, nonces (forged, stale), and the endpoint over real UDP: a
source outside IVR_SIP_ALLOW gets 403 for anything, an INVITE without or with wrong
credentials a 401 challenge, right ones go on to the offer's checks, OPTIONS needs none.
A real caller (baresip with its password) is tests/test_e2e_sip.py's."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
from live_server import free_port, live_server
from test_e2e_sip import KNOWN, Heard, baresip, calls, need, rtp_range, silent_wav
from test_sip_endpoint import Client, sip

from ivr.call.registry import CallRegistry
from ivr.call.services import CallServices
from ivr.config import ConfigError, load_settings
from ivr.sip.access import (
    NONCE_TTL_S,
    SipAccess,
    digest_params,
    digest_response,
    parse_networks,
    parse_users,
)
from ivr.sip.call import SipConfig
from ivr.sip.endpoint import SipEndpoint, check_sip_port
from ivr.sip.media import PortPool, PortRange

RFC2617 = (
    'Digest username="Mufasa", realm="testrealm@host.com",'
    ' nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", uri="/dir/index.html", qop=auth,'
    ' nc=00000001, cnonce="0a4f113b", response="6629fae49393a05397450978507c4ef1",'
    ' opaque="5ccc069c403ebaf9f0171e9517f40e41"'
)


def test_the_rfc_2617_example_response() -> None:
    params = digest_params(RFC2617)
    assert params["username"] == "Mufasa" and params["qop"] == "auth" and params["nc"] == "00000001"
    assert digest_response(params, "Circle Of Life", "GET") == params["response"]
    assert digest_params("Basic QWxhZGRpbjpvcGVu") == {}


def test_settings_syntax() -> None:
    nets = parse_networks(" 10.0.0.0/8, 192.0.2.7 ,2001:db8::/32,")
    assert nets == [
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("192.0.2.7/32"),
        ipaddress.ip_network("2001:db8::/32"),
    ]
    with pytest.raises(ValueError, match=r"'10\.0\.0\.300' is not"):
        parse_networks("10.0.0.300")
    assert parse_users("pbx:s3cret, alice:p:w") == {"pbx": "s3cret", "alice": "p:w"}
    with pytest.raises(ValueError, match="'bob' is not USER:PASSWORD"):
        parse_users("bob")
    with pytest.raises(ConfigError, match="IVR_SIP_ALLOW"):
        check_sip_port(load_settings(sip_port=0, sip_allow="lan"))
    with pytest.raises(ConfigError, match="IVR_SIP_USERS"):
        check_sip_port(load_settings(sip_port=0, sip_users="x"))


def invite_with(
    access: SipAccess, challenge: str, user: str, password: str, **change: str
) -> SimpleNamespace:
    """What a client answering `challenge` sends (an object shaped as a Request for check)."""
    params = digest_params(challenge)
    answer = {
        "username": user,
        "realm": params["realm"],
        "nonce": params["nonce"],
        "uri": "sip:hotline@127.0.0.1",
        "qop": "auth",
        "nc": "00000001",
        "cnonce": "c0ffee",
    }
    answer.update(change)
    answer["response"] = digest_response(answer, password, "INVITE")
    header = "Digest " + ", ".join(f'{k}="{v}"' for k, v in answer.items())
    return SimpleNamespace(method="INVITE", headers=SimpleNamespace(all=lambda name: [header]))


def test_nonces_are_signed_and_expire() -> None:
    now = [1_000_000.0]
    access = SipAccess(users={"pbx": "s3cret"}, realm="ivr", clock=lambda: now[0])
    challenge = access.challenge()
    assert 'realm="ivr"' in challenge and 'qop="auth"' in challenge
    check = cast(Callable[[object], str | None], access.check)
    assert check(invite_with(access, challenge, "pbx", "s3cret")) is None
    assert check(invite_with(access, challenge, "pbx", "wrong")) is not None
    assert check(invite_with(access, challenge, "eve", "s3cret")) is not None
    forged = invite_with(access, challenge, "pbx", "s3cret", nonce="12345.deadbeef")
    assert check(forged) is not None
    other = SipAccess(users={"pbx": "s3cret"})  # another process's key
    assert other.check(invite_with(access, challenge, "pbx", "s3cret")) is not None  # type: ignore[arg-type]
    now[0] += NONCE_TTL_S + 1
    stale = check(invite_with(access, challenge, "pbx", "s3cret"))
    assert stale is not None and "stale=true" in stale
    assert SipAccess().check(invite_with(access, challenge, "x", "y")) is None  # type: ignore[arg-type]


@pytest.fixture
async def endpoint_with() -> AsyncIterator[Any]:
    """start(access) -> (client, its socket): an endpoint with `access` on a free port."""
    made: list[tuple[SipEndpoint, asyncio.DatagramTransport]] = []

    async def start(access: SipAccess) -> tuple[Client, asyncio.DatagramTransport]:
        registry = CallRegistry(max_calls=1)
        services = cast(CallServices, SimpleNamespace(registry=registry, shutting_down=False))
        pool = PortPool(PortRange(41100, 41110), "127.0.0.1")
        endpoint = SipEndpoint(services, SipConfig(), pool, access)
        port = await endpoint.start("127.0.0.1", 0)
        udp, client = await asyncio.get_running_loop().create_datagram_endpoint(
            Client, local_addr=("127.0.0.1", 0), remote_addr=("127.0.0.1", port)
        )
        made.append((endpoint, udp))
        return client, udp

    yield start
    for endpoint, udp in made:
        udp.close()
        await endpoint.close()


async def test_a_source_outside_the_allow_list_gets_403(endpoint_with) -> None:  # type: ignore[no-untyped-def]
    client, udp = await endpoint_with(SipAccess(allow=parse_networks("10.0.0.0/8")))
    for method in ("OPTIONS", "INVITE", "BYE"):
        udp.sendto(sip(method, branch=f"z9hG4bK-{method}"))
        assert (await client.final()).status == 403
    client, udp = await endpoint_with(SipAccess(allow=parse_networks("10.0.0.0/8,127.0.0.0/8")))
    udp.sendto(sip("OPTIONS"))
    assert (await client.final()).status == 200


async def test_an_invite_must_prove_its_credentials(endpoint_with) -> None:  # type: ignore[no-untyped-def]
    access = SipAccess(users={"pbx": "s3cret"}, realm="ivr")
    client, udp = await endpoint_with(access)
    udp.sendto(sip("OPTIONS"))  # a proxy's probe: no credentials asked
    assert (await client.final()).status == 200
    udp.sendto(sip("INVITE", branch="z9hG4bK-a"))
    challenged = await client.final()
    assert challenged.status == 401
    challenge = challenged.header("WWW-Authenticate")
    for n, (password, expect) in enumerate((("wrong", 401), ("s3cret", 488))):
        answer = invite_with(access, challenge, "pbx", password)
        header = answer.headers.all("Authorization")[0]
        # right credentials go on to the offer's checks: no SDP here, so 488
        udp.sendto(
            sip(
                "INVITE",
                branch=f"z9hG4bK-b{n}",
                call_id=f"c{n}",
                extra=f"Authorization: {header}\r\n",
            )
        )
        assert (await client.final()).status == expect


def test_baresip_with_its_password_is_served_and_without_it_is_not(tmp_path: Path) -> None:
    need("baresip", "baresip-core")
    sip_port = free_port()
    env = {
        "IVR_SIP_PORT": str(sip_port),
        "IVR_SIP_USERS": f"{KNOWN}:s3cret",
        "IVR_SIP_ALLOW": "127.0.0.0/8",
        "IVR_RTP_PORTS": rtp_range(),
    }
    with live_server(tmp_path, **env) as server:
        target = f"127.0.0.1:{sip_port}"
        wav = silent_wav(tmp_path, 4)

        async def both() -> tuple[Heard, Heard]:
            right = await baresip(tmp_path, "right", target, KNOWN, wav, "PCMU", password="s3cret")
            wrong = await baresip(tmp_path, "wrong", target, KNOWN, wav, "PCMU", password="guess")
            return right, wrong

        right, wrong = asyncio.run(both())
        served = calls(server)
        assert [c["transport"] for c in served] == ["sip"], served  # only the right one
        assert served[0]["turns"][0]["kind"] == "prompt"  # it heard the greeting
        assert right.dump is not None
        assert "401" in wrong.log or "Unauthorized" in wrong.log, wrong.log[-2000:]
