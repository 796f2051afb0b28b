"""The relay core: rooms, fan-out, group commit and durable acknowledgement.

Embeddable: ``async with Relay(store) as relay`` then ``await relay.serve(channel)``
for each connection (native multiplexed framing) or
``await relay.serve(channel, document=name)`` (plain y-websocket framing).

Invariants:

* An Ack for a Push is sent only after the store transaction holding that
  update (or, for an update the relay already had, every earlier one) has
  committed. Acks reach each connection in the order its Pushes arrived.
* Updates are applied to a room's document and queued for the store in one
  synchronous step, so the log order of a document is its apply order and no
  client's updates are ever stored out of order.
* Fan-out happens right after the apply, to every other peer of the room,
  never back to the sender (provenance is the connection).
* Each connection has one writer task and a bounded send queue; a peer that
  falls behind by ``send_queue_size`` frames is disconnected (1013), never
  buffered without bound.
* A malformed frame or a refused update closes only its own connection with a
  typed Error and a close code. An update that makes pycrdt panic leaves the
  stored document untouched and the room is rebuilt from the store.
* If the store fails, nothing uncommitted is acknowledged: the affected rooms
  are dropped from memory and their peers disconnected, so devices resend.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

from pycrdt import Doc, Subscription, TransactionEvent, get_update

from ._updates import apply_update
from .exceptions import (
    CloseCode,
    ConnectionClosed,
    ErrorCode,
    InvalidUpdate,
    ProtocolError,
    StoreError,
)
from .protocol import (
    AwarenessReceived,
    ConnectionFailed,
    DocumentClosed,
    Event,
    Role,
    SyncRequested,
    SyncSession,
    UpdateReceived,
)
from .store import CompactionPolicy, Store, build_doc, merge
from .transport import Channel

__all__ = ["Relay", "RelayConfig", "RelayStats"]

log = logging.getLogger("crdtsync.relay")

_EMPTY_UPDATE = b"\x00\x00"


@dataclass(frozen=True, slots=True)
class RelayConfig:
    """Limits and timings of a relay. Every field has a production-sane default."""

    max_frame_size: int = 16 * 1024 * 1024
    max_update_size: int = 8 * 1024 * 1024
    max_documents_per_connection: int = 10_000
    send_queue_size: int = 8192
    max_commit_batch: int = 4096
    max_uncommitted: int = 50_000
    idle_eviction_seconds: float = 30.0
    maintenance_interval: float = 1.0
    compaction: CompactionPolicy = field(default_factory=CompactionPolicy)


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


@dataclass(slots=True, eq=False)
class _Room:
    name: str
    doc: Doc[Any]
    committed_seq: int
    log_entries: int
    peers: set[_Connection] = field(default_factory=set)
    uncommitted: int = 0
    last_active: float = field(default_factory=time.monotonic)
    changed: bool = False
    subscription: Subscription | None = None
    broken: bool = False

    def watch(self) -> None:
        def on_change(event: TransactionEvent) -> None:
            self.changed = True

        self.subscription = self.doc.observe(on_change)


@dataclass(slots=True, eq=False)
class _Write:
    """One entry of the commit queue; ``data`` None is a barrier (ack only)."""

    room: _Room
    data: bytes | None
    connection: _Connection | None
    seq: int | None


class _Connection:
    """Relay side of one peer: its session, its bounded send queue and its rooms."""

    _ids = itertools.count(1)

    def __init__(
        self, channel: Channel, session: SyncSession, queue_size: int, peer: str, stats: RelayStats
    ) -> None:
        self.id = next(self._ids)
        self.stats = stats
        self.peer = peer or f"conn-{self.id}"
        self.channel = channel
        self.session = session
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue(queue_size)
        self.rooms: dict[str, _Room] = {}
        self.close_code: int = CloseCode.NORMAL
        self.close_reason = ""
        self.closing = False

    def send(self, frame: bytes) -> bool:
        """Queue a frame; a full queue fails the connection as a slow consumer."""
        if self.closing or not frame:
            return not self.closing
        try:
            self.queue.put_nowait(frame)
        except asyncio.QueueFull:
            self.stats.slow_consumers += 1
            self.fail(ErrorCode.SLOW_CONSUMER, CloseCode.TRY_AGAIN_LATER, "send queue full")
            return False
        return True

    def finish(self) -> None:
        """The peer is gone or done: stop the writer after what is queued."""
        if not self.closing:
            self.closing = True
            with contextlib.suppress(asyncio.QueueFull):
                self.queue.put_nowait(None)

    def fail(self, code: ErrorCode, close_code: int, reason: str, *, frame: bytes = b"") -> None:
        """Stop reading and writing: send ``frame`` (or a fresh Error), then close."""
        if self.closing:
            return
        self.closing = True
        self.close_code, self.close_reason = close_code, reason[:120]
        while not self.queue.empty():
            self.queue.get_nowait()
        error = frame or self.session.send_error("", code, reason)
        if error:
            self.queue.put_nowait(error)
        self.queue.put_nowait(None)


class Relay:
    """Serves any number of connections over one store. Use with ``async with``."""

    def __init__(self, store: Store, config: RelayConfig | None = None) -> None:
        self.store = store
        self.config = config or RelayConfig()
        self.stats = RelayStats()
        self._rooms: dict[str, _Room] = {}
        self._loading: dict[str, asyncio.Future[_Room]] = {}
        self._connections: set[_Connection] = set()
        self._writes: asyncio.Queue[_Write | None] = asyncio.Queue()
        self._room_space = asyncio.Condition()
        self._tasks: asyncio.TaskGroup | None = None
        self._running = False
        self._maintenance: asyncio.Task[None] | None = None
        self._flush_waiters: list[tuple[_Room, asyncio.Future[None]]] = []
        #: Called with (document, update) after each commit; for views that follow the log.
        self.on_commit: list[Callable[[list[tuple[str, bytes]]], None]] = []

    # -- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        self._tasks = asyncio.TaskGroup()
        await self._tasks.__aenter__()
        self._running = True
        self._tasks.create_task(self._commit_loop(), name="relay-commit")
        self._maintenance = self._tasks.create_task(
            self._maintenance_loop(), name="relay-maintenance"
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._running = False
        for connection in list(self._connections):
            connection.fail(ErrorCode.SHUTTING_DOWN, CloseCode.GOING_AWAY, "relay shutting down")
        self._writes.put_nowait(None)  # the commit loop drains what is queued, then stops
        if self._maintenance is not None:
            self._maintenance.cancel()
        assert self._tasks is not None
        await self._tasks.__aexit__(exc_type, exc, tb)
        self._tasks = None

    @property
    def documents_loaded(self) -> list[str]:
        return sorted(self._rooms)

    async def flush(self) -> None:
        """Wait until every update applied so far is committed."""
        done = asyncio.get_running_loop().create_future()
        barrier = _Room("", Doc(), 0, 0)
        self._writes.put_nowait(_Write(barrier, None, None, None))
        self._flush_waiters.append((barrier, done))
        await done

    # -- serving one connection -----------------------------------------------------------------

    async def serve(self, channel: Channel, *, document: str | None = None, peer: str = "") -> None:
        """Serve ``channel`` until it closes. Never raises for anything the peer does."""
        if not self._running:
            await channel.close(CloseCode.GOING_AWAY, "relay not running")
            return
        session = SyncSession(
            Role.RELAY,
            document=document,
            max_frame_size=self.config.max_frame_size,
            max_update_size=self.config.max_update_size,
            max_documents=self.config.max_documents_per_connection,
        )
        connection = _Connection(channel, session, self.config.send_queue_size, peer, self.stats)
        self._connections.add(connection)
        self.stats.connections += 1
        self.stats.connections_total += 1
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self._write_loop(connection))
                if document is not None:
                    await self._join(connection, document, None)
                await self._read_loop(connection)
                connection.finish()
        finally:
            self._connections.discard(connection)
            self.stats.connections -= 1
            for room in connection.rooms.values():
                room.peers.discard(connection)
                room.last_active = time.monotonic()

    async def _read_loop(self, connection: _Connection) -> None:
        while not connection.closing:
            try:
                data = await connection.channel.recv()
            except ConnectionClosed:
                return
            for event in connection.session.receive_frame(data):
                if connection.closing:
                    return
                try:
                    await self._handle(connection, event)
                except ProtocolError as exc:
                    self._refuse(connection, exc)
                except StoreError as exc:
                    log.error("store failure serving %s: %s", connection.peer, exc)
                    connection.fail(ErrorCode.STORE_FAILURE, CloseCode.INTERNAL_ERROR, str(exc))

    async def _write_loop(self, connection: _Connection) -> None:
        try:
            while True:
                frame = await connection.queue.get()
                if frame is None:
                    break
                await connection.channel.send(frame)
        except ConnectionClosed:
            connection.closing = True
        with contextlib.suppress(ConnectionClosed, OSError):
            await connection.channel.close(connection.close_code, connection.close_reason)

    def _refuse(self, connection: _Connection, error: ProtocolError) -> None:
        self.stats.protocol_errors += 1
        if isinstance(error, InvalidUpdate):
            self.stats.rejected_updates += 1
        log.warning("closing %s: %s (%s)", connection.peer, error, error.code.name)
        frame = connection.session.send_error(error.document, error.code, str(error), error.seq)
        connection.fail(error.code, error.close_code, str(error), frame=frame)

    # -- events ----------------------------------------------------------------------------------

    async def _handle(self, connection: _Connection, event: Event) -> None:
        match event:
            case ConnectionFailed(error=error, data=frame):
                self.stats.protocol_errors += 1
                log.warning("protocol violation from %s: %s", connection.peer, error)
                connection.fail(error.code, error.close_code, str(error), frame=frame)
            case SyncRequested(document=name, state_vector=sv, first=first):
                if first:
                    await self._join(connection, name, sv)
                else:
                    room = await self._room_of(connection, name)
                    self._send_sync(connection, room, sv)
            case UpdateReceived(document=name, update=update, seq=seq):
                await self._receive_update(connection, name, update, seq)
            case AwarenessReceived(document=name, payload=payload):
                joined = connection.rooms.get(name)
                if joined is not None and payload is not None:
                    for peer in joined.peers:
                        if peer is not connection:
                            peer.send(peer.session.send_awareness(name, payload))
            case DocumentClosed(document=name):
                left = connection.rooms.pop(name, None)
                if left is not None:
                    left.peers.discard(connection)
                    left.last_active = time.monotonic()
            case _:
                pass  # Acks, errors and statuses are refused by the session table for the relay.

    async def _join(self, connection: _Connection, name: str, sv: bytes | None) -> None:
        room = await self._load(name)
        room.peers.add(connection)
        connection.rooms[name] = room
        room.last_active = time.monotonic()
        if sv is not None:
            self._send_sync(connection, room, sv)
        else:  # y-websocket: the server speaks first with its state vector
            connection.send(connection.session.send_step1(name, room.doc.get_state()))

    async def _room_of(self, connection: _Connection, name: str) -> _Room:
        room = connection.rooms.get(name)
        if room is None or room.broken:
            room = await self._load(name)
            room.peers.add(connection)
            connection.rooms[name] = room
        return room

    def _send_sync(self, connection: _Connection, room: _Room, sv: bytes) -> None:
        try:
            diff = room.doc.get_update(sv)
        except ValueError as exc:
            raise InvalidUpdate(f"state vector does not decode: {exc}", document=room.name) from exc
        session = connection.session
        connection.send(session.send_step2(room.name, diff))
        connection.send(session.send_step1(room.name, room.doc.get_state()))

    async def _receive_update(
        self, connection: _Connection, name: str, update: bytes, seq: int | None
    ) -> None:
        self.stats.updates_received += 1
        if self._writes.qsize() >= self.config.max_uncommitted:
            async with self._room_space:  # backpressure: the store is behind
                await self._room_space.wait_for(
                    lambda: self._writes.qsize() < self.config.max_uncommitted
                )
        room = await self._room_of(connection, name)
        # From here to the enqueue there is no await: log order == apply order.
        room.changed = False
        try:
            apply_update(room.doc, update, document=name, seq=seq or 0)
        except InvalidUpdate as exc:
            if exc.panicked:
                await self._rebuild(room)
            raise
        room.last_active = time.monotonic()
        # An update waiting for a missing dependency changes nothing yet (no observer call),
        # but it is new: what it holds beyond the document's state must be stored and sent.
        changed = room.changed or get_update(update, room.doc.get_state()) != _EMPTY_UPDATE
        if changed:
            room.uncommitted += 1
            for peer in room.peers:
                if peer is not connection:
                    peer.send(peer.session.send_update(name, update))
        self._writes.put_nowait(_Write(room, update if changed else None, connection, seq))

    # -- rooms -----------------------------------------------------------------------------------

    async def _load(self, name: str) -> _Room:
        room = self._rooms.get(name)
        if room is not None and not room.broken:
            return room
        pending = self._loading.get(name)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[_Room] = asyncio.get_running_loop().create_future()
        self._loading[name] = future
        try:
            stored = await self.store.load(name)
            room = _Room(name, build_doc(stored), stored.last_seq, len(stored.updates))
            room.watch()
            self._rooms[name] = room
            self.stats.rooms_loaded = len(self._rooms)
            future.set_result(room)
            return room
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: waiters re-raise it, no "never retrieved" warning
            raise
        finally:
            del self._loading[name]

    async def _rebuild(self, room: _Room) -> None:
        """Replace a room whose document pycrdt may have half-changed (after a panic)."""
        room.broken = True
        self._rooms.pop(room.name, None)
        await self.flush()  # every valid update applied before the panic is now stored
        fresh = await self._load(room.name)
        for peer in list(room.peers):
            fresh.peers.add(peer)
            peer.rooms[room.name] = fresh
        log.warning("rebuilt document %r from the store after a pycrdt panic", room.name)

    def _drop_room(self, room: _Room, reason: str) -> None:
        room.broken = True
        self._rooms.pop(room.name, None)
        for peer in list(room.peers):
            peer.fail(ErrorCode.STORE_FAILURE, CloseCode.INTERNAL_ERROR, reason)

    # -- group commit ----------------------------------------------------------------------------

    async def _commit_loop(self) -> None:
        stop = False
        while not stop:
            first = await self._writes.get()
            batch: list[_Write] = []
            if first is None:
                stop = True
            else:
                batch.append(first)
            while not self._writes.empty() and len(batch) < self.config.max_commit_batch:
                item = self._writes.get_nowait()
                if item is None:
                    stop = True
                    continue
                batch.append(item)
            if batch:
                await self._commit(batch)
            async with self._room_space:
                self._room_space.notify_all()
            await asyncio.sleep(0)  # let connection writers drain this batch's Acks first

    async def _commit(self, batch: list[_Write]) -> None:
        entries: list[tuple[str, bytes]] = [
            (w.room.name, w.data) for w in batch if w.data is not None
        ]
        try:
            seqs = await self.store.append(entries)
        except StoreError as exc:
            log.error("commit of %d updates failed: %s", len(entries), exc)
            for room in {w.room for w in batch if w.data is not None}:
                self._drop_room(room, "store failure: resync")
            for w in batch:
                if w.connection is not None:
                    w.connection.fail(ErrorCode.STORE_FAILURE, CloseCode.INTERNAL_ERROR, str(exc))
            return
        self.stats.commits += 1
        self.stats.last_batch_size = len(entries)
        self.stats.updates_stored += len(entries)
        stored = iter(seqs)
        for w in batch:
            if w.data is not None:
                w.room.committed_seq = next(stored)
                w.room.uncommitted -= 1
                w.room.log_entries += 1
            if w.connection is not None:
                self._acknowledge(w)
        for barrier, done in list(self._flush_waiters):
            if any(w.room is barrier for w in batch):
                self._flush_waiters.remove((barrier, done))
                done.set_result(None)
        if self.on_commit:
            committed = [(w.room.name, w.data) for w in batch if w.data is not None]
            for callback in self.on_commit:
                callback(committed)

    def _acknowledge(self, write: _Write) -> None:
        connection = write.connection
        assert connection is not None
        session = connection.session
        if write.seq is not None:
            if connection.send(session.send_ack(write.room.name, write.seq)):
                self.stats.acks_sent += 1
        elif session.single_document is None:
            connection.send(session.send_status(write.room.name, True))

    # -- maintenance -----------------------------------------------------------------------------

    async def _maintenance_loop(self) -> None:
        while self._running:
            await asyncio.sleep(self.config.maintenance_interval)
            now = time.monotonic()
            for room in list(self._rooms.values()):
                try:
                    if room.log_entries >= self.config.compaction.max_log_entries:
                        await self.compact(room.name)
                    idle = now - room.last_active > self.config.idle_eviction_seconds
                    if idle and not room.peers and room.uncommitted == 0:
                        await self._evict(room)
                except StoreError as exc:
                    log.error("maintenance of %r failed: %s", room.name, exc)

    async def compact(self, name: str) -> None:
        """Fold the stored log of ``name`` into its snapshot (content-preserving).

        Raises StoreError, leaving the log as it is, when it cannot be folded
        without changing the document (see :func:`crdtsync.store.merge`).
        """
        room = self._rooms.get(name)
        if room is None or room.broken:
            return
        # Merge what is stored, not room.doc.get_update(): only the stored updates tell
        # whether one still waits for a dependency (then the log must stay as it is).
        stored = await self.store.load(name)
        await self.store.compact(name, merge(stored), stored.last_seq)
        room.log_entries -= len(stored.updates)
        self.stats.compactions += 1

    async def _evict(self, room: _Room) -> None:
        if room.log_entries > 1:
            await self.compact(room.name)
        if room.peers or room.uncommitted:
            return
        self._rooms.pop(room.name, None)
        if room.subscription is not None:
            room.doc.unobserve(room.subscription)
        self.stats.evictions += 1
        self.stats.rooms_loaded = len(self._rooms)
