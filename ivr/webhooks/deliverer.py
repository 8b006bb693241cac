"""Delivers outbox events to the configured webhook endpoints: at least once, signed,
retried.

Each event is one POST per endpoint that subscribes to its type (`WebhookEndpoint.events`)
of ``{"id", "type", "created_at", "data"}`` (compact JSON; ``id`` is the outbox event id,
the same on every redelivery, so receivers dedupe on it) with ``X-IVR-Event-Id``,
``X-IVR-Event-Type``, ``webhook-id`` and ``webhook-timestamp`` and, when the endpoint has a
secret (its own, else the deliverer's), ``X-IVR-Signature`` and ``webhook-signature`` (see
`ivr.webhooks.signing`). Any 2xx accepts it; anything else (3xx included: redirects are not
followed), a connection error or no answer within the timeout is a failed attempt.

Semantics an integrator can rely on:

* **Outbox first.** Events are written in the same transaction as the change they announce,
  and only marked delivered after the receivers accepted them, so a crash (even kill -9) at
  any point loses none: an event claimed by a process that died is retried when its lease
  (twice the timeout plus 10 s) runs out.
* **Several URLs.** Every URL receives every event it subscribes to. An event counts as
  delivered once all its subscribers have accepted it; until then it is retried, and a URL
  that already accepted it is skipped by this process. Another process (or this one after a
  restart) may send it to that URL again: delivery is at least once per URL, never exactly
  once. An event no endpoint subscribes to is marked delivered without a request (counted
  as ``unsubscribed``): subscribing later does not bring back its history.
* **Retries.** Exponential backoff with full jitter: after the n-th failed attempt the next
  one is a random time in [0, min(10 min, 1 s * 2^(n-1))] later. With the default 15
  attempts an event is retried for about half an hour (at most 57 min) before it is parked.
* **Parking.** After ``max_attempts`` failed attempts the event is parked: kept in the
  outbox, undelivered, due in the year 9999, with its last error, and an error is logged.
  Nothing is ever deleted; replaying means setting its next attempt time back to now,
  which gives it one more attempt (parked again if that fails too).
* **No URLs.** Without configured URLs the deliverer does not run: events stay in the
  outbox undelivered (not marked delivered, which would be a lie), and configuring a URL
  later delivers that history, oldest first. Receivers should judge staleness by
  ``created_at`` and the state carried in ``data`` (a ``callback.due`` from last week is
  not a request to dial now).
* **Order** is not guaranteed: events are sent concurrently and retried independently.
* **Load.** At most ``concurrency`` (32) requests are in flight; a receiver that hangs holds
  a slot for the timeout only, and the loop keeps claiming into the free slots.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import random
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

import aiohttp
from yarl import URL

from ivr.store import PARKED_UNTIL, Conflict, Delivery, Event, Store
from ivr.tasks import cancel_and_wait
from ivr.webhooks.endpoints import WebhookEndpoint
from ivr.webhooks.signing import delivery_headers

log = logging.getLogger(__name__)

_MAX_ERROR = 500  # characters of an error kept in the outbox
_MAX_RESPONSE = 64 * 1024  # bytes of a response read (so the connection can be reused)
_MAX_REMEMBERED = 100_000  # events partly accepted (some URLs) whose URLs we remember


def _utcnow() -> datetime:
    return datetime.now(UTC)


def backoff_s(
    attempts: int, base_s: float, cap_s: float, rand: Callable[[], float] = random.random
) -> float:
    """Delay before the next attempt after `attempts` failed ones (full jitter)."""
    ceiling: float = min(cap_s, base_s * 2.0 ** min(attempts - 1, 62))
    return ceiling * rand()


def label(url: str) -> str:
    """`url` without credentials or query (where tokens hide) for logs and errors."""
    u = URL(url)
    return str(u.with_user(None).with_query(None).with_fragment(None))


def _unique(urls: Sequence[str | WebhookEndpoint]) -> list[WebhookEndpoint]:
    """The endpoints, a bare URL as one taking every event; a URL listed again is the
    subscriber it already is (its first entry)."""
    out: dict[str, WebhookEndpoint] = {}
    for item in urls:
        endpoint = WebhookEndpoint(url=item) if isinstance(item, str) else item
        out.setdefault(endpoint.url, endpoint)
    return list(out.values())


def body_of(event: Event, tz: tzinfo = UTC) -> bytes:
    """The request body for `event` (compact JSON)."""
    doc = {
        "id": event.id,
        "type": event.type,
        "created_at": event.created_at.astimezone(tz).isoformat(),
        "data": event.payload,
    }
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()


class WebhookDeliverer:
    """Owns one background task that drains the outbox; `start()`, `wake()`, `close()`."""

    def __init__(
        self,
        store: Store,
        http: aiohttp.ClientSession,
        urls: Sequence[str | WebhookEndpoint],
        secret: str | None,
        timeout_s: float,
        max_attempts: int,
        *,
        clock: Callable[[], datetime] = _utcnow,
        tz: tzinfo = UTC,
        concurrency: int = 32,
        poll_s: float = 0.2,
        backoff_base_s: float = 1.0,
        backoff_cap_s: float = 600.0,
        rand: Callable[[], float] = random.random,
        on_attempt: Callable[[bool], None] | None = None,
    ) -> None:
        self.store = store
        self.on_attempt = on_attempt  # told after each attempt: accepted by every URL or not
        self.http = http
        self.endpoints = _unique(urls)
        self.urls = [e.url for e in self.endpoints]
        self.secret = secret  # of an endpoint without its own
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self.max_attempts = max_attempts
        self.clock = clock
        self.tz = tz
        # `concurrency` bounds requests in flight (the HTTP session's pool holds 100);
        # each event in flight is one request per URL.
        self.slots = max(1, concurrency // max(1, len(self.urls)))
        self.poll_s = poll_s
        self.backoff_base_s = backoff_base_s
        self.backoff_cap_s = backoff_cap_s
        self.rand = rand
        # Long enough that a live process always settles the event first (each URL gets
        # at most timeout_s, all in parallel); after a crash, this is the redelivery delay.
        self.lease = timedelta(seconds=2 * timeout_s + 10)
        self._task: asyncio.Task[None] | None = None
        self._inflight: dict[str, asyncio.Task[None]] = {}
        self._accepted: dict[str, set[str]] = {}  # event id → URLs that took it (this process)
        self._wake = asyncio.Event()
        self._slot = asyncio.Event()
        self._failing: dict[str, str] = {}  # URL → its last error, while it fails
        self._store_down = False
        self.delivered = 0
        self.failed_attempts = 0
        self.parked = 0
        self.unsubscribed = 0

    @property
    def enabled(self) -> bool:
        return bool(self.urls)

    def start(self) -> None:
        if not self.urls:
            log.info("no webhook URLs configured: events stay in the outbox")
            return
        unsigned = [label(e.url) for e in self.endpoints if not self._secret(e)]
        if unsigned:
            log.warning("webhooks are sent unsigned (no secret) to %s", ", ".join(unsigned))
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="webhooks")

    def wake(self) -> None:
        """New events are in the outbox: look now rather than at the next poll."""
        self._wake.set()

    async def close(self, grace_s: float = 2.0) -> None:
        """Stop claiming; give deliveries in flight up to `grace_s` to finish, then cancel
        them and make their events due again at once (for the next process)."""
        await cancel_and_wait(self._task)
        self._task = None
        pending = list(self._inflight.values())
        if pending:
            await asyncio.wait(pending, timeout=grace_s)
        interrupted = [eid for eid, t in self._inflight.items() if not t.done()]
        for task in self._inflight.values():
            task.cancel()
        await asyncio.gather(*self._inflight.values(), return_exceptions=True)
        now = self.clock()
        for eid in interrupted:
            with contextlib.suppress(Exception):  # best effort: else the lease runs out
                await asyncio.wait_for(
                    self.store.mark_failed(eid, "interrupted: server shutting down", now), 2
                )

    def stats(self) -> dict[str, Any]:
        """Counters for /healthz (since this process started; no database query)."""
        return {
            "enabled": self.enabled,
            "urls": len(self.urls),
            "delivered": self.delivered,
            "failed_attempts": self.failed_attempts,
            "parked": self.parked,
            "unsubscribed": self.unsubscribed,
            "in_flight": len(self._inflight),
            "failing_urls": len(self._failing),
        }

    # --- the loop ---------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            free = self.slots - len(self._inflight)
            if free <= 0:
                self._slot.clear()
                await self._slot.wait()
                continue
            self._wake.clear()  # before the claim: a wake() during it is not lost
            events = await self._claim(free)
            for event in events:
                task = asyncio.create_task(self._deliver(event), name=f"webhook:{event.id}")
                self._inflight[event.id] = task
            if len(events) < free:  # nothing more due now: wait for news or the next poll
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.poll_s)

    async def _claim(self, limit: int) -> list[Event]:
        try:
            events = await self.store.claim_due_events(limit, self.clock(), self.lease)
        except Exception as exc:  # the database may be briefly away: retry next poll
            if not self._store_down:
                log.error("webhooks: cannot read the outbox: %s", exc)
            self._store_down = True
            return []
        if self._store_down:
            log.info("webhooks: outbox readable again")
            self._store_down = False
        return events

    def _secret(self, endpoint: WebhookEndpoint) -> str | None:
        return self.secret if endpoint.secret is None else endpoint.secret

    def _headers(
        self, endpoint: WebhookEndpoint, event: Event, body: bytes, t: int
    ) -> dict[str, str]:
        return delivery_headers(event.id, event.type, body, self._secret(endpoint), t)

    async def _deliver(self, event: Event) -> None:
        try:
            if not any(e.wants(event.type) for e in self.endpoints):
                await self.store.mark_delivered(event.id, now=self.clock())
                self.unsubscribed += 1
                return
            errors = await self._send(event)
            if self.on_attempt is not None:
                self.on_attempt(not errors)
            await self._settle(event, errors)
        except Exception as exc:
            # Nothing recorded: the event stays leased and is retried when the lease ends.
            log.error("webhook event %s: could not record the attempt: %s", event.id, exc)
        finally:
            self._inflight.pop(event.id, None)
            self._slot.set()

    async def _send(self, event: Event) -> dict[str, str]:
        """POST `event` to every subscriber that has not accepted it yet; {url: error} of
        failures."""
        done = self._accepted.pop(event.id, set())
        targets = [e for e in self.endpoints if e.url not in done and e.wants(event.type)]
        body = body_of(event, self.tz)
        t = int(self.clock().timestamp())  # signed per attempt: when this attempt was sent
        results = await asyncio.gather(
            *(self._post(event, e.url, body, self._headers(e, event, body, t)) for e in targets)
        )
        await self._log_deliveries(results)
        errors: dict[str, str] = {}
        for url, error in zip((e.url for e in targets), (d.error for d in results), strict=True):
            if error is None:
                done.add(url)
                if self._failing.pop(url, None) is not None:
                    log.info("webhook URL %s accepts events again", label(url))
            else:
                errors[url] = error
                if url not in self._failing:
                    log.warning("webhook URL %s is failing: %s", label(url), error)
                self._failing[url] = error
        if errors and done and len(self._accepted) < _MAX_REMEMBERED:
            self._accepted[event.id] = done  # for the retry; dropped once it is settled
        return errors

    async def _post(self, event: Event, url: str, body: bytes, headers: dict[str, str]) -> Delivery:
        at, start = self.clock(), time.monotonic()
        status: int | None = None
        error: str | None
        try:
            async with self.http.post(
                url, data=body, headers=headers, timeout=self.timeout, allow_redirects=False
            ) as resp:
                status = resp.status
                text = await resp.content.read(_MAX_RESPONSE)
                if 200 <= resp.status < 300:
                    error = None
                else:
                    snippet = text[:200].decode(errors="replace").strip()
                    error = f"HTTP {resp.status}" + (f": {snippet}" if snippet else "")
        except TimeoutError:
            error = f"no response within {self.timeout.total:g} s"
        except (aiohttp.ClientError, ValueError, OSError) as exc:
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        ms = round((time.monotonic() - start) * 1000)
        return Delivery(event.id, url, at, status, error and error[:_MAX_ERROR], ms)

    async def _log_deliveries(self, deliveries: Sequence[Delivery]) -> None:
        """The delivery log keeps each POST, its URL labelled (no credentials or query). A
        failure to write it loses only the log lines, never the event's own state."""
        try:
            await self.store.record_deliveries(
                [dataclasses.replace(d, url=label(d.url)) for d in deliveries]
            )
        except Exception as exc:
            log.warning("webhooks: cannot write the delivery log: %s", exc)

    async def _settle(self, event: Event, errors: dict[str, str]) -> None:
        if not errors:
            await self.store.mark_delivered(event.id, now=self.clock())
            self._accepted.pop(event.id, None)
            self.delivered += 1
            return
        self.failed_attempts += 1
        error = "; ".join(f"{label(u)}: {e}" for u, e in errors.items())[:_MAX_ERROR]
        park = event.attempts >= self.max_attempts
        if park:
            retry_at = PARKED_UNTIL
            self._accepted.pop(event.id, None)
        else:
            delay = backoff_s(event.attempts, self.backoff_base_s, self.backoff_cap_s, self.rand)
            retry_at = self.clock() + timedelta(seconds=delay)
        try:
            await self.store.mark_failed(event.id, error, retry_at)
        except Conflict:  # another process delivered it after our lease ran out
            self._accepted.pop(event.id, None)
            return
        if park:
            self.parked += 1
            log.error(
                "webhook event %s (%s) parked after %d attempts: %s",
                event.id,
                event.type,
                event.attempts,
                error,
            )
        else:
            log.debug("webhook event %s attempt %d failed: %s", event.id, event.attempts, error)
