"""The webhook dispatcher: sends persisted deliveries until each one is acknowledged.

``async with WebhookDispatcher(registry) as dispatcher`` runs one task that
claims due deliveries from the ``deliveries`` table and POSTs them with httpx,
at most ``concurrency`` at a time. Guarantees:

* **At least once, never dropped.** A delivery leaves the backlog only when
  the receiver answered 2xx. Any other status, a timeout or a connection error
  schedules another attempt after :meth:`RetryPolicy.delay` (exponential,
  capped, with jitter). After ``failing_after`` attempts the delivery counts
  as failing (see :meth:`~server.webhooks.WebhookRegistry.backlog`) and keeps
  being retried at the cap.
* **Same id, same bytes.** The delivery id and payload are stored when the
  change is recorded; every attempt sends them unchanged, with a fresh
  timestamp and the matching signature.
* **Survives restarts.** State lives in the table only. Claiming a delivery
  pushes its ``next_attempt_at`` one lease ahead (timeout plus a margin), so
  an attempt cut short by a crash is retried once the lease ends; on a clean
  exit the leases of cancelled attempts are released at once.

Order is not guaranteed (a failing delivery does not hold back later ones):
receivers order by ``seq`` and de-duplicate by delivery id.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from types import TracebackType
from typing import Self

import httpx

from crdtsync import StoreError, __version__

from .officedb import format_time, parse_time
from .webhooks import DELIVERY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, WebhookRegistry, sign

__all__ = ["AttemptOutcome", "RetryPolicy", "WebhookDispatcher"]

log = logging.getLogger("crdtsync.webhooks")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Delay before attempt ``n + 1`` after ``n`` failures: ``initial * 2**(n-1)``, capped.

    Jitter: the delay is drawn uniformly from ``[delay * (1 - jitter), delay]``
    so that receivers coming back are not hit by every delivery at once.
    """

    initial: float = 5.0
    maximum: float = 3600.0
    jitter: float = 0.5

    def delay(self, failures: int, rng: random.Random | None = None) -> float:
        base = min(self.maximum, self.initial * 2.0 ** min(max(failures - 1, 0), 64))
        low = base * (1.0 - self.jitter)
        return (rng or random).uniform(low, base)


@dataclass(frozen=True, slots=True)
class _Claim:
    delivery_id: str
    url: str
    secret: str
    payload: str
    attempts: int


@dataclass(frozen=True, slots=True)
class AttemptOutcome:
    """What one attempt did; handed to :attr:`WebhookDispatcher.on_attempt` listeners."""

    delivery_id: str
    attempt: int
    delivered: bool
    error: str | None


