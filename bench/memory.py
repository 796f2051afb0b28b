"""W5 memory: many connections, many stored documents, a few of them active.

Before the relay starts, its file is seeded with every document (a work order
each, the same bytes for ours and the peer). Then lightweight raw-protocol
clients (many per process, no replica beyond what an editor needs) open the
connections: connection ``i`` joins active document ``i % active``; the first
connection of each active document is its editor and changes it every
``memory_edit_interval`` seconds, the others receive. The relay's RSS (psutil
on its pid) is sampled before any connection, once all are open, and every
0.25 s while the edits flow; the peak is reported.

Ours speaks the native protocol (``crdtsync.protocol.SyncSession``), one
document per connection here so both relays carry the same load; the peer
speaks y-websocket (pycrdt's sync messages).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import shutil
import sqlite3
import time
from pathlib import Path
from typing import Any

import websockets
from pycrdt import (
    Doc,
    Map,
    TransactionEvent,
    YMessageType,
    YSyncMessageType,
    create_sync_message,
    create_update_message,
    handle_sync_message,
)

from crdtsync import SQLiteStore
from crdtsync.protocol import Role, SyncSession, UpdateReceived

from .common import RelayProc, WorkerLink, clock, start_workers
from .config import Sizes
from .peer_server import _create_database, store_class
from .workorder import fill

__all__ = ["run_memory"]

_SEEDED: dict[tuple[str, int], Path] = {}


def _name(index: int) -> str:
    return f"wo-{index:05d}"


def _seed_updates(count: int) -> list[bytes]:
    updates = []
    for i in range(count):
        doc: Doc[Any] = Doc()
        fill(doc, i)
        updates.append(doc.get_update())
    return updates


async def _seed_ours(db: Path, updates: list[bytes]) -> None:
    async with SQLiteStore(db, synchronous="NORMAL") as store:
        for start in range(0, len(updates), 1000):
            chunk = updates[start : start + 1000]
            await store.append([(_name(start + i), u) for i, u in enumerate(chunk)])


async def _seed_peer(db: Path, updates: list[bytes]) -> None:
    await _create_database(store_class(db))
    with sqlite3.connect(db) as conn:
        now = time.time()
        conn.executemany(
            "INSERT INTO yupdates VALUES (?, ?, ?, ?)",
            [(f"/{_name(i)}", u, b"", now) for i, u in enumerate(updates)],
        )


def seeded(kind: str, documents: int, work: Path) -> Path:
    """A seeded database file (made once per bench run, copied for each repeat)."""
    key = (kind, documents)
    if key not in _SEEDED or not _SEEDED[key].exists():
        db = work / f"seed-{kind}-{documents}.db"
        updates = _seed_updates(documents)
        asyncio.run(_seed_ours(db, updates) if kind == "ours" else _seed_peer(db, updates))
        _SEEDED[key] = db
    return _SEEDED[key]


# -- clients ------------------------------------------------------------------------------------


class _Phase:
    """What every client of a worker process waits on."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.connected = 0
        self.all_connected = asyncio.Event()
        self.edit = asyncio.Event()
        self.stop = asyncio.Event()

    def one_connected(self) -> None:
        self.connected += 1
        if self.connected == self.total:
            self.all_connected.set()


class _Editor:
    """An editor's document; ``change()`` returns the update of one local edit."""

    def __init__(self) -> None:
        self.doc: Doc[Any] = Doc()
        self.fields = self.doc.get("fields", type=Map)
        self._last = b""
        self._subscription = self.doc.observe(self._record)
        self.ticks = 0

    def _record(self, event: TransactionEvent) -> None:
        self._last = event.update

    def change(self) -> bytes:
        self.ticks += 1
        self.fields["tick"] = self.ticks
        return self._last


async def _edit_loop(editor: _Editor, send: Any, phase: _Phase, interval: float) -> None:
    await phase.edit.wait()
    await asyncio.sleep(random.uniform(0, interval))
    while not phase.stop.is_set():
        await send(editor.change())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(phase.stop.wait(), interval)


