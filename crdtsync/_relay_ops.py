"""What a relay does besides syncing: blobs, submissions, its own writes, access changes.

Private: :class:`RelayOperations` is a base of :class:`~crdtsync.relay.Relay`
(which provides the state and the helpers declared here), kept apart so that
each module stays readable. Also the relay's configuration and the naming of
stored documents and blobs (re-exported by :mod:`crdtsync.relay`).

Contracts:

* Blob chunks and submissions are authorized like writes to the document that
  references them; blobs are kept per tenant (:func:`blob_key`).
* A submission is judged only after every update applied before it (on any
  connection) is committed (:meth:`Relay.flush`), so the judgement sees what
  the device sent before it.
* :meth:`RelayOperations.edit` is the relay writing as a trusted peer: no field
  rules, fanned out to every peer, committed before it returns.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pycrdt import Doc

from ._commit import GroupCommit, RelayStats
from ._connection import RelayConnection
from ._rooms import Room, RoomTable, Write
from ._updates import EMPTY_UPDATE
from .access import Application, Principal
from .exceptions import CloseCode, ErrorCode, Forbidden
from .protocol import BlobState
from .store import BlobStore, CompactionPolicy, Store, build_doc

__all__ = ["RelayConfig", "RelayOperations", "blob_key", "split_name"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RelayConfig:
    """Limits and timings of a relay. Every field has a production-sane default."""

    max_frame_size: int = 16 * 1024 * 1024
    max_update_size: int = 8 * 1024 * 1024
    max_documents_per_connection: int = 10_000
    max_blob_size: int = 64 * 1024 * 1024
    send_queue_size: int = 8192
    max_commit_batch: int = 4096
    max_uncommitted: int = 50_000
    idle_eviction_seconds: float = 30.0
    maintenance_interval: float = 1.0
    compaction: CompactionPolicy = field(default_factory=CompactionPolicy)


def split_name(stored: str) -> tuple[str, str]:
    """``(tenant, name)`` of a stored document name (tenant ``""`` when not namespaced)."""
    if stored.startswith("t/"):
        parts = stored.split("/", 2)
        if len(parts) == 3:
            return parts[1], parts[2]
    return "", stored


def blob_key(tenant: str, sha256: str) -> str:
    """The store key of a blob of ``tenant`` (blobs are per tenant, like documents)."""
    return f"t/{tenant}/blobs/{sha256}" if tenant else f"blobs/{sha256}"


class RelayOperations:
    """Blobs, submissions, trusted writes and access changes of a :class:`Relay`."""

    # Provided by Relay.
    store: Store
    config: RelayConfig
    stats: RelayStats
    application: Application | None
    _rooms: RoomTable
    _commits: GroupCommit
    _connections: set[RelayConnection]

    async def flush(self) -> None:
        raise NotImplementedError

    async def _authorize(self, connection: RelayConnection, name: str, *, write: bool) -> None:
        raise NotImplementedError

    async def _room_of(self, connection: RelayConnection, name: str) -> Room:
        raise NotImplementedError

    def _withdraw(
        self, connection: RelayConnection, name: str, code: ErrorCode, reason: str, seq: int = 0
    ) -> None:
        raise NotImplementedError

    # -- blobs and submissions -------------------------------------------------------------------

    def _blob_store(self) -> BlobStore:
        if not isinstance(self.store, BlobStore):
            raise Forbidden("this relay's store keeps no blobs")
        return self.store

    async def _put_blob(
        self, connection: RelayConnection, name: str, sha: str, size: int, at: int, data: bytes
    ) -> None:
        await self._authorize(connection, name, write=True)
        if size > self.config.max_blob_size:
            state, have = BlobState.REFUSED, 0
        else:
            key = blob_key(connection.principal.tenant, sha)
            progress = await self._blob_store().put_blob_chunk(key, sha, size, at, data)
            state = (
                BlobState.COMPLETE
                if progress.complete
                else BlobState.REFUSED
                if progress.refused
                else BlobState.PARTIAL
            )
            have = progress.have
            if progress.complete and at + len(data) == size:
                self.stats.blobs_stored += 1
        connection.send(connection.session.send_blob_status(name, sha, have, state))

    async def _query_blob(
        self, connection: RelayConnection, name: str, sha: str, size: int
    ) -> None:
        await self._authorize(connection, name, write=False)
        key = blob_key(connection.principal.tenant, sha)
        progress = await self._blob_store().blob_progress(key, size)
        state = BlobState.COMPLETE if progress.complete else BlobState.PARTIAL
        connection.send(connection.session.send_blob_status(name, sha, progress.have, state))

    async def _submit(self, connection: RelayConnection, name: str, key: str, body: str) -> None:
        await self._authorize(connection, name, write=True)
        await self.flush()  # every update this connection sent before is now committed
        room = await self._room_of(connection, name)
        if self.application is None:
            answer = json.dumps({"status": "rejected", "reason": "this relay takes no submissions"})
        else:
            answer = await self.application.submit(connection.principal, name, key, body, room.doc)
        self.stats.submissions += 1
        connection.send(connection.session.send_submit_result(name, key, answer))

    # -- the relay as a writer, and access changes -----------------------------------------------

    async def edit(self, document: str, change: Callable[[Doc[Any]], T], *, tenant: str = "") -> T:
        """Apply ``change(doc)`` in one transaction as the relay itself (trusted, no field
        rules), fan the result out, and return once it is committed. What ``change``
        applied before raising is kept (a CRDT cannot roll back); the error is re-raised."""
        room = await self._rooms.load(Principal(tenant=tenant).namespace + document)
        updates: list[bytes] = []
        subscription = room.doc.observe(lambda event: updates.append(event.update))
        try:
            with room.doc.transaction(origin="relay"):
                return change(room.doc)
        finally:
            room.doc.unobserve(subscription)
            if room.watch is not None:
                room.watch.collect()
            for update in updates:
                if update != EMPTY_UPDATE:
                    room.uncommitted += 1
                    for peer, alias in room.peers.items():
                        peer.send_update(alias, update)
                    self._commits.put(Write(room, update, None, None))
            room.last_active = time.monotonic()
            await self.flush()

    async def read(self, document: str, *, tenant: str = "") -> Doc[Any]:
        """A copy of the merged state of ``document`` (loaded or stored); never loads a room."""
        name = Principal(tenant=tenant).namespace + document
        room = self._rooms.get(name)
        if room is None:
            return build_doc(await self.store.load(name))
        copy: Doc[Any] = Doc()
        copy.apply_update(room.doc.get_update())
        return copy

    def live_document(self, stored: str) -> Doc[Any] | None:
        """The document of a loaded room (by stored name), or None. Read it; never write it."""
        room = self._rooms.get(stored)
        return room.doc if room is not None else None

    async def missing_blobs(self, keys: list[str]) -> list[str]:
        """The blob keys (see :func:`blob_key`) that are not stored complete."""
        return await self._blob_store().missing_blobs(keys)

    def withdraw(self, allowed: Callable[[Principal, str], bool], reason: str) -> int:
        """Close every open document a principal may no longer read (``allowed`` False):
        the device gets a FORBIDDEN Error and a Close for it. Returns how many closed."""
        closed = 0
        for connection in list(self._connections):
            for name in list(connection.rooms):
                if not allowed(connection.principal, name):
                    self._withdraw(connection, name, ErrorCode.FORBIDDEN, reason)
                    closed += 1
        return closed

    def disconnect(self, which: Callable[[Principal], bool], reason: str) -> int:
        """Cut every connection whose principal matches (a revoked credential): UNAUTHORIZED."""
        cut = 0
        for connection in list(self._connections):
            if which(connection.principal):
                connection.fail(ErrorCode.UNAUTHORIZED, CloseCode.UNAUTHORIZED, reason)
                cut += 1
        return cut
