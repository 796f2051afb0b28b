"""An offline-first replica of a device's documents.

``async with Device(path, connector) as device`` opens the device's SQLite file,
and keeps one connection to the relay for all of its documents while it is
online, reconnecting with exponential backoff and full jitter.

How nothing gets lost or reordered:

* A local edit is written to the device's file (and counted in its outbox)
  inside pycrdt's observer, before the edit call returns.
* On (re)connecting, the device sends each document's state vector; the relay
  answers with what the device lacks and with its own state vector, and the
  device answers that with **one** diff of everything the relay lacks, tagged
  with the newest outbox sequence. Only missing changes cross the wire, the
  diff is self-contained (no client's updates arrive out of order), and it
  also repairs anything the relay lost.
* Later local edits go out one Push each, in outbox order. An Ack for ``seq``
  means the relay committed everything up to it; only then do outbox rows go.
* Updates received from the relay and outbox rows dropped by Acks are written
  behind, in one transaction per burst (or together with the next local edit,
  before it): after a crash the resume handshake fetches and acknowledges them
  again, so holding them back loses nothing and saves a commit per frame.
  Pending counts and rejections are kept in memory, mirrored from the file.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from pycrdt import Doc, Subscription, TransactionEvent

from ._updates import apply_update
from .exceptions import ConnectionClosed, DeviceError, InvalidUpdate, StoreError
from .protocol import (
    AckReceived,
    ConnectionFailed,
    DocState,
    ErrorReceived,
    Event,
    Role,
    Synced,
    SyncRequested,
    SyncSession,
    UpdateReceived,
    validate_document_name,
)
from .store import LocalStore, build_doc, merge
from .transport import Channel, Connector

__all__ = ["Backoff", "Device", "DeviceStatus", "Rejection"]

log = logging.getLogger("crdtsync.device")

_EMPTY_UPDATE = b"\x00\x00"
_COMPACT_EVERY = 500  # log entries, at least, between two compactions of a replica
_MAX_HELD_BACK = 512  # received updates held back before a write is forced


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with full jitter: ``uniform(0, min(maximum, initial * factor**n))``."""

    initial: float = 0.2
    maximum: float = 15.0
    factor: float = 2.0

    def delay(self, attempt: int, rng: random.Random) -> float:
        ceiling = min(self.maximum, self.initial * self.factor ** min(attempt, 32))
        return rng.uniform(ceiling / 10, ceiling)


@dataclass(frozen=True, slots=True)
class Rejection:
    """A local change the relay refused."""

    document: str
    seq: int
    code: int
    message: str


@dataclass(frozen=True, slots=True)
class DeviceStatus:
    """What a device shows its user. ``last_sync`` is wall-clock seconds (time.time())."""

    online: bool
    connected: bool
    pending: dict[str, int]
    synced: dict[str, bool]
    last_sync: float | None
    reconnects: int
    last_error: str | None
    rejected: list[Rejection] = field(default_factory=list)

    @property
    def total_pending(self) -> int:
        return sum(self.pending.values())

    @property
    def in_sync(self) -> bool:
        """Connected, every document synced, nothing waiting for an ack."""
        return self.connected and all(self.synced.values()) and self.total_pending == 0


@dataclass(slots=True, eq=False)
class _Replica:
    name: str
    doc: Doc[Any]
    subscription: Subscription
    synced: bool = False
    live: bool = False  # the resume diff went out on this connection: push edits one by one
    since_compaction: int = 0  # log entries written since the last compaction
    log_bytes: int = 0  # their size
    base_bytes: int = 0  # size of the last snapshot: compaction waits for a log worth a quarter
    compaction_due: bool = False


