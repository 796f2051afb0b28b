"""check_changes: which role may write what, checked on changes seen by a real watch."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from pycrdt import Doc, Map

from crdtsync.workorder import (
    ChangeAction,
    FieldChange,
    Policy,
    Role,
    Violation,
    ViolationCode,
    WorkOrderWatch,
    check_changes,
    create_workorder,
)

from .conftest import Clock, EditorFactory, replica

STROKES = [[(0.1, 0.1, 0), (0.2, 0.2, 5)]]


def changes_of(base: Doc[Any], edit: Callable[[Doc[Any]], object]) -> list[FieldChange]:
    """The changes a watched replica of ``base`` sees when another replica runs ``edit``."""
    watched, writer = replica(base), replica(base)
    watch = WorkOrderWatch(watched)
    edit(writer)
    watched.apply_update(writer.get_update(watched.get_state()))
    return watch.collect()


def fields(violations: list[Violation]) -> list[tuple[str, ViolationCode]]:
    return [(v.field, v.code) for v in violations]


def test_a_normal_day_of_device_work_is_allowed(
    office_doc: Doc[Any], make_editor: EditorFactory, clock: Clock
) -> None:
    def work(doc: Doc[Any]) -> None:
        editor = make_editor(doc)
        editor.set_status("in_progress")  # type: ignore[arg-type]
        editor.start_timer()
        clock.advance(hours=1)
        editor.stop_timer()
        editor.start_timer()
        editor.add_material(article="A", quantity=1)
        editor.tick_task(next(iter(doc.get("tasks", type=Map).keys())))
        editor.answer("q1", "ok")
        editor.attach("ab" * 32, kind="photo", name="p", mime="image/png", size=1)  # type: ignore[arg-type]
        editor.set_notes("done")
        editor.sign(STROKES, signer_name="C")
        editor.set_status("completed")  # type: ignore[arg-type]

    changes = changes_of(office_doc, work)
    assert check_changes(changes, Role.DEVICE, technician="tech1") == []
    assert check_changes(changes, Role.RELAY) == []
    assert [v.code for v in check_changes(changes, Role.OFFICE)] == [ViolationCode.ROLE]


def test_office_creation_is_allowed() -> None:
    doc: Doc[Any] = Doc()
    watch = WorkOrderWatch(doc)
    create_workorder(doc, id="wo9", number="9", tasks=["a"], description="d")
    assert check_changes(watch.collect(), Role.OFFICE) == []


def test_device_may_not_write_office_fields(
    office_doc: Doc[Any], make_editor: EditorFactory
) -> None:
    def tamper(doc: Doc[Any]) -> None:
        doc.get("customer", type=Map)["name"] = "Mallory"
        doc.get("planning", type=Map)["technician"] = "tech1"
        doc.get("state", type=Map)["processed_at"] = "2024-01-01T00:00:00+00:00"

    violations = check_changes(changes_of(office_doc, tamper), Role.DEVICE)
    assert sorted(fields(violations)) == [
        ("customer.name", ViolationCode.READONLY),
        ("planning.technician", ViolationCode.READONLY),
        ("state.processed_at", ViolationCode.READONLY),
    ]
    assert check_changes(changes_of(office_doc, tamper), Role.OFFICE) == []


@pytest.mark.parametrize(
    ("value", "device", "office"),
    [
        ("in_progress", False, False),
        ("completed", False, False),
        ("planned", True, False),
        ("processed", True, False),
        ("sent", True, True),
        ("bogus", True, True),
        (2.5, True, True),
    ],
)
def test_status_values(office_doc: Doc[Any], value: object, device: bool, office: bool) -> None:
    changes = changes_of(
        office_doc, lambda doc: doc.get("state", type=Map).update({"status": value})
    )
    for role, refused in ((Role.DEVICE, device), (Role.OFFICE, office)):
        violations = check_changes(changes, role)
        assert bool(violations) is refused
        if refused:
            assert fields(violations) == [(f"state.status={value}", ViolationCode.STATUS)]


def test_submission_fields_are_the_relays(office_doc: Doc[Any]) -> None:
    def submit(doc: Doc[Any]) -> None:
        doc.get("state", type=Map).update({"submission_id": "s", "sent_at": "x"})
        del doc.get("state", type=Map)["status"]

    changes = changes_of(office_doc, submit)
    lax = Policy(device_readonly=())
    for role in (Role.DEVICE, Role.OFFICE):
        assert sorted(fields(check_changes(changes, role, lax))) == [
            ("state.sent_at", ViolationCode.RELAY_ONLY),
            ("state.status", ViolationCode.STATUS),
            ("state.submission_id", ViolationCode.RELAY_ONLY),
        ]
    assert check_changes(changes, Role.RELAY) == []


def test_policy_decides_device_readonly(office_doc: Doc[Any]) -> None:
    changes = changes_of(
        office_doc, lambda doc: doc.get("customer", type=Map).update({"phone": "1"})
    )
    assert check_changes(changes, Role.DEVICE)
    assert check_changes(changes, Role.DEVICE, Policy(device_readonly=("meta",))) == []
    strict = Policy(device_readonly=("hours", "state.status_by"))
    hours = FieldChange("hours", "remark", ("e1",), "x")
    assert fields(check_changes([hours], Role.DEVICE, strict)) == [
        ("hours.e1.remark", ViolationCode.READONLY)
    ]


def test_unknown_roots_and_viewers(office_doc: Doc[Any]) -> None:
    changes = changes_of(office_doc, lambda doc: doc.get("evil", type=Map).update({"x": 1}))
    for role in (Role.DEVICE, Role.OFFICE):
        assert fields(check_changes(changes, role)) == [("evil", ViolationCode.UNKNOWN_ROOT)]
    assert check_changes(changes, Role.RELAY) == []
    viewer = check_changes(
        [FieldChange("notes", None, (), [{"insert": "x"}], ChangeAction.EDIT)], Role.VIEWER
    )
    assert fields(viewer) == [("notes", ViolationCode.READ_ONLY_ROLE)]


def test_layout_shape_is_enforced(office_doc: Doc[Any]) -> None:
    entry_id = next(iter(office_doc.get("tasks", type=Map).keys()))

    def break_layout(doc: Doc[Any]) -> None:
        doc.get("hours", type=Map)["atomic"] = {"date": "2024-01-01"}
        doc.get("tasks", type=Map)[entry_id] = Map({"title": "replaced"})
        doc.get("materials", type=Map)["deep"] = Map({"nested": Map({"a": 1})})
        doc.get("customer", type=Map)["name"] = Map({"first": "x"})
        doc.get("timers", type=Map)["tech1"] = Map({"started_at": "x"})

    violations = fields(check_changes(changes_of(office_doc, break_layout), Role.OFFICE))
    assert sorted(violations) == sorted(
        [
            ("hours.atomic", ViolationCode.SHAPE),
            (f"tasks.{entry_id}", ViolationCode.SHAPE),
            ("materials.deep", ViolationCode.SHAPE),
            ("customer.name", ViolationCode.SHAPE),
            ("timers.tech1", ViolationCode.SHAPE),
        ]
    )
    opaque = FieldChange("customer", None, (), None, ChangeAction.OPAQUE)
    embed = FieldChange("notes", None, (), [{"insert": {"img": 1}}], ChangeAction.EDIT)
    array_in_map = FieldChange("answers", None, ("q1",), [{"insert": [1]}], ChangeAction.EDIT)
    second_signature = FieldChange("signature", "spare", (), {}, ChangeAction.ADD)
    found = check_changes([opaque, embed, array_in_map, second_signature], Role.DEVICE)
    assert [v.code for v in found] == [ViolationCode.SHAPE] * 4


def test_identity_is_written_once(office_doc: Doc[Any]) -> None:
    changes = changes_of(office_doc, lambda doc: doc.get("meta", type=Map).update({"id": "other"}))
    assert fields(check_changes(changes, Role.OFFICE)) == [("meta.id", ViolationCode.IMMUTABLE)]
    ref = changes_of(
        office_doc, lambda doc: doc.get("meta", type=Map).update({"external_ref": "E"})
    )
    assert check_changes(ref, Role.OFFICE) == []


def test_device_runs_only_its_own_timer(office_doc: Doc[Any], make_editor: EditorFactory) -> None:
    changes = changes_of(office_doc, lambda doc: make_editor(doc, actor="bert").start_timer())
    assert check_changes(changes, Role.DEVICE) == []
    assert fields(check_changes(changes, Role.DEVICE, technician="anna")) == [
        ("timers.bert", ViolationCode.READONLY)
    ]
    assert check_changes(changes, Role.DEVICE, technician="bert") == []


def test_violations_are_deduplicated() -> None:
    change = FieldChange("customer", "name", (), "x")
    assert len(check_changes([change, change], Role.DEVICE)) == 1
