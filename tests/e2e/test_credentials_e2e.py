"""Tenants and credentials on the real relay process: who reaches which document.

A tenant is created with the command line, a device credential through the
office API; the office and a technician's device then sync over real websockets.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from pycrdt import Doc

from crdtsync import Channel, ConnectionClosed, Device, ErrorCode, websocket_connector
from crdtsync.protocol import Error, Role, SyncSession, decode_frame
from crdtsync.workorder import (
    Party,
    WorkOrder,
    assign_workorder,
    create_planning,
    create_settings,
    create_workorder,
)

from ..conftest import ROOT, RelayProcess

pytestmark = pytest.mark.e2e

TIMEOUT = 30.0


def create_tenant(db: Path, name: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "server", "tenant", "create", name, "--db", str(db)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, Any] = json.loads(done.stdout)
    return result


async def issue_device(relay: RelayProcess, office_key: str, technician: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=relay.http_url) as client:
        response = await client.post(
            "/api/v1/devices",
            json={"technician": technician},
            headers={"Authorization": f"Bearer {office_key}"},
        )
    response.raise_for_status()
    issued: dict[str, Any] = response.json()
    return issued


async def set_up_office(relay: RelayProcess, office_key: str, tmp_path: Path) -> None:
    """The office creates settings, anna's planning and wo/1001 assigned to her."""
    connector = websocket_connector(relay.sync_url, token=office_key)
    async with Device(tmp_path / "office.db", connector) as office:
        create_settings(office.open("settings"))
        planning = office.open("planning/anna")
        create_planning(planning, technician="anna")
        create_workorder(
            office.open("wo/1001"), id="1001", number="WO-1001", customer=Party(name="De Vries")
        )
        assign_workorder(planning, "1001")
        await office.wait_synced(TIMEOUT)


async def read_until_closed(channel: Channel) -> tuple[list[bytes], int | None]:
    frames: list[bytes] = []
    async with asyncio.timeout(TIMEOUT):
        while True:
            try:
                frames.append(await channel.recv())
            except ConnectionClosed as closed:
                return frames, closed.code


async def test_a_device_credential_reaches_its_tenant_and_planning_only(
    relay_process: RelayProcess, tmp_path: Path
) -> None:
    tenant = create_tenant(relay_process.db, "Acme Installaties")
    other = create_tenant(relay_process.db, "Globex")
    await set_up_office(relay_process, tenant["office_key"], tmp_path)
    anna = await issue_device(relay_process, tenant["office_key"], "anna")

    connector = websocket_connector(relay_process.sync_url, token=anna["token"])
    async with Device(
        tmp_path / "anna.db", connector, documents=["planning/anna", "wo/1001"]
    ) as device:
        await device.wait_synced(TIMEOUT)
        workorder, _ = WorkOrder.from_doc(device.doc("wo/1001"))
        assert (workorder.number, workorder.customer.name) == ("WO-1001", "De Vries")

    # The other tenant's office key sees nothing of acme's, under the same names.
    connector = websocket_connector(relay_process.sync_url, token=other["office_key"])
    async with Device(tmp_path / "globex.db", connector, documents=["wo/1001"]) as stranger:
        await stranger.wait_synced(TIMEOUT)
        assert WorkOrder.from_doc(stranger.doc("wo/1001"))[0].number == ""

    # An unassigned work order is refused to the device.
    connector = websocket_connector(relay_process.sync_url, token=anna["token"])
    async with Device(tmp_path / "anna-2.db", connector, documents=["wo/2002"]) as device:
        await device.wait_for(lambda status: "wo/2002" in status.withdrawn, TIMEOUT)
        assert "not on the planning of anna" in (device.status.last_error or "")


async def test_revoking_a_device_cuts_its_open_connection_and_refuses_it_after(
    relay_process: RelayProcess, tmp_path: Path
) -> None:
    tenant = create_tenant(relay_process.db, "Acme")
    await set_up_office(relay_process, tenant["office_key"], tmp_path)
    anna = await issue_device(relay_process, tenant["office_key"], "anna")
    channel = await websocket_connector(relay_process.sync_url, token=anna["token"])()
    session = SyncSession(Role.DEVICE)
    await channel.send(session.open_document("planning/anna", Doc().get_state()))
    await channel.recv()  # the relay answered: the connection is open
    async with httpx.AsyncClient(base_url=relay_process.http_url) as client:
        response = await client.delete(
            f"/api/v1/devices/{anna['id']}",
            headers={"Authorization": f"Bearer {tenant['office_key']}"},
        )
        assert response.status_code in (200, 204)
    frames, code = await read_until_closed(channel)
    assert code == 4401
    assert [decode_frame(f).message for f in frames][-1] == Error(
        ErrorCode.UNAUTHORIZED, 0, "credential revoked"
    )
    again = await websocket_connector(relay_process.sync_url, token=anna["token"])()
    frames, code = await read_until_closed(again)
    assert code == 4401
    assert isinstance(decode_frame(frames[0]).message, Error)