async def _ours_client(
    url: str, name: str, editor: _Editor | None, phase: _Phase, interval: float
) -> int:
    """Native protocol, one document; an editor applies what it receives, others drop it."""
    received = 0
    async with websockets.connect(url, compression=None, max_size=2**24, open_timeout=120) as ws:
        session = SyncSession(Role.DEVICE)
        await ws.send(session.open_document(name, b"\x00"))
        first = await ws.recv()
        received += 1
        if editor is not None:
            for event in session.receive_frame(bytes(first)):
                if isinstance(event, UpdateReceived):
                    editor.doc.apply_update(event.update)
        phase.one_connected()

        async def drain() -> None:
            nonlocal received
            async for _ in ws:
                received += 1

        async with asyncio.TaskGroup() as tasks:
            reader = tasks.create_task(drain())
            if editor is not None:
                seq = 0

                async def push(update: bytes) -> None:
                    nonlocal seq
                    seq += 1
                    await ws.send(session.send_push(name, seq, update))

                await _edit_loop(editor, push, phase, interval)
            await phase.stop.wait()
            reader.cancel()
    return received


async def _peer_client(
    url: str, name: str, editor: _Editor | None, phase: _Phase, interval: float
) -> int:
    """y-websocket, one document; everyone answers the relay's SyncStep1 as Yjs clients do."""
    received = 0
    doc = editor.doc if editor is not None else Doc()
    async with websockets.connect(
        f"{url}/{name}", compression=None, max_size=2**24, open_timeout=120
    ) as ws:
        await ws.send(create_sync_message(doc))

        async def read() -> None:
            nonlocal received
            synced = False
            async for message in ws:
                received += 1
                data = bytes(message)
                if data[0] != YMessageType.SYNC:
                    continue
                if data[1] == YSyncMessageType.SYNC_STEP2 and not synced:
                    synced = True
                    phase.one_connected()
                if editor is None and data[1] != YSyncMessageType.SYNC_STEP1:
                    continue  # a receiver does not keep a replica
                reply = handle_sync_message(data[1:], doc)
                if reply is not None:
                    await ws.send(reply)

        async with asyncio.TaskGroup() as tasks:
            reader = tasks.create_task(read())
            if editor is not None:

                async def update(data: bytes) -> None:
                    await ws.send(create_update_message(data))

                await _edit_loop(editor, update, phase, interval)
            await phase.stop.wait()
            reader.cancel()
    return received


async def clients(link: WorkerLink, params: dict[str, Any]) -> int:
    """A worker process: its share of the connections."""
    client = _ours_client if params["kind"] == "ours" else _peer_client
    indices: list[int] = params["indices"]
    phase = _Phase(len(indices))
    tasks = [
        asyncio.create_task(
            client(
                params["url"],
                _name(i % params["active"]),
                _Editor() if i < params["active"] else None,
                phase,
                params["interval"],
            )
        )
        for i in indices
    ]
    async with asyncio.timeout(params["timeout"]):
        await phase.all_connected.wait()
    link.send(("ready",))
    await link.expect("edit")
    phase.edit.set()
    await link.expect("finish")
    phase.stop.set()
    return sum(await asyncio.gather(*tasks))


# -- the bench process side ----------------------------------------------------------------------


def run_memory(kind: str, sizes: Sizes, work: Path) -> dict[str, float | None]:
    seed = seeded(kind, sizes.memory_documents, work.parent)
    db = work / f"{kind}-w5.db"
    shutil.copyfile(seed, db)
    timeout = sizes.timeout
    connections = list(range(sizes.memory_connections))
    groups = sizes.memory_processes
    with RelayProc(kind, db) as relay:
        idle = relay.rss()
        params = [
            {
                "kind": kind,
                "url": relay.sync_url,
                "active": sizes.memory_active,
                "interval": sizes.memory_edit_interval,
                "indices": connections[g::groups],
                "timeout": timeout * 0.6,
            }
            for g in range(groups)
        ]
        with start_workers(clients, params, f"w5-{kind}") as workers:
            for worker in workers:
                worker.expect("ready", timeout)
            connected = relay.rss()
            for worker in workers:
                worker.send(("edit",))
            peak = connected
            end = clock() + sizes.memory_seconds
            while clock() < end:
                time.sleep(0.25)
                peak = max(peak, relay.rss())
            for worker in workers:
                worker.send(("finish",))
            received = sum(worker.join(timeout) for worker in workers)
    mb = 1024 * 1024
    return {
        "rss_idle_mb": idle / mb,
        "rss_connected_mb": connected / mb,
        "rss_peak_mb": peak / mb,
        "frames_received": float(received),
    }
