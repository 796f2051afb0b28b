"""Live change events: fan-out of recorded changes to per-tenant subscribers, and SSE framing.

:class:`EventBroker` receives every committed batch from the change feed (it
is registered as an ``after_commit`` hook, so it sees batches in ``seq``
order) and hands each change to the subscribers of that change's tenant.

Each :class:`Subscription` buffers at most ``queue_size`` changes. A
subscriber that falls that far behind is *dropped*: its buffer is freed, it
receives no more changes and :meth:`Subscription.next_batch` reports it, so
the stream can end with a final event. Nothing is lost for the client: every
change is in the ``changes`` table and the client resumes from the last event
id it saw. Memory per subscriber is bounded whatever the client does.

:func:`change_stream` is the whole ``GET /api/v1/events`` conversation as an
async iterator of SSE text: subscribe first, then replay from the table
(``seq > cursor``), then stream live changes skipping any ``seq`` the replay
already sent; comments as heartbeats while idle. Subscribing before the
replay closes the gap: a change committed before the subscription is in the
table, one committed after it is in the buffer (and maybe in the table too,
hence the skip).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import deque
from collections.abc import AsyncIterator, Iterator, Sequence
from enum import Enum

from .changes import Change, ChangeFeed

__all__ = ["EventBroker", "StreamEnd", "Subscription", "change_stream", "sse_event"]


class StreamEnd(Enum):
    """Why a subscription ended."""

    DROPPED = "dropped"  # fell behind by the buffer size
    SHUTDOWN = "shutdown"  # the relay is stopping


class Subscription:
    """One subscriber's bounded buffer of live changes for one tenant."""

    def __init__(self, tenant: str, queue_size: int) -> None:
        self.tenant = tenant
        self.queue_size = queue_size
        self.ended: StreamEnd | None = None
        self._items: deque[Change] = deque()
        self._wake = asyncio.Event()

    def offer(self, change: Change) -> bool:
        """Buffer ``change``; False once the subscription has ended (dropped now or before)."""
        if self.ended is not None:
            return False
        if len(self._items) >= self.queue_size:
            self.end(StreamEnd.DROPPED)
            return False
        self._items.append(change)
        self._wake.set()
        return True

    def end(self, reason: StreamEnd) -> None:
        if self.ended is None:
            self.ended = reason
            self._items.clear()
            self._wake.set()

    async def next_batch(self, timeout: float) -> list[Change]:
        """Buffered changes, waiting up to ``timeout`` for one; [] on timeout or once ended.

        Check :attr:`ended` after an empty batch to tell the two apart.
        """
        if not self._items and self.ended is None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._wake.wait()
        self._wake.clear()
        items = list(self._items)
        self._items.clear()
        return items


class EventBroker:
    """Per-tenant fan-out of committed changes to bounded subscriptions."""

    def __init__(self, queue_size: int = 1000) -> None:
        if queue_size < 1:
            raise ValueError("queue_size must be positive")
        self.queue_size = queue_size
        self._subscribers: dict[str, set[Subscription]] = {}
        self._closed = False
        #: How many subscribers were dropped for falling behind (for metrics).
        self.dropped_total = 0

    @property
    def subscribers(self) -> int:
        return sum(len(subs) for subs in self._subscribers.values())

    @contextlib.contextmanager
    def subscribe(self, tenant: str) -> Iterator[Subscription]:
        """A subscription for ``tenant``'s changes, removed when the block exits."""
        subscription = Subscription(tenant, self.queue_size)
        if self._closed:
            subscription.end(StreamEnd.SHUTDOWN)
        self._subscribers.setdefault(tenant, set()).add(subscription)
        try:
            yield subscription
        finally:
            subs = self._subscribers.get(tenant)
            if subs is not None:
                subs.discard(subscription)
                if not subs:
                    del self._subscribers[tenant]

    def publish(self, changes: Sequence[Change]) -> None:
        """Hand a committed batch to subscribers (the change feed's ``after_commit`` hook)."""
        for change in changes:
            for subscription in list(self._subscribers.get(change.tenant, ())):
                if not subscription.offer(change) and subscription.ended is StreamEnd.DROPPED:
                    self.dropped_total += 1
                    self._subscribers[change.tenant].discard(subscription)

    def close(self) -> None:
        """End every subscription (the streams finish with a ``shutdown`` event)."""
        self._closed = True
        for subs in self._subscribers.values():
            for subscription in subs:
                subscription.end(StreamEnd.SHUTDOWN)


def sse_event(data: object, *, event: str | None = None, event_id: int | None = None) -> str:
    """One server-sent event; ``data`` is JSON-encoded on one line."""
    lines = []
    if event_id is not None:
        lines.append(f"id: {event_id}")
    if event is not None:
        lines.append(f"event: {event}")
    lines.append("data: " + json.dumps(data, separators=(",", ":")))
    return "\n".join(lines) + "\n\n"


async def change_stream(
    feed: ChangeFeed,
    broker: EventBroker,
    tenant: str,
    cursor: int,
    *,
    heartbeat: float = 15.0,
    page_size: int = 500,
    retry_ms: int = 2000,
) -> AsyncIterator[str]:
    """The SSE text of ``tenant``'s changes after ``cursor``: replay, then live, then a final event.

    Changes are unnamed events (``message``) whose ``id`` is the ``seq`` and
    whose data is the change as JSON. The stream ends with ``event: dropped``
    (the subscriber fell behind) or ``event: shutdown``; both carry
    ``{"reason": ..., "last_event_id": ...}``, and the client reconnects with
    ``Last-Event-ID`` to resume.
    """
    with broker.subscribe(tenant) as subscription:
        yield f"retry: {retry_ms}\n\n"
        last = cursor
        while True:
            items, last_seen = await feed.since(tenant, last, page_size)
            for change in items:
                yield sse_event(change.to_json(), event_id=change.seq)
            last = last_seen
            if len(items) < page_size:
                break
        while subscription.ended is None:
            batch = await subscription.next_batch(heartbeat)
            if not batch and subscription.ended is None:
                yield ": keepalive\n\n"
            for change in batch:
                if change.seq > last:
                    yield sse_event(change.to_json(), event_id=change.seq)
                    last = change.seq
        reason = subscription.ended.value
        yield sse_event({"reason": reason, "last_event_id": last}, event=reason)
