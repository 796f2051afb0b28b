"""The work-order flow end to end: a real relay process, its office API, technicians'
devices (:class:`~crdtsync.fieldwork.FieldDevice`) over real websockets.

Each test starts from a fresh relay and tenant. The office publishes a policy
(signature and one photo required), creates work order 1001 for anna with bram
on the crew, and issues each a device credential.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from pycrdt import Map

from client_demo.flaky import FlakyLink
from crdtsync import (
    Connector,
    FieldDevice,
    SubmissionBlocked,
    SubmissionStatus,
    WorkOrderLocked,
    websocket_connector,
)
from crdtsync.protocol import SubmitResult, decode_frame
from crdtsync.workorder import AttachmentKind, Status

from ..conftest import RelayProcess
from .office import FAST, Office

pytestmark = pytest.mark.e2e

TIMEOUT = 30.0
NOW = dt.datetime(2026, 12, 1, 8, 0, tzinfo=dt.UTC)
STROKES = [[(0.1, 0.5, 0.0), (0.3, 0.4, 90.0), (0.6, 0.6, 200.0)]]
PHOTO = os.urandom(40_000)


@asynccontextmanager
async def office_with_workorder(relay: RelayProcess) -> AsyncIterator[Office]:
    async with Office(relay) as office:
        await office.publish_policy(signature=True, min_photos=1)
        await office.create(
            "1001",
            customer={"name": "Bakkerij De Vries", "city": "Utrecht"},
            planning={"technician": "anna", "crew": ["bram"], "planned_date": "2026-12-01"},
            description="Replace the boiler",
            tasks=["Drain the system", "Fit the new boiler"],
        )
        yield office


def device(path: Path, connector: Connector, technician: str) -> FieldDevice:
    return FieldDevice(
        path, connector, technician, clock=lambda: NOW, backoff=FAST, submission_backoff=FAST
    )


async def holding(field: FieldDevice, wo_id: str = "1001") -> None:
    """Wait until the device holds the work order and is in sync."""
    await field.device.wait_for(
        lambda status: any(a.workorder.id == wo_id for a in field.workorders()) and status.in_sync,
        TIMEOUT,
    )


def finish(field: FieldDevice, *, sign: bool = True) -> None:
    """Hours, a ticked task, a photo and (by default) the customer's signature."""
    editor = field.editor("1001")
    editor.add_hours(date=NOW.date(), start=NOW, end=NOW + dt.timedelta(hours=3))
    for task in field.workorder("1001")[0].tasks:
        field.editor("1001").tick_task(task)
    field.attach_photo("1001", PHOTO, "boiler.jpg", "image/jpeg")
    if sign:
        field.editor("1001").sign(STROKES, signer_name="J. de Vries")


async def test_two_technicians_and_the_office_edit_offline_and_converge(
    relay_process: RelayProcess, tmp_path: Path
) -> None:
    async with office_with_workorder(relay_process) as office:
        anna_conn, bram_conn = await office.connector("anna"), await office.connector("bram")
        async with (
            device(tmp_path / "anna.db", anna_conn, "anna") as anna,
            device(tmp_path / "bram.db", bram_conn, "bram") as bram,
        ):
            await holding(anna)
            await holding(bram)
            anna.device.go_offline()
            bram.device.go_offline()
            for field, hours in ((anna, 2), (bram, 5)):
                editor = field.editor("1001")
                editor.add_hours(date=NOW.date(), start=NOW, end=NOW + dt.timedelta(hours=hours))
                editor.add_material(article=f"PIPE-{hours}", quantity=hours, unit="m")
            anna.editor("1001").append_notes("Pressure OK. ")
            bram.editor("1001").append_notes("Valve replaced. ")
            await office.call(
                "PATCH",
                "/workorders/1001",
                json={
                    "description": "Replace the boiler and the valve",
                    "customer": {"phone": "030-1234567"},
                },
            )
            bram.device.go_online()
            await bram.device.wait_synced(TIMEOUT)
            anna.device.go_online()
            await anna.device.wait_synced(TIMEOUT)
            for field in (anna, bram):
                await field.device.wait_for(
                    lambda s, f=field: len(f.workorder("1001")[0].hours) == 2, TIMEOUT
                )
            # The office reads views, which follow the relay's commits a moment later.
            await _until(_hours_in_view(office, 2), "both hours in the office's view")
            merged = (await office.workorder("1001"))["workorder"]
            for field in (anna, bram):
                local = field.workorder("1001")[0].model_dump(mode="json")
                assert local["hours"] == merged["hours"]
                assert local["notes"] == merged["notes"]
    assert len(merged["hours"]) == 2
    assert sorted(m["article"] for m in merged["materials"].values()) == ["PIPE-2", "PIPE-5"]
    assert "Pressure OK. " in merged["notes"]
    assert "Valve replaced. " in merged["notes"]
    assert merged["description"] == "Replace the boiler and the valve"
    assert merged["customer"] == {
        "name": "Bakkerij De Vries",
        "city": "Utrecht",
        "phone": "030-1234567",
    } | {k: None for k in merged["customer"] if k not in ("name", "city", "phone")}


