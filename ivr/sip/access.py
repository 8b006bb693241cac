"""Who may call over SIP: an allow-list of source networks, and optional digest
authentication of INVITEs (RFC 3261 §22, the RFC 2617 digest with MD5 and qop=auth).

The allow-list applies to every request (a source outside it gets 403 and nothing else);
digest authentication to new calls only, so a proxy's OPTIONS probes need no credentials.
Nonces are stateless: a timestamp signed with a per-process key, valid for `NONCE_TTL_S`,
so a challenge needs no table that a flood of INVITEs could grow.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from ivr.sip.message import Request

NONCE_TTL_S = 300
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_PARAM = re.compile(r'([A-Za-z-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))')


def parse_networks(text: str) -> list[Network]:
    """`10.0.0.0/8, 192.0.2.7, 2001:db8::/32` → networks (a bare address is its /32 or
    /128). ValueError naming the entry that is not one."""
    out = []
    for entry in filter(None, (e.strip() for e in text.split(","))):
        try:
            out.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise ValueError(f"{entry!r} is not an IP address or network") from None
    return out


def parse_users(text: str) -> dict[str, str]:
    """`alice:secret,pbx:other` → {user: password}; ValueError for an entry without both."""
    users = {}
    for entry in filter(None, (e.strip() for e in text.split(","))):
        user, sep, password = entry.partition(":")
        if not sep or not user or not password:
            raise ValueError(f"{entry!r} is not USER:PASSWORD")
        users[user] = password
    return users


def digest_params(header: str) -> dict[str, str]:
    """The parameters of a `Digest …` Authorization header (empty if it is another scheme)."""
    scheme, _, rest = header.strip().partition(" ")
    if scheme.lower() != "digest":
        return {}
    return {m[1].lower(): m[2] if m[2] or not m[3] else m[3] for m in _PARAM.finditer(rest)}


def _md5(text: str) -> str:
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()


def digest_response(
    params: Mapping[str, str], password: str, method: str, realm: str | None = None
) -> str:
    """The `response` a client with `password` computes for `params` (RFC 2617 §3.2.2)."""
    ha1 = _md5(f"{params.get('username', '')}:{realm or params.get('realm', '')}:{password}")
    ha2 = _md5(f"{method}:{params.get('uri', '')}")
    nonce = params.get("nonce", "")
    if params.get("qop"):
        nc, cnonce, qop = params.get("nc", ""), params.get("cnonce", ""), params["qop"]
        return _md5(f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")
    return _md5(f"{ha1}:{nonce}:{ha2}")


@dataclass
class SipAccess:
    allow: Sequence[Network] = ()
    """Source networks that may send requests; empty: any."""
    users: Mapping[str, str] = field(default_factory=dict)
    """Digest credentials a new call must prove; empty: no authentication."""
    realm: str = "ivr"
    clock: Callable[[], float] = time.time
    _key: bytes = field(default_factory=lambda: secrets.token_bytes(32))

    def allows(self, address: str) -> bool:
        if not self.allow:
            return True
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in net for net in self.allow)

    def _sign(self, stamp: str) -> str:
        return hmac.new(self._key, stamp.encode(), hashlib.sha256).hexdigest()[:32]

    def challenge(self, stale: bool = False) -> str:
        """A WWW-Authenticate value with a fresh nonce."""
        stamp = f"{int(self.clock()):x}"
        nonce = f"{stamp}.{self._sign(stamp)}"
        extra = ", stale=true" if stale else ""
        return f'Digest realm="{self.realm}", nonce="{nonce}", algorithm=MD5, qop="auth"{extra}'

    def check(self, invite: Request) -> str | None:
        """None when the INVITE may go on (no authentication configured, or its credentials
        are right and fresh); else the WWW-Authenticate challenge to answer with (401)."""
        if not self.users:
            return None
        params = next(
            (p for h in invite.headers.all("Authorization") if (p := digest_params(h))), None
        )
        if params is None or params.get("realm") != self.realm:
            return self.challenge()
        nonce = params.get("nonce", "")
        stamp, _, signature = nonce.partition(".")
        if not hmac.compare_digest(signature, self._sign(stamp)):
            return self.challenge()
        try:
            issued = int(stamp, 16)
        except ValueError:
            return self.challenge()
        if self.clock() - issued > NONCE_TTL_S:
            return self.challenge(stale=True)  # the client may retry without asking its user
        password = self.users.get(params.get("username", ""))
        if params.get("algorithm", "MD5").upper() != "MD5" or password is None:
            return self.challenge()
        if params.get("qop") not in (None, "auth"):
            return self.challenge()
        expected = digest_response(params, password, invite.method, self.realm)
        if not hmac.compare_digest(expected, params.get("response", "").lower()):
            return self.challenge()
        return None
