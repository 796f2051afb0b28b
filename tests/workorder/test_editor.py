"""The editor: device edits, refusals that write nothing, one transaction per edit, locking."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
from pycrdt import Doc, Map, Text

from crdtsync.exceptions import (
    EditNotAllowed,
    EntryNotFound,
    InvalidValue,
    SkeletonError,
    WorkOrderError,
    WorkOrderLocked,
)
from crdtsync.workorder import (
    AttachmentKind,
    Form,
    HourKind,
    Policy,
    Question,
    QuestionKind,
    RequiredSteps,
    Role,
    Status,
    WorkOrder,
    WorkOrderEditor,
    signature_valid,
)

from .conftest import Clock, EditorFactory

HASH = "0123456789abcdef" * 4
STROKES = [[(0.1, 0.2, 0), (0.3, 0.4, 12), (0.5, 0.5, 20)]]
FORMS = Policy(
    required=RequiredSteps(signer_name=True),
    forms=[
        Form(
            id="f1",
            title="Checks",
            questions=[
                Question(id="q_text", label="Remark", kind=QuestionKind.TEXT, max=10),
                Question(id="q_num", label="Pressure", kind=QuestionKind.NUMBER, min=0, max=5),
                Question(id="q_bool", label="Safe", kind=QuestionKind.BOOL),
                Question(id="q_pick", label="Result", kind=QuestionKind.CHOICE, choices=["ok"]),
                Question(id="q_date", label="Next visit", kind=QuestionKind.DATE),
            ],
        )
    ],
)


def read(doc: Doc[Any]) -> WorkOrder:
    workorder, problems = WorkOrder.from_doc(doc)
    assert problems == []
    return workorder


@pytest.fixture
def device(device_doc: Doc[Any], make_editor: EditorFactory) -> WorkOrderEditor:
    return make_editor(device_doc, policy=FORMS)


def transactions(doc: Doc[Any], action: Callable[[], object]) -> int:
    """How many transactions that changed something ``action`` ran on ``doc``."""
    count = [0]
    subscription = doc.observe(lambda event: count.__setitem__(0, count[0] + 1))
    try:
        action()
    finally:
        doc.unobserve(subscription)
    return count[0]


def test_editor_requires_the_skeleton(make_editor: EditorFactory) -> None:
    editor = make_editor(Doc())
    with pytest.raises(SkeletonError):
        editor.add_task("x")


def test_editor_arguments_are_checked(device_doc: Doc[Any]) -> None:
    with pytest.raises(InvalidValue):
        WorkOrderEditor(device_doc, actor=" ", role=Role.DEVICE)
    with pytest.raises(InvalidValue):
        WorkOrderEditor(device_doc, actor="a", role="boss")  # type: ignore[arg-type]


def test_naive_clock_is_refused(device_doc: Doc[Any]) -> None:
    editor = WorkOrderEditor(
        device_doc, actor="a", role=Role.DEVICE, clock=lambda: dt.datetime(2024, 1, 1)
    )
    with pytest.raises(InvalidValue, match="clock"):
        editor.start_timer()


def test_timer_creates_hours_in_one_transaction(device: WorkOrderEditor, clock: Clock) -> None:
    start = clock.now
    device.start_timer(HourKind.TRAVEL)
    assert read(device.doc).timers["tech1"].started_at == start
    with pytest.raises(InvalidValue, match="already running"):
        device.start_timer()
    clock.advance(minutes=45)
    entry_id: list[str] = []
    assert transactions(device.doc, lambda: entry_id.append(device.stop_timer(remark="x"))) == 1
    workorder = read(device.doc)
    assert workorder.timers == {}
    entry = workorder.hours[entry_id[0]]
    assert (entry.start, entry.end, entry.kind) == (start, clock.now, HourKind.TRAVEL)
    assert entry.duration_minutes == 45
    assert entry.technician == "tech1"
    assert isinstance(device.doc.get("hours", type=Map)[entry_id[0]], Map)
    with pytest.raises(InvalidValue, match="no timer"):
        device.stop_timer()


def test_timer_over_a_day_must_be_cancelled(device: WorkOrderEditor, clock: Clock) -> None:
    device.start_timer()
    clock.advance(hours=25)
    with pytest.raises(InvalidValue):
        device.stop_timer()
    device.cancel_timer()
    assert read(device.doc).timers == {}
    with pytest.raises(InvalidValue):
        device.cancel_timer()


def hours_args(clock: Clock, **overrides: Any) -> dict[str, Any]:
    values = {
        "date": clock.now.date(),
        "start": clock.now,
        "end": clock.now + dt.timedelta(hours=2),
    }
    return values | overrides


def test_hours_add_update_remove(device: WorkOrderEditor, clock: Clock) -> None:
    entry_id = device.add_hours(**hours_args(clock, break_minutes=10, remark="first"))
    device.update_hours(entry_id, remark="changed", break_minutes=0)
    entry = read(device.doc).hours[entry_id]
    assert (entry.remark, entry.break_minutes, entry.duration_minutes) == ("changed", 0, 120)
    with pytest.raises(InvalidValue) as info:
        device.update_hours(entry_id, end=clock.now - dt.timedelta(hours=1))
    assert info.value.field.startswith(f"hours.{entry_id}")
    device.remove_hours(entry_id)
    assert read(device.doc).hours == {}
    with pytest.raises(EntryNotFound) as missing:
        device.remove_hours(entry_id)
    assert (missing.value.collection, missing.value.entry_id) == ("hours", entry_id)


def test_update_writes_only_changed_keys(device: WorkOrderEditor, clock: Clock) -> None:
    entry_id = device.add_hours(**hours_args(clock))
    state = device.doc.get_state()
    device.update_hours(entry_id, remark="")
    assert device.doc.get_state() == state


def test_materials(device: WorkOrderEditor) -> None:
    entry_id = device.add_material(article="VALVE-22", quantity=2, warehouse="van")
    device.update_material(entry_id, quantity=1.5, warehouse=None)
    material = read(device.doc).materials[entry_id]
    assert (material.quantity, material.warehouse, material.unit) == (1.5, None, "pcs")
    assert "warehouse" not in device.doc.get("materials", type=Map)[entry_id]
    device.remove_material(entry_id)
    assert read(device.doc).materials == {}


def test_tasks_tick_and_untick(device: WorkOrderEditor, clock: Clock) -> None:
    task_id = device.add_task("Clean up")
    workorder = read(device.doc)
    assert workorder.sorted_tasks()[-1].id == task_id
    assert workorder.tasks[task_id].position == 2
    device.tick_task(task_id)
    task = read(device.doc).tasks[task_id]
    assert (task.done, task.done_at, task.done_by) == (True, clock.now, "tech1")
    device.untick_task(task_id)
    task = read(device.doc).tasks[task_id]
    assert (task.done, task.done_at, task.done_by) == (False, None, None)
    with pytest.raises(EntryNotFound):
        device.tick_task("nope")


@pytest.mark.parametrize(
    ("question", "value", "stored"),
    [
        ("q_text", "fine", "fine"),
        ("q_num", 4.5, 4.5),
        ("q_num", 0, 0),
        ("q_bool", False, False),
        ("q_pick", "ok", "ok"),
        ("q_date", dt.date(2024, 6, 1), "2024-06-01"),
        ("q_date", "2024-06-01", "2024-06-01"),
    ],
)
def test_answers_fit_the_form(
    device: WorkOrderEditor, question: str, value: object, stored: object
) -> None:
    device.answer(question, value)
    assert read(device.doc).answers[question] == stored


@pytest.mark.parametrize(
    ("question", "value"),
    [
        ("q_text", 5),
        ("q_text", "x" * 11),
        ("q_num", True),
        ("q_num", 6),
        ("q_num", float("nan")),
        ("q_bool", "yes"),
        ("q_pick", "bad"),
        ("q_date", "01-06-2024"),
        ("q_date", dt.datetime(2024, 6, 1, tzinfo=dt.UTC)),
        ("q_unknown", "x"),
        ("bad id", "x"),
    ],
)
def test_answers_refused(device: WorkOrderEditor, question: str, value: object) -> None:
    state = device.doc.get_state()
    with pytest.raises(InvalidValue) as info:
        device.answer(question, value)
    assert info.value.field == f"answers.{question}"
    assert device.doc.get_state() == state


def test_answers_without_policy_take_plain_json(
    device_doc: Doc[Any], make_editor: EditorFactory
) -> None:
    editor = make_editor(device_doc)
    editor.answer("anything", {"a": [1, 2]})
    with pytest.raises(InvalidValue):
        editor.answer("other", {1: "x"})
    with pytest.raises(InvalidValue):
        editor.answer("other", None)
    editor.clear_answer("anything")
    editor.clear_answer("anything")
    assert read(device_doc).answers == {}


def test_attachments_are_idempotent_per_blob(device: WorkOrderEditor, clock: Clock) -> None:
    args: dict[str, Any] = {"kind": AttachmentKind.PHOTO, "name": "a.jpg", "mime": "image/jpeg"}
    first = device.attach(HASH, size=10, **args)
    assert device.attach(HASH, size=10, **args) == first
    attachment = read(device.doc).attachments[first]
    assert (attachment.sha256, attachment.added_by, attachment.added_at) == (
        HASH,
        "tech1",
        clock.now,
    )
    device.remove_attachment(first)
    assert read(device.doc).attachments == {}


def test_notes_use_character_offsets(device: WorkOrderEditor) -> None:
    device.insert_notes(0, "Hé 😀 done")
    device.insert_notes(5, "!")
    device.replace_notes(3, 4, "🙂")
    device.delete_notes(0, 3)
    device.append_notes(".")
    assert read(device.doc).notes == "🙂 !done."
    device.set_notes("🙂! all done.")
    assert read(device.doc).notes == "🙂! all done."
    with pytest.raises(InvalidValue):
        device.insert_notes(100, "x")
    with pytest.raises(InvalidValue):
        device.replace_notes(3, 1, "x")


def test_set_notes_edits_only_the_difference(device: WorkOrderEditor) -> None:
    device.set_notes("alpha beta gamma")
    deltas: list[Any] = []
    text = device.doc.get("notes", type=Text)
    subscription = text.observe(lambda event: deltas.append(event.delta))
    device.set_notes("alpha BETA gamma")
    text.unobserve(subscription)
    inserted = "".join(op.get("insert", "") for delta in deltas for op in delta)
    assert inserted == "BETA"


def test_device_status(device: WorkOrderEditor) -> None:
    device.set_status(Status.IN_PROGRESS)
    assert read(device.doc).state.status_by == "tech1"
    device.set_status(Status.COMPLETED)
    for status in (Status.PLANNED, Status.SENT, Status.PROCESSED, "nonsense"):
        with pytest.raises(InvalidValue):
            device.set_status(status)  # type: ignore[arg-type]


def test_sign_records_the_content_hash(device: WorkOrderEditor, clock: Clock) -> None:
    signature = device.sign(STROKES, signer_name="J. Jansen")
    workorder = read(device.doc)
    assert workorder.signature == signature
    assert (signature.signed_at, signature.device) == (clock.now, "d1")
    assert signature_valid(workorder)
    device.set_status(Status.COMPLETED)
    assert signature_valid(read(device.doc))
    device.append_notes("later")
    assert not signature_valid(read(device.doc))
    device.clear_signature()
    assert read(device.doc).signature is None


@pytest.mark.parametrize(
    ("strokes", "name"),
    [
        ([], "Jan"),
        ([[(0.1, 0.1, 0)]], "Jan"),
        ([[(0.1, 0.1, 5), (0.2, 0.2, 1)]], "Jan"),
        ([[(0.1, 1.5, 0), (0.2, 0.2, 1)]], "Jan"),
        ([[(0.1, 0.1), (0.2, 0.2)]], "Jan"),
        ([[("a", 0.1, 0), (0.2, 0.2, 1)]], "Jan"),
        (STROKES, "  "),
    ],
)
def test_invalid_signatures_write_nothing(device: WorkOrderEditor, strokes: Any, name: str) -> None:
    state = device.doc.get_state()
    with pytest.raises(InvalidValue) as info:
        device.sign(strokes, signer_name=name)
    assert info.value.field.startswith("signature")
    assert device.doc.get_state() == state


def refused_calls(clock: Clock) -> list[tuple[str, Callable[[WorkOrderEditor], object]]]:
    late = clock.now - dt.timedelta(hours=1)
    return [
        ("hours end", lambda e: e.add_hours(**hours_args(clock, end=late))),
        (
            "hours naive",
            lambda e: e.add_hours(**hours_args(clock, start=late.replace(tzinfo=None))),
        ),
        ("hours kind", lambda e: e.add_hours(**hours_args(clock, kind="nap"))),
        ("material qty", lambda e: e.add_material(article="A", quantity=0)),
        ("material article", lambda e: e.add_material(article="", quantity=1)),
        ("task title", lambda e: e.add_task("")),
        (
            "attach hash",
            lambda e: e.attach("xyz", kind="photo", name="a", mime="image/png", size=1),
        ),
        ("attach mime", lambda e: e.attach(HASH, kind="photo", name="a", mime="png", size=1)),
        ("attach size", lambda e: e.attach(HASH, kind="photo", name="a", mime="a/b", size=-1)),
        ("attach kind", lambda e: e.attach(HASH, kind="video", name="a", mime="a/b", size=1)),
        ("notes surrogate", lambda e: e.insert_notes(0, "\ud800")),
        ("notes index", lambda e: e.delete_notes(0, 1)),
        ("status", lambda e: e.set_status(Status.SENT)),
    ]


def test_refused_calls_leave_the_state_vector(device: WorkOrderEditor, clock: Clock) -> None:
    for name, call in refused_calls(clock):
        state, update = device.doc.get_state(), device.doc.get_update()
        with pytest.raises(WorkOrderError):
            call(device)
        assert device.doc.get_state() == state, name
        assert device.doc.get_update() == update, name


def test_roles(device_doc: Doc[Any], make_editor: EditorFactory) -> None:
    viewer = make_editor(device_doc, role=Role.VIEWER)
    with pytest.raises(EditNotAllowed) as info:
        viewer.add_task("x")
    assert (info.value.role, info.value.operation) == ("viewer", "add a task")
    office = make_editor(device_doc, role=Role.OFFICE, actor="office")
    with pytest.raises(EditNotAllowed):
        office.sign(STROKES, signer_name="x")
    with pytest.raises(EditNotAllowed):
        office.start_timer()
    with pytest.raises(EditNotAllowed):
        make_editor(device_doc).mark_sent("s1")
    with pytest.raises(EditNotAllowed):
        make_editor(device_doc).reopen()


def test_sent_work_order_is_locked_for_devices(
    device: WorkOrderEditor, make_editor: EditorFactory
) -> None:
    relay = make_editor(device.doc, role=Role.RELAY, actor="relay")
    relay.mark_sent("sub-1")
    relay.mark_sent("sub-1")
    with pytest.raises(InvalidValue):
        relay.mark_sent("sub-2")
    workorder = read(device.doc)
    assert (workorder.status, workorder.state.submission_id) == (Status.SENT, "sub-1")
    state = device.doc.get_state()
    with pytest.raises(WorkOrderLocked) as info:
        device.append_notes("late")
    assert (info.value.status, info.value.operation) == ("sent", "edit notes")
    with pytest.raises(WorkOrderLocked):
        device.set_status(Status.IN_PROGRESS)
    assert device.doc.get_state() == state
    office = make_editor(device.doc, role=Role.OFFICE, actor="office")
    office.add_task("office may still edit")
    office.reopen()
    device.append_notes("after reopening")
    assert read(device.doc).status is Status.IN_PROGRESS


def test_every_edit_is_one_transaction(
    device: WorkOrderEditor, make_editor: EditorFactory, clock: Clock
) -> None:
    office = make_editor(device.doc, role=Role.OFFICE, actor="office")
    relay = make_editor(device.doc, role=Role.RELAY, actor="relay")
    entry: list[str] = [device.add_hours(**hours_args(clock))]
    task = next(iter(read(device.doc).tasks))
    edits: list[Callable[[], object]] = [
        lambda: device.add_hours(**hours_args(clock, remark="r")),
        lambda: device.update_hours(entry[0], remark="x", break_minutes=5),
        lambda: device.tick_task(task),
        lambda: device.untick_task(task),
        lambda: device.set_status(Status.IN_PROGRESS),
        lambda: device.set_notes("several words here"),
        lambda: device.set_notes("several other words"),
        lambda: device.sign(STROKES, signer_name="C"),
        lambda: office.set_planning(technician="anna", planned_date=clock.now.date()),
        lambda: office.set_customer(name="N", phone="1", city=None),
        lambda: relay.mark_sent("s"),
        lambda: office.reopen(),
    ]
    for index, edit in enumerate(edits):
        clock.advance(minutes=1)
        assert transactions(device.doc, edit) == 1, index
