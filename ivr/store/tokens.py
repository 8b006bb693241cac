"""Revoked API tokens (`ivr token revoke`): the `TokenStore` operations, for both databases.

Tokens are configured, not stored (IVR_API_TOKENS holds each one's SHA-256); what the store
keeps is the list of digests no server may accept any more, shared by every node.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from ivr.store.queries import Queries
from ivr.store.rows import Row, now_or, ts


@dataclass(frozen=True, slots=True)
class RevokedToken:
    sha256: str
    name: str | None
    """The token's name where it was revoked (None: a digest configured elsewhere)."""
    revoked_at: datetime
    reason: str | None


def _revoked(r: Row) -> RevokedToken:
    return RevokedToken(r["sha256"], r["name"], ts(r["revoked_at"]), r["reason"])


class TokenQueries(Queries):
    """Mixed into `SqlStore`."""

    async def revoke_token(
        self,
        sha256: str,
        *,
        name: str | None = None,
        reason: str | None = None,
        now: datetime | None = None,
    ) -> tuple[RevokedToken, bool]:
        """Revoke the token of digest `sha256`: its record, and whether this call revoked
        it (False: it already was; its first revocation stands)."""
        async with self._unit() as c:
            added = await c.fetch(
                "INSERT INTO revoked_tokens (sha256, name, revoked_at, reason)"
                " VALUES ($1, $2, $3, $4) ON CONFLICT (sha256) DO NOTHING RETURNING *",
                sha256.lower(),
                name,
                now_or(now),
                reason,
            )
            if added:
                return _revoked(added[0]), True
            rows = await c.fetch("SELECT * FROM revoked_tokens WHERE sha256 = $1", sha256.lower())
        return _revoked(rows[0]), False

    async def revoked_tokens(self) -> list[RevokedToken]:
        rows = await self._select("SELECT * FROM revoked_tokens ORDER BY revoked_at, sha256")
        return [_revoked(r) for r in rows]
