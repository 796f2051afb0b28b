"""Required steps before sending, and snapshots and diffs after sending."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from pycrdt import Doc

from crdtsync.exceptions import SubmissionBlocked
from crdtsync.workorder import (
    AttachmentKind,
    Form,
    HourKind,
    MissingStep,
    Policy,
    Question,
    QuestionKind,
    RequiredSteps,
    Role,
    StepCode,
    WorkOrder,
    WorkOrderEditor,
    diff_snapshots,
    missing_steps,
    require_sendable,
    snapshot_json,
)

from .conftest import Clock, EditorFactory

PHOTO_A, PHOTO_B, FILE = "a" * 64, "b" * 64, "c" * 64
POLICY = Policy(
    required=RequiredSteps(
        signature=True, signer_name=True, min_photos=2, hours=True, all_tasks_done=True
    ),
    forms=[
        Form(
            id="f",
            title="F",
            questions=[
                Question(id="q1", label="Q1", kind=QuestionKind.NUMBER, required=True, max=5),
                Question(id="q2", label="Q2", kind=QuestionKind.TEXT, required=True),
                Question(id="q3", label="Q3", kind=QuestionKind.BOOL),
            ],
        )
    ],
)


def read(doc: Doc[Any]) -> WorkOrder:
    return WorkOrder.from_doc(doc)[0]


def codes(steps: list[MissingStep]) -> list[StepCode]:
    return [step.code for step in steps]


@pytest.fixture
def device(device_doc: Doc[Any], make_editor: EditorFactory) -> WorkOrderEditor:
    return make_editor(device_doc)


def test_nothing_required_means_sendable(device: WorkOrderEditor) -> None:
    assert missing_steps(read(device.doc), Policy()) == []
    require_sendable(read(device.doc), Policy())


def test_everything_missing_in_order(device: WorkOrderEditor) -> None:
    steps = missing_steps(read(device.doc), POLICY)
    assert codes(steps) == [
        StepCode.SIGNATURE,
        StepCode.PHOTOS,
        StepCode.HOURS,
        StepCode.TASKS,
        StepCode.FORM_ANSWER,
    ]
    photos, hours, tasks, answers = steps[1:]
    assert (photos.have, photos.need) == (0, 2)
    assert (hours.have, hours.need) == (0, 1)
    assert (tasks.have, tasks.need) == (0, 2)
    assert tasks.ids == [task.id for task in read(device.doc).sorted_tasks()]
    assert answers.ids == ["q1", "q2"]
    assert all(step.message for step in steps)
    with pytest.raises(SubmissionBlocked) as info:
        require_sendable(read(device.doc), POLICY)
    assert [step.code for step in info.value.missing] == codes(steps)


def complete(device: WorkOrderEditor, clock: Clock) -> None:
    for task in read(device.doc).tasks.values():
        device.tick_task(task.id)
    end = clock.now + dt.timedelta(hours=1)
    device.add_hours(date=clock.now.date(), start=clock.now, end=end)
    for sha in (PHOTO_A, PHOTO_B):
        device.attach(sha, kind=AttachmentKind.PHOTO, name="p.jpg", mime="image/jpeg", size=1)
    device.answer("q1", 3)
    device.answer("q2", "fine")
    device.sign([[(0, 0, 0), (1, 1, 9)]], signer_name="Customer")


def test_completed_work_order_is_sendable(device: WorkOrderEditor, clock: Clock) -> None:
    complete(device, clock)
    assert missing_steps(read(device.doc), POLICY) == []


def test_partial_progress(device: WorkOrderEditor, clock: Clock) -> None:
    complete(device, clock)
    first = read(device.doc).sorted_tasks()[0].id
    device.untick_task(first)
    device.sign([[(0, 0, 0), (1, 1, 9)]], signer_name=" ")
    steps = missing_steps(read(device.doc), POLICY)
    assert codes(steps) == [StepCode.SIGNER_NAME, StepCode.TASKS]
    assert steps[1].ids == [first]


def test_stale_signature_and_invalid_answer(device: WorkOrderEditor, clock: Clock) -> None:
    complete(device, clock)
    device.answer("q1", 9)
    device.answer("q3", "not a bool")
    steps = missing_steps(read(device.doc), POLICY)
    assert codes(steps) == [StepCode.SIGNATURE_STALE, StepCode.FORM_ANSWER_INVALID]
    assert steps[1].ids == ["q1", "q3"]


def test_photos_count_distinct_photo_blobs(device: WorkOrderEditor, clock: Clock) -> None:
    complete(device, clock)
    attachments = read(device.doc).attachments
    device.remove_attachment(next(i for i, a in attachments.items() if a.sha256 == PHOTO_B))
    device.attach(FILE, kind=AttachmentKind.FILE, name="f.pdf", mime="application/pdf", size=1)
    steps = missing_steps(read(device.doc), POLICY)
    photos = next(step for step in steps if step.code is StepCode.PHOTOS)
    assert (photos.have, photos.need) == (1, 2)


def test_pause_is_not_hours(device: WorkOrderEditor, clock: Clock) -> None:
    end = clock.now + dt.timedelta(minutes=30)
    device.add_hours(date=clock.now.date(), start=clock.now, end=end, kind=HourKind.PAUSE)
    policy = Policy(required=RequiredSteps(hours=True))
    assert codes(missing_steps(read(device.doc), policy)) == [StepCode.HOURS]


def test_running_timer_and_missing_blobs(device: WorkOrderEditor, clock: Clock) -> None:
    complete(device, clock)
    device.start_timer()
    workorder = read(device.doc)
    steps = missing_steps(workorder, POLICY, blobs_present={PHOTO_A})
    assert codes(steps) == [StepCode.TIMER_RUNNING, StepCode.BLOBS_MISSING]
    assert (steps[0].ids, steps[1].ids) == (["tech1"], [PHOTO_B])
    relaxed = Policy(required=RequiredSteps(no_running_timers=False))
    assert missing_steps(workorder, relaxed, blobs_present={PHOTO_A, PHOTO_B}) == []


def test_missing_steps_serialise_for_the_api(device: WorkOrderEditor) -> None:
    steps = missing_steps(read(device.doc), POLICY)
    data = json.loads(json.dumps([step.model_dump(mode="json") for step in steps]))
    assert data[0] == {
        "code": "signature",
        "message": "The customer has not signed.",
        "have": None,
        "need": None,
        "ids": [],
    }


def test_diff_after_sending(
    device: WorkOrderEditor, make_editor: EditorFactory, clock: Clock
) -> None:
    complete(device, clock)
    make_editor(device.doc, role=Role.RELAY, actor="relay").mark_sent("sub-1")
    sent = snapshot_json(read(device.doc))
    assert json.loads(json.dumps(sent)) == sent
    clock.advance(minutes=5)
    office = make_editor(device.doc, role=Role.OFFICE, actor="office")
    office.reopen()
    entry_id = device.add_material(article="SEAL", quantity=1)
    device.answer("q1", 4)
    device.append_notes("extra")
    office.set_customer(phone="1")
    changed = diff_snapshots(sent, snapshot_json(read(device.doc)))
    assert changed == [
        "answers.q1",
        "customer.phone",
        f"materials.{entry_id}",
        "notes",
        "state.reopened_at",
        "state.status",
        "state.status_at",
        "state.status_by",
        "state.submission_id",
    ]
    assert diff_snapshots(sent, sent) == []


def test_diff_handles_missing_and_odd_parts() -> None:
    old = {"signature": None, "hours": {"a": 1}, "extra": 1}
    new = {"signature": {"x": 1}, "extra": 2, "customer": {"name": "n"}}
    assert diff_snapshots(old, new) == ["customer.name", "extra", "hours.a", "signature"]
    assert diff_snapshots({"tasks": 5}, {"tasks": {"a": 1}}) == ["tasks"]
