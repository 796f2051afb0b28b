"""Helpers for the work-order API tests: the office's calls, and a device linked to the app.

:class:`DeviceLink` is a raw device session on an in-memory channel served by
the running app's relay (the same ``Relay.serve`` the websocket endpoints
call), with the principal a device credential would give. It opens documents,
pushes edits and sends work orders, without a socket.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
from fastapi import FastAPI
from pycrdt import Doc

from crdtsync import MemoryChannel, Principal, memory_channel_pair
from crdtsync.protocol import (
    AckReceived,
    Event,
    Role,
    SubmissionAnswered,
    SyncRequested,
    SyncSession,
    UpdateReceived,
)
from crdtsync.workorder import Role as EditRole
from crdtsync.workorder import WorkOrderEditor

from .conftest import TIMEOUT, Tenant

__all__ = ["DeviceLink", "create", "device_link", "issue_device", "sent_workorder"]

STROKES = [[(0.1, 0.2, 0.0), (0.4, 0.5, 120.0), (0.6, 0.4, 300.0)]]


async def create(
    client: httpx.AsyncClient, tenant: Tenant, ident: str, **body: Any
) -> dict[str, Any]:
    """POST a work order (number ``WO-<id>`` unless given); returns the 201 body."""
    payload = {"id": ident, "number": f"WO-{ident}", **body}
    response = await client.post("/api/v1/workorders", json=payload, headers=tenant.headers)
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


async def issue_device(client: httpx.AsyncClient, tenant: Tenant, technician: str) -> str:
    """A device credential's token for ``technician``."""
    response = await client.post(
        "/api/v1/devices", json={"technician": technician}, headers=tenant.headers
    )
    assert response.status_code == 201, response.text
    token: str = response.json()["token"]
    return token


class DeviceLink:
    """A device's raw sync session with the app's relay (see the module docstring)."""

    def __init__(self, channel: MemoryChannel) -> None:
        self.channel = channel
        self.session = SyncSession(Role.DEVICE)
        self.docs: dict[str, Doc[Any]] = {}
        self._seq = 0
        self._backlog: list[Event] = []

    async def _until(self, done: Callable[[Event], bool]) -> list[Event]:
        events: list[Event] = []
        async with asyncio.timeout(TIMEOUT):
            while True:
                while self._backlog:
                    event = self._backlog.pop(0)
                    events.append(event)
                    if isinstance(event, UpdateReceived) and event.document in self.docs:
                        self.docs[event.document].apply_update(event.update)
                    if done(event):
                        return events
                self._backlog.extend(self.session.receive_frame(await self.channel.recv()))

    async def open(self, name: str) -> Doc[Any]:
        """Sync ``name`` (answers with the relay's content); returns the replica."""
        doc = self.docs.setdefault(name, Doc())
        await self.channel.send(self.session.open_document(name, doc.get_state()))
        await self._until(lambda e: isinstance(e, SyncRequested) and e.document == name)
        return doc

    async def edit(self, name: str, change: Callable[[WorkOrderEditor], object]) -> None:
        """Edit the replica as this device's technician; push it and wait for the Ack."""
        doc = self.docs[name]
        before = doc.get_state()
        change(WorkOrderEditor(doc, actor="anna", role=EditRole.DEVICE))
        self._seq += 1
        seq = self._seq
        await self.channel.send(self.session.send_push(name, seq, doc.get_update(before)))
        await self._until(lambda e: isinstance(e, AckReceived) and e.seq == seq)

    async def submit(self, name: str, key: str) -> dict[str, Any]:
        """Send work order ``name``; returns the relay's answer."""
        await self.channel.send(self.session.send_submit(name, key, self._seq, "{}"))
        events = await self._until(lambda e: isinstance(e, SubmissionAnswered))
        answer = events[-1]
        assert isinstance(answer, SubmissionAnswered)
        result: dict[str, Any] = json.loads(answer.body)
        return result


@asynccontextmanager
async def device_link(app: FastAPI, tenant: str, technician: str) -> AsyncIterator[DeviceLink]:
    """A :class:`DeviceLink` for ``technician`` of ``tenant``, closed on exit."""
    device_end, relay_end = memory_channel_pair()
    principal = Principal(role="device", tenant=tenant, subject=technician, credential="test")
    async with asyncio.TaskGroup() as tasks:
        tasks.create_task(app.state.relay.serve(relay_end, principal=principal))
        try:
            yield DeviceLink(device_end)
        finally:
            await device_end.close(1000, "done")


async def sent_workorder(
    app: FastAPI, client: httpx.AsyncClient, tenant: Tenant, ident: str, technician: str = "anna"
) -> dict[str, Any]:
    """Create ``ident`` for ``technician``, have their device sign and send it; returns the
    accepted answer (the views are caught up)."""
    await create(client, tenant, ident, planning={"technician": technician})
    name = f"wo/{ident}"
    async with device_link(app, tenant.id, technician) as device:
        await device.open(name)
        await device.edit(name, lambda e: e.append_notes("Boiler checked."))
        await device.edit(name, lambda e: e.sign(STROKES, signer_name="J. de Vries"))
        answer = await device.submit(name, "send-1")
    assert answer["status"] == "accepted", answer
    await app.state.views.flush()
    return answer
