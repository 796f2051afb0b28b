"""The field-service rules at a real relay: access by planning, field rules, and sending."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from pycrdt import Doc, Map

from crdtsync import ErrorCode, MemoryStore, Principal, SQLiteStore, Store
from crdtsync.protocol import (
    BlobStatusReceived,
    DocumentClosed,
    ErrorReceived,
    SubmissionAnswered,
    UpdateReceived,
)
from crdtsync.service import FieldService
from crdtsync.store import build_doc
from crdtsync.workorder import (
    AttachmentKind,
    Party,
    Policy,
    RequiredSteps,
    Role,
    Status,
    WorkOrder,
    WorkOrderEditor,
    assign_workorder,
    create_planning,
    create_settings,
    create_workorder,
    release_workorder,
    unassign_workorder,
)

from .test_relay import Harness, RawPeer, running

ANNA = Principal(role="device", tenant="acme", subject="anna", credential="c-anna")
BRAM = Principal(role="device", tenant="acme", subject="bram", credential="c-bram")
OFFICE = Principal(role="office", tenant="acme", credential="c-office")
WO = "wo/1001"
STROKES = [[(0.1, 0.2, 0.0), (0.4, 0.5, 120.0), (0.6, 0.4, 300.0)]]
NOW = dt.datetime(2026, 11, 30, 9, 0, tzinfo=dt.UTC)


@asynccontextmanager
async def field_relay(
    store: Store | None = None, policy: Policy | None = None, service: FieldService | None = None
) -> AsyncIterator[Harness]:
    """A relay with FieldService, a tenant with settings, and wo/1001 planned for anna."""
    async with running(store or MemoryStore(), application=service or FieldService()) as h:
        relay = h.relay
        await relay.edit("settings", lambda doc: create_settings(doc, policy), tenant="acme")
        customer = Party(name="Bakkerij De Vries", city="Utrecht")
        await relay.edit(
            WO,
            lambda doc: create_workorder(doc, id="1001", number="WO-1001", customer=customer),
            tenant="acme",
        )
        for tech in ("anna", "bram"):
            await relay.edit(
                f"planning/{tech}",
                lambda doc, t=tech: create_planning(doc, technician=t),
                tenant="acme",
            )
        await relay.edit("planning/anna", lambda doc: assign_workorder(doc, "1001"), tenant="acme")
        yield h


def device_edit(replica: Doc[Any], change: Callable[[WorkOrderEditor], object]) -> bytes:
    """Apply ``change`` through a device editor on ``replica``; return the update it made."""
    before = replica.get_state()
    change(WorkOrderEditor(replica, actor="anna", role=Role.DEVICE, clock=lambda: NOW))
    return replica.get_update(before)


def raw_edit(replica: Doc[Any], root: str, key: str, value: Any) -> bytes:
    """A write that bypasses the editor, as a modified client would make it."""
    before = replica.get_state()
    replica.get(root, type=Map)[key] = value
    return replica.get_update(before)


async def refused(peer: RawPeer, name: str = WO) -> list[tuple[ErrorCode | int, str]]:
    events = await peer.recv_events(lambda e: isinstance(e, DocumentClosed) and e.document == name)
    return [(e.code, e.message) for e in events if isinstance(e, ErrorReceived)]


async def submit(peer: RawPeer, key: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    await peer.send_raw(peer.session.send_submit(WO, key, 0, json.dumps(body or {})))
    events = await peer.recv_events(lambda e: isinstance(e, SubmissionAnswered))
    answer = events[-1]
    assert isinstance(answer, SubmissionAnswered)
    result: dict[str, Any] = json.loads(answer.body)
    return result


async def stored_workorder(h: Harness) -> WorkOrder:
    workorder, _ = WorkOrder.from_doc(await h.relay.read(WO, tenant="acme"))
    return workorder


# -- access ----------------------------------------------------------------------------------------


async def test_a_device_opens_its_planning_settings_and_assigned_work_orders() -> None:
    async with field_relay() as h:
        anna = h.connect(principal=ANNA)
        replica = await anna.open(WO)
        assert WorkOrder.from_doc(replica)[0].number == "WO-1001"
        await anna.open("planning/anna")
        await anna.open("settings")


@pytest.mark.parametrize("name", ["wo/2002", "office/1001", "planning/bram", "anything"])
async def test_a_device_is_refused_what_is_not_its_own(name: str) -> None:
    async with field_relay() as h:
        bram = h.connect(principal=BRAM if name != "planning/bram" else ANNA)
        await bram.channel.send(bram.session.open_document(name, Doc().get_state()))
        assert [code for code, _ in await refused(bram, name)] == [ErrorCode.FORBIDDEN]


async def test_a_device_may_not_write_its_planning_or_the_settings() -> None:
    async with field_relay() as h:
        anna = h.connect(principal=ANNA)
        replica = await anna.open("planning/anna")
        before = replica.get_state()
        assign_workorder(replica, "9999")
        await anna.push("planning/anna", 1, replica.get_update(before))
        assert [code for code, _ in await refused(anna, "planning/anna")] == [ErrorCode.FORBIDDEN]


async def test_unassigning_closes_the_work_order_on_the_open_connection() -> None:
    async with field_relay() as h:
        anna = h.connect(principal=ANNA)
        await anna.open(WO)
        await h.relay.edit(
            "planning/anna", lambda doc: unassign_workorder(doc, "1001"), tenant="acme"
        )
        assert [code for code, _ in await refused(anna)] == [ErrorCode.FORBIDDEN]
        await anna.channel.send(anna.session.open_document(WO, Doc().get_state()))
        assert [code for code, _ in await refused(anna)] == [ErrorCode.FORBIDDEN]


async def test_assigning_while_connected_opens_the_door() -> None:
    async with field_relay() as h:
        bram = h.connect(principal=BRAM)
        await bram.channel.send(bram.session.open_document(WO, Doc().get_state()))
        await refused(bram)
        await h.relay.edit(
            "planning/bram", lambda doc: assign_workorder(doc, "1001"), tenant="acme"
        )
        assert WorkOrder.from_doc(await bram.open(WO))[0].id == "1001"


# -- field rules -----------------------------------------------------------------------------------


@pytest.mark.parametrize("make_store", [MemoryStore, None], ids=["memory", "sqlite"])
async def test_a_device_writing_customer_data_is_refused_and_nothing_changes(
    make_store: Any, tmp_path: Any
) -> None:
    store = make_store() if make_store else SQLiteStore(tmp_path / "relay.db")
    async with field_relay(store) as h:
        anna = h.connect(principal=ANNA)
        replica = await anna.open(WO)
        await anna.push(WO, 1, raw_edit(replica, "customer", "name", "Someone Else"))
        errors = await refused(anna)
        assert [code for code, _ in errors] == [ErrorCode.FORBIDDEN_FIELD]
        assert "customer.name" in errors[0][1]
        assert (await stored_workorder(h)).customer.name == "Bakkerij De Vries"
        stored = build_doc(await store.load("t/acme/wo/1001"))
        assert WorkOrder.from_doc(stored)[0].customer.name == "Bakkerij De Vries"
        assert [r.reason for r in await store.rejections("t/acme/wo/1001")] == ["customer.name"]  # type: ignore[attr-defined]


async def test_a_device_may_not_mark_a_work_order_sent() -> None:
    async with field_relay() as h:
        anna = h.connect(principal=ANNA)
        replica = await anna.open(WO)
        await anna.push(WO, 1, raw_edit(replica, "state", "status", "sent"))
        errors = await refused(anna)
        assert "state.status=sent" in errors[0][1]


async def test_device_edits_within_the_rules_reach_the_office() -> None:
    async with field_relay() as h:
        office = h.connect(principal=OFFICE)
        office_copy = await office.open(WO)
        anna = h.connect(principal=ANNA)
        replica = await anna.open(WO)
        update = device_edit(
            replica,
            lambda e: e.add_hours(date=NOW.date(), start=NOW, end=NOW + dt.timedelta(hours=2)),
        )
        await anna.push_all(WO, [update])
        for event in await office.recv_events(lambda e: isinstance(e, UpdateReceived)):
            if isinstance(event, UpdateReceived):
                office_copy.apply_update(event.update)
        assert len(WorkOrder.from_doc(office_copy)[0].hours) == 1


# -- sending ---------------------------------------------------------------------------------------


async def test_sending_without_a_required_signature_is_rejected_with_the_missing_list() -> None:
    async with field_relay(policy=Policy(required=RequiredSteps(signature=True))) as h:
        anna = h.connect(principal=ANNA)
        await anna.open(WO)
        first = await submit(anna, "k-1", {"policy_version": 1})
        assert first["status"] == "rejected"
        assert [step["code"] for step in first["missing"]] == ["signature"]
        assert await submit(anna, "k-1") == first  # the same key, the same answer
        assert (await stored_workorder(h)).status is not Status.SENT


async def test_an_accepted_submission_is_recorded_once_and_marks_the_work_order_sent() -> None:
    store = MemoryStore()
    async with field_relay(store, Policy(required=RequiredSteps(signature=True))) as h:
        anna = h.connect(principal=ANNA)
        replica = await anna.open(WO)
        await anna.push_all(WO, [device_edit(replica, lambda e: e.sign(STROKES, signer_name="J."))])
        accepted = await submit(anna, "k-2", {"policy_version": 1})
        assert accepted["status"] == "accepted"
        assert accepted["policy_version"] == 1
        workorder = await stored_workorder(h)
        assert workorder.status is Status.SENT
        assert workorder.state.submission_id == accepted["record_id"]
        assert await submit(anna, "k-2") == accepted  # an answer lost and asked again
        again = await submit(anna, "k-3")  # a second attempt under another key
        assert again["status"] == "rejected"
        records = await store.submissions("t/acme/wo/1001")
        assert [(r.key, r.accepted) for r in records] == [("k-2", True), ("k-3", False)]
        assert records[0].content_hash == accepted["content_hash"]


async def test_a_photo_not_uploaded_yet_holds_the_submission_until_it_arrives() -> None:
    data = os.urandom(3000)
    sha = hashlib.sha256(data).hexdigest()
    async with field_relay(policy=Policy(required=RequiredSteps(min_photos=1))) as h:
        anna = h.connect(principal=ANNA)
        replica = await anna.open(WO)
        attach = device_edit(
            replica,
            lambda e: e.attach(
                sha, kind=AttachmentKind.PHOTO, name="meter.jpg", mime="image/jpeg", size=len(data)
            ),
        )
        await anna.push_all(WO, [attach])
        waiting = await submit(anna, "k-photo")
        assert (waiting["status"], waiting["waiting_for"]) == ("waiting", [sha])
        await anna.send_raw(anna.session.send_blob_put(WO, sha, len(data), 0, data))
        await anna.recv_events(lambda e: isinstance(e, BlobStatusReceived))
        assert (await submit(anna, "k-photo"))["status"] == "accepted"


async def test_the_signature_goes_stale_when_the_signed_content_changes() -> None:
    async with field_relay(policy=Policy(required=RequiredSteps(signature=True))) as h:
        anna = h.connect(principal=ANNA)
        replica = await anna.open(WO)
        signed = device_edit(replica, lambda e: e.sign(STROKES, signer_name="J."))
        later = device_edit(
            replica, lambda e: e.add_material(article="A-1", quantity=2, unit="pcs")
        )
        await anna.push_all(WO, [signed, later])
        rejected = await submit(anna, "k-stale")
        assert [step["code"] for step in rejected["missing"]] == ["signature_stale"]


async def test_a_resume_diff_of_deletions_the_relay_already_has_is_not_refused() -> None:
    """A device's resume diff repeats its whole delete set; nothing in it is waiting."""
    async with field_relay() as h:
        await h.relay.edit(  # the office overwrites a field: the document now has deletions
            WO,
            lambda doc: WorkOrderEditor(doc, actor="office", role=Role.OFFICE).set_customer(
                name="Bakkerij Jansen"
            ),
            tenant="acme",
        )
        anna = h.connect(principal=ANNA)
        replica = await anna.open(WO)
        relay_state = (await h.relay.read(WO, tenant="acme")).get_state()
        deletions_only = replica.get_update(relay_state)
        assert deletions_only != b"\x00\x00"  # the delete set comes back every time
        await anna.push_all(WO, [deletions_only], first_seq=3)  # acknowledged, not refused
        assert (await stored_workorder(h)).customer.name == "Bakkerij Jansen"


