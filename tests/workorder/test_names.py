"""Document names: builders, parsing, the id alphabet."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crdtsync.exceptions import InvalidDocumentName, InvalidValue
from crdtsync.protocol import validate_document_name
from crdtsync.workorder import (
    SETTINGS_DOCUMENT,
    DocumentKind,
    is_valid_id,
    office_document,
    parse_document_name,
    planning_document,
    workorder_document,
)

ids = st.from_regex(r"[A-Za-z0-9_-]{1,64}", fullmatch=True)


def test_builders() -> None:
    assert workorder_document("1001") == "wo/1001"
    assert office_document("1001") == "office/1001"
    assert planning_document("anna") == "planning/anna"
    assert SETTINGS_DOCUMENT == "settings"


@given(ids)
def test_round_trip_and_wire_valid(id: str) -> None:
    for build, kind in (
        (workorder_document, DocumentKind.WORKORDER),
        (office_document, DocumentKind.OFFICE),
        (planning_document, DocumentKind.PLANNING),
    ):
        name = build(id)
        assert parse_document_name(name) == (kind, id)
        assert validate_document_name(name) == name


def test_settings_parses_without_id() -> None:
    assert parse_document_name("settings") == (DocumentKind.SETTINGS, None)


@pytest.mark.parametrize("bad", ["", "a/b", "wo 1", "wö", "x" * 65, "../etc", "wo/1", None, 12])
def test_invalid_ids_refused(bad: object) -> None:
    assert not is_valid_id(bad)
    with pytest.raises(InvalidValue) as info:
        workorder_document(bad)  # type: ignore[arg-type]
    assert info.value.field == "id"


@pytest.mark.parametrize(
    "name",
    ["", "wo", "wo/", "wo/a/b", "office/", "planning/a b", "settings/1", "other/1", "WO/1", "wo/é"],
)
def test_parse_refuses(name: str) -> None:
    with pytest.raises(InvalidDocumentName) as info:
        parse_document_name(name)
    assert info.value.document == name


def test_planning_names_the_field() -> None:
    with pytest.raises(InvalidValue) as info:
        planning_document("a/b")
    assert info.value.field == "technician"
