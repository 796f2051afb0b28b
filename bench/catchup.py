"""W3 catch-up: a device holding many work orders comes back after an outage.

Device A holds every document and goes offline; meanwhile device B (online)
changes some documents and A changes others. Then A reconnects. Measured from
the moment A goes online until both hold each other's changes (and, ours, A's
outbox is acknowledged): the time, and the payload bytes of every websocket
message both devices sent or received meanwhile (counted on their channels).
For reference, the size of the changes themselves: the diffs each device's
edits made (``doc.get_update(state_before)``).

Ours: one connection per device carries every document. The peer (y-websocket)
needs one connection per document, so A opens that many on reconnecting.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from pycrdt import Doc

from crdtsync import Device

from .common import (
    ByteCounter,
    RelayProc,
    WorkerLink,
    clock,
    counting_connector,
    sleep_until,
    start_workers,
)
from .config import Sizes
from .peer_client import PeerFleet, PeerReplica
from .workorder import change_elsewhere, change_offline, fill, has_mark, is_filled

__all__ = ["run_catchup"]

POLL = 0.002


def _names(params: dict[str, Any]) -> list[str]:
    return [f"wo-{i:04d}" for i in range(params["documents"])]


def _elsewhere(params: dict[str, Any]) -> range:
    return range(params["elsewhere"])


def _offline(params: dict[str, Any]) -> range:
    return range(params["elsewhere"], params["elsewhere"] + params["offline"])


def _edit(docs: list[Doc[Any]], indices: range, change: Any) -> int:
    """Apply ``change`` to each document; return the size of the diffs it made."""
    size = 0
    for i in indices:
        before = docs[i].get_state()
        change(docs[i], i)
        size += len(docs[i].get_update(before))
    return size


async def _until(predicate: Any, timeout: float, what: str) -> None:
    deadline = clock() + timeout
    while not predicate():
        if clock() > deadline:
            raise TimeoutError(f"{what} not reached after {timeout} s")
        await asyncio.sleep(POLL)


def _marks(docs: list[Doc[Any]], indices: range, key: str, prefix: str) -> bool:
    return all(has_mark(docs[i], key, f"{prefix}{i}") for i in indices)


async def _catch_up(
    link: WorkerLink, counter: ByteCounter, reconnect: Any, done: Any, timeout: float
) -> dict[str, Any]:
    """The timed phase, common to every worker: start, reconnect (A), wait, report."""
    start_at = await link.expect("catchup")
    await sleep_until(start_at)
    before = counter.total
    await reconnect()
    await _until(done, timeout, "catch-up")
    seconds = clock() - start_at
    link.send(("done", seconds))
    await link.expect("finish")
    return {"seconds": seconds, "bytes": counter.total - before}


# -- ours ------------------------------------------------------------------------------------


async def ours_holder(link: WorkerLink, params: dict[str, Any]) -> dict[str, Any]:
    """Device A: creates every document, goes offline, edits, comes back."""
    names, timeout, counter = _names(params), params["timeout"], ByteCounter()
    async with Device(params["path"], counting_connector(params["url"], counter)) as device:
        for i, name in enumerate(names):
            fill(device.open(name), i)
        await device.wait_synced(timeout)
        link.send(("ready",))
        await link.expect("offline")
        device.go_offline()
        await device.wait_for(lambda status: not status.connected, timeout)
        link.send(("offline",))
        await link.expect("edit")
        docs = [device.doc(name) for name in names]
        link.send(("edited", _edit(docs, _offline(params), change_offline)))

        async def reconnect() -> None:
            device.go_online()

        def done() -> bool:
            marks = _marks(docs, _elsewhere(params), "mark_elsewhere", "b")
            return marks and device.status.in_sync

        return await _catch_up(link, counter, reconnect, done, timeout)


async def ours_other(link: WorkerLink, params: dict[str, Any]) -> dict[str, Any]:
    """Device B: holds every document, changes some while A is away."""
    names, timeout, counter = _names(params), params["timeout"], ByteCounter()
    connector = counting_connector(params["url"], counter)
    async with Device(params["path"], connector, documents=names) as device:
        await device.wait_synced(timeout)
        docs = [device.doc(name) for name in names]
        await _until(lambda: all(is_filled(doc) for doc in docs), timeout, "B filled")
        link.send(("ready",))
        await link.expect("edit")
        size = _edit(docs, _elsewhere(params), change_elsewhere)
        await device.wait_synced(timeout)
        link.send(("edited", size))

        async def reconnect() -> None:
            pass

        def done() -> bool:
            return _marks(docs, _offline(params), "mark_offline", "a")

        return await _catch_up(link, counter, reconnect, done, timeout)


# -- the peer ----------------------------------------------------------------------------------


async def peer_holder(link: WorkerLink, params: dict[str, Any]) -> dict[str, Any]:
    names, timeout, counter = _names(params), params["timeout"], ByteCounter()
    docs: list[Doc[Any]] = [Doc() for _ in names]
    for i, doc in enumerate(docs):
        fill(doc, i)
    fleet = PeerFleet()
    await fleet.connect(
        [PeerReplica(params["url"], n, counter, d) for n, d in zip(names, docs, strict=True)]
    )
    link.send(("ready",))
    await link.expect("offline")
    await fleet.disconnect()
    link.send(("offline",))
    await link.expect("edit")
    link.send(("edited", _edit(docs, _offline(params), change_offline)))

    async def reconnect() -> None:
        await fleet.connect(
            [PeerReplica(params["url"], n, counter, d) for n, d in zip(names, docs, strict=True)]
        )

    def done() -> bool:
        return _marks(docs, _elsewhere(params), "mark_elsewhere", "b")

    try:
        return await _catch_up(link, counter, reconnect, done, timeout)
    finally:
        await fleet.disconnect()


async def peer_other(link: WorkerLink, params: dict[str, Any]) -> dict[str, Any]:
    names, timeout, counter = _names(params), params["timeout"], ByteCounter()
    docs: list[Doc[Any]] = [Doc() for _ in names]
    fleet = PeerFleet()
    await fleet.connect(
        [PeerReplica(params["url"], n, counter, d) for n, d in zip(names, docs, strict=True)]
    )
    try:
        await _until(lambda: all(is_filled(doc) for doc in docs), timeout, "B filled")
        link.send(("ready",))
        await link.expect("edit")
        size = _edit(docs, _elsewhere(params), change_elsewhere)
        await asyncio.sleep(1.0)  # no acknowledgement in y-websocket: give the relay time
        link.send(("edited", size))

        async def reconnect() -> None:
            pass

        def done() -> bool:
            return _marks(docs, _offline(params), "mark_offline", "a")

        return await _catch_up(link, counter, reconnect, done, timeout)
    finally:
        await fleet.disconnect()


# -- the bench process side ----------------------------------------------------------------------


def run_catchup(kind: str, sizes: Sizes, work: Path) -> dict[str, float | None]:
    holder, other = (ours_holder, ours_other) if kind == "ours" else (peer_holder, peer_other)
    timeout = sizes.timeout
    with RelayProc(kind, work / f"{kind}-w3.db") as relay:
        params = {
            "url": relay.sync_url,
            "documents": sizes.catchup_documents,
            "elsewhere": sizes.catchup_changed_elsewhere,
            "offline": sizes.catchup_changed_offline,
            "timeout": timeout * 0.6,
        }
        a_params = params | {"path": str(work / f"{kind}-w3-a.db")}
        b_params = params | {"path": str(work / f"{kind}-w3-b.db")}
        with start_workers(holder, [a_params], f"w3-{kind}-a") as (a,):
            a.expect("ready", timeout)
            with start_workers(other, [b_params], f"w3-{kind}-b") as (b,):
                b.expect("ready", timeout)
                a.send(("offline",))
                a.expect("offline", timeout)
                b.send(("edit",))
                b_bytes = b.expect("edited", timeout)
                a.send(("edit",))
                a_bytes = a.expect("edited", timeout)
                start_at = clock() + 0.3
                b.send(("catchup", start_at))
                a.send(("catchup", start_at))
                seconds = max(a.expect("done", timeout), b.expect("done", timeout))
                for worker in (a, b):
                    worker.send(("finish",))
                wire = a.join(timeout)["bytes"] + b.join(timeout)["bytes"]
    return {
        "seconds": seconds,
        "wire_bytes": float(wire),
        "change_bytes": float(a_bytes + b_bytes),
        # B's changes must reach A (once); A's must reach the relay and then B (twice).
        "least_bytes": float(2 * a_bytes + b_bytes),
        "connections": 1.0 if kind == "ours" else float(sizes.catchup_documents),
    }
