"""The materialised work-order views: recovery after missed commits, overflow, and the change
feed they feed (complete, in order, exactly once, under concurrent writers)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from crdtsync import Relay, SQLiteStore
from crdtsync.service import FieldService
from crdtsync.store import build_doc
from crdtsync.workorder import Role, WorkOrderEditor, create_workorder
from server import RelaySettings
from server.office import Office
from server.views import WorkOrderViews

from .conftest import TIMEOUT, Tenant, make_tenant, running_app
from .helpers import create, device_link

WO = "/api/v1/workorders"


async def write_behind_the_views(db: Path, tenant: str) -> None:
    """Commit updates to the store alone, as if the relay died before writing their views:
    an edit of wo/1001 and a whole new wo/1002."""
    async with SQLiteStore(db) as store:
        name = f"t/{tenant}/wo/1001"
        doc = build_doc(await store.load(name))
        before = doc.get_state()
        WorkOrderEditor(doc, actor="office", role=Role.OFFICE).set_customer(name="Jansen")
        fresh: Any = build_doc(await store.load(f"t/{tenant}/wo/1002"))
        create_workorder(fresh, id="1002", number="WO-1002")
        await store.append(
            [(name, doc.get_update(before)), (f"t/{tenant}/wo/1002", fresh.get_update())]
        )


async def test_views_catch_up_after_a_restart_that_missed_commits(
    settings: RelaySettings,
) -> None:
    async with running_app(settings) as (app, client):
        tenant = await make_tenant(app.state.office)
        await create(client, tenant, "1001", customer={"name": "De Vries"})
    await write_behind_the_views(settings.db, tenant.id)
    async with running_app(settings) as (app, client):
        await app.state.views.flush()
        one = (await client.get(f"{WO}/1001", headers=tenant.headers)).json()
        assert one["customer_name"] == "Jansen"
        two = (await client.get(f"{WO}/1002", headers=tenant.headers)).json()
        assert two["number"] == "WO-1002"
        changes = (await client.get("/api/v1/changes", headers=tenant.headers)).json()["items"]
        assert [(c["document"], c["kind"]) for c in changes] == [
            ("wo/1001", "workorder.created"),
            ("wo/1001", "workorder.updated"),
            ("wo/1002", "workorder.created"),
        ]
        assert changes[1]["data"]["paths"] == ["customer.name"]
        assert (await client.get("/healthz")).json()["views_backlog"] == 0
        rebuilt = app.state.views.rebuilt
    async with running_app(settings) as (app, client):
        await app.state.views.flush()
        assert app.state.views.rebuilt == 0  # nothing was behind any more
    assert rebuilt == 2


async def test_an_overflowing_backlog_turns_into_a_rescan(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = tmp_path / "relay.db"
    async with (
        SQLiteStore(db) as store,
        Office(db) as office,
        Relay(store, application=FieldService()) as relay,
        WorkOrderViews(relay, office, max_pending=3, batch_size=2) as views,
    ):
        await views.flush()
        caplog.set_level(logging.WARNING, logger="crdtsync.views")
        async with office.db.read():  # the worker cannot write while this is held
            for i in range(10):
                await relay.edit(
                    f"wo/{i}",
                    lambda doc, i=i: create_workorder(doc, id=str(i), number=f"N{i}"),
                    tenant="acme",
                )
        await views.flush()
        found = [await views.get("acme", str(i)) for i in range(10)]
        assert [view.number if view else None for view in found] == [f"N{i}" for i in range(10)]
        assert views.backlog == 0
    assert any("rescanning" in r.getMessage() for r in caplog.records)


async def test_the_change_feed_is_complete_under_concurrent_writers(
    app: FastAPI, client: httpx.AsyncClient, tenant: Tenant
) -> None:
    writers, edits = 6, 8
    for w in range(writers):
        await create(client, tenant, f"wo-{w}", planning={"technician": "anna"})
    start = (await client.get("/api/v1/changes", headers=tenant.headers)).json()["next_cursor"]
    done = asyncio.Event()

    async def office_writer(w: int) -> None:
        for n in range(edits):
            response = await client.patch(
                f"{WO}/wo-{w}", json={"short_description": f"edit {n}"}, headers=tenant.headers
            )
            assert response.status_code == 200

    async def device_writer() -> None:
        async with device_link(app, tenant.id, "anna") as device:
            await device.open("wo/wo-0")
            for n in range(edits):
                await device.edit("wo/wo-0", lambda e, n=n: e.append_notes(f"note {n}. "))

    async def reader(seen: list[int]) -> None:
        cursor = start
        while True:
            finished = done.is_set()
            page = (
                await client.get(
                    "/api/v1/changes",
                    params={"cursor": cursor, "limit": 5},
                    headers=tenant.headers,
                )
            ).json()
            seen += [item["seq"] for item in page["items"]]
            cursor = page["next_cursor"]
            if finished and not page["has_more"]:
                return

    seen: list[int] = []
    async with asyncio.timeout(TIMEOUT * 3), asyncio.TaskGroup() as tasks:
        reading = tasks.create_task(reader(seen))
        async with asyncio.TaskGroup() as writing:
            for w in range(writers):
                writing.create_task(office_writer(w))
            writing.create_task(device_writer())
        await app.state.views.flush()
        done.set()
        await reading
    everything = (
        await client.get(
            "/api/v1/changes", params={"cursor": start, "limit": 1000}, headers=tenant.headers
        )
    ).json()["items"]
    assert seen == [item["seq"] for item in everything]
    assert seen == sorted(set(seen))
    updates: dict[str, int] = {}
    for item in everything:
        if item["kind"] == "workorder.updated":
            updates[item["data"]["id"]] = updates.get(item["data"]["id"], 0) + 1
    for w in range(1, writers):
        assert updates[f"wo-{w}"] == edits
    assert updates["wo-0"] >= edits  # device edits may share a view update with office ones
