"""Ceiling: W1's edits applied and stored in one process, with no network at all.

The updates are made first (untimed) exactly as W1's devices make them: one
map entry per transaction, each device its own pycrdt client. Then, timed:

* ours: apply each update to one document, and append them to crdtsync's
  SQLiteStore (the relay's store: WAL, ``synchronous=FULL``) in batches of
  ``BATCH``, one transaction per batch: the limit group commit can reach.
* the peer: apply each update to one document and write it with pycrdt-store's
  SQLiteYStore, the way a pycrdt-websocket room stores updates: one
  transaction per update.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from pycrdt import Doc, Map, TransactionEvent

from crdtsync import SQLiteStore

from .config import Sizes
from .peer_server import store_class

__all__ = ["BATCH", "make_updates", "run_ceiling"]

BATCH = 100
DOC = "ceiling"


def make_updates(devices: int, edits: int) -> list[bytes]:
    """Every device's updates, interleaved round-robin as they would reach a relay."""
    per_device: list[list[bytes]] = []
    for index in range(devices):
        doc: Doc[Any] = Doc()
        fields = doc.get("m", type=Map)
        updates: list[bytes] = []

        def record(event: TransactionEvent, updates: list[bytes] = updates) -> None:
            updates.append(event.update)

        subscription = doc.observe(record)
        for n in range(edits):
            fields[f"d{index}-{n}"] = n
        doc.unobserve(subscription)
        per_device.append(updates)
    return [u for round_ in zip(*per_device, strict=True) for u in round_]


async def _ours(updates: list[bytes], db: Path) -> float:
    async with SQLiteStore(db) as store:
        doc: Doc[Any] = Doc()
        start = time.perf_counter()
        for i in range(0, len(updates), BATCH):
            batch = updates[i : i + BATCH]
            for update in batch:
                doc.apply_update(update)
            await store.append([(DOC, update) for update in batch])
        return time.perf_counter() - start


async def _peer(updates: list[bytes], db: Path) -> float:
    ystore = store_class(db)(path=f"/{DOC}")
    async with ystore:
        assert ystore.db_initialized is not None
        await ystore.db_initialized.wait()
        doc: Doc[Any] = Doc()
        start = time.perf_counter()
        for update in updates:
            doc.apply_update(update)
            await ystore.write(update)
        return time.perf_counter() - start


def run_ceiling(kind: str, sizes: Sizes, work: Path) -> dict[str, float | None]:
    updates = make_updates(sizes.ingest_devices, sizes.ingest_edits)
    db = work / f"{kind}-ceiling.db"
    seconds = asyncio.run(_ours(updates, db) if kind == "ours" else _peer(updates, db))
    return {"store_s": seconds}
