"""The replicas a device holds: their log in the device's file, the outbox, replacement.

Private: the base of :class:`~crdtsync.device.Device`, which adds the
connection and the public API. Invariants kept here:

* A local edit is written to the file (and counted in the outbox) inside
  pycrdt's observer, before the edit call returns; when the document is live
  on a connection it is pushed at once, as its own Push.
* Updates received from the relay and outbox rows dropped by Acks are written
  behind, in one transaction per burst (or together with the next local edit,
  before it): after a crash the resume handshake fetches and acknowledges them
  again, so holding them back loses nothing and saves a commit per frame.
* Replacing a replica (the relay refused a field write of it, see
  :meth:`ReplicaHost._replace`) first writes what is held back, then moves the
  document's whole local log and outbox to the archive in one transaction, and
  gives the document a fresh pycrdt ``Doc`` (a new client id) that resyncs from
  the relay. The old ``Doc`` object is retired: edits still made to it are
  kept in the archive, never synced.
* Nothing here sends for a document that is closed on the connection: every
  frame goes through :class:`~crdtsync._link.DeviceLink`.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pycrdt import Doc, Subscription, TransactionEvent

from ._device_types import Rejection
from ._link import DeviceLink, Signal
from ._updates import EMPTY_UPDATE, apply_update
from .exceptions import DeviceError, InvalidUpdate, StoreError
from .protocol import DocState, validate_document_name
from .store import LocalStore, build_doc, merge

__all__ = ["ReplicaHost"]

log = logging.getLogger("crdtsync.device")

_COMPACT_EVERY = 500  # log entries, at least, between two compactions of a replica
_MAX_HELD_BACK = 512  # received updates held back before a write is forced


@dataclass(slots=True, eq=False)
class _Replica:
    name: str
    doc: Doc[Any]
    subscription: Subscription
    synced: bool = False
    live: bool = False  # the resume diff went out on this connection: push edits one by one
    withdrawn: bool = False  # the relay withdrew access: not synced until opened again
    reopen: bool = False  # replaced while open on the connection: open again after its Close
    since_compaction: int = 0  # log entries written since the last compaction
    log_bytes: int = 0  # their size
    base_bytes: int = 0  # size of the last snapshot: compaction waits for a log worth a quarter
    compaction_due: bool = False
    resume_state: bytes | None = None  # state vector when its Resume went out (this link)


class ReplicaHost:
    """Replicas, their log and outbox; the state the device's connection works on."""

    def __init__(self, path: str | Path, name: str) -> None:
        self.path = Path(path)
        self.name = name or self.path.stem
        self._store: LocalStore | None = None
        self._replicas: dict[str, _Replica] = {}
        self._outbox: dict[str, deque[int]] = {}
        self._rejected: list[Rejection] = []
        self._retired: list[tuple[Doc[Any], Subscription]] = []
        self._held_remote: list[tuple[str, bytes]] = []
        self._held_acks: dict[str, int] = {}
        self._flush_handle: asyncio.Handle | None = None
        self._applying_remote = False
        self._link: DeviceLink | None = None
        self._signal = Signal()
        self._last_error: str | None = None

    @property
    def store(self) -> LocalStore:
        if self._store is None:
            raise DeviceError("device is not open: use 'async with Device(...)'")
        return self._store

    def _notify(self) -> None:
        self._signal.notify()

    def _changed(self, name: str) -> None:
        """Hook: the content of ``name`` changed (a local edit or a received update)."""

    def _close_replicas(self) -> None:
        for replica in self._replicas.values():
            replica.doc.unobserve(replica.subscription)
        for doc, subscription in self._retired:
            doc.unobserve(subscription)
        self._retired.clear()

    # -- opening and syncing -----------------------------------------------------------------

    def _open_replica(self, name: str, *, withdrawn: bool = False) -> _Replica:
        validate_document_name(name)
        existing = self._replicas.get(name)
        if existing is not None:
            return existing
        store = self.store
        store.add_document(name)
        doc = build_doc(store.load(name))
        replica = _Replica(name, doc, doc.observe(lambda event: self._on_change(name, event)))
        replica.withdrawn = withdrawn
        self._replicas[name] = replica
        if store.log_size(name) > _COMPACT_EVERY:
            self._compact(replica)
        self._start_sync(replica)
        self._notify()
        return replica

    def _start_sync(self, replica: _Replica) -> None:
        """Open ``replica`` on the connection, if there is one and access was not withdrawn.
        A document still open there (its replica was replaced) opens again after its Close."""
        link = self._link
        if link is None or replica.withdrawn:
            return
        replica.synced = replica.live = False
        replica.reopen = not link.open(replica.name, replica.doc.get_state())

    def _readmit(self, replica: _Replica) -> None:
        """Sync a withdrawn document again (the app or a followed directory asks for it)."""
        replica.withdrawn = False
        self.store.set_withdrawn(replica.name, False)
        self._start_sync(replica)
        self._notify()

    def _ready(self, name: str) -> bool:
        """True while ``name`` is synced and live on the connection (Submit, blobs may go)."""
        replica = self._replicas.get(name)
        link = self._link
        return (
            replica is not None
            and link is not None
            and replica.synced
            and replica.live
            and not replica.withdrawn
            and link.is_open(name)
        )

    def _newest_seq(self, name: str) -> int:
        outbox = self._outbox.get(name)
        return outbox[-1] if outbox else 0

    # -- local edits -----------------------------------------------------------------------------

    def _on_change(self, name: str, event: TransactionEvent) -> None:
        update: bytes = event.update
        if self._applying_remote or update == EMPTY_UPDATE:
            return
        replica = self._replicas[name]
        remote, acks = self._take_held()
        seq = self.store.record((name, update), remote, acks)
        self._outbox.setdefault(name, deque()).append(seq)
        self._count_logged(replica, update)
        if replica.live and self._link is not None:
            self._link.push(name, seq, update)
        self._changed(name)
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
            return  # closed or replaced meanwhile
        # Merge what is stored rather than replica.doc.get_update(), which leaves out
        # updates still waiting for a missing dependency.
        self.flush()
        stored = self.store.load(replica.name)
        replica.since_compaction = replica.log_bytes = 0  # a refusal waits as long as a success
        try:
            snapshot = merge(stored)
        except StoreError as exc:  # something still waits for a dependency: keep the log
            log.info("%s: not compacting %s yet: %s", self.name, replica.name, exc)
            return
        self.store.compact(replica.name, snapshot, stored.last_seq)
        replica.base_bytes = len(snapshot)

    # -- writing behind ----------------------------------------------------------------------------

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

    # -- received updates --------------------------------------------------------------------------

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
        self._changed(name)
        self._notify()

    def _reload(self, replica: _Replica) -> None:
        """Rebuild a replica from the file; on the connection it stays open and asks the
        relay again for what it lacks (SyncStep1), keeping its synced and live state."""
        self.flush()
        replica.doc.unobserve(replica.subscription)
        del self._replicas[replica.name]
        link, self._link = self._link, None  # build it without opening it
        try:
            fresh = self._open_replica(replica.name, withdrawn=replica.withdrawn)
        finally:
            self._link = link
        fresh.synced, fresh.live, fresh.reopen = replica.synced, replica.live, replica.reopen
        if link is None or fresh.withdrawn or fresh.reopen:
            return
        if link.state(fresh.name) is DocState.CLOSED:
            self._start_sync(fresh)
        else:
            state = fresh.doc.get_state()
            link.send(fresh.name, lambda s: s.send_step1(fresh.name, state))

    # -- a refused field write -------------------------------------------------------------------

    def _replace(self, name: str, seq: int, code: int, message: str) -> None:
        """The relay refused change ``seq`` of ``name`` for a field it may not write: every
        later change of this replica's pycrdt client depends on it, so the relay will never
        take them either. Archive the local log and outbox, record the rejection, and start
        over with a fresh replica synced from the relay."""
        replica = self._replicas.get(name)
        if replica is None:
            return
        self.flush()
        discarded = self.store.replace_document(name, seq, code, message)
        self._rejected.append(Rejection(name, seq, code, message, discarded))
        self._outbox[name] = deque()
        old = replica.doc
        old.unobserve(replica.subscription)
        retired = old.observe(lambda event: self._on_retired_change(name, seq, event))
        self._retired.append((old, retired))
        del self._replicas[name]
        # A followed directory is listed again only once the fresh replica received the
        # relay's state (that triggers it): its empty state in between is not a listing.
        self._open_replica(name, withdrawn=replica.withdrawn)
        log.warning(
            "%s: relay refused change %d of %s (%s); %d unacknowledged change(s) archived, "
            "resyncing it from the relay",
            self.name,
            seq,
            name,
            message,
            discarded,
        )

    def _on_retired_change(self, name: str, rejection: int, event: TransactionEvent) -> None:
        update: bytes = event.update
        if update == EMPTY_UPDATE or self._store is None:
            return
        self._store.archive_retired(name, update, rejection, "edit to a replaced replica")
        log.warning(
            "%s: an edit to a replaced replica of %s was archived, not synced", self.name, name
        )
