"""An office PATCH merges with a device's concurrent offline edits (real websocket, real device).

The relay is the real app served by uvicorn on a free loopback port; the device
is a :class:`crdtsync.Device` with its own SQLite file, authenticated with a
device credential issued through the API. While the device is offline it
registers hours and writes notes; meanwhile the office changes the customer,
the planning and the description over HTTP. When the device reconnects, both
sides' edits are in the relay's merged state and on the device.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import httpx
from fastapi import FastAPI

from crdtsync import Device, websocket_connector
from crdtsync.workorder import Role, WorkOrder, WorkOrderEditor
from server import RelaySettings, create_app

from .conftest import TIMEOUT, make_tenant, served

START = dt.datetime(2026, 12, 1, 8, 0, tzinfo=dt.UTC)


async def test_office_patch_merges_with_an_offline_device_edit(
    settings: RelaySettings, tmp_path: Path
) -> None:
    app: FastAPI = create_app(settings)
    async with served(app) as url, httpx.AsyncClient(base_url=url, timeout=TIMEOUT) as client:
        tenant = await make_tenant(app.state.office)
        created = await client.post(
            "/api/v1/workorders",
            json={
                "id": "1001",
                "number": "WO-1001",
                "customer": {"name": "De Vries", "city": "Utrecht"},
                "planning": {"technician": "anna", "planned_date": "2026-12-01"},
                "description": "Check the boiler",
            },
            headers=tenant.headers,
        )
        assert created.status_code == 201, created.text
        issued = await client.post(
            "/api/v1/devices", json={"technician": "anna"}, headers=tenant.headers
        )
        connector = websocket_connector(
            url.replace("http", "ws") + "/sync", token=issued.json()["token"]
        )
        async with Device(tmp_path / "anna.db", connector) as device:
            replica = device.open("wo/1001")
            await device.wait_synced(TIMEOUT)
            device.go_offline()
            await device.wait_for(lambda status: not status.connected, TIMEOUT)

            editor = WorkOrderEditor(replica, actor="anna", role=Role.DEVICE)
            hours = editor.add_hours(
                date=START.date(), start=START, end=START + dt.timedelta(hours=2)
            )
            editor.append_notes("Replaced the valve.")
            assert device.status.pending["wo/1001"] == 2

            patched = await client.patch(
                "/api/v1/workorders/1001",
                json={
                    "customer": {"name": "Jansen BV", "phone": "030-1234567"},
                    "planning": {"planned_date": "2026-12-02"},
                    "description": "Check the boiler and the valve",
                },
                headers=tenant.headers,
            )
            assert patched.status_code == 200, patched.text

            device.go_online()
            await device.wait_synced(TIMEOUT)
            on_device, _ = WorkOrder.from_doc(replica)

        await app.state.views.flush()
        merged = (await client.get("/api/v1/workorders/1001", headers=tenant.headers)).json()

    for workorder in (merged["workorder"], on_device.model_dump(mode="json")):
        assert workorder["customer"]["name"] == "Jansen BV"
        assert workorder["customer"]["phone"] == "030-1234567"
        assert workorder["customer"]["city"] == "Utrecht"  # untouched by both
        assert workorder["planning"]["planned_date"] == "2026-12-02"
        assert workorder["planning"]["technician"] == "anna"
        assert workorder["description"] == "Check the boiler and the valve"
        assert list(workorder["hours"]) == [hours]
        assert workorder["notes"] == "Replaced the valve."
    assert merged["problems"] == []
