"""Webhooks: subscriptions of a tenant to its change feed, delivered by HTTP POST.

Tables (portable SQL)::

    webhooks(id, tenant, url, secret, kinds JSON, created_at)
    deliveries(id, webhook, tenant, seq, payload, attempts, next_attempt_at,
               delivered_at, last_error, created_at)      UNIQUE (webhook, seq)

A delivery row is created for every matching webhook *inside the transaction
that records the change* (:meth:`WebhookRegistry.enqueue` is a change-feed
``in_transaction`` hook): if the change exists, its deliveries exist. The
payload is stored once, so every attempt sends the same bytes under the same
delivery id. The dispatcher (``server.dispatcher``) sends them, at least once.

**Signatures.** Each attempt carries ``X-Crdtsync-Timestamp`` (Unix seconds,
fresh per attempt) and ``X-Crdtsync-Signature: sha256=<hex>``, the
HMAC-SHA256 with the webhook's secret of ``"<timestamp>." + body`` (the raw
body bytes). A receiver checks it with :func:`verify_signature` before
trusting the body, rejects stale timestamps (replay), and de-duplicates by
``X-Crdtsync-Delivery``: the same delivery can arrive more than once, and
deliveries are not ordered (``seq`` in the body orders them).

The webhook secret is stored in clear: the relay needs it to sign.
Deleting a webhook deletes its pending deliveries with it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx

from crdtsync import CrdtsyncError

from .changes import Change
from .officedb import OfficeDB, Transaction, format_time, parse_time

__all__ = [
    "SCHEMA",
    "Backlog",
    "CreatedWebhook",
    "SIGNATURE_HEADER",
    "Webhook",
    "WebhookNotFound",
    "WebhookRegistry",
    "sign",
    "verify_signature",
]

SCHEMA = """
CREATE TABLE IF NOT EXISTS webhooks (
    id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    url TEXT NOT NULL,
    secret TEXT NOT NULL,
    kinds TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS webhooks_by_tenant ON webhooks (tenant);
CREATE TABLE IF NOT EXISTS deliveries (
    id TEXT PRIMARY KEY,
    webhook TEXT NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    tenant TEXT NOT NULL,
    seq INTEGER NOT NULL,
    payload TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT NOT NULL,
    delivered_at TEXT,
    last_error TEXT,
    created_at TEXT NOT NULL,
    UNIQUE (webhook, seq)
);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (delivered_at, next_attempt_at);
"""

DELIVERY_HEADER = "X-Crdtsync-Delivery"
TIMESTAMP_HEADER = "X-Crdtsync-Timestamp"
SIGNATURE_HEADER = "X-Crdtsync-Signature"


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The ``X-Crdtsync-Signature`` value: ``sha256=`` + hex HMAC of ``timestamp.body``."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify_signature(
    secret: str,
    timestamp: str,
    body: bytes,
    header: str,
    *,
    tolerance: float | None = 300.0,
    now: float | None = None,
) -> bool:
    """True if ``header`` is the signature of ``body`` sent at ``timestamp`` with ``secret``.

    For receivers: pass the raw request body (before any JSON parsing), the
    ``X-Crdtsync-Timestamp`` and ``X-Crdtsync-Signature`` headers. With a
    ``tolerance`` (seconds, default five minutes) a timestamp further than
    that from ``now`` (default: the current time) is refused too, which stops
    an intercepted request from being replayed later. The comparison is in
    constant time.
    """
    if tolerance is not None:
        try:
            sent = int(timestamp)
        except ValueError:
            return False
        if abs((time.time() if now is None else now) - sent) > tolerance:
            return False
    return hmac.compare_digest(sign(secret, timestamp, body).encode(), header.strip().encode())


class WebhookNotFound(CrdtsyncError):
    """No such webhook in this tenant."""


@dataclass(frozen=True, slots=True)
class Webhook:
    """A webhook as listed (without its secret). ``kinds`` empty means every kind."""

    id: str
    tenant_id: str
    url: str
    kinds: tuple[str, ...]
    created_at: datetime

    def wants(self, kind: str) -> bool:
        """Whether a change of ``kind`` goes to this webhook (``prefix.*`` matches a family)."""
        if not self.kinds:
            return True
        return any(
            kind == want or (want.endswith(".*") and kind.startswith(want[:-1]))
            for want in self.kinds
        )


@dataclass(frozen=True, slots=True)
class CreatedWebhook:
    webhook: Webhook
    secret: str


@dataclass(frozen=True, slots=True)
class Backlog:
    """Undelivered deliveries; ``failing`` ones have used up the retry threshold."""

    pending: int = 0
    failing: int = 0
    oldest: datetime | None = None


def _webhook(row: sqlite3.Row) -> Webhook:
    return Webhook(
        id=row["id"],
        tenant_id=row["tenant"],
        url=row["url"],
        kinds=tuple(json.loads(row["kinds"])),
        created_at=parse_time(row["created_at"]),
    )


def _check_url(url: str) -> str:
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise ValueError(f"invalid webhook URL: {exc}") from exc
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ValueError("a webhook URL is an absolute http:// or https:// URL")
    return url


class WebhookRegistry:
    """Webhooks and their deliveries in an :class:`~server.officedb.OfficeDB` with :data:`SCHEMA`.

    ``failing_after`` is the number of failed attempts after which a
    delivery counts as failing (it is still retried).
    """

    def __init__(
        self,
        db: OfficeDB,
        *,
        failing_after: int = 10,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.db = db
        self.failing_after = failing_after
        self.clock = clock or (lambda: datetime.now(UTC))
        #: Called (synchronously) after deliveries were created and committed.
        self.on_enqueued: list[Callable[[], None]] = []

    async def create(
        self, tenant_id: str, url: str, *, secret: str | None = None, kinds: Sequence[str] = ()
    ) -> CreatedWebhook:
        """Register a webhook; without ``secret`` one is generated (returned here only)."""
        _check_url(url)
        if secret is not None and len(secret) < 16:
            raise ValueError("a webhook secret is at least 16 characters")
        secret = secret or "whsec_" + secrets.token_urlsafe(32)
        webhook = Webhook(secrets.token_hex(8), tenant_id, url, tuple(kinds), self.clock())
        async with self.db.transaction() as tx:
            await tx.execute(
                "INSERT INTO webhooks (id, tenant, url, secret, kinds, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (
                    webhook.id,
                    tenant_id,
                    url,
                    secret,
                    json.dumps(list(webhook.kinds)),
                    format_time(webhook.created_at),
                ),
            )
        return CreatedWebhook(webhook, secret)

    async def list(self, tenant_id: str) -> list[Webhook]:
        async with self.db.read() as tx:
            rows = await tx.fetchall(
                "SELECT id, tenant, url, kinds, created_at FROM webhooks WHERE tenant = ? "
                "ORDER BY created_at, id",
                (tenant_id,),
            )
        return [_webhook(row) for row in rows]

    async def get(self, tenant_id: str, webhook_id: str) -> Webhook:
        async with self.db.read() as tx:
            row = await tx.fetchone(
                "SELECT id, tenant, url, kinds, created_at FROM webhooks "
                "WHERE tenant = ? AND id = ?",
                (tenant_id, webhook_id),
            )
        if row is None:
            raise WebhookNotFound(f"no webhook {webhook_id!r}")
        return _webhook(row)

    async def delete(self, tenant_id: str, webhook_id: str) -> None:
        """Delete the webhook and its undelivered deliveries."""
        async with self.db.transaction() as tx:
            await tx.execute("DELETE FROM deliveries WHERE webhook = ?", (webhook_id,))
            deleted = await tx.execute(
                "DELETE FROM webhooks WHERE tenant = ? AND id = ?", (tenant_id, webhook_id)
            )
            if not deleted:
                raise WebhookNotFound(f"no webhook {webhook_id!r}")

    async def enqueue(self, tx: Transaction, changes: Sequence[Change]) -> None:
        """Create the deliveries for ``changes`` inside the transaction that records them."""
        now = format_time(self.clock())
        rows: list[tuple[str, str, str, int, str, str, str]] = []
        for tenant in sorted({change.tenant for change in changes}):
            hooks = [
                _webhook(row)
                for row in await tx.fetchall(
                    "SELECT id, tenant, url, kinds, created_at FROM webhooks WHERE tenant = ?",
                    (tenant,),
                )
            ]
            for change in changes:
                if change.tenant != tenant:
                    continue
                payload = json.dumps(change.to_json(), separators=(",", ":"))
                rows.extend(
                    (secrets.token_hex(16), hook.id, tenant, change.seq, payload, now, now)
                    for hook in hooks
                    if hook.wants(change.kind)
                )
        if rows:
            await tx.executemany(
                "INSERT INTO deliveries "
                "(id, webhook, tenant, seq, payload, next_attempt_at, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                rows,
            )

    def enqueued(self, changes: Sequence[Change]) -> None:
        """Change-feed ``after_commit`` hook: wake whoever dispatches."""
        for listener in self.on_enqueued:
            listener()

    async def backlog(
        self, tenant_id: str | None = None, *, webhook_id: str | None = None
    ) -> Backlog:
        """Undelivered deliveries, overall, of one tenant, or of one webhook."""
        sql = (
            "SELECT COUNT(*), COALESCE(SUM(CASE WHEN attempts >= ? THEN 1 ELSE 0 END), 0), "
            "MIN(created_at) FROM deliveries WHERE delivered_at IS NULL"
        )
        params: list[object] = [self.failing_after]
        if tenant_id is not None:
            sql += " AND tenant = ?"
            params.append(tenant_id)
        if webhook_id is not None:
            sql += " AND webhook = ?"
            params.append(webhook_id)
        async with self.db.read() as tx:
            row = await tx.fetchone(sql, params)
        if row is None:
            return Backlog()
        return Backlog(int(row[0]), int(row[1]), parse_time(row[2]) if row[2] else None)
