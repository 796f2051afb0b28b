"""The relay's rooms: each loaded document, its peers, and its way to and from the store.

Invariants:

* At most one room per stored document name is live; a name being loaded (or
  rebuilt) has one future that every concurrent caller awaits, so no caller
  ever builds a second, diverging copy.
* A room marked ``broken`` is never handed out again: after a pycrdt panic or
  a refused update its document may hold what must not be kept, so it is
  rebuilt from the store once every update applied before is committed.
* Compaction merges what the store holds (never ``doc.get_update()``, which
  leaves out updates still waiting for a dependency) and is checked by content
  in the tests.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pycrdt import Doc, Subscription, TransactionEvent

from .exceptions import StoreError
from .store import Store, build_doc, merge

if TYPE_CHECKING:
    from ._connection import RelayConnection
    from .access import UpdateWatch

__all__ = ["Room", "RoomTable", "Write"]

log = logging.getLogger("crdtsync.relay")


@dataclass(slots=True, eq=False)
class Room:
    """A loaded document. ``peers`` maps each connection in it to the name it uses."""

    name: str
    doc: Doc[Any]
    committed_seq: int
    log_entries: int
    peers: dict[RelayConnection, str] = field(default_factory=dict)
    uncommitted: int = 0
    last_active: float = field(default_factory=time.monotonic)
    changed: bool = False
    subscription: Subscription | None = None
    watch: UpdateWatch | None = None
    broken: bool = False
    #: A compaction was refused (something still waits for a dependency): try again only
    #: once the log holds this many entries, not on every maintenance round.
    retry_compaction_at: int = 0

    def observe(self) -> None:
        def on_change(event: TransactionEvent) -> None:
            self.changed = True

        self.subscription = self.doc.observe(on_change)

    def close(self) -> None:
        if self.subscription is not None:
            self.doc.unobserve(self.subscription)
            self.subscription = None
        if self.watch is not None:
            self.watch.close()
            self.watch = None


@dataclass(slots=True, eq=False)
class Write:
    """One entry of the commit queue; ``data`` None is a barrier (acknowledge only)."""

    room: Room
    data: bytes | None
    connection: RelayConnection | None
    seq: int | None
    received: float = field(default_factory=time.perf_counter)


WatchFactory = Callable[[str, Doc[Any]], "UpdateWatch | None"]


class RoomTable:
    """Loads, rebuilds and evicts rooms. ``flush`` waits until everything applied is stored."""

    def __init__(
        self,
        store: Store,
        flush: Callable[[], Awaitable[None]],
        watch: WatchFactory | None = None,
    ) -> None:
        self.store = store
        self._flush = flush
        self._watch = watch
        self.rooms: dict[str, Room] = {}
        self._loading: dict[str, asyncio.Future[Room]] = {}

    def __len__(self) -> int:
        return len(self.rooms)

    def get(self, name: str) -> Room | None:
        room = self.rooms.get(name)
        return room if room is not None and not room.broken else None

    async def load(self, name: str) -> Room:
        """The live room of ``name``, loading it from the store if needed."""
        room = self.get(name)
        if room is not None:
            return room
        pending = self._loading.get(name)
        if pending is not None:
            return await asyncio.shield(pending)
        return await self._replace(name, None)

    async def rebuild(self, room: Room, why: str) -> Room:
        """Replace ``room`` by a fresh copy from the store, once what preceded is stored."""
        room.broken = True
        if self.rooms.get(room.name) is room:
            del self.rooms[room.name]
        pending = self._loading.get(room.name)
        fresh = await asyncio.shield(pending) if pending else await self._replace(room.name, room)
        for peer, alias in list(room.peers.items()):
            if peer.rooms.get(alias) is room:
                fresh.peers[peer] = alias
                peer.rooms[alias] = fresh
        room.close()
        log.warning("rebuilt document %r from the store: %s", room.name, why)
        return fresh

    async def _replace(self, name: str, previous: Room | None) -> Room:
        future: asyncio.Future[Room] = asyncio.get_running_loop().create_future()
        self._loading[name] = future  # set before any await: concurrent callers wait for it
        try:
            if previous is not None:
                await self._flush()  # every update applied before is now stored
            stored = await self.store.load(name)
            room = Room(name, build_doc(stored), stored.last_seq, len(stored.updates))
            room.observe()
            if self._watch is not None:
                room.watch = self._watch(name, room.doc)
            self.rooms[name] = room
            future.set_result(room)
            return room
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: waiters re-raise it, no "never retrieved" warning
            raise
        finally:
            del self._loading[name]

    def drop(self, room: Room) -> None:
        """Forget ``room`` (its peers are dealt with by the caller)."""
        room.broken = True
        if self.rooms.get(room.name) is room:
            del self.rooms[room.name]
        room.close()

    async def compact(self, name: str) -> bool:
        """Fold the stored log of ``name`` into its snapshot; False if it is not loaded."""
        room = self.get(name)
        if room is None or room.log_entries < room.retry_compaction_at:
            return False
        stored = await self.store.load(name)
        try:
            snapshot = merge(stored)
        except StoreError:
            room.retry_compaction_at = max(2 * room.log_entries, room.log_entries + 1)
            raise
        await self.store.compact(name, snapshot, stored.last_seq)
        room.log_entries -= len(stored.updates)
        room.retry_compaction_at = 0
        return True

    async def evict(self, room: Room) -> bool:
        """Compact and unload an idle room; False if it gained peers or writes meanwhile."""
        if room.log_entries > 1:
            try:
                await self.compact(room.name)
            except StoreError as exc:  # the log stays as it is: loading it again still works
                log.info("evicting %r without compacting it: %s", room.name, exc)
        if room.peers or room.uncommitted or self.rooms.get(room.name) is not room:
            return False
        self.drop(room)
        return True
