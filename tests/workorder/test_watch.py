"""WorkOrderWatch: a device's update applied to a watched replica yields its field changes."""

from __future__ import annotations

import gc
from typing import Any

import pytest
from pycrdt import Array, Doc, Map, Text

from crdtsync.workorder import ChangeAction, FieldChange, WorkOrderWatch, unknown_roots

from .conftest import Clock, EditorFactory, replica


def deliver(source: Doc[Any], target: Doc[Any]) -> None:
    target.apply_update(source.get_update(target.get_state()))


@pytest.fixture
def watched(office_doc: Doc[Any]) -> tuple[Doc[Any], WorkOrderWatch]:
    doc = replica(office_doc)
    return doc, WorkOrderWatch(doc)


def test_scalar_and_status_changes(
    watched: tuple[Doc[Any], WorkOrderWatch],
    device_doc: Doc[Any],
    make_editor: EditorFactory,
) -> None:
    doc, watch = watched
    make_editor(device_doc).set_status("in_progress")  # type: ignore[arg-type]
    deliver(device_doc, doc)
    changes = {change.field: change for change in watch.collect()}
    assert set(changes) == {"state.status", "state.status_at", "state.status_by"}
    status = changes["state.status"]
    assert (status.root, status.key, status.path) == ("state", "status", ())
    assert (status.new_value, status.action, status.shared) == (
        "in_progress",
        ChangeAction.UPDATE,
        False,
    )
    assert changes["state.status_by"].new_value == "tech1"
    assert watch.collect() == []


def test_entries_nested_keys_text_and_deletes(
    watched: tuple[Doc[Any], WorkOrderWatch],
    device_doc: Doc[Any],
    make_editor: EditorFactory,
    clock: Clock,
) -> None:
    doc, watch = watched
    editor = make_editor(device_doc)
    entry_id = editor.add_material(article="VALVE", quantity=2)
    deliver(device_doc, doc)
    [added] = watch.collect()
    assert (added.root, added.key, added.path, added.action) == (
        "materials",
        entry_id,
        (),
        ChangeAction.ADD,
    )
    assert added.shared
    assert added.new_value == {
        "article": "VALVE",
        "quantity": 2.0,
        "unit": "pcs",
        "description": "",
    }
    editor.update_material(entry_id, quantity=3)
    editor.insert_notes(0, "hello")
    deliver(device_doc, doc)
    changes = watch.collect()
    assert FieldChange("materials", "quantity", (entry_id,), 3.0, ChangeAction.UPDATE) in changes
    assert FieldChange("notes", None, (), [{"insert": "hello"}], ChangeAction.EDIT) in changes
    assert changes[0].field in {f"materials.{entry_id}.quantity", "notes"}
    editor.remove_material(entry_id)
    deliver(device_doc, doc)
    assert watch.collect() == [FieldChange("materials", entry_id, (), None, ChangeAction.DELETE)]


def test_content_added_and_removed_within_one_update_is_not_reported(
    watched: tuple[Doc[Any], WorkOrderWatch],
    device_doc: Doc[Any],
    make_editor: EditorFactory,
    clock: Clock,
) -> None:
    doc, watch = watched
    editor = make_editor(device_doc)
    editor.start_timer()
    clock.advance(minutes=5)
    editor.stop_timer()
    deliver(device_doc, doc)
    assert {change.root for change in watch.collect()} == {"hours"}


def test_foreign_content_and_new_roots(watched: tuple[Doc[Any], WorkOrderWatch]) -> None:
    doc, watch = watched
    rogue = replica(doc)
    rogue.get("customer", type=Array).append("not a map entry")
    rogue.get("notes", type=Map)["k"] = "not text"
    rogue.get("evil", type=Map)["payload"] = 1
    deliver(rogue, doc)
    changes = watch.collect()
    assert [(c.root, c.action) for c in changes] == [
        ("customer", ChangeAction.OPAQUE),
        ("notes", ChangeAction.OPAQUE),
        ("evil", ChangeAction.NEW_ROOT),
    ]
    assert unknown_roots(doc) == ["evil"]
    rogue.get("evil", type=Map)["payload"] = 2
    deliver(rogue, doc)
    assert watch.collect() == []


def test_watch_survives_garbage_collection_and_closes(
    office_doc: Doc[Any], device_doc: Doc[Any], make_editor: EditorFactory
) -> None:
    doc = replica(office_doc)
    with WorkOrderWatch(doc) as watch:
        gc.collect()
        make_editor(device_doc).append_notes("x")
        deliver(device_doc, doc)
        assert [c.root for c in watch.collect()] == ["notes"]
    make_editor(device_doc).append_notes("y")
    deliver(device_doc, doc)
    assert watch.collect() == []
    watch.close()


def test_local_writes_are_seen_too(office_doc: Doc[Any]) -> None:
    watch = WorkOrderWatch(office_doc)
    office_doc.get("description", type=Text).insert(0, "Urgent: ")
    assert [c.field for c in watch.collect()] == ["description"]


def test_unknown_roots_of_a_clean_document(office_doc: Doc[Any]) -> None:
    assert unknown_roots(office_doc) == []
    assert unknown_roots(office_doc, known={}) == sorted(office_doc.keys())
