"""W1 ingest and W2 crash: devices editing one document together, as fast as they can.

Each device runs in its own process, connects, syncs, and waits for a common
start time on CLOCK_MONOTONIC. Then it makes its edits (one map entry per
transaction, ``await asyncio.sleep(0)`` between edits so its connection keeps
moving) and watches two moments:

* durable: ours, the device's outbox is empty (every edit acknowledged, which
  the relay does only after the commit). The peer has no acknowledgement: the
  bench process follows its SQLite file and takes the moment every edit is in it.
* converged: the device's replica holds every edit of every device.

W2 is the same run with the relay SIGKILLed as soon as the first device holds
every edit. Then the relay's file is read directly, and for us every device
reports which of its edits were acknowledged: an edit is acknowledged when its
outbox sequence is below the lowest sequence still in the outbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from pathlib import Path
from typing import Any

from pycrdt import Map

from crdtsync import ConnectionClosed, Device, SQLiteStore, websocket_connector
from crdtsync.store import build_doc

from .common import (
    RelayProc,
    WorkerLink,
    all_expect,
    byte_counter,
    clock,
    disk_bytes,
    first_message,
    sleep_until,
    start_workers,
)
from .config import Sizes
from .peer_client import PeerDiskReader, PeerReplica, read_peer_document

__all__ = ["run_crash", "run_ingest"]

DOC = "w1-ingest"
POLL = 0.002
START_DELAY = 0.5


# -- workers (device processes) ----------------------------------------------------------------


async def _watch(
    link: WorkerLink,
    params: dict[str, Any],
    holds: Any,
    durable: Any,
) -> dict[str, float]:
    """Poll until durable and converged (or, crashing, until the bench says it killed)."""
    total, crash, start_at = params["total"], params["crash"], params["start_at"]
    killed = asyncio.create_task(link.expect("killed")) if crash else None
    times: dict[str, float] = {}
    deadline = clock() + params["timeout"]
    try:
        while clock() < deadline:
            now = clock()
            if "converged" not in times and holds() >= total:
                times["converged"] = now - start_at
                if crash:
                    link.send(("converged", now))
            if "durable" not in times and durable is not None and durable():
                times["durable"] = now - start_at
            if killed is not None:
                if killed.done():
                    break
            elif "converged" in times and ("durable" in times or durable is None):
                break
            await asyncio.sleep(POLL)
        else:
            raise TimeoutError(
                f"device {params['index']} not done after {params['timeout']} s: "
                f"holds {holds()} of {total} edits, {times}"
            )
    finally:
        if killed is not None and not killed.done():
            killed.cancel()
    if not crash:  # stay connected until every device is done: nobody leaves mid-run
        link.send(("done",))
        await link.expect("finish")
    return times


async def ours_device(link: WorkerLink, params: dict[str, Any]) -> dict[str, Any]:
    index, edits = params["index"], params["edits"]
    path = Path(params["path"])
    device = Device(path, websocket_connector(params["url"]), documents=[DOC], seed=index)
    seqs: dict[str, int] = {}
    result: dict[str, Any] = {}
    try:
        async with device:
            await device.wait_synced(timeout=60)
            fields = device.open(DOC).get("m", type=Map)
            link.send(("ready",))
            params["start_at"] = await link.expect("start")
            await sleep_until(params["start_at"])
            for n in range(edits):
                key = f"d{index}-{n}"
                fields[key] = n
                if params["crash"]:
                    seqs[key] = device.store.last_outbox_seq(DOC)
                await asyncio.sleep(0)
            result["edited"] = clock() - params["start_at"]
            result |= await _watch(
                link, params, lambda: len(fields), lambda: device.status.total_pending == 0
            )
            if params["crash"]:  # the relay is dead: let the device notice, then read its outbox
                with contextlib.suppress(TimeoutError):
                    await device.wait_for(lambda status: not status.connected, timeout=5)
    except* ConnectionClosed:
        # A Device must reconnect by itself when its relay dies, never end with the error.
        # Should one ever end so, it is logged (the table then names it under the figures);
        # after the kill the outbox on disk is all W2 needs.
        if not params["crash"]:
            raise
        logging.getLogger("bench.ingest").error(
            "device %d: Device ended with ExceptionGroup(ConnectionClosed) when the relay died,"
            " instead of reconnecting",
            index,
        )
    acked: list[str] = []
    if params["crash"]:
        with contextlib.closing(sqlite3.connect(path)) as db:
            row = db.execute(
                "SELECT MIN(seq) FROM log WHERE document = ? AND pending = 1", (DOC,)
            ).fetchone()
        lowest_pending = row[0]
        acked = [k for k, s in seqs.items() if lowest_pending is None or s < lowest_pending]
    return {**result, "acked": acked}


async def peer_device(link: WorkerLink, params: dict[str, Any]) -> dict[str, Any]:
    index, edits = params["index"], params["edits"]
    counter = byte_counter()
    replica = PeerReplica(params["url"], DOC, counter)
    try:
        await replica.__aenter__()
        fields = replica.doc.get("m", type=Map)
        link.send(("ready",))
        params["start_at"] = await link.expect("start")
        await sleep_until(params["start_at"])
        for n in range(edits):
            fields[f"d{index}-{n}"] = n
            await asyncio.sleep(0)
        edited = clock() - params["start_at"]
        try:
            times = await _watch(link, params, lambda: len(fields), None)
        except TimeoutError as exc:
            fresh = PeerReplica(params["url"], DOC, byte_counter())
            await fresh.__aenter__()
            await asyncio.sleep(1)
            srv = len(fresh.doc.get("m", type=Map))
            replica.doc.apply_update(fresh.doc.get_update())
            conn = replica.channel.connection if replica.channel else None
            state = (conn.state, conn.close_code, conn.close_reason) if conn else None
            raise TimeoutError(
                f"{exc}; server holds {srv}; after applying it {len(fields)}; {state}"
            ) from exc
    finally:
        with contextlib.suppress(Exception, ConnectionClosed):
            await replica.__aexit__(None, None, None)
    return {"edited": edited, **times}


# -- the bench process side ------------------------------------------------------------------------


def _device_params(sizes: Sizes, relay: RelayProc, work: Path, crash: bool) -> list[dict[str, Any]]:
    return [
        {
            "index": i,
            "edits": sizes.ingest_edits,
            "total": sizes.ingest_total,
            "url": relay.sync_url,
            "path": str(work / f"{relay.kind}-device-{i}.db"),
            "crash": crash,
            "timeout": sizes.timeout * 0.6,
        }
        for i in range(sizes.ingest_devices)
    ]


async def _ours_on_disk(db: Path) -> set[str]:
    async with SQLiteStore(db) as store:
        doc = build_doc(await store.load(DOC))
    return set(doc.get("m", type=Map).keys())


async def _peer_on_disk(db: Path) -> set[str]:
    doc = await read_peer_document(db, f"/{DOC}")
    return set(doc.get("m", type=Map).keys())


def _follow_peer_file(db: Path, total: int, start_at: float, timeout: float) -> float | None:
    """Seconds from the start until the peer's file holds every edit (None: never)."""
    reader = PeerDiskReader(db, f"/{DOC}")
    deadline = clock() + timeout
    try:
        while clock() < deadline:
            if reader.poll() >= total:
                return clock() - start_at
            time.sleep(0.01)
        return None
    finally:
        reader.close()