async def test_sending_is_blocked_with_the_missing_list_then_accepted_once_after_an_offline_send(
    relay_process: RelayProcess, tmp_path: Path
) -> None:
    async with (
        office_with_workorder(relay_process) as office,
        FlakyLink(f"ws://127.0.0.1:{relay_process.port}", seed=3) as link,
    ):
        token = await office.device_token("anna")
        connector = websocket_connector(f"{link.url}/sync", token=token)
        async with device(tmp_path / "anna.db", connector, "anna") as anna:
            await holding(anna)
            with pytest.raises(SubmissionBlocked) as blocked:
                anna.send("1001")
            assert [step.code for step in blocked.value.missing] == ["signature", "photos"]

            anna.device.go_offline()
            finish(anna)
            key = anna.send("1001")  # queued: the device is offline
            assert anna.sent_state("1001").status is SubmissionStatus.QUEUED  # type: ignore[union-attr]

            link.drop_when(_submit_result)  # the relay's answer is lost with the connection
            anna.device.go_online()
            state = await anna.device.wait_submission(key, TIMEOUT)
            assert link.stats.lost_in_flight >= 1
            assert state.status is SubmissionStatus.ACCEPTED
        records = await office.submissions("1001")
        assert [(r["key"], r["accepted"]) for r in records] == [(key, True)]
        workorder = (await office.workorder("1001"))["workorder"]
        assert workorder["state"]["status"] == Status.SENT
        assert workorder["state"]["submission_id"] == records[0]["submission_id"]
        sha = hashlib.sha256(PHOTO).hexdigest()
        photo = await office.http.get(f"/attachments/{sha}")
        assert photo.content == PHOTO
        assert photo.headers["content-type"] == "image/jpeg"


def _hours_in_view(office: Office, count: int) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return len((await office.workorder("1001"))["workorder"]["hours"]) == count

    return check


async def _until(check: Callable[[], Awaitable[bool]], what: str) -> None:
    """Poll the office API (it has no event to wait on) until ``check()`` holds."""
    try:
        async with asyncio.timeout(TIMEOUT):
            while not await check():  # noqa: ASYNC110 (an HTTP API, polled)
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"{what}: not within {TIMEOUT} s") from None


def _submit_result(message: str | bytes) -> bool:
    return isinstance(message, bytes) and isinstance(decode_frame(message).message, SubmitResult)


