"""Office operations: planning, customer data, descriptions, processed and reopen."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from pycrdt import Doc, Text

from crdtsync.exceptions import EditNotAllowed, EntryNotFound, InvalidValue
from crdtsync.workorder import Role, Status, WorkOrder, WorkOrderEditor

from .conftest import Clock, EditorFactory


@pytest.fixture
def office(office_doc: Doc[Any], make_editor: EditorFactory) -> WorkOrderEditor:
    return make_editor(office_doc, role=Role.OFFICE, actor="planner")


def read(doc: Doc[Any]) -> WorkOrder:
    return WorkOrder.from_doc(doc)[0]


def test_planning_promotes_a_registered_work_order(office: WorkOrderEditor, clock: Clock) -> None:
    day = clock.now.date() + dt.timedelta(days=1)
    start = clock.now + dt.timedelta(days=1)
    schedule = office.set_planning(planned_date=day, planned_start=start)
    assert schedule.planned_date == day
    assert read(office.doc).status is Status.REGISTERED
    office.set_planning(technician="anna")
    workorder = read(office.doc)
    assert workorder.status is Status.PLANNED
    assert workorder.planning.technician == "anna"
    assert workorder.state.status_by == "planner"
    office.set_planning(planned_start=None)
    assert read(office.doc).planning.planned_start is None


def test_planning_is_validated_as_a_whole(office: WorkOrderEditor, clock: Clock) -> None:
    office.set_planning(planned_start=clock.now + dt.timedelta(hours=2))
    state = office.doc.get_state()
    with pytest.raises(InvalidValue, match="planned_end"):
        office.set_planning(planned_end=clock.now)
    with pytest.raises(InvalidValue):
        office.set_planning(technician="not an id")
    with pytest.raises(InvalidValue):
        office.set_planning(deadline=dt.datetime(2024, 1, 1))
    assert office.doc.get_state() == state


def test_customer_and_delivery(office: WorkOrderEditor) -> None:
    office.set_customer(name="ACME B.V.", phone="+31 30 123", city=None)
    office.set_delivery(street="Dorpsstraat 1", city="Zeist")
    workorder = read(office.doc)
    assert (workorder.customer.name, workorder.customer.phone) == ("ACME B.V.", "+31 30 123")
    assert workorder.customer.city is None
    assert workorder.customer.email == "info@acme.example"
    assert workorder.delivery.city == "Zeist"
    with pytest.raises(InvalidValue) as info:
        office.set_customer(nickname="x")
    assert info.value.field == "customer.nickname"
    with pytest.raises(InvalidValue):
        office.set_customer(email="nope")


def test_descriptions_and_meta(office: WorkOrderEditor) -> None:
    office.set_short_description("Noisy boiler")
    office.set_description("Boiler makes a loud noise.")
    office.set_meta(external_ref="ERP-77", work_type="repair")
    workorder = read(office.doc)
    assert workorder.info.short_description == "Noisy boiler"
    assert workorder.description == "Boiler makes a loud noise."
    assert (workorder.meta.external_ref, workorder.meta.work_type) == ("ERP-77", "repair")
    assert str(office.doc.get("description", type=Text)) == workorder.description
    with pytest.raises(InvalidValue):
        office.set_meta(number=" ")
    with pytest.raises(InvalidValue):
        office.set_short_description("x" * 501)


def test_remove_task(office: WorkOrderEditor) -> None:
    task_id = next(iter(read(office.doc).tasks))
    office.remove_task(task_id)
    assert task_id not in read(office.doc).tasks
    with pytest.raises(EntryNotFound):
        office.remove_task(task_id)


def test_processed_and_reopen(office: WorkOrderEditor, make_editor: EditorFactory) -> None:
    with pytest.raises(InvalidValue):
        office.mark_processed()
    with pytest.raises(InvalidValue):
        office.reopen()
    make_editor(office.doc, role=Role.RELAY, actor="relay").mark_sent("sub-1")
    office.mark_processed()
    workorder = read(office.doc)
    assert workorder.status is Status.PROCESSED
    assert workorder.state.processed_at is not None
    with pytest.raises(InvalidValue):
        office.set_status(Status.IN_PROGRESS)
    office.reopen()
    workorder = read(office.doc)
    assert workorder.status is Status.IN_PROGRESS
    assert workorder.state.submission_id is None
    assert workorder.state.processed_at is None
    assert workorder.state.reopened_at is not None
    assert workorder.state.sent_at is not None


def test_office_statuses(office: WorkOrderEditor) -> None:
    office.set_status(Status.PLANNED)
    office.set_status(Status.COMPLETED)
    for status in (Status.SENT, Status.PROCESSED):
        with pytest.raises(InvalidValue):
            office.set_status(status)


def test_devices_may_not_use_office_operations(
    device_doc: Doc[Any], make_editor: EditorFactory
) -> None:
    device = make_editor(device_doc)
    for call in (
        lambda: device.set_planning(technician="anna"),
        lambda: device.set_customer(name="x"),
        lambda: device.set_description("x"),
        lambda: device.mark_processed(),
        lambda: device.remove_task("x"),
    ):
        with pytest.raises(EditNotAllowed):
            call()
