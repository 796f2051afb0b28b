"""W4 fan-out latency: one device edits at a steady rate, every other device receives.

All devices share one document. The editor (its own process) writes map entries
whose value is ``clock()`` (CLOCK_MONOTONIC, one clock for the whole machine)
taken just before the edit; receivers (grouped several per process) observe
the map and record ``clock() - value`` the moment each entry arrives in their
replica. Reported: median and p99 over every (edit, receiver) pair, and how
many such arrivals never happened.

Ours: ``Device`` replicas (each also writes what it receives to its own SQLite
file). The peer: pycrdt Providers over one websocket each.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
from pathlib import Path
from typing import Any

from pycrdt import Doc, Map, MapEvent

from crdtsync import Device, websocket_connector

from .common import ByteCounter, RelayProc, WorkerLink, clock, sleep_until, start_workers
from .config import Sizes
from .peer_client import PeerFleet, PeerReplica

__all__ = ["run_fanout"]

DOC = "w4-fanout"


class _Arrivals:
    """Latency of every edit that arrives in one replica's map."""

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.expected: int | None = None
        self.complete = asyncio.Event()

    def __call__(self, event: MapEvent) -> None:
        now = clock()
        for change in event.keys.values():
            value = change.get("newValue")
            if isinstance(value, float):
                self.latencies.append(now - value)
        self.check()

    def check(self) -> None:
        if self.expected is not None and len(self.latencies) >= self.expected:
            self.complete.set()


async def _receive(link: WorkerLink, docs: list[Doc[Any]], timeout: float) -> list[float]:
    arrivals = [_Arrivals() for _ in docs]
    subscriptions = [  # kept referenced for as long as the arrivals are recorded
        doc.get("m", type=Map).observe(watcher) for doc, watcher in zip(docs, arrivals, strict=True)
    ]
    link.send(("ready",))
    await link.expect("start")
    expected = await link.expect("expect")
    for watcher in arrivals:
        watcher.expected = expected
        watcher.check()
    with contextlib.suppress(TimeoutError):  # what never arrived is counted as missing
        async with asyncio.timeout(timeout):
            for watcher in arrivals:
                await watcher.complete.wait()
    link.send(("done",))
    await link.expect("finish")
    del subscriptions
    return [latency for a in arrivals for latency in a.latencies]


async def _edit(link: WorkerLink, doc: Doc[Any], params: dict[str, Any]) -> int:
    fields = doc.get("m", type=Map)
    link.send(("ready",))
    start_at = await link.expect("start")
    count = int(params["rate"] * params["seconds"])
    for n in range(count):
        await sleep_until(start_at + n / params["rate"])
        fields[f"e{n}"] = clock()
    link.send(("edited", count))
    await link.expect("finish")
    return count


async def ours_receivers(link: WorkerLink, params: dict[str, Any]) -> list[float]:
    connector = websocket_connector(params["url"])
    devices = [
        Device(Path(params["dir"]) / f"ours-w4-{params['group']}-{i}.db", connector)
        for i in range(params["count"])
    ]
    for device in devices:
        await device.__aenter__()
    try:
        docs = [device.open(DOC) for device in devices]
        for device in devices:
            await device.wait_synced(params["timeout"])
        return await _receive(link, docs, params["timeout"])
    finally:
        for device in devices:
            await device.__aexit__(None, None, None)


async def ours_editor(link: WorkerLink, params: dict[str, Any]) -> int:
    path = Path(params["dir"]) / "ours-w4-editor.db"
    async with Device(path, websocket_connector(params["url"]), documents=[DOC]) as device:
        await device.wait_synced(params["timeout"])
        return await _edit(link, device.open(DOC), params)


async def peer_receivers(link: WorkerLink, params: dict[str, Any]) -> list[float]:
    docs: list[Doc[Any]] = [Doc() for _ in range(params["count"])]
    fleet = PeerFleet()
    counter = ByteCounter()
    await fleet.connect([PeerReplica(params["url"], DOC, counter, doc) for doc in docs])
    try:
        return await _receive(link, docs, params["timeout"])
    finally:
        await fleet.disconnect()


async def peer_editor(link: WorkerLink, params: dict[str, Any]) -> int:
    fleet = PeerFleet()
    doc: Doc[Any] = Doc()
    await fleet.connect([PeerReplica(params["url"], DOC, ByteCounter(), doc)])
    try:
        return await _edit(link, doc, params)
    finally:
        await fleet.disconnect()


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def run_fanout(kind: str, sizes: Sizes, work: Path) -> dict[str, float | None]:
    receivers, editor = (
        (ours_receivers, ours_editor) if kind == "ours" else (peer_receivers, peer_editor)
    )
    timeout = sizes.timeout
    count = sizes.fanout_devices - 1
    groups = sizes.fanout_processes
    with RelayProc(kind, work / f"{kind}-w4.db") as relay:
        base = {
            "url": relay.sync_url,
            "dir": str(work),
            "timeout": timeout * 0.6,
            "rate": sizes.fanout_rate,
            "seconds": sizes.fanout_seconds,
        }
        per_group = [count // groups + (1 if g < count % groups else 0) for g in range(groups)]
        params = [base | {"group": g, "count": n} for g, n in enumerate(per_group)]
        with (
            start_workers(receivers, params, f"w4-{kind}-r") as group_workers,
            start_workers(editor, [base], f"w4-{kind}-e") as (edit_worker,),
        ):
            workers = [*group_workers, edit_worker]
            for worker in workers:
                worker.expect("ready", timeout)
            start_at = clock() + 0.5
            for worker in workers:
                worker.send(("start", start_at))
            edits = edit_worker.expect("edited", timeout)
            for worker in group_workers:
                worker.send(("expect", edits))
            for worker in group_workers:
                worker.expect("done", timeout)
            for worker in workers:
                worker.send(("finish",))
            latencies = [lat for worker in group_workers for lat in worker.join(timeout)]
            edit_worker.join(timeout)
    expected = edits * count
    return {
        "median_ms": statistics.median(latencies) * 1000 if latencies else None,
        "p99_ms": _percentile(latencies, 0.99) * 1000 if latencies else None,
        "missing": float(expected - len(latencies)),
    }