async def test_a_forbidden_field_is_refused_by_the_relay_and_a_stale_signature_is_too(
    relay_process: RelayProcess, tmp_path: Path
) -> None:
    async with office_with_workorder(relay_process) as office:
        connector = await office.connector("anna")
        async with device(tmp_path / "anna.db", connector, "anna") as anna:
            await holding(anna)
            # A modified client writes the customer's name, which devices may not write.
            anna.device.doc("wo/1001").get("customer", type=Map)["name"] = "Someone Else"
            await anna.device.wait_for(lambda s: bool(s.rejected), TIMEOUT)
            assert "customer.name" in anna.device.status.rejected[0].message
            await holding(anna)  # the replica was replaced by the relay's state
            assert anna.workorder("1001")[0].customer.name == "Bakkerij De Vries"
            assert (await office.workorder("1001"))["workorder"]["customer"]["name"] == (
                "Bakkerij De Vries"
            )

            finish(anna)
            anna.editor("1001").add_material(article="EXTRA", quantity=1, unit="pcs")
            with pytest.raises(SubmissionBlocked) as blocked:
                anna.send("1001")
            assert [step.code for step in blocked.value.missing] == ["signature_stale"]
            # Sent anyway (a modified client): the relay judges the same.
            key = anna.device.submit("wo/1001", {"policy_version": 2})
            state = await anna.device.wait_submission(key, TIMEOUT)
    assert state.status is SubmissionStatus.REJECTED
    assert state.answer is not None
    assert [step["code"] for step in state.answer["missing"]] == ["signature_stale"]


async def test_a_photo_not_yet_uploaded_holds_the_submission_until_it_arrives(
    relay_process: RelayProcess, tmp_path: Path
) -> None:
    """The reference travels ahead of the bytes: anna's phone took the photo and is
    offline with it; bram references it (the crew shares the camera roll) and sends."""
    sha = hashlib.sha256(PHOTO).hexdigest()
    async with office_with_workorder(relay_process) as office:
        anna_conn, bram_conn = await office.connector("anna"), await office.connector("bram")
        async with (
            device(tmp_path / "anna.db", anna_conn, "anna") as anna,
            device(tmp_path / "bram.db", bram_conn, "bram") as bram,
        ):
            await holding(anna)
            await holding(bram)
            anna.device.go_offline()
            anna.device.add_blob("wo/1001", PHOTO)  # on anna's device, upload queued
            editor = bram.editor("1001")
            editor.attach(
                sha, kind=AttachmentKind.PHOTO, name="meter.jpg", mime="image/jpeg", size=len(PHOTO)
            )
            editor.sign(STROKES, signer_name="J. de Vries")
            key = bram.send("1001")
            await bram.device.wait_for(lambda s: _status(bram) is SubmissionStatus.WAITING, TIMEOUT)
            assert await office.submissions("1001") == []  # waiting is not recorded
            anna.device.go_online()  # her upload completes; bram's retry is accepted
            state = await bram.device.wait_submission(key, TIMEOUT)
        assert state.status is SubmissionStatus.ACCEPTED
        assert state.answer is not None
        assert [r["accepted"] for r in await office.submissions("1001")] == [True]


def _status(field: FieldDevice) -> SubmissionStatus | None:
    state = field.sent_state("1001")
    return None if state is None else state.status


async def test_offline_work_on_a_work_order_reassigned_meanwhile_still_arrives(
    relay_process: RelayProcess, tmp_path: Path
) -> None:
    async with office_with_workorder(relay_process) as office:
        anna_conn, cees_conn = await office.connector("anna"), await office.connector("cees")
        async with device(tmp_path / "anna.db", anna_conn, "anna") as anna:
            await holding(anna)
            anna.device.go_offline()
            anna.editor("1001").add_hours(
                date=NOW.date(), start=NOW, end=NOW + dt.timedelta(hours=4)
            )
            await office.call(  # the office gives the job to cees, not knowing anna worked on it
                "PATCH", "/workorders/1001", json={"planning": {"technician": "cees", "crew": []}}
            )
            anna.device.go_online()
            await anna.device.wait_synced(TIMEOUT)  # her hours went out
            with pytest.raises(WorkOrderLocked):
                anna.editor("1001")  # but nothing new: it is cees's now
            async with device(tmp_path / "cees.db", cees_conn, "cees") as cees:
                await holding(cees)
                assert len(cees.workorder("1001")[0].hours) == 1
        merged = (await office.workorder("1001"))["workorder"]
    assert [entry["technician"] for entry in merged["hours"].values()] == ["anna"]
    assert merged["planning"]["technician"] == "cees"
