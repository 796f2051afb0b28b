"""API reads: the office API on a relay holding 10,000 work orders.

Before the relay starts, its file is seeded with a tenant, an office key and
``api_workorders`` work orders written straight into the update store (each a
full skeleton made by ``create_workorder``: customer, planning for one of 20
technicians over 60 days, three tasks, a description; a mix of statuses). The
relay is then started as its own process (``python -m server --port 0``): its
views find every work order behind the store and build their rows, which is
reported as *views built from the store*. Then, through the real HTTP stack
(uvicorn, one keep-alive httpx client, the office key on every request):

* **filtered page**: ``GET /api/v1/workorders?technician=…&status=planned&``
  ``planned_from=…&planned_to=…&limit=100``, a full page of 100, cycling over
  technicians and the first three pages (cursor);
* **one work order**: ``GET /api/v1/workorders/{id}`` of a random id.

Each is timed per request on the client (``perf_counter``), after a warm-up;
the table shows median and p99. There is no peer for this workload.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import statistics
import time
from pathlib import Path
from typing import Any

import httpx
from pycrdt import Doc

from crdtsync import SQLiteStore
from crdtsync.workorder import (
    Party,
    Role,
    Schedule,
    Status,
    WorkOrderEditor,
    create_workorder,
)
from server.office import Office
from server.tenants import Role as CredentialRole

from .common import RelayProc
from .config import Sizes

__all__ = ["run_api"]

TECHNICIANS = [f"tech-{i:02d}" for i in range(20)]
FIRST_DAY = dt.date(2026, 12, 1)
_CITIES = ["Utrecht", "Gouda", "Zwolle", "Delft", "Breda", "Arnhem", "Leiden", "Haarlem"]


def _workorder(index: int, rng: random.Random) -> tuple[str, bytes]:
    ident = f"wo-{index:05d}"
    doc: Doc[Any] = Doc()
    technician = TECHNICIANS[index % len(TECHNICIANS)]
    create_workorder(
        doc,
        id=ident,
        number=f"2026-{index:05d}",
        status=Status.PLANNED,
        customer=Party(
            name=f"Customer {rng.randrange(5000)}",
            street=f"Dorpsstraat {rng.randrange(1, 200)}",
            city=rng.choice(_CITIES),
            phone="030-1234567",
        ),
        planning=Schedule(
            technician=technician, planned_date=FIRST_DAY + dt.timedelta(days=rng.randrange(60))
        ),
        short_description="Yearly maintenance of the boiler",
        description="Check pressure, clean the burner, replace the filter if worn. " * 3,
        tasks=["Check pressure", "Clean burner", "Replace filter"],
    )
    if index % 5 == 0:  # a fifth is under way on the device
        editor = WorkOrderEditor(doc, actor=technician, role=Role.DEVICE)
        editor.set_status(Status.IN_PROGRESS)
        editor.append_notes("Started; the customer was home.")
    return f"t/{{tenant}}/wo/{ident}", doc.get_update()


async def _seed(db: Path, count: int) -> str:
    """Seed ``db``; returns the office token."""
    async with Office(db) as office:
        tenant = await office.tenants.create_tenant("Bench Service")
        issued = await office.tenants.create_credential(tenant.id, CredentialRole.OFFICE)
    rng = random.Random(7)
    async with SQLiteStore(db, synchronous="NORMAL") as store:
        for start in range(0, count, 500):
            batch = [_workorder(i, rng) for i in range(start, min(count, start + 500))]
            await store.append([(name.format(tenant=tenant.id), data) for name, data in batch])
    return issued.token


def _wait_for_views(client: httpx.Client, timeout: float) -> float:
    """Seconds until the relay reports no work order waiting for its view."""
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        if client.get("/healthz").json().get("views_backlog") == 0:
            return time.perf_counter() - started
        time.sleep(0.1)
    raise TimeoutError(f"views not built within {timeout} s")


def _timed(client: httpx.Client, paths: list[str], warmup: int) -> list[float]:
    """Milliseconds per request (each must answer 200); the first ``warmup`` are dropped."""
    times: list[float] = []
    for path in paths:
        started = time.perf_counter()
        response = client.get(path)
        elapsed = time.perf_counter() - started
        if response.status_code != 200:
            raise RuntimeError(f"GET {path}: {response.status_code} {response.text[:200]}")
        times.append(elapsed * 1000)
    return times[warmup:]


def _page_paths(client: httpx.Client, count: int) -> list[str]:
    """Filtered page requests: every technician, pages 1-3 (cursors taken from the relay)."""
    last_day = FIRST_DAY + dt.timedelta(days=59)
    paths: list[str] = []
    for technician in TECHNICIANS:
        query = (
            f"/api/v1/workorders?technician={technician}&status=planned"
            f"&planned_from={FIRST_DAY}&planned_to={last_day}&limit=100"
        )
        path = query
        for _ in range(3):
            paths.append(path)
            page = client.get(path).json()
            if len(page["items"]) != 100 or page["next_cursor"] is None:
                break
            path = f"{query}&cursor={page['next_cursor']}"
    return [paths[i % len(paths)] for i in range(count)]


def _quantiles(times: list[float]) -> tuple[float, float]:
    ordered = sorted(times)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return statistics.median(ordered), p99


def run_api(side: str, sizes: Sizes, work: Path) -> dict[str, float | None]:
    if side != "ours":
        return {}  # no peer serves this API
    db = work / "api.db"
    token = asyncio.run(_seed(db, sizes.api_workorders))
    requests = sizes.api_requests
    warmup = max(10, requests // 10)
    with RelayProc("ours", db) as relay:
        headers = {"Authorization": f"Bearer {token}"}
        base = f"http://127.0.0.1:{relay.port}"
        with httpx.Client(base_url=base, headers=headers, timeout=30.0) as client:
            built = _wait_for_views(client, sizes.timeout)
            pages = _timed(client, _page_paths(client, requests + warmup), warmup)
            rng = random.Random(11)
            count = sizes.api_workorders
            paths = [f"/api/v1/workorders/wo-{rng.randrange(count):05d}" for _ in range(requests)]
            ones = _timed(client, paths[:warmup] + paths, warmup)
    page_median, page_p99 = _quantiles(pages)
    one_median, one_p99 = _quantiles(ones)
    return {
        "views_built_s": built,
        "page_median_ms": page_median,
        "page_p99_ms": page_p99,
        "one_median_ms": one_median,
        "one_p99_ms": one_p99,
    }
