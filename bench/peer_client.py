"""Client side of the peer: pycrdt Providers over websockets, and readers of its SQLite file."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from pathlib import Path
from typing import Any

from pycrdt import Doc, Map, Provider
from pycrdt.store import YDocNotFound

from .common import ByteCounter, PeerChannel, peer_connect
from .peer_server import store_class

__all__ = ["PeerDiskReader", "PeerFleet", "PeerReplica", "read_peer_document"]


class PeerReplica:
    """One document synced with the peer relay: a pycrdt Doc, a Provider, one connection.

    ``async with`` connects and waits for the first SyncStep2 from the relay.
    """

    def __init__(self, base_url: str, name: str, counter: ByteCounter, doc: Doc[Any] | None = None):
        self.base_url = base_url
        self.name = name
        self.counter = counter
        self.doc: Doc[Any] = doc if doc is not None else Doc()
        self._stack = contextlib.AsyncExitStack()
        self.channel: PeerChannel | None = None
        self.provider: Provider | None = None

    async def __aenter__(self) -> PeerReplica:
        self.channel = await peer_connect(self.base_url, self.name, self.counter)
        self._stack.push_async_callback(self.channel.close)
        self.provider = await self._stack.enter_async_context(Provider(self.doc, self.channel))
        await self.provider.synced.wait()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._stack.aclose()


class PeerDiskReader:
    """Follows the peer's SQLite file: applies rows of one room as they are committed.

    Reads only rows it has not seen (by rowid, which is insertion order), so a
    poll costs what was written since the last one. Opens the file read-only.
    """

    def __init__(self, db: Path, room: str) -> None:
        self.db = db
        self.room = room
        self.doc: Doc[Any] = Doc()
        self.map = self.doc.get("m", type=Map)
        self._last_rowid = 0
        self._conn: sqlite3.Connection | None = None

    def poll(self) -> int:
        """Apply newly committed rows; return how many map entries the file holds."""
        if self._conn is None:
            self._conn = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=5)
        rows = self._conn.execute(
            "SELECT rowid, yupdate FROM yupdates WHERE path = ? AND rowid > ? ORDER BY rowid",
            (self.room, self._last_rowid),
        ).fetchall()
        for rowid, update in rows:
            self.doc.apply_update(bytes(update))
            self._last_rowid = int(rowid)
        return len(self.map)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


async def read_peer_document(db: Path, room: str) -> Doc[Any]:
    """A room's document as the peer's own store (SQLiteYStore) loads it from the file."""
    ystore = store_class(db)(path=room)
    doc: Doc[Any] = Doc()
    async with ystore:
        with contextlib.suppress(YDocNotFound):  # nothing stored: an empty document
            await ystore.apply_updates(doc)
    return doc


class PeerFleet:
    """Many PeerReplicas, each held open by its own task (a Provider must exit in its task)."""

    def __init__(self) -> None:
        self._tasks: list[asyncio.Task[None]] = []
        self._stop = asyncio.Event()

    async def connect(self, replicas: list[PeerReplica]) -> None:
        """Connect every replica concurrently; return once each has synced once."""
        self._stop = asyncio.Event()
        ready = [asyncio.Event() for _ in replicas]
        self._tasks = [
            asyncio.create_task(self._hold(replica, event))
            for replica, event in zip(replicas, ready, strict=True)
        ]
        for task, event in zip(self._tasks, ready, strict=True):
            waiter = asyncio.ensure_future(event.wait())
            await asyncio.wait([waiter, task], return_when=asyncio.FIRST_COMPLETED)
            if not event.is_set():
                waiter.cancel()
                task.result()  # the replica's failure
                raise RuntimeError("a peer replica ended before it synced")

    async def _hold(self, replica: PeerReplica, ready: asyncio.Event) -> None:
        async with replica:
            ready.set()
            await self._stop.wait()

    async def disconnect(self) -> None:
        self._stop.set()
        results = await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        failures = [r for r in results if isinstance(r, BaseException)]
        if failures:
            raise RuntimeError(f"{len(failures)} peer replicas failed") from failures[0]
