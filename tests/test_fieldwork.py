"""A technician's device over a real relay that runs the work-order rules.

The office side is the relay itself (``relay.edit``: trusted writes), the
application is :class:`~tests.apps.WorkOrderRules` (access per assignment,
field rules from the domain, submissions judged with ``missing_steps`` and
recorded). The device is a :class:`FieldDevice` of technician ``anna``.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pycrdt import Doc, Map

from crdtsync import (
    ErrorCode,
    FieldDevice,
    SubmissionBlocked,
    SubmissionStatus,
    UploadState,
)
from crdtsync.exceptions import WorkOrderLocked
from crdtsync.workorder import (
    Form,
    Policy,
    Question,
    QuestionKind,
    RequiredSteps,
    Status,
    WorkOrder,
    assign_workorder,
    create_planning,
    create_settings,
    create_workorder,
    publish_policy,
    set_override,
    unassign_workorder,
)

from .apps import WorkOrderRules
from .device_harness import FAST, TIMEOUT, Network, network

NOW = dt.datetime(2026, 3, 2, 9, 30, tzinfo=dt.UTC)
PHOTO = os.urandom(3000)


def clock() -> dt.datetime:
    return NOW


@dataclass
class Office:
    net: Network
    rules: WorkOrderRules

    async def edit(self, name: str, change: Any) -> Any:
        return await self.net.relay.edit(name, change, tenant="acme")

    async def assign(self, wo_id: str, tech: str = "anna", **values: Any) -> None:
        self.rules.assigned.setdefault(tech, set()).add(wo_id)
        await self.edit(
            f"wo/{wo_id}",
            lambda doc: create_workorder(doc, id=wo_id, number=f"2026-{wo_id}", **values),
        )
        await self.edit(
            f"planning/{tech}",
            lambda doc: assign_workorder(doc, wo_id, planned_date=dt.date(2026, 3, 2)),
        )

    async def unassign(self, wo_id: str, tech: str = "anna") -> None:
        self.rules.assigned[tech].discard(wo_id)
        await self.edit(f"planning/{tech}", lambda doc: unassign_workorder(doc, wo_id))
        self.net.relay.withdraw(
            lambda who, doc: who.subject != tech or doc != f"wo/{wo_id}", "unassigned"
        )

    async def status(self, wo_id: str) -> Any:
        doc = await self.net.relay.read(f"wo/{wo_id}", tenant="acme")
        return doc.get("state", type=Map).to_py()


POLICY = Policy(required=RequiredSteps(min_photos=1, hours=True))


@pytest.fixture(params=["memory", "sqlite"])
async def office(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Office]:
    rules = WorkOrderRules()
    async with network(request.param, tmp_path, application=rules) as net:
        o = Office(net, rules)
        await o.edit("settings", lambda doc: create_settings(doc, POLICY))
        await o.edit("planning/anna", lambda doc: create_planning(doc, technician="anna"))
        yield o


def field(office: Office, path: Path, **options: Any) -> FieldDevice:
    options.setdefault("backoff", FAST)
    return FieldDevice(path, office.net.connector("anna"), "anna", clock=clock, **options)


async def wait_listed(device: FieldDevice, *wo_ids: str) -> None:
    """Until the work orders are listed, synced and not withdrawn, and all is in sync."""
    names = [f"wo/{wo_id}" for wo_id in wo_ids]
    await device.device.wait_for(
        lambda s: (
            s.in_sync
            and all(s.synced.get(name) and name not in s.withdrawn for name in names)
            and {a.workorder.id for a in device.workorders()} >= set(wo_ids)
        ),
        TIMEOUT,
    )


def register_hours(device: FieldDevice, wo_id: str) -> None:
    device.editor(wo_id).add_hours(
        date=NOW.date(), start=NOW, end=NOW + dt.timedelta(hours=2), remark="boiler service"
    )


async def test_a_technician_works_through_an_assigned_workorder_and_sends_it(
    office: Office, tmp_path: Path
) -> None:
    await office.assign("1001", tasks=["Check the boiler"])
    async with field(office, tmp_path / "anna.db") as device:
        await wait_listed(device, "1001")
        [assigned] = device.workorders()
        assert assigned.workorder.number == "2026-1001"
        assert assigned.problems == []
        assert assigned.assignment.planned_date == dt.date(2026, 3, 2)
        assert device.policy().version == 1

        with pytest.raises(SubmissionBlocked) as blocked:
            device.send("1001")
        assert [step.code for step in blocked.value.missing] == ["photos", "hours"]
        assert device.sent_state("1001") is None

        register_hours(device, "1001")
        attachment = device.attach_photo(
            "1001", PHOTO, name="boiler.jpg", mime="image/jpeg", caption="after"
        )
        workorder, _ = device.workorder("1001")
        [photo] = workorder.attachments.values()
        assert (photo.id, photo.caption, photo.size) == (attachment, "after", len(PHOTO))
        assert device.device.blob(photo.sha256) == PHOTO

        key = device.send("1001")
        state = await device.device.wait_submission(key, TIMEOUT)
        assert state.status is SubmissionStatus.ACCEPTED
        assert state.answer is not None
        assert state.answer["policy_version"] == 1
        assert state.answer["missing"] == []
        assert state.body == {
            "policy_version": 1,
            "device_time": NOW.isoformat(),
            "technician": "anna",
        }
        assert device.sent_state("1001") == state
        assert [u.state for u in device.device.uploads("wo/1001")] == [UploadState.UPLOADED]

        # The relay marks it sent; once that syncs, the device may no longer edit it.
        await device.device.wait_for(lambda _: device.workorder("1001")[0].locked, TIMEOUT)
        assert device.workorder("1001")[0].status is Status.SENT
        with pytest.raises(WorkOrderLocked):
            device.attach_photo("1001", b"late photo", name="late.jpg", mime="image/jpeg")
        assert len(device.device.uploads("wo/1001")) == 1  # the refused attach left nothing
        with pytest.raises(WorkOrderLocked):
            device.send("1001")
    assert (await office.status("1001"))["submission_id"] == key


async def test_work_assigned_while_offline_arrives_on_reconnect(
    office: Office, tmp_path: Path
) -> None:
    await office.assign("1001")
    async with field(office, tmp_path / "anna.db") as device:
        await wait_listed(device, "1001")
        device.device.go_offline()
        await device.device.wait_for(lambda s: not s.connected, TIMEOUT)
        await office.assign("1002", short_description="Leaking valve")
        assert [a.workorder.id for a in device.workorders()] == ["1001"]

        device.device.go_online()
        await wait_listed(device, "1001", "1002")
        listed = {a.workorder.id: a.workorder for a in device.workorders()}
        assert listed["1002"].info.short_description == "Leaking valve"


async def test_work_done_offline_is_queued_and_sent_when_the_connection_returns(
    office: Office, tmp_path: Path
) -> None:
    await office.assign("1001")
    path = tmp_path / "anna.db"
    async with field(office, path) as device:
        await wait_listed(device, "1001")
        device.device.go_offline()
        await device.device.wait_for(lambda s: not s.connected, TIMEOUT)
        register_hours(device, "1001")
        device.attach_photo("1001", PHOTO, name="meter.jpg", mime="image/jpeg")
        key = device.send("1001")
        assert device.send("1001") == key  # still pending: the same submission
        assert device.sent_state("1001").status is SubmissionStatus.QUEUED  # type: ignore[union-attr]
        assert device.device.status.uploads_pending == {"wo/1001": 1}

    async with field(office, path) as device:  # a restart in between changes nothing
        assert device.sent_state("1001").status is SubmissionStatus.QUEUED  # type: ignore[union-attr]
        state = await device.device.wait_submission(key, TIMEOUT)
        assert state.status is SubmissionStatus.ACCEPTED
        assert device.device.status.uploads_pending == {}
    assert office.rules.judged == 1


async def test_the_relay_judges_with_the_policy_in_force_not_the_devices_copy(
    office: Office, tmp_path: Path
) -> None:
    await office.assign("1001")
    async with field(office, tmp_path / "anna.db") as device:
        await wait_listed(device, "1001")
        device.device.go_offline()
        await device.device.wait_for(lambda s: not s.connected, TIMEOUT)
        strict = POLICY.model_copy(
            update={"required": RequiredSteps(min_photos=1, hours=True, signature=True)}
        )
        await office.edit("settings", lambda doc: publish_policy(doc, strict))

        register_hours(device, "1001")
        device.attach_photo("1001", PHOTO, name="meter.jpg", mime="image/jpeg")
        key = device.send("1001")  # the device still holds version 1: nothing missing
        device.device.go_online()
        state = await device.device.wait_submission(key, TIMEOUT)
        assert state.status is SubmissionStatus.REJECTED
        assert state.answer is not None
        assert [step["code"] for step in state.answer["missing"]] == ["signature"]
        assert state.answer["policy_version"] == 2
        await device.device.wait_for(lambda _: device.policy().version == 2, TIMEOUT)
        with pytest.raises(SubmissionBlocked):
            device.send("1001")


async def test_the_editor_uses_the_technicians_override(office: Office, tmp_path: Path) -> None:
    form = Form(
        id="safety",
        title="Safety",
        questions=[
            Question(id="gas_ok", label="Gas tight?", kind=QuestionKind.BOOL, required=True)
        ],
    )

    def override(doc: Doc[Any]) -> None:
        version = publish_policy(doc, Policy(forms=[form]), make_current=False)
        set_override(doc, "anna", version)

    await office.edit("settings", override)
    await office.assign("1001")
    async with field(office, tmp_path / "anna.db") as device:
        await wait_listed(device, "1001")
        await device.device.wait_for(lambda _: device.policy().version == 2, TIMEOUT)
        editor = device.editor("1001")
        assert editor.policy is not None
        assert editor.policy.version == 2
        with pytest.raises(SubmissionBlocked) as blocked:
            device.send("1001")
        assert [step.code for step in blocked.value.missing] == ["form_answer"]
        editor.answer("gas_ok", True)
        key = device.send("1001")
        assert (
            await device.device.wait_submission(key, TIMEOUT)
        ).status is SubmissionStatus.ACCEPTED


async def test_a_field_the_device_may_not_write_is_refused_and_recovered(
    office: Office, tmp_path: Path
) -> None:
    from crdtsync.workorder import Party

    await office.assign("1001", customer=Party(name="ACME"))
    async with field(office, tmp_path / "anna.db") as device:
        await wait_listed(device, "1001")
        register_hours(device, "1001")
        await device.device.wait_synced(TIMEOUT)
        # An app bug writes around the editor: devices may not change customer data.
        device.device.doc("wo/1001").get("customer", type=Map)["name"] = "Someone else"
        await device.device.wait_for(lambda s: bool(s.rejected) and s.in_sync, TIMEOUT)
        [rejection] = device.device.status.rejected
        assert rejection.code == ErrorCode.FORBIDDEN_FIELD
        assert "customer.name" in rejection.message
        workorder, _ = device.workorder("1001")
        assert workorder.customer.name == "ACME"
        assert len(workorder.hours) == 1  # acknowledged before the refusal: kept
        assert device.device.archived("wo/1001")


async def test_an_unassigned_workorder_leaves_the_list_and_returns_when_reassigned(
    office: Office, tmp_path: Path
) -> None:
    await office.assign("1001")
    await office.assign("1002")
    async with field(office, tmp_path / "anna.db") as device:
        await wait_listed(device, "1001", "1002")
        await office.unassign("1002")
        await device.device.wait_for(
            lambda s: (
                s.withdrawn == ["wo/1002"]
                and [a.workorder.id for a in device.workorders()] == ["1001"]
            ),
            TIMEOUT,
        )
        assert "wo/1002" in device.device.documents  # kept on the device
        assert device.device.status.in_sync

        office.rules.assigned["anna"].add("1002")
        await office.edit("planning/anna", lambda doc: assign_workorder(doc, "1002"))
        await wait_listed(device, "1001", "1002")
        assert device.device.status.withdrawn == []


async def test_reconnecting_with_nothing_new_is_not_refused_when_the_work_order_has_deletions(
    office: Office, tmp_path: Path
) -> None:
    """A status set twice deletes the first value: the device's resume diff then holds that
    delete set and no new content, which the relay must take as nothing new, not refuse."""
    await office.assign("1001")
    async with field(office, tmp_path / "anna.db") as device:
        await wait_listed(device, "1001")
        device.editor("1001").set_status(Status.IN_PROGRESS)
        device.editor("1001").set_status(Status.COMPLETED)
        await device.device.wait_synced(TIMEOUT)
        reconnects = device.device.status.reconnects
        device.device.go_offline()
        await device.device.wait_for(lambda s: not s.connected, TIMEOUT)
        device.device.go_online()
        await device.device.wait_for(lambda s: s.in_sync and s.reconnects > reconnects, TIMEOUT)
        register_hours(device, "1001")  # a round trip after the resume diff was answered
        await device.device.wait_synced(TIMEOUT)
        assert device.device.status.rejected == []
        assert device.device.archived() == []
        assert device.workorder("1001")[0].status is Status.COMPLETED
    stored = await office.net.relay.read("wo/1001", tenant="acme")
    assert len(WorkOrder.from_doc(stored)[0].hours) == 1


async def test_the_planning_still_syncs_after_a_reconnect_once_something_left_it(
    office: Office, tmp_path: Path
) -> None:
    """An unassignment deletes from the read-only planning; reconnecting with nothing new
    must not send that delete set back as a write, which the relay refuses (the planning
    would be withdrawn and new work would never arrive)."""
    await office.assign("1001")
    await office.assign("1002")
    async with field(office, tmp_path / "anna.db") as device:
        await wait_listed(device, "1001", "1002")
        await office.unassign("1002")
        await device.device.wait_for(lambda s: s.withdrawn == ["wo/1002"] and s.in_sync, TIMEOUT)
        device.device.go_offline()
        await device.device.wait_for(lambda s: not s.connected, TIMEOUT)
        device.device.go_online()
        await office.assign("1003")
        await wait_listed(device, "1001", "1003")
        assert device.device.status.withdrawn == ["wo/1002"]
        assert device.device.status.last_error is None or "planning" not in (
            device.device.status.last_error
        )
