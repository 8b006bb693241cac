"""``ivr token new | list | revoke``: API bearer tokens from the command line.

Tokens are configured, not stored: `IVR_API_TOKENS` (or `api_tokens` in the config file)
holds each one's name, SHA-256 and scopes, and the token itself is shown once, by `new`.
Revoking one cannot edit a server's environment, so `revoke` writes the token's SHA-256 to
the store's `revoked_tokens` table (the database the servers use: `IVR_DATABASE_URL`, else
DATA_DIR/ivr.db); every server sharing it reads that list every
`IVR_TOKEN_REVOCATION_POLL_SECONDS` and refuses the token from then on (401), no restart.
A revocation is for good: to give the client access again, make it a new token.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
from typing import Any

from ivr.config import SCOPES, ApiToken, ConfigError, Settings, load_settings

SCOPES_HELP = (
    f"comma-separated scopes, from: {', '.join(SCOPES)}; or * for all of them"
    " (e.g. callbacks.read,callbacks.write)"
)
MIN_PREFIX = 8
"""Hex digits of a SHA-256 that name a configured token in `revoke`."""


def cmd_new(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from ivr.auth import hash_token, new_token, token_entry

    token = new_token()
    scopes = [s.strip() for s in args.scopes.split(",") if s.strip()]
    if not scopes:
        raise SystemExit("ivr token new: --scopes: name at least one scope")
    try:  # the configuration's own rules for names and scopes
        ApiToken(name=args.name, sha256=hash_token(token), scopes=scopes)
    except ValidationError as exc:
        problems = "; ".join(f"{e['loc'][0]}: {e['msg']}" for e in exc.errors())
        raise SystemExit(f"ivr token new: {problems} (scopes: {', '.join(SCOPES)}, *)") from None
    # The token itself is shown this once; the server keeps only the entry (its SHA-256).
    print(f"token: {token}")
    print(f"IVR_API_TOKENS entry: {token_entry(args.name, token, scopes)}")
    return 0


def _revocations(settings: Settings) -> dict[str, Any]:
    """The store's revoked tokens by SHA-256."""
    from ivr.store import StoreError, open_store

    async def read() -> dict[str, Any]:
        store = await open_store(settings.store_url)
        try:
            return {r.sha256: r for r in await store.revoked_tokens()}
        finally:
            await store.close()

    try:
        return asyncio.run(read())
    except StoreError as exc:
        raise ConfigError(f"cannot read the revoked tokens: {exc}") from exc