async def test_a_released_work_order_still_takes_the_changes_made_before_until_retention_ends() -> (
    None
):
    now = [NOW]
    service = FieldService(release_retention=dt.timedelta(days=7), clock=lambda: now[0])
    async with field_relay(service=service) as h:
        anna = h.connect(principal=ANNA)
        replica = await anna.open(WO)
        offline_edit = device_edit(  # made while anna did not know yet
            replica,
            lambda e: e.add_hours(date=NOW.date(), start=NOW, end=NOW + dt.timedelta(hours=1)),
        )
        await h.relay.edit(
            "planning/anna",
            lambda doc: release_workorder(doc, "1001", released_at=NOW),
            tenant="acme",
        )
        await h.relay.edit(
            "planning/bram", lambda doc: assign_workorder(doc, "1001"), tenant="acme"
        )
        await anna.push_all(WO, [offline_edit])  # still taken: nothing lost
        assert len((await stored_workorder(h)).hours) == 1
        bram = h.connect(principal=BRAM)
        assert len(WorkOrder.from_doc(await bram.open(WO))[0].hours) == 1

        now[0] = NOW + dt.timedelta(days=8)  # the retention is over
        await h.relay.edit("planning/anna", lambda doc: create_planning_note(doc), tenant="acme")
        assert [code for code, _ in await refused(anna)] == [ErrorCode.FORBIDDEN]


def create_planning_note(doc: Doc[Any]) -> None:
    """Any change to anna's planning makes the relay read it again."""
    assign_workorder(doc, "2002")
