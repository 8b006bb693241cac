"""What the server refuses before it looks at a token: clients that keep presenting wrong
tokens, and tokens revoked with `ivr token revoke`.

Failed attempts. A request that presents a bearer token the server does not accept (unknown,
or revoked) is a failed attempt of its client address; an IPv6 client is its /64, the block
one subscriber gets, so that a host cannot step through its own addresses. After
`max_failures` of them within `window_s` seconds, every request of that address that needs a
token (the API, the console's calls of it, the live feeds and the softphone's WebSockets) is
answered 429 `too_many_attempts` with `Retry-After`, before its token is looked at: a guess
made while locked out learns nothing, not even a right one. The lock-out lasts `window_s`;
then the address starts afresh. Successes do not count, and do not clear earlier failures
either (else one valid token with any scope would reset the count between guesses). A
request without any token, or a valid token lacking the scope (403), is no guess.

The table of addresses is bounded (`max_clients`): the entries of addresses whose failures
and lock-out are over are dropped as new ones come, and when it is still full the address
that failed least recently goes, so a flood from many addresses costs a fixed amount of
memory (and at worst lets the oldest address start afresh).

Revocations are SHA-256 digests the store keeps (table `revoked_tokens`); the server reads
them at start-up and then every few seconds (`IVR_TOKEN_REVOCATION_POLL_SECONDS`), so a
revocation takes effect without a restart, on every node sharing the database.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import math
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from ivr.http_error import ApiError
from ivr.tasks import cancel_and_wait

log = logging.getLogger(__name__)

MAX_CLIENTS = 10_000
"""Addresses with failed attempts remembered at once (some 300 bytes each)."""
LOG_EVERY_S = 10.0
"""At most one lock-out line this often; the others are counted into the next."""


def client_key(remote: str | None) -> str:
    """The address failed attempts are counted against: an IPv4 address as it is (also
    IPv4-mapped IPv6), an IPv6 address as its /64; anything else (a Unix socket) as given."""
    if not remote:
        return ""
    try:
        address = ipaddress.ip_address(remote.split("%", 1)[0])
    except ValueError:
        return remote
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


@dataclass(slots=True)
class _Client:
    failures: deque[float]
    locked_until: float = 0.0


@dataclass(slots=True)
class AttemptCounts:
    """What `/metrics` shows of the failed attempts (totals since start)."""

    failures: dict[str, int] = field(default_factory=dict)
    """Failed attempts by reason: unknown, revoked."""
    refused: int = 0
    """Requests answered 429 while their address was locked out."""
    lockouts: int = 0
    evicted: int = 0
    """Addresses dropped from a full table while their failures still counted."""


class FailedAttempts:
    """Failed token attempts per client address, and who is locked out (see the module)."""

    def __init__(
        self,
        max_failures: int,
        window_s: float,
        max_clients: int = MAX_CLIENTS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self.max_clients = max_clients
        self._clock = clock
        self._clients: OrderedDict[str, _Client] = OrderedDict()  # least recent failure first
        self.counts = AttemptCounts()
        self._logged_at = -math.inf
        self._unlogged = 0

    @property
    def enabled(self) -> bool:
        return self.max_failures > 0

    def tracked(self) -> int:
        return len(self._clients)

    def locked(self) -> int:
        now = self._clock()
        return sum(c.locked_until > now for c in self._clients.values())

    def retry_after(self, client: str) -> float | None:
        """Seconds until `client` may try again; None when it is not locked out."""
        entry = self._clients.get(client)
        if entry is None:
            return None
        left = entry.locked_until - self._clock()
        return left if left > 0 else None

    def refuse(self) -> None:
        self.counts.refused += 1

    def failed(self, client: str, reason: str, what: str = "") -> None:
        """A failed attempt of `client` (`what`: the request, for the log line)."""
        self.counts.failures[reason] = self.counts.failures.get(reason, 0) + 1
        if not self.enabled:
            return
        now = self._clock()
        entry = self._clients.get(client)
        if entry is None:
            self._make_room(now)
            entry = self._clients[client] = _Client(deque(maxlen=self.max_failures))
        else:
            self._clients.move_to_end(client)
        entry.failures.append(now)
        recent = sum(now - t < self.window_s for t in entry.failures)
        if recent >= self.max_failures and entry.locked_until <= now:
            entry.locked_until = now + self.window_s
            entry.failures.clear()  # after the lock-out the address starts afresh
            self.counts.lockouts += 1
            self._log_lockout(client, what, now)

    def _stale(self, entry: _Client, now: float) -> bool:
        """Nothing of it counts any more: its failures are out of the window, its lock-out over."""
        latest = entry.failures[-1] if entry.failures else -math.inf
        return entry.locked_until <= now and now - latest >= self.window_s

    def _make_room(self, now: float) -> None:
        # The front failed least recently: the stale entries are there.
        while self._clients:
            oldest = next(iter(self._clients.values()))
            if not self._stale(oldest, now):
                break
            self._clients.popitem(last=False)
        while len(self._clients) >= self.max_clients:
            self._clients.popitem(last=False)
            self.counts.evicted += 1

    def _log_lockout(self, client: str, what: str, now: float) -> None:
        if now - self._logged_at < LOG_EVERY_S:
            self._unlogged += 1
            return
        more = f" (and {self._unlogged} more addresses since the last such line)"
        log.warning(
            "token attempts: %d failed from %s within %g s; its requests with a token are"
            " refused (429 too_many_attempts) for %g s%s%s",
            self.max_failures,
            client or "an unknown address",
            self.window_s,
            self.window_s,
            f"; the last: {what}" if what else "",
            more if self._unlogged else "",
        )
        self._logged_at, self._unlogged = now, 0


class TokenGuard:
    """The server's failed attempts and revoked tokens, one per app (`ivr.appkeys.TOKEN_GUARD`)."""

    def __init__(self, attempts: FailedAttempts, revoked: Iterable[str] = ()) -> None:
        self.attempts = attempts
        self.revoked: frozenset[str] = frozenset(revoked)

    def set_revoked(self, digests: Iterable[str]) -> None:
        revoked = frozenset(digests)
        added = revoked - self.revoked
        if added:
            log.info("tokens: %d revoked (%d in all)", len(added), len(revoked))
        self.revoked = revoked

    def metrics(self) -> Iterator[Metric]:
        """Failed attempts, lock-outs and the table's size, for `/metrics`."""
        counts = self.attempts.counts
        failures = CounterMetricFamily(
            "ivr_token_failures",
            "Requests that presented a bearer token the server does not accept, by reason"
            " (unknown, revoked): failed attempts of their client address",
            labels=["reason"],
        )
        for reason in ("unknown", "revoked"):
            failures.add_metric([reason], counts.failures.get(reason, 0))
        yield failures
        yield CounterMetricFamily(
            "ivr_token_lockouts",
            "Client addresses locked out after IVR_MAX_TOKEN_FAILURES_PER_CLIENT failed attempts",
            value=counts.lockouts,
        )
        yield CounterMetricFamily(
            "ivr_token_refused",
            "Requests answered 429 too_many_attempts: their address was locked out",
            value=counts.refused,
        )
        yield GaugeMetricFamily(
            "ivr_token_locked_clients",
            "Client addresses locked out now",
            value=self.attempts.locked(),
        )
        yield GaugeMetricFamily(
            "ivr_token_tracked_clients",
            "Client addresses with failed attempts remembered"
            f" (at most {self.attempts.max_clients})",
            value=self.attempts.tracked(),
        )
        yield GaugeMetricFamily(
            "ivr_tokens_revoked", "Revoked tokens the server refuses", value=len(self.revoked)
        )

    def check(self, client: str) -> None:
        """ApiError 429 while `client` is locked out."""
        left = self.attempts.retry_after(client)
        if left is None:
            return
        self.attempts.refuse()
        seconds = math.ceil(left)
        raise ApiError(
            429,
            f"too many failed token attempts from this address: try again in {seconds} s",
            headers={"Retry-After": str(seconds)},
            code="too_many_attempts",
        )


class RevocationPoller:
    """Keeps `guard.revoked` up to date: `load()` (the store's revoked digests) now, then
    every `interval_s`. A failing read keeps the previous list (and says so once)."""

    def __init__(
        self,
        guard: TokenGuard,
        load: Callable[[], Awaitable[Iterable[str]]],
        interval_s: float,
        errors: tuple[type[BaseException], ...] = (Exception,),
    ) -> None:
        self.guard = guard
        self._load = load
        self.interval_s = interval_s
        self._errors = errors
        self._task: asyncio.Task[None] | None = None
        self._failing = False

    async def refresh(self) -> None:
        try:
            digests = await self._load()
        except self._errors as exc:
            if not self._failing:
                log.warning(
                    "tokens: cannot read the revoked tokens (%s); keeping the last list", exc
                )
            self._failing = True
            return
        self._failing = False
        self.guard.set_revoked(digests)

    async def start(self) -> None:
        """The first read, before the server takes requests; then the polling task."""
        await self.refresh()
        self._task = asyncio.create_task(self._run(), name="token-revocations")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            await self.refresh()

    async def close(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None