def cmd_list(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    revoked = _revocations(settings)
    rows: list[dict[str, Any]] = []
    for token in settings.api_tokens:
        gone = revoked.get(token.sha256)
        rows.append(
            {
                "name": token.name,
                "sha256": token.sha256,
                "scopes": list(token.scopes),
                "status": "revoked" if gone else "active",
                "revoked_at": gone.revoked_at.isoformat() if gone else None,
                "configured": True,
            }
        )
    configured = {t.sha256 for t in settings.api_tokens}
    for digest, gone in revoked.items():
        if digest not in configured:  # revoked, and no longer (or never) configured here
            rows.append(
                {
                    "name": gone.name,
                    "sha256": digest,
                    "scopes": [],
                    "status": "revoked",
                    "revoked_at": gone.revoked_at.isoformat(),
                    "configured": False,
                }
            )
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print("no tokens configured (IVR_API_TOKENS) and none revoked; make one: ivr token new")
        return 0
    table = [("NAME", "SHA256", "SCOPES", "STATUS")]
    for row in rows:
        status = row["status"]
        if row["revoked_at"]:
            status += f" {row['revoked_at']}"
        if not row["configured"]:
            status += " (not configured here)"
        scopes = ",".join(row["scopes"]) or "-"
        table.append((row["name"] or "-", row["sha256"][:12], scopes, status))
    widths = [max(len(r[i]) for r in table) for i in range(3)]
    for r in table:
        print("  ".join(c.ljust(w) for c, w in zip(r[:3], widths, strict=True)) + "  " + r[3])
    return 0


def _targets(settings: Settings, which: str) -> list[tuple[str, str | None]]:
    """(sha256, name) of the tokens `which` names: a configured name, a whole SHA-256, or
    the start of a configured one's."""
    named: list[tuple[str, str | None]] = [
        (t.sha256, t.name) for t in settings.api_tokens if t.name == which
    ]
    if named:
        return named
    digest = which.lower()
    if re.fullmatch(r"[0-9a-f]{64}", digest):
        names = [t.name for t in settings.api_tokens if t.sha256 == digest]
        return [(digest, names[0] if names else None)]
    if re.fullmatch(rf"[0-9a-f]{{{MIN_PREFIX},63}}", digest):
        found = {t.sha256: t.name for t in settings.api_tokens if t.sha256.startswith(digest)}
        if len(found) > 1:
            raise ConfigError(f"{which!r} starts {len(found)} tokens' SHA-256: give more of it")
        if found:
            return [(digest, name) for digest, name in found.items()]
    known = ", ".join(sorted({t.name for t in settings.api_tokens})) or "none"
    raise ConfigError(
        f"no configured token is named {which!r} or has a SHA-256 starting so (configured:"
        f" {known}); give a name, a SHA-256 or at least {MIN_PREFIX} hex digits of one"
    )


def cmd_revoke(args: argparse.Namespace) -> int:
    from ivr.store import StoreError, open_store

    settings = load_settings(args.config)
    targets = _targets(settings, args.token)

    async def revoke() -> list[tuple[Any, bool]]:
        store = await open_store(settings.store_url)
        try:
            return [
                await store.revoke_token(digest, name=name, reason=args.reason)
                for digest, name in targets
            ]
        finally:
            await store.close()

    try:
        done = asyncio.run(revoke())
    except StoreError as exc:
        raise ConfigError(f"cannot write the revocation: {exc}") from exc
    for record, added in done:
        who = f"{record.name} (sha256 {record.sha256[:12]}…)" if record.name else record.sha256
        if added:
            print(f"revoked {who}")
        else:
            print(f"{who} was already revoked at {record.revoked_at.isoformat()}")
    print(
        f"servers using {_shown_store(settings)} refuse it within"
        f" {settings.token_revocation_poll_seconds:g} s; remove its IVR_API_TOKENS entry at"
        " their next restart",
        file=sys.stderr,
    )
    return 0


def _shown_store(settings: Settings) -> str:
    url = settings.store_url
    return re.sub(r"//[^@/]*@", "//", url)  # a PostgreSQL URL's password stays out


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The `token` command and its subcommands."""
    p = sub.add_parser(
        "token",
        help="API bearer tokens: make, list, revoke",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
    )
    tsub = p.add_subparsers(dest="action", required=True)
    pn = tsub.add_parser("new", help="make a token; prints it once and its IVR_API_TOKENS entry")
    pn.add_argument("name", help="who uses it: the token's name (the acting agent by default)")
    pn.add_argument("--scopes", required=True, help=SCOPES_HELP)
    pn.set_defaults(func=cmd_new)

    pl = tsub.add_parser(
        "list",
        help="the configured tokens (IVR_API_TOKENS) and the revoked ones, with their status",
    )
    pl.add_argument("--json", action="store_true", help="a JSON list instead of a table")
    pl.set_defaults(func=cmd_list)

    pr = tsub.add_parser(
        "revoke", help="refuse a token from now on, on every server sharing the database"
    )
    pr.add_argument(
        "token",
        metavar="NAME_OR_SHA256",
        help=f"a configured token's name (all of that name), its SHA-256, or its first"
        f" {MIN_PREFIX}+ hex digits (as `ivr token list` shows them)",
    )
    pr.add_argument("--reason", help="why, kept with the revocation (default: none)")
    pr.set_defaults(func=cmd_revoke)