class WebhookDispatcher:
    """Runs the delivery loop for the lifetime of its ``async with`` block."""

    def __init__(
        self,
        registry: WebhookRegistry,
        *,
        retry: RetryPolicy | None = None,
        timeout: float = 10.0,
        concurrency: int = 8,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.registry = registry
        self.db = registry.db
        self.retry = retry or RetryPolicy()
        self.timeout = timeout
        self.lease = timedelta(seconds=timeout + 30.0)
        self.concurrency = concurrency
        #: Called after each attempt's outcome is stored.
        self.on_attempt: list[Callable[[AttemptOutcome], None]] = []
        self._client = client
        self._own_client = client is None
        self._wake = asyncio.Event()
        self._inflight: dict[str, asyncio.Task[None]] = {}
        self._runner: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Self:
        if self._client is None:
            self._client = httpx.AsyncClient(
                timeout=self.timeout,
                follow_redirects=False,
                headers={"User-Agent": f"crdtsync-relay/{__version__}"},
            )
        self.registry.on_enqueued.append(self.wake)
        self._runner = asyncio.create_task(self._run(), name="webhook-dispatcher")
        self._runner.add_done_callback(self._runner_done)
        return self

    @staticmethod
    def _runner_done(task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("webhook dispatcher stopped: %r", task.exception())

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        with contextlib.suppress(ValueError):
            self.registry.on_enqueued.remove(self.wake)
        cancelled = list(self._inflight)
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner
        if cancelled:
            with contextlib.suppress(StoreError):
                await self._release(cancelled)
        if self._own_client and self._client is not None:
            await self._client.aclose()

    def wake(self) -> None:
        """Look for due deliveries now (new ones were enqueued)."""
        self._wake.set()

    async def _run(self) -> None:
        async with asyncio.TaskGroup() as group:
            while True:
                try:
                    await self._fill(group)
                    delay = await self._seconds_until_due()
                except StoreError as exc:
                    log.error("webhook dispatcher: database error, retrying: %s", exc)
                    delay = self.retry.initial
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self._wake.wait()
                self._wake.clear()

    async def _fill(self, group: asyncio.TaskGroup) -> None:
        free = self.concurrency - len(self._inflight)
        if free <= 0:
            return
        for claim in await self._claim(free):
            task = group.create_task(self._attempt(claim))
            self._inflight[claim.delivery_id] = task

    async def _claim(self, limit: int) -> list[_Claim]:
        now = self.registry.clock()
        async with self.db.transaction() as tx:
            rows = await tx.fetchall(
                "SELECT d.id, w.url, w.secret, d.payload, d.attempts FROM deliveries d "
                "JOIN webhooks w ON w.id = d.webhook "
                "WHERE d.delivered_at IS NULL AND d.next_attempt_at <= ? "
                "ORDER BY d.next_attempt_at, d.seq LIMIT ?",
                (format_time(now), limit),
            )
            claims = [_Claim(*row) for row in rows if row[0] not in self._inflight]
            await tx.executemany(
                "UPDATE deliveries SET next_attempt_at = ? WHERE id = ?",
                [(format_time(now + self.lease), claim.delivery_id) for claim in claims],
            )
        return claims

    async def _seconds_until_due(self) -> float:
        """Seconds until the next delivery is due (an hour when there is none)."""
        if len(self._inflight) >= self.concurrency:
            return 3600.0
        async with self.db.read() as tx:
            row = await tx.fetchone(
                "SELECT MIN(next_attempt_at) FROM deliveries WHERE delivered_at IS NULL"
            )
        if row is None or row[0] is None:
            return 3600.0
        due = parse_time(row[0])
        return max(0.0, min(3600.0, (due - self.registry.clock()).total_seconds()))

    async def _attempt(self, claim: _Claim) -> None:
        try:
            error = await self._post(claim)
            outcome = AttemptOutcome(claim.delivery_id, claim.attempts + 1, error is None, error)
            stored = await self._record(claim, outcome)
        finally:
            self._inflight.pop(claim.delivery_id, None)
            self._wake.set()
        if stored:
            for listener in self.on_attempt:
                listener(outcome)

    async def _post(self, claim: _Claim) -> str | None:
        """Send once; None on 2xx, else a short description of the failure."""
        if self._client is None:
            raise RuntimeError("the dispatcher is not running: use 'async with'")
        body = claim.payload.encode()
        timestamp = str(int(self.registry.clock().timestamp()))
        headers = {
            "Content-Type": "application/json",
            DELIVERY_HEADER: claim.delivery_id,
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: sign(claim.secret, timestamp, body),
        }
        try:
            # httpx's timeout bounds each phase; this bounds the whole attempt (and the lease).
            async with asyncio.timeout(self.timeout):
                response = await self._client.post(claim.url, content=body, headers=headers)
        except (httpx.TimeoutException, TimeoutError):
            return "timeout"
        except httpx.HTTPError as exc:
            return f"{type(exc).__name__}: {exc}"[:500]
        if 200 <= response.status_code < 300:
            return None
        return f"HTTP {response.status_code}"

    async def _record(self, claim: _Claim, outcome: AttemptOutcome) -> bool:
        """Store the outcome; False if the database failed (the lease then ends, and it retries)."""
        try:
            await self._store_outcome(claim, outcome)
        except StoreError as exc:
            log.error("webhook delivery %s: cannot store outcome: %s", claim.delivery_id, exc)
            return False
        if not outcome.delivered:
            level = logging.INFO
            if outcome.attempt == self.registry.failing_after:
                level = logging.ERROR
            log.log(
                level,
                "webhook delivery %s attempt %d failed: %s",
                claim.delivery_id,
                outcome.attempt,
                outcome.error,
                extra={"delivery": claim.delivery_id, "attempt": outcome.attempt},
            )
        return True

    async def _store_outcome(self, claim: _Claim, outcome: AttemptOutcome) -> None:
        now = self.registry.clock()
        async with self.db.transaction() as tx:
            if outcome.delivered:
                await tx.execute(
                    "UPDATE deliveries SET delivered_at = ?, attempts = ?, last_error = NULL "
                    "WHERE id = ?",
                    (format_time(now), outcome.attempt, claim.delivery_id),
                )
                return
            retry_at = now + timedelta(seconds=self.retry.delay(outcome.attempt))
            await tx.execute(
                "UPDATE deliveries SET attempts = ?, last_error = ?, next_attempt_at = ? "
                "WHERE id = ?",
                (outcome.attempt, outcome.error, format_time(retry_at), claim.delivery_id),
            )

    async def _release(self, delivery_ids: list[str]) -> None:
        """Make deliveries whose attempt was cancelled due again at once."""
        now = format_time(self.registry.clock())
        async with self.db.transaction() as tx:
            await tx.executemany(
                "UPDATE deliveries SET next_attempt_at = ? WHERE id = ? AND delivered_at IS NULL",
                [(now, delivery_id) for delivery_id in delivery_ids],
            )
