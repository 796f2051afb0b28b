"""Merge semantics of the layout: replicas edit apart, exchange updates, nothing is lost."""

from __future__ import annotations

from typing import Any

import pytest
from pycrdt import Doc

from crdtsync.workorder import (
    Policy,
    RequiredSteps,
    Role,
    Status,
    StepCode,
    WorkOrder,
    WorkOrderEditor,
    missing_steps,
    signature_valid,
)

from .conftest import Clock, EditorFactory, sync

STROKES = [[(0.1, 0.1, 0), (0.9, 0.9, 40)]]


def replica_with(office_doc: Doc[Any], client_id: int) -> Doc[Any]:
    doc: Doc[Any] = Doc(client_id=client_id)
    doc.apply_update(office_doc.get_update())
    return doc


def read(doc: Doc[Any]) -> WorkOrder:
    workorder, problems = WorkOrder.from_doc(doc)
    assert problems == []
    return workorder


@pytest.fixture(params=[(101, 202), (202, 101)], ids=["a-low", "a-high"])
def pair(request: pytest.FixtureRequest, office_doc: Doc[Any]) -> tuple[Doc[Any], Doc[Any]]:
    first, second = request.param
    return replica_with(office_doc, first), replica_with(office_doc, second)


def test_two_technicians_adding_hours_offline_keep_both(
    office_doc: Doc[Any],
    pair: tuple[Doc[Any], Doc[Any]],
    make_editor: EditorFactory,
    clock: Clock,
) -> None:
    a, b = pair
    make_editor(a, actor="anna").start_timer()
    make_editor(b, actor="bert").start_timer()
    clock.advance(hours=1)
    id_a = make_editor(a, actor="anna").stop_timer()
    id_b = make_editor(b, actor="bert").stop_timer()
    sync(office_doc, a, b)
    for doc in (office_doc, a, b):
        hours = read(doc).hours
        assert set(hours) == {id_a, id_b}
        assert {entry.technician for entry in hours.values()} == {"anna", "bert"}
        assert read(doc).timers == {}


def test_concurrent_customer_fields_both_survive(
    pair: tuple[Doc[Any], Doc[Any]], make_editor: EditorFactory
) -> None:
    a, b = pair
    make_editor(a, role=Role.OFFICE, actor="o1").set_customer(name="ACME Holding")
    make_editor(b, role=Role.OFFICE, actor="o2").set_customer(phone="030-1234567")
    sync(a, b)
    for doc in (a, b):
        customer = read(doc).customer
        assert (customer.name, customer.phone, customer.city) == (
            "ACME Holding",
            "030-1234567",
            "Utrecht",
        )


def test_concurrent_notes_merge_by_character(
    office_doc: Doc[Any], pair: tuple[Doc[Any], Doc[Any]], make_editor: EditorFactory
) -> None:
    make_editor(office_doc).set_notes("valve replaced")
    a, b = pair
    sync(office_doc, a, b)
    make_editor(a, actor="anna").set_notes("Old valve replaced")
    make_editor(b, actor="bert").set_notes("valve replaced, tested OK")
    sync(a, b)
    assert read(a).notes == read(b).notes == "Old valve replaced, tested OK"


def test_signature_before_a_later_change_is_stale(
    pair: tuple[Doc[Any], Doc[Any]], make_editor: EditorFactory
) -> None:
    a, b = pair
    policy = Policy(required=RequiredSteps(signature=True))
    make_editor(a, actor="anna").sign(STROKES, signer_name="Customer")
    assert missing_steps(read(a), policy) == []
    make_editor(b, actor="bert").add_material(article="SEAL", quantity=1)
    sync(a, b)
    workorder = read(a)
    assert workorder.signature is not None
    assert not signature_valid(workorder)
    assert [step.code for step in missing_steps(workorder, policy)] == [StepCode.SIGNATURE_STALE]
    make_editor(a, actor="anna").sign(STROKES, signer_name="Customer")
    assert missing_steps(read(a), policy) == []


def test_offline_status_write_cannot_unlock_a_sent_work_order(
    office_doc: Doc[Any], pair: tuple[Doc[Any], Doc[Any]], make_editor: EditorFactory
) -> None:
    relay_doc, device_doc = pair
    make_editor(relay_doc, role=Role.RELAY, actor="relay").mark_sent("sub-1")
    make_editor(device_doc, actor="bert").set_status(Status.IN_PROGRESS)
    sync(relay_doc, device_doc)
    for doc in (relay_doc, device_doc):
        assert read(doc).status is Status.SENT
    late: WorkOrderEditor = make_editor(device_doc, actor="bert")
    assert late.status() is Status.SENT


def test_ticks_and_answers_from_two_devices(
    pair: tuple[Doc[Any], Doc[Any]], make_editor: EditorFactory
) -> None:
    a, b = pair
    first, second = read(a).sorted_tasks()
    make_editor(a, actor="anna").tick_task(first.id)
    make_editor(b, actor="bert").tick_task(second.id)
    make_editor(a, actor="anna").answer("q1", "yes")
    make_editor(b, actor="bert").answer("q2", 3)
    sync(a, b)
    workorder = read(b)
    assert all(task.done for task in workorder.tasks.values())
    assert workorder.answers == {"q1": "yes", "q2": 3}