class Device:
    """A device's replica of its documents, usable with or without a relay.

    ``connector`` opens a channel to the relay (``websocket_connector(url)``, or
    an in-memory pair in tests); ``None`` keeps the device offline for good.
    """

    def __init__(
        self,
        path: str | Path,
        connector: Connector | None = None,
        *,
        documents: Iterable[str] = (),
        online: bool = True,
        backoff: Backoff | None = None,
        seed: int | None = None,
        name: str = "",
    ) -> None:
        self.path = Path(path)
        self.name = name or self.path.stem
        self._connector = connector
        self._initial_documents = list(documents)
        self._backoff = backoff or Backoff()
        self._rng = random.Random(seed)
        self._store: LocalStore | None = None
        self._replicas: dict[str, _Replica] = {}
        self._outbox: dict[str, deque[int]] = {}
        self._rejected: list[Rejection] = []
        self._held_remote: list[tuple[str, bytes]] = []
        self._held_acks: dict[str, int] = {}
        self._flush_handle: asyncio.Handle | None = None
        self._online = asyncio.Event()
        if online and connector is not None:
            self._online.set()
        self._session: SyncSession | None = None
        self._channel: Channel | None = None
        self._outgoing: asyncio.Queue[bytes | None] | None = None
        self._applying_remote = False
        self._last_sync: float | None = None
        self._fully_synced = False
        self._reconnects = 0
        self._last_error: str | None = None
        self._changed = asyncio.Event()
        self._tasks: asyncio.TaskGroup | None = None
        self._loop_task: asyncio.Task[None] | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        self._store = LocalStore(self.path)
        for name in self._store.documents():
            self._open_replica(name)
        for name in self._initial_documents:
            self._open_replica(name)
        self._outbox = {name: deque(seqs) for name, seqs in self._store.outbox().items()}
        self._rejected = [Rejection(*row) for row in self._store.rejected()]
        self._last_sync = self._store.last_synced()
        self._tasks = asyncio.TaskGroup()
        await self._tasks.__aenter__()
        self._loop_task = self._tasks.create_task(self._sync_loop(), name=f"device-{self.name}")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._loop_task is not None:
            self._loop_task.cancel()
        if self._channel is not None:
            with contextlib.suppress(ConnectionClosed, OSError):
                await self._channel.close(1001, "device closing")
        assert self._tasks is not None
        await self._tasks.__aexit__(exc_type, exc, tb)
        for replica in self._replicas.values():
            replica.doc.unobserve(replica.subscription)
        if self._store is not None:
            self.flush()
            self._store.close()
            self._store = None

    @property
    def store(self) -> LocalStore:
        if self._store is None:
            raise DeviceError("device is not open: use 'async with Device(...)'")
        return self._store

    # -- documents ---------------------------------------------------------------------------

    def open(self, name: str) -> Doc[Any]:
        """The replica of ``name``, created (empty) if the device does not hold it yet.

        Edit it with pycrdt as usual; every change is stored and synced.
        """
        replica = self._replicas.get(name) or self._open_replica(name)
        return replica.doc

    def doc(self, name: str) -> Doc[Any]:
        """The replica of a document the device already holds; DeviceError otherwise."""
        replica = self._replicas.get(name)
        if replica is None:
            raise DeviceError(f"device {self.name!r} does not hold document {name!r}")
        return replica.doc

    @property
    def documents(self) -> list[str]:
        return sorted(self._replicas)

    def _open_replica(self, name: str) -> _Replica:
        validate_document_name(name)
        existing = self._replicas.get(name)
        if existing is not None:
            return existing
        store = self.store
        store.add_document(name)
        doc = build_doc(store.load(name))
        replica = _Replica(name, doc, doc.observe(lambda event: self._on_change(name, event)))
        self._replicas[name] = replica
        if store.log_size(name) > _COMPACT_EVERY:
            self._compact(replica)
        if self._session is not None and self._outgoing is not None:
            self._outgoing.put_nowait(self._session.open_document(name, doc.get_state()))
        self._notify()
        return replica

    def _on_change(self, name: str, event: TransactionEvent) -> None:
        update: bytes = event.update
        if self._applying_remote or update == _EMPTY_UPDATE:
            return
        replica = self._replicas[name]
        remote, acks = self._take_held()
        seq = self.store.record((name, update), remote, acks)
        self._outbox.setdefault(name, deque()).append(seq)
        self._count_logged(replica, update)
        if replica.live and self._session is not None and self._outgoing is not None:
            self._outgoing.put_nowait(self._session.send_push(name, seq, update))
        self._notify()

    def _count_logged(self, replica: _Replica, update: bytes) -> None:
        """Count a logged update; compact the replica's log soon (not inside the edit call)
        once it holds enough entries and at least a quarter of the snapshot's size."""
        replica.since_compaction += 1
        replica.log_bytes += len(update)
        if (
            not replica.compaction_due
            and replica.since_compaction >= _COMPACT_EVERY
            and replica.log_bytes * 4 >= replica.base_bytes
        ):
            replica.compaction_due = True
            asyncio.get_running_loop().call_soon(self._compact, replica)

    def _compact(self, replica: _Replica) -> None:
        replica.compaction_due = False
        if self._store is None or self._replicas.get(replica.name) is not replica:
            return  # closed or reloaded meanwhile
        # Merge what is stored rather than replica.doc.get_update(), which leaves out
        # updates still waiting for a missing dependency.
        self.flush()
        stored = self.store.load(replica.name)
        snapshot = merge(stored)
        self.store.compact(replica.name, snapshot, stored.last_seq)
        replica.since_compaction = replica.log_bytes = 0
        replica.base_bytes = len(snapshot)

    # -- writing behind --------------------------------------------------------------------------

    def _take_held(self) -> tuple[list[tuple[str, bytes]], dict[str, int]]:
        remote, acks = self._held_remote, self._held_acks
        self._held_remote, self._held_acks = [], {}
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        return remote, acks

    def _hold(self) -> None:
        """Write what is held back once this burst of frames is handled."""
        if len(self._held_remote) >= _MAX_HELD_BACK:
            self.flush()
        elif self._flush_handle is None:
            self._flush_handle = asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        """Write received updates and acknowledgements held back so far (one transaction)."""
        remote, acks = self._take_held()
        if remote or acks:
            self.store.record(None, remote, acks)

    # -- status --------------------------------------------------------------------------------

    @property
    def status(self) -> DeviceStatus:
        return DeviceStatus(
            online=self._online.is_set(),
            connected=self._session is not None,
            pending={name: len(self._outbox.get(name, ())) for name in self._replicas},
            synced={name: r.synced for name, r in self._replicas.items()},
            last_sync=self._last_sync,
            reconnects=self._reconnects,
            last_error=self._last_error,
            rejected=list(self._rejected),
        )

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_for(self, predicate: Callable[[DeviceStatus], bool], timeout: float) -> None:
        """Wait until ``predicate(status)`` holds; TimeoutError after ``timeout`` seconds."""
        async with asyncio.timeout(timeout):
            while not predicate(self.status):
                await self._changed.wait()

    async def wait_synced(self, timeout: float = 30.0) -> None:
        """Wait until connected, every document synced, and every change acknowledged."""
        await self.wait_for(lambda status: status.in_sync, timeout)

    def go_offline(self) -> None:
        """Drop the connection and stay offline (edits keep working and queue up)."""
        self._online.clear()
        if self._outgoing is not None:
            self._outgoing.put_nowait(None)  # the writer closes the channel, the reader ends
        self._notify()

    def go_online(self) -> None:
        if self._connector is None:
            raise DeviceError("device has no connector: it can only work offline")
        self._online.set()
        self._notify()

    # -- the sync loop -------------------------------------------------------------------------

    async def _sync_loop(self) -> None:
        attempt = 0
        while True:
            await self._online.wait()
            assert self._connector is not None
            try:
                channel = await self._connector()
            except (OSError, TimeoutError, ConnectionClosed) as exc:
                self._last_error = f"connect failed: {exc}"
                await self._pause(self._backoff.delay(attempt, self._rng))
                attempt += 1
                continue
            if not self._online.is_set():  # go_offline() was called while connecting
                with contextlib.suppress(ConnectionClosed, OSError):
                    await channel.close(1000, "device offline")
                continue
            synced_once = await self._run_connection(channel)
            self._reconnects += 1
            attempt = 0 if synced_once else attempt + 1
            if self._online.is_set():
                await self._pause(self._backoff.delay(attempt, self._rng))

    async def _pause(self, seconds: float) -> None:
        """Sleep before the next attempt; going offline and online again skips the wait."""
        self._notify()
        online = self._online
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                while online.is_set():
                    await self._changed.wait()
                await online.wait()

    async def _run_connection(self, channel: Channel) -> bool:
        """Serve one connection until it closes; True if every document synced on it."""
        session = SyncSession(Role.DEVICE)
        outgoing: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._session, self._channel, self._outgoing = session, channel, outgoing
        for replica in self._replicas.values():
            replica.synced = replica.live = False
            outgoing.put_nowait(session.open_document(replica.name, replica.doc.get_state()))
        self._last_error = None
        self._notify()
        synced_once = False
        try:
            async with asyncio.TaskGroup() as tasks:
                writer = tasks.create_task(self._write_loop(channel, outgoing))
                try:
                    synced_once = await self._read_loop(channel, session)
                finally:
                    writer.cancel()
        except ConnectionClosed as exc:
            self._last_error = f"connection closed: {exc}"
        finally:
            self._session = self._channel = self._outgoing = None
            for replica in self._replicas.values():
                replica.synced = replica.live = False
            with contextlib.suppress(ConnectionClosed, OSError):
                await channel.close(1000, "")
            self._notify()
        return synced_once

    async def _write_loop(self, channel: Channel, outgoing: asyncio.Queue[bytes | None]) -> None:
        while True:
            frame = await outgoing.get()
            if frame is None:  # going offline
                await channel.close(1000, "device offline")
                return
            try:
                await channel.send(frame)
            except ConnectionClosed:
                return  # the link is gone: the reader sees the close and ends the connection

    async def _read_loop(self, channel: Channel, session: SyncSession) -> bool:
        synced_once = False
        while True:
            try:
                data = await channel.recv()
            except ConnectionClosed as exc:
                if exc.code not in (1000, 1001, None):
                    self._last_error = f"relay closed the connection: {exc.code} {exc.reason}"
                return synced_once
            for event in session.receive_frame(data):
                self._handle(session, event)
            if (
                not synced_once
                and self._replicas
                and all(r.synced for r in self._replicas.values())
            ):
                synced_once = True

    def _handle(self, session: SyncSession, event: Event) -> None:
        match event:
            case UpdateReceived(document=name, update=update):
                self._apply_remote(name, update)
            case Synced(document=name):
                self._replicas[name].synced = True
                self._after_sync()
            case SyncRequested(document=name, state_vector=sv):
                self._resume(session, name, sv)
            case AckReceived(document=name, seq=seq):
                outbox = self._outbox.get(name)
                while outbox and outbox[0] <= seq:
                    outbox.popleft()
                self._held_acks[name] = max(seq, self._held_acks.get(name, 0))
                self._hold()
                self._after_sync()
            case ErrorReceived(document=name, code=code, seq=seq, message=message):
                self._last_error = f"relay error {int(code)} on {name or 'connection'}: {message}"
                log.warning("%s: %s", self.name, self._last_error)
                if name and seq:
                    self.store.reject(name, seq, int(code), message)
                    self._rejected.append(Rejection(name, seq, int(code), message))
                    outbox = self._outbox.get(name)
                    if outbox and seq in outbox:
                        outbox.remove(seq)
                self._notify()
            case ConnectionFailed(error=error, data=frame):
                self._last_error = f"relay broke the protocol: {error}"
                if self._outgoing is not None:
                    self._outgoing.put_nowait(frame)
                    self._outgoing.put_nowait(None)
            case _:
                pass

    def _apply_remote(self, name: str, update: bytes) -> None:
        replica = self._replicas.get(name)
        if replica is None:
            return
        self._applying_remote = True
        try:
            apply_update(replica.doc, update, document=name)
        except InvalidUpdate as exc:
            self._last_error = f"relay sent an invalid update for {name}: {exc}"
            log.error("%s: %s", self.name, self._last_error)
            if exc.panicked:  # the replica may be half-changed: rebuild it from the file
                self._reload(replica)
            return
        finally:
            self._applying_remote = False
        self._held_remote.append((name, update))
        self._hold()
        self._count_logged(replica, update)
        self._notify()

    def _reload(self, replica: _Replica) -> None:
        self.flush()
        replica.doc.unobserve(replica.subscription)
        del self._replicas[replica.name]
        self._open_replica(replica.name)

    def _resume(self, session: SyncSession, name: str, relay_state: bytes) -> None:
        replica = self._replicas.get(name)
        if replica is None or session.state(name) is DocState.CLOSED:
            return
        try:
            diff = replica.doc.get_update(relay_state)
        except ValueError as exc:
            self._last_error = f"relay sent an invalid state vector for {name}: {exc}"
            return
        outbox = self._outbox.get(name)
        seq = outbox[-1] if outbox else 0
        if (diff != _EMPTY_UPDATE or seq) and self._outgoing is not None:
            self._outgoing.put_nowait(session.send_push(name, seq, diff))
        replica.live = True

    def _after_sync(self) -> None:
        if (
            self._session is not None
            and all(r.synced for r in self._replicas.values())
            and not any(self._outbox.values())
        ):
            if self._last_sync is None or not self._fully_synced:
                with contextlib.suppress(StoreError):
                    self.store.mark_synced(time.time())
            self._last_sync = time.time()
            self._fully_synced = True
        else:
            self._fully_synced = False
        self._notify()
