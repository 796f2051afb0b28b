"""Group commit: updates from every connection share store transactions; acks follow commits.

Invariants:

* An Ack (or a SyncStatus) leaves only after the transaction holding the update
  it answers, and every update queued before it, has committed.
* Acks are cumulative: one Ack per connection and document answers a whole
  batch with the highest sequence it covers.
* The queue is the apply order: ``put`` is called in the same synchronous step
  as the apply, so a document's log order is its apply order.
* When a commit fails, nothing in it is acknowledged: ``on_failure`` gets the
  batch (the relay drops the rooms and disconnects their peers, so devices resend).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from pycrdt import Doc

from ._rooms import Room, Write
from .exceptions import StoreError
from .store import Store

if TYPE_CHECKING:
    from ._connection import RelayConnection

__all__ = ["CommitListener", "GroupCommit", "RelayObserver", "RelayStats"]


class RelayObserver(Protocol):
    """Receives measurements as they happen (metrics); every method must return quickly."""

    def on_commit(self, batch_size: int, seconds: float) -> None:
        """A group commit of ``batch_size`` updates took ``seconds``."""

    def on_ack(self, latency_seconds: float) -> None:
        """An update was acknowledged ``latency_seconds`` after it arrived."""

    def on_reject(self, document: str, code: int) -> None:
        """An update or frame was refused with error ``code``."""


@dataclass(slots=True)
class RelayStats:
    """Counters for health and metrics; read them, do not write them."""

    connections: int = 0
    connections_total: int = 0
    rooms_loaded: int = 0
    updates_received: int = 0
    updates_stored: int = 0
    acks_sent: int = 0
    commits: int = 0
    last_batch_size: int = 0
    rejected_updates: int = 0
    protocol_errors: int = 0
    slow_consumers: int = 0
    compactions: int = 0
    evictions: int = 0
    blobs_stored: int = 0
    submissions: int = 0
    resumed: int = 0  # documents a device reopened in sync, without a byte of their content


#: Called after each commit with the (stored document name, update) pairs it stored.
CommitListener = Callable[[list[tuple[str, bytes]]], None]


class GroupCommit:
    """The commit queue and its loop. ``run`` until ``stop``; ``flush`` waits for a commit."""

    def __init__(
        self,
        store: Store,
        stats: RelayStats,
        *,
        max_batch: int,
        max_uncommitted: int,
        on_failure: Callable[[list[Write], StoreError], None],
        observer: RelayObserver | None = None,
    ) -> None:
        self.store = store
        self.stats = stats
        self.max_batch = max_batch
        self.max_uncommitted = max_uncommitted
        self.observer = observer
        self.listeners: list[CommitListener] = []
        self._on_failure = on_failure
        self._queue: asyncio.Queue[Write | None] = asyncio.Queue()
        self._space = asyncio.Condition()
        self._flush_waiters: list[tuple[Room, asyncio.Future[None]]] = []

    def put(self, write: Write) -> None:
        self._queue.put_nowait(write)

    def stop(self) -> None:
        """The loop commits what is queued, then returns."""
        self._queue.put_nowait(None)

    async def wait_for_space(self) -> None:
        """Backpressure: wait while the store is ``max_uncommitted`` updates behind."""
        if self._queue.qsize() >= self.max_uncommitted:
            async with self._space:
                await self._space.wait_for(lambda: self._queue.qsize() < self.max_uncommitted)

    async def flush(self) -> None:
        """Wait until every update queued so far is committed."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        barrier = Room("", Doc(), 0, 0)
        self._flush_waiters.append((barrier, done))
        self._queue.put_nowait(Write(barrier, None, None, None))
        await done

    async def run(self) -> None:
        stop = False
        while not stop:
            first = await self._queue.get()
            batch: list[Write] = []
            if first is None:
                stop = True
            else:
                batch.append(first)
            while not self._queue.empty() and len(batch) < self.max_batch:
                item = self._queue.get_nowait()
                if item is None:
                    stop = True
                    continue
                batch.append(item)
            if batch:
                await self._commit(batch)
            async with self._space:
                self._space.notify_all()
            await asyncio.sleep(0)  # let connection writers drain this batch's Acks first

    async def _commit(self, batch: list[Write]) -> None:
        entries: list[tuple[str, bytes]] = [
            (w.room.name, w.data) for w in batch if w.data is not None
        ]
        started = time.perf_counter()
        try:
            seqs = await self.store.append(entries)
        except StoreError as exc:
            self._on_failure(batch, exc)
            self._release(batch)
            return
        committed_at = time.perf_counter()
        self.stats.commits += 1
        self.stats.last_batch_size = len(entries)
        self.stats.updates_stored += len(entries)
        if self.observer is not None and entries:
            self.observer.on_commit(len(entries), committed_at - started)
        stored = iter(seqs)
        answers: dict[tuple[RelayConnection, str, bool], Write] = {}
        for w in batch:
            if w.data is not None:
                w.room.committed_seq = next(stored)
                w.room.uncommitted -= 1
                w.room.log_entries += 1
            if w.connection is not None:
                key = (w.connection, w.room.name, w.seq is None)
                last = answers.get(key)
                if last is None or (w.seq or 0) >= (last.seq or 0):
                    answers[key] = w
                if self.observer is not None:
                    self.observer.on_ack(committed_at - w.received)
        for w in answers.values():
            self._acknowledge(w)
        self._release(batch)
        if self.listeners and entries:
            for listener in self.listeners:
                listener(entries)

    def _release(self, batch: list[Write]) -> None:
        """Wake the flushes whose barrier was in ``batch`` (committed or not)."""
        rooms = {id(w.room) for w in batch if w.data is None and w.connection is None}
        for barrier, done in list(self._flush_waiters):
            if id(barrier) in rooms:
                self._flush_waiters.remove((barrier, done))
                if not done.done():
                    done.set_result(None)

    def _acknowledge(self, write: Write) -> None:
        connection = write.connection
        assert connection is not None
        alias = write.room.peers.get(connection)
        if alias is None:
            return  # the connection left the document meanwhile
        session = connection.session
        if write.seq is not None:
            # A Push with sequence 0 holds nothing from the outbox: no Ack answers it.
            if write.seq and connection.send(session.send_ack(alias, write.seq)):
                self.stats.acks_sent += 1
        elif session.single_document is None:
            connection.send(session.send_status(alias, True))
