"""Bearer tokens: the server keeps only each token's SHA-256, its name and its scopes.

The token's name is the acting principal (e.g. the default agent of a claim). A server
with no tokens configured answers 401 to every authenticated route: secure by default.

Browsers cannot set headers on a WebSocket, so the server's WebSockets (the live feeds,
the softphone) take the token as a subprotocol (`Sec-WebSocket-Protocol: ivr.v1,
bearer.<token>`; not written to access logs, which is why the console and `ivr dial` use
it) or as `?token=<token>` (simple for tools; the log formatter redacts it).

Every check of a request's token goes through `request_principal`, which applies the app's
`TokenGuard` (`ivr.token_guard`): clients locked out after failed attempts get 429, revoked
tokens 401, and each unknown or revoked token presented counts as a failed attempt.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from aiohttp import web

from ivr.appkeys import TOKEN_GUARD
from ivr.config import ApiToken
from ivr.http_error import ApiError
from ivr.token_guard import client_key

REALM = 'Bearer realm="ivr"'
PROTOCOL = "ivr.v1"
"""The WebSocket subprotocol the server selects; a browser refuses a socket that selects
none of its own."""
BEARER_PREFIX = "bearer."
"""A WebSocket's token as a subprotocol: `Sec-WebSocket-Protocol: ivr.v1, bearer.<token>`."""


def new_token() -> str:
    """A fresh random token (256 bits), URL-safe: it travels in headers and shells."""
    return secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """Hex SHA-256 of the token, as configured in IVR_API_TOKENS."""
    # surrogatepass: header bytes that are not UTF-8 arrive as surrogates; they must hash
    # (to nothing configured), not raise.
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def token_entry(name: str, token: str, scopes: Sequence[str]) -> str:
    """The IVR_API_TOKENS entry for a token: NAME:SHA256:SCOPE+SCOPE."""
    return f"{name}:{hash_token(token)}:{'+'.join(scopes)}"


@dataclass(frozen=True, slots=True)
class Principal:
    name: str
    scopes: frozenset[str]

    def allows(self, scope: str) -> bool:
        return "*" in self.scopes or scope in self.scopes


ANONYMOUS = Principal("anonymous", frozenset())


def bearer_credentials(header: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header; None when there is none."""
    scheme, _, credentials = (header or "").strip().partition(" ")
    credentials = credentials.strip()
    return credentials if scheme.lower() == "bearer" and credentials else None


def authenticate(
    header: str | None, tokens: Sequence[ApiToken], revoked: Collection[str] = ()
) -> Principal:
    """The principal of an `Authorization: Bearer <token>` header; 401 otherwise (also for
    a token whose SHA-256 is in `revoked`)."""
    credentials = bearer_credentials(header)
    if credentials is None:
        raise ApiError(401, "missing bearer token", headers={"WWW-Authenticate": REALM})
    digest = hash_token(credentials)
    found = None
    for token in tokens:  # no early exit: the time taken does not tell which entry matched
        if hmac.compare_digest(digest, token.sha256):
            found = token
    invalid = {"WWW-Authenticate": f'{REALM}, error="invalid_token"'}
    if found is None:
        detail = (
            "unknown bearer token" if tokens else "the API is disabled: no tokens are configured"
        )
        raise ApiError(401, detail, headers=invalid)
    if found.sha256 in revoked:
        raise ApiError(401, f"bearer token {found.name!r} has been revoked", headers=invalid)
    return Principal(found.name, frozenset(found.scopes))


def request_principal(
    request: web.Request, header: str | None, tokens: Sequence[ApiToken], scope: str | None
) -> Principal:
    """The principal of a request's `Authorization` header (or its WebSocket token as one),
    holding `scope` (None: any). 429 while the client is locked out after failed attempts
    (before the token is looked at), 401 for a missing, unknown or revoked token (the last
    two count as failed attempts), 403 for a token without the scope."""
    guard = request.app.get(TOKEN_GUARD)
    if guard is None:
        who = authenticate(header, tokens)
    else:
        client = client_key(request.remote)
        guard.check(client)
        try:
            who = authenticate(header, tokens, guard.revoked)
        except ApiError:
            credentials = bearer_credentials(header)
            if credentials is not None:  # a token was presented: a guess that failed
                known = any(hmac.compare_digest(hash_token(credentials), t.sha256) for t in tokens)
                reason = "revoked" if known else "unknown"
                guard.attempts.failed(client, reason, f"{request.method} {request.path}")
            raise
    if scope is not None:
        require(who, scope)
    return who


def websocket_token(request: web.Request) -> str | None:
    """The token of a WebSocket request (browsers cannot set its headers): a subprotocol
    `bearer.<token>`, else `?token=`."""
    offered = request.headers.get("Sec-WebSocket-Protocol", "")
    token = next(
        (
            p.strip()[len(BEARER_PREFIX) :]
            for p in offered.split(",")
            if p.strip().startswith(BEARER_PREFIX)
        ),
        None,
    )
    return token or request.query.get("token")


def require(principal: Principal, scope: str) -> None:
    """403 unless the principal holds `scope` (or "*")."""
    if not principal.allows(scope):
        raise ApiError(
            403,
            f"token {principal.name!r} lacks the scope {scope}",
            headers={"WWW-Authenticate": f'{REALM}, error="insufficient_scope", scope="{scope}"'},
        )


def websocket_principal(request: web.Request, tokens: Sequence[ApiToken], scope: str) -> Principal:
    """The principal of a WebSocket request's token (subprotocol `bearer.<token>`, else
    `?token=`), holding `scope`; ApiError 401/403/429 otherwise, like any API route."""
    token = websocket_token(request)
    return request_principal(request, f"Bearer {token}" if token else None, tokens, scope)
