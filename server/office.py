"""The office side of a relay deployment, as one ``async with`` unit.

:class:`Office` opens the office database (its own connection to the relay's
SQLite file), builds the tenants, change feed, event broker and webhook
registry on it, wires them together and runs the webhook dispatcher:

* ``changes.in_transaction``: ``webhooks.enqueue`` (deliveries are created in
  the transaction that records the change);
* ``changes.after_commit``: ``events.publish`` (live subscribers), then
  ``webhooks.enqueued`` (wakes the dispatcher);
* ``dispatcher.on_attempt``: the webhook attempt counter of ``metrics``.

On exit the event streams are ended first (they finish with a ``shutdown``
event), then the dispatcher stops (cancelled attempts are made due again),
then the database closes.
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Literal, Self

from crdtsync import StoreError

from . import changes as changes_module
from . import tenants as tenants_module
from . import viewrows as viewrows_module
from . import webhooks as webhooks_module
from .changes import ChangeFeed
from .dispatcher import AttemptOutcome, RetryPolicy, WebhookDispatcher
from .events import EventBroker
from .metrics import RelayMetrics
from .officedb import OfficeDB
from .tenants import Tenants
from .webhooks import WebhookRegistry

__all__ = ["SCHEMAS", "Office", "OfficeConfig"]

#: Every office table, in creation order.
SCHEMAS = (
    tenants_module.SCHEMA,
    changes_module.SCHEMA,
    webhooks_module.SCHEMA,
    viewrows_module.SCHEMA,
)


@dataclass(frozen=True, slots=True)
class OfficeConfig:
    """Tunables of the office side (the relay's settings map onto these)."""

    synchronous: Literal["FULL", "NORMAL", "EXTRA"] = "FULL"
    event_queue_size: int = 1000
    event_heartbeat: float = 15.0
    webhook_timeout: float = 10.0
    webhook_concurrency: int = 8
    webhook_failing_after: int = 10
    webhook_retry: RetryPolicy = field(default_factory=RetryPolicy)


class Office:
    """Tenants, change feed, events and webhooks on one database file.

    The attributes are usable between ``__aenter__`` and ``__aexit__`` only.
    """

    db: OfficeDB
    tenants: Tenants
    changes: ChangeFeed
    events: EventBroker
    webhooks: WebhookRegistry
    dispatcher: WebhookDispatcher

    def __init__(
        self,
        path: str | Path,
        config: OfficeConfig | None = None,
        *,
        metrics: RelayMetrics | None = None,
    ) -> None:
        self.path = Path(path)
        self.config = config or OfficeConfig()
        self.metrics = metrics
        self._stack: AsyncExitStack | None = None

    async def __aenter__(self) -> Self:
        config = self.config
        async with AsyncExitStack() as stack:
            self.db = await stack.enter_async_context(
                OfficeDB(self.path, SCHEMAS, synchronous=config.synchronous)
            )
            self.tenants = Tenants(self.db)
            self.changes = ChangeFeed(self.db)
            self.events = EventBroker(config.event_queue_size)
            self.webhooks = WebhookRegistry(self.db, failing_after=config.webhook_failing_after)
            self.changes.in_transaction.append(self.webhooks.enqueue)
            self.changes.after_commit.append(self.events.publish)
            self.changes.after_commit.append(self.webhooks.enqueued)
            self.dispatcher = WebhookDispatcher(
                self.webhooks,
                retry=config.webhook_retry,
                timeout=config.webhook_timeout,
                concurrency=config.webhook_concurrency,
            )
            self.dispatcher.on_attempt.append(self._count_attempt)
            await stack.enter_async_context(self.dispatcher)
            stack.callback(self.events.close)
            self._stack = stack.pop_all()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        stack, self._stack = self._stack, None
        if stack is not None:
            await stack.__aexit__(exc_type, exc, tb)

    def _count_attempt(self, outcome: AttemptOutcome) -> None:
        if self.metrics is not None:
            self.metrics.on_webhook_attempt(outcome.delivered)

    async def ping(self) -> None:
        """Raise :class:`crdtsync.StoreError` unless the office database answers."""
        if self._stack is None:
            raise StoreError("office is not open")
        await self.db.ping()

    async def refresh_metrics(self) -> None:
        """Update the database-backed gauges of ``metrics`` (before a scrape)."""
        if self.metrics is not None:
            await self.metrics.refresh(
                changes=self.changes, webhooks=self.webhooks, events=self.events
            )
