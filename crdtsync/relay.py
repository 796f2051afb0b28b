"""The relay core: rooms, fan-out, group commit, durable acknowledgement, and the rules.

Embeddable: ``async with Relay(store) as relay`` then ``await relay.serve(channel)``
for each connection (native multiplexed framing) or
``await relay.serve(channel, document=name)`` (plain y-websocket framing), each
with the :class:`~crdtsync.access.Principal` behind it.

Invariants:

* An Ack for a Push is sent only after the store transaction holding that
  update (or, for an update the relay already had, every earlier one) has
  committed. Acks reach each connection in the order its Pushes arrived.
* Updates are applied to a room's document and queued for the store in one
  synchronous step, so the log order of a document is its apply order and no
  client's updates are ever stored out of order.
* Fan-out happens right after the apply (and, where the application has field
  rules, after the check), to every other peer of the room, never back to the
  sender (provenance is the connection).
* Each connection has one writer task and a bounded send queue; a peer that
  falls behind by ``send_queue_size`` frames is disconnected (1013), never
  buffered without bound.
* A malformed frame or an invalid update closes only its own connection with a
  typed Error and a close code. An update that makes pycrdt panic, or that
  writes a field its sender may not write, is never stored nor fanned out; the
  room is rebuilt from the store. A refused access closes only that document.
* If the store fails, nothing uncommitted is acknowledged: the affected rooms
  are dropped from memory and their peers disconnected, so devices resend.
* A principal reaches only the documents of its tenant (``t/<tenant>/<name>``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from types import TracebackType
from typing import Any, Self, TypeVar

from pycrdt import Doc, get_update

from ._commit import CommitListener, GroupCommit, RelayObserver, RelayStats
from ._connection import RelayConnection
from ._digest import state_digest
from ._relay_ops import RelayConfig, RelayOperations, blob_key, split_name
from ._rooms import Room, RoomTable, Write
from ._updates import apply_update, holds_structs
from .access import Application, Principal, UpdateWatch
from .exceptions import (
    CloseCode,
    ConnectionClosed,
    ErrorCode,
    Forbidden,
    ForbiddenField,
    InvalidUpdate,
    ProtocolError,
    StoreError,
)
from .protocol import (
    AwarenessReceived,
    BlobChunkReceived,
    BlobQueried,
    ConnectionFailed,
    DocumentClosed,
    Event,
    ResumeEntry,
    ResumeRequested,
    Role,
    SubmissionReceived,
    SyncRequested,
    SyncSession,
    UpdateReceived,
)
from .store import RecordStore, RejectedUpdate, Store
from .transport import Channel

__all__ = ["Relay", "RelayConfig", "RelayObserver", "RelayStats", "blob_key", "split_name"]

log = logging.getLogger("crdtsync.relay")

_FAIR_SLICE = 0.005  # seconds a connection's reader runs at most before it lets others run


T = TypeVar("T")


class Relay(RelayOperations):
    """Serves any number of connections over one store. Use with ``async with``.

    Blobs, submissions, the relay's own writes and access changes are in
    :class:`~crdtsync._relay_ops.RelayOperations`."""

    def __init__(
        self,
        store: Store,
        config: RelayConfig | None = None,
        *,
        observer: RelayObserver | None = None,
        application: Application | None = None,
    ) -> None:
        self.store = store
        self.config = config or RelayConfig()
        self.observer = observer
        self.application = application
        self.stats = RelayStats()
        self._rooms = RoomTable(store, self.flush, self._watch if application else None)
        self._commits = GroupCommit(
            store,
            self.stats,
            max_batch=self.config.max_commit_batch,
            max_uncommitted=self.config.max_uncommitted,
            on_failure=self._commit_failed,
            observer=observer,
        )
        self._connections: set[RelayConnection] = set()
        self._tasks: asyncio.TaskGroup | None = None
        self._running = False
        self._maintenance: asyncio.Task[None] | None = None

    @property
    def on_commit(self) -> list[CommitListener]:
        """Callbacks run after each commit with its (stored name, update) pairs."""
        return self._commits.listeners

    # -- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        self._tasks = asyncio.TaskGroup()
        await self._tasks.__aenter__()
        self._running = True
        self._tasks.create_task(self._commits.run(), name="relay-commit")
        self._maintenance = self._tasks.create_task(
            self._maintenance_loop(), name="relay-maintenance"
        )
        if self.application is not None:
            self.application.bind(self)
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
        self._commits.stop()  # the commit loop drains what is queued, then stops
        if self._maintenance is not None:
            self._maintenance.cancel()
        assert self._tasks is not None
        await self._tasks.__aexit__(exc_type, exc, tb)
        self._tasks = None

    @property
    def documents_loaded(self) -> list[str]:
        return sorted(self._rooms.rooms)

    async def flush(self) -> None:
        """Wait until every update applied so far is committed."""
        await self._commits.flush()

    # -- serving one connection -----------------------------------------------------------------

    async def serve(
        self,
        channel: Channel,
        *,
        document: str | None = None,
        peer: str = "",
        principal: Principal | None = None,
    ) -> None:
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
        connection = RelayConnection(
            channel, session, self.config.send_queue_size, peer, self._count_slow_consumer
        )
        connection.principal = principal or Principal()
        self._connections.add(connection)
        self.stats.connections += 1
        self.stats.connections_total += 1
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(connection.write_loop())
                if document is not None:
                    await self._guarded(connection, self._open(connection, document, None))
                await self._read_loop(connection)
                connection.finish()
        finally:
            self._connections.discard(connection)
            self.stats.connections -= 1
            for room in connection.rooms.values():
                room.peers.pop(connection, None)
                room.last_active = time.monotonic()

    async def _read_loop(self, connection: RelayConnection) -> None:
        loop = asyncio.get_running_loop()
        ran_others = loop.time()
        while not connection.closing:
            try:
                data = await connection.channel.recv()
            except ConnectionClosed:
                return
            for event in connection.session.receive_frame(data):
                if connection.closing:
                    return
                await self._guarded(connection, self._handle(connection, event))
            # A channel with frames waiting returns them without suspending: now and then
            # let the commit loop and the other connections run, or a busy peer would hold
            # back everyone's commits (and acks) until its buffer is empty. Not after every
            # frame: what piles up meanwhile is committed, and fanned out, in fewer batches.
            now = loop.time()
            if now - ran_others >= _FAIR_SLICE:
                await asyncio.sleep(0)
                ran_others = now

    async def _guarded(self, connection: RelayConnection, handling: Any) -> None:
        """Run one event's handling; turn what it raises into the peer's error."""
        try:
            await handling
        except Forbidden as exc:
            self._refuse_document(connection, exc)
        except ProtocolError as exc:
            self._refuse(connection, exc)
        except StoreError as exc:
            log.error("store failure serving %s: %s", connection.peer, exc)
            connection.fail(ErrorCode.STORE_FAILURE, CloseCode.INTERNAL_ERROR, str(exc))

    def _count_slow_consumer(self) -> None:
        self.stats.slow_consumers += 1

    def _count_refusal(self, error: ProtocolError) -> None:
        self.stats.protocol_errors += 1
        if isinstance(error, InvalidUpdate | ForbiddenField):
            self.stats.rejected_updates += 1
        if self.observer is not None:
            self.observer.on_reject(error.document, int(error.code))

    def _refuse(self, connection: RelayConnection, error: ProtocolError) -> None:
        self._count_refusal(error)
        log.warning("closing %s: %s (%s)", connection.peer, error, error.code.name)
        frame = connection.session.send_error(error.document, error.code, str(error), error.seq)
        connection.fail(error.code, error.close_code, str(error), frame=frame)

    def _refuse_document(self, connection: RelayConnection, error: Forbidden) -> None:
        """Answer with the Error, then close that document only (the whole connection when
        it carries just that one, as plain y-websocket does)."""
        self._count_refusal(error)
        log.warning(
            "refused %s (%s) on %r: %s",
            connection.principal,
            connection.peer,
            error.document,
            error,
        )
        self._withdraw(connection, error.document, error.code, str(error), error.seq)

    def _withdraw(
        self, connection: RelayConnection, name: str, code: ErrorCode, reason: str, seq: int = 0
    ) -> None:
        session = connection.session
        if session.single_document is not None:
            connection.fail(code, CloseCode.FORBIDDEN, reason)
            return
        connection.send(session.send_error(name, code, reason, seq))
        connection.send(session.close_document(name, CloseCode.FORBIDDEN, reason[:120]))
        self._leave(connection, name)

    def _leave(self, connection: RelayConnection, name: str) -> None:
        connection.writable.discard(name)
        room = connection.rooms.pop(name, None)
        if room is not None:
            room.peers.pop(connection, None)
            room.last_active = time.monotonic()

    # -- events ----------------------------------------------------------------------------------

    async def _handle(self, connection: RelayConnection, event: Event) -> None:
        match event:
            case ConnectionFailed(error=error, data=frame):
                self._count_refusal(error)
                log.warning("protocol violation from %s: %s", connection.peer, error)
                connection.fail(error.code, error.close_code, str(error), frame=frame)
            case SyncRequested(document=name, state_vector=sv, first=first):
                if first:
                    await self._open(connection, name, sv)
                else:
                    self._send_sync(connection, name, await self._room_of(connection, name), sv)
            case UpdateReceived(document=name, update=update, seq=seq):
                await self._receive_update(connection, name, update, seq)
            case AwarenessReceived(document=name, payload=payload):
                joined = connection.rooms.get(name)
                if joined is not None and payload is not None:
                    for peer, alias in joined.peers.items():
                        if peer is not connection:
                            peer.send(peer.session.send_awareness(alias, payload))
            case DocumentClosed(document=name):
                self._leave(connection, name)
            case SubmissionReceived(document=name, key=key, body=body):
                await self._submit(connection, name, key, body)
            case BlobChunkReceived(document=name, sha256=sha, size=size, offset=at, data=data):
                await self._put_blob(connection, name, sha, size, at, data)
            case BlobQueried(document=name, sha256=sha, size=size):
                await self._query_blob(connection, name, sha, size)
            case ResumeRequested(entries=entries):
                await self._resume(connection, entries)
            case _:
                pass  # Acks, errors and statuses are refused by the session table for the relay.

    async def _authorize(self, connection: RelayConnection, name: str, *, write: bool) -> None:
        principal = connection.principal
        if write and name in connection.writable:
            return
        if write and principal.role == "viewer":
            raise Forbidden("a viewer may not write", document=name)
        if not principal.tenant and principal.role != "service" and name.startswith("t/"):
            raise Forbidden("tenant documents are reached through a tenant", document=name)
        if self.application is not None:
            await self.application.authorize(principal, name, write=write)
        if write:
            connection.writable.add(name)

    async def _join(self, connection: RelayConnection, name: str) -> Room:
        await self._authorize(connection, name, write=False)
        room = await self._rooms.load(connection.principal.namespace + name)
        room.peers[connection] = name
        connection.rooms[name] = room
        room.last_active = time.monotonic()
        self.stats.rooms_loaded = len(self._rooms)
        return room

    async def _open(self, connection: RelayConnection, name: str, sv: bytes | None) -> None:
        room = await self._join(connection, name)
        if sv is not None:
            self._send_sync(connection, name, room, sv)
        else:  # y-websocket: the server speaks first with its state vector
            connection.send(connection.session.send_step1(name, room.doc.get_state()))

    async def _resume(self, connection: RelayConnection, entries: tuple[ResumeEntry, ...]) -> None:
        """A device opened many documents at once: join each, and name those whose digest
        differs from the relay's (they sync in full); the others are in sync, and their
        newest outbox sequence is acknowledged once everything before it is committed."""
        stale: list[int] = []
        for index, entry in enumerate(entries):
            try:
                room = await self._join(connection, entry.document)
            except Forbidden as exc:
                self._refuse_document(connection, exc)
                continue
            if state_digest(room.doc) != entry.digest:
                stale.append(index)
            elif entry.seq:
                self._commits.put(Write(room, None, connection, entry.seq))
        self.stats.resumed += len(entries) - len(stale)
        connection.send(connection.session.send_resumed(stale))

    async def _room_of(self, connection: RelayConnection, name: str) -> Room:
        room = connection.rooms.get(name)
        if room is None or room.broken:
            room = await self._rooms.load(connection.principal.namespace + name)
            room.peers[connection] = name
            connection.rooms[name] = room
        return room

    def _send_sync(self, connection: RelayConnection, name: str, room: Room, sv: bytes) -> None:
        try:
            diff = room.doc.get_update(sv)
        except ValueError as exc:
            raise InvalidUpdate(f"state vector does not decode: {exc}", document=name) from exc
        session = connection.session
        connection.send(session.send_step2(name, diff))
        connection.send(session.send_step1(name, room.doc.get_state()))

    async def _receive_update(
        self, connection: RelayConnection, name: str, update: bytes, seq: int | None
    ) -> None:
        self.stats.updates_received += 1
        await self._authorize(connection, name, write=True)
        await self._commits.wait_for_space()
        room = await self._room_of(connection, name)
        # From here to the enqueue there is no await: log order == apply order.
        watch = room.watch
        if watch is not None:
            watch.collect()
        room.changed = False
        try:
            apply_update(room.doc, update, document=name, seq=seq or 0)
        except InvalidUpdate as exc:
            if exc.panicked:
                await self._rooms.rebuild(room, "pycrdt failed while applying an update")
            raise
        room.last_active = time.monotonic()
        # An update waiting for a missing dependency changes nothing yet (no observer call),
        # but it is new: what it holds beyond the document's state must be stored and sent.
        # Only structs count as new: every sync diff carries the sender's whole delete set,
        # which changes nothing when the document has applied it already.
        changed = room.changed or holds_structs(get_update(update, room.doc.get_state()))
        if watch is not None and changed:
            denied = self._denied(connection, name, room, watch, pending=not room.changed)
            if denied:
                await self._reject(connection, name, room, update, seq, denied)
        if changed:
            room.uncommitted += 1
            for peer, alias in room.peers.items():
                if peer is not connection:
                    peer.send_update(alias, update)
        self._commits.put(Write(room, update if changed else None, connection, seq))

    def _denied(
        self, connection: RelayConnection, name: str, room: Room, watch: UpdateWatch, pending: bool
    ) -> list[str]:
        assert self.application is not None
        denied = self.application.check(connection.principal, name, watch.collect(), room.doc)
        denied += [f"{root} (not a field)" for root in watch.unknown_roots(room.doc)]
        if pending and connection.principal.role != "service":
            denied.append("(an update whose dependencies the relay does not have)")
        return denied

    async def _reject(
        self,
        connection: RelayConnection,
        name: str,
        room: Room,
        update: bytes,
        seq: int | None,
        denied: list[str],
    ) -> None:
        """Discard the room (it holds the refused update), keep the update for audit, refuse."""
        # rebuild() marks the room broken and registers its replacement before it first
        # waits, so nobody else applies to (or fans out from) the refused state.
        await self._rooms.rebuild(room, f"refused an update from {connection.principal}")
        if isinstance(self.store, RecordStore):
            who = f"{connection.principal} ({connection.peer})"
            await self.store.add_rejection(
                RejectedUpdate(room.name, who, ", ".join(denied), update, time.time())
            )
        raise ForbiddenField(denied, document=name, seq=seq or 0)

    # -- commits and maintenance -----------------------------------------------------------------

    def _watch(self, stored: str, doc: Doc[Any]) -> UpdateWatch | None:
        assert self.application is not None
        tenant, name = split_name(stored)
        return self.application.watch(tenant, name, doc)

    def _commit_failed(self, batch: list[Write], exc: StoreError) -> None:
        log.error("commit of %d updates failed: %s", len(batch), exc)
        for room in {w.room for w in batch if w.data is not None}:
            self._rooms.drop(room)
            for peer in list(room.peers):
                peer.fail(
                    ErrorCode.STORE_FAILURE, CloseCode.INTERNAL_ERROR, "store failure: resync"
                )
        for w in batch:
            if w.connection is not None:
                w.connection.fail(ErrorCode.STORE_FAILURE, CloseCode.INTERNAL_ERROR, str(exc))

    async def compact(self, name: str) -> None:
        """Fold the stored log of ``name`` (a stored name) into its snapshot."""
        if await self._rooms.compact(name):
            self.stats.compactions += 1

    async def _maintenance_loop(self) -> None:
        while self._running:
            await asyncio.sleep(self.config.maintenance_interval)
            now = time.monotonic()
            for room in list(self._rooms.rooms.values()):
                try:
                    if room.log_entries >= self.config.compaction.max_log_entries:
                        await self.compact(room.name)
                    idle = now - room.last_active > self.config.idle_eviction_seconds
                    quiet = idle and not room.peers and room.uncommitted == 0
                    if quiet and await self._rooms.evict(room):
                        self.stats.evictions += 1
                        self.stats.rooms_loaded = len(self._rooms)
                except StoreError as exc:
                    log.error("maintenance of %r failed: %s", room.name, exc)