def run_ingest(kind: str, sizes: Sizes, work: Path) -> dict[str, float | None]:
    """W1 for one side: durable, converged, bytes on disk."""
    db = work / f"{kind}-w1.db"
    worker = ours_device if kind == "ours" else peer_device
    with RelayProc(kind, db) as relay:
        params = _device_params(sizes, relay, work, crash=False)
        with start_workers(worker, params, f"w1-{kind}") as workers:
            all_expect(workers, "ready", sizes.timeout)
            start_at = clock() + START_DELAY
            for w in workers:
                w.send(("start", start_at))
            peer_durable = None
            if kind == "peer":
                peer_durable = _follow_peer_file(db, sizes.ingest_total, start_at, sizes.timeout)
            all_expect(workers, "done", sizes.timeout)
            for w in workers:
                w.send(("finish",))
            results = [w.join(sizes.timeout) for w in workers]
        size = disk_bytes(db)
    on_disk = asyncio.run(_ours_on_disk(db) if kind == "ours" else _peer_on_disk(db))
    if len(on_disk) != sizes.ingest_total:
        raise RuntimeError(f"W1 {kind}: {len(on_disk)} of {sizes.ingest_total} edits on disk")
    durable = max(r["durable"] for r in results) if kind == "ours" else peer_durable
    return {
        "durable_s": durable,
        "converged_s": max(r["converged"] for r in results),
        "edited_s": max(r["edited"] for r in results),
        "disk_bytes": float(size),
    }


def run_crash(kind: str, sizes: Sizes, work: Path) -> dict[str, float | None]:
    """W2 for one side: SIGKILL the relay when the first device holds every edit."""
    db = work / f"{kind}-w2.db"
    worker = ours_device if kind == "ours" else peer_device
    with RelayProc(kind, db) as relay:
        params = _device_params(sizes, relay, work, crash=True)
        with start_workers(worker, params, f"w2-{kind}") as workers:
            all_expect(workers, "ready", sizes.timeout)
            start_at = clock() + START_DELAY
            for w in workers:
                w.send(("start", start_at))
            _, message = first_message(workers, sizes.timeout)
            if message[0] != "converged":
                raise RuntimeError(f"W2 {kind}: expected a device to converge, got {message!r}")
            relay.kill()
            killed_after = clock() - message[1]
            for w in workers:
                with contextlib.suppress(OSError):  # a device may have ended already
                    w.send(("killed",))
            results = [w.join(sizes.timeout) for w in workers]
    on_disk = asyncio.run(_ours_on_disk(db) if kind == "ours" else _peer_on_disk(db))
    metrics: dict[str, float | None] = {
        "on_disk": float(len(on_disk)),
        "kill_delay_ms": killed_after * 1000,
        "acked": None,
        "acked_lost": None,
    }
    if kind == "ours":
        acked = {key for r in results for key in r["acked"]}
        metrics["acked"] = float(len(acked))
        metrics["acked_lost"] = float(len(acked - on_disk))
    return metrics
