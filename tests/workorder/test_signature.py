"""Signed content, canonical JSON, content hash, signature validity and SVG."""

from __future__ import annotations

import datetime as dt
import xml.etree.ElementTree as ET
from typing import Any

import pytest
from pycrdt import Doc

from crdtsync.exceptions import InvalidValue
from crdtsync.workorder import (
    SIGNED_PARTS,
    Role,
    Schedule,
    Signature,
    WorkOrder,
    canonical_json,
    content_hash,
    signature_svg,
    signature_valid,
    signed_content,
)

from .conftest import EditorFactory

SVG = "{http://www.w3.org/2000/svg}"
T0 = dt.datetime(2024, 5, 1, 8, 0, tzinfo=dt.UTC)


def test_canonical_json_format() -> None:
    value = {"b": 1.0, "a": [0.1, True, None, "é"], "c": {"z": 2, "y": -0.0}}
    assert canonical_json(value) == '{"a":[0.1,true,null,"é"],"b":1,"c":{"y":0,"z":2}}'.encode()
    moment = dt.datetime(2024, 5, 1, 10, 0, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    assert canonical_json([moment, moment.date()]) == b'["2024-05-01T08:00:00+00:00","2024-05-01"]'
    assert canonical_json(2**60 * 1.0) == b"1.152921504606847e+18"


def test_canonical_json_refuses_other_objects() -> None:
    with pytest.raises(TypeError):
        canonical_json({"x": object()})


def base(**overrides: Any) -> WorkOrder:
    data: dict[str, Any] = {
        "meta": {"schema_version": 1, "id": "wo1", "number": "7", "created_at": T0},
        "customer": {"name": "ACME", "city": "Utrecht"},
        "notes": "done",
        "materials": {"m1": {"id": "m1", "article": "A", "quantity": 2}},
        "answers": {"q1": 2, "q2": {"b": 1, "a": 2}},
    }
    data.update(overrides)
    return WorkOrder.model_validate(data)


def test_content_hash_is_pinned() -> None:
    """A change here invalidates every stored signature: it needs a migration, not an edit."""
    assert canonical_json(signed_content(base())) == (
        b'{"answers":{"q1":2,"q2":{"a":2,"b":1}},"attachments":{},'
        b'"customer":{"city":"Utrecht","name":"ACME"},"delivery":{},"description":"",'
        b'"hours":{},"info":{"short_description":""},'
        b'"materials":{"m1":{"article":"A","description":"","id":"m1","quantity":2,"unit":"pcs"}},'
        b'"meta":{"created_at":"2024-05-01T08:00:00+00:00","id":"wo1","number":"7"},'
        b'"notes":"done","tasks":{}}'
    )
    assert content_hash(base()) == (
        "0748c0b63d2096b16407b99a6ae081622eab4cf0f5cb4d1ed38874224c7043ad"
    )


def test_hash_ignores_key_order_number_format_and_offsets() -> None:
    reordered = base(
        answers={"q2": {"a": 2.0, "b": 1.0}, "q1": 2.0},
        customer={"city": "Utrecht", "name": "ACME"},
        meta={
            "created_at": "2024-05-01T10:00:00+02:00",
            "number": "7",
            "id": "wo1",
            "schema_version": 1,
        },
        materials={"m1": {"id": "m1", "article": "A", "quantity": 2.0}},
    )
    assert content_hash(reordered) == content_hash(base())


@pytest.mark.parametrize(
    "overrides",
    [
        {"state": {"status": "sent", "submission_id": "s"}},
        {"timers": {"t": {"technician": "t", "started_at": T0}}},
        {"planning": Schedule(technician="anna", planned_date=T0.date())},
        {
            "meta": {
                "schema_version": 1,
                "id": "wo1",
                "number": "7",
                "created_at": T0,
                "external_ref": "ERP-1",
            }
        },
    ],
)
def test_unsigned_parts_do_not_change_the_hash(overrides: dict[str, Any]) -> None:
    assert content_hash(base(**overrides)) == content_hash(base())


@pytest.mark.parametrize(
    "overrides",
    [
        {"notes": "done!"},
        {"customer": {"name": "ACME", "city": "Zeist"}},
        {"answers": {"q1": 3}},
        {"materials": {}},
        {"description": "x"},
        {"info": {"short_description": "x"}},
    ],
)
def test_signed_parts_change_the_hash(overrides: dict[str, Any]) -> None:
    assert content_hash(base(**overrides)) != content_hash(base())


def test_signed_parts_are_documented() -> None:
    assert set(signed_content(base())) == set(SIGNED_PARTS)
    assert "external_ref" not in signed_content(base())["meta"]


def test_hash_of_doc_equals_hash_of_its_view(office_doc: Doc[Any]) -> None:
    assert content_hash(office_doc) == content_hash(WorkOrder.from_doc(office_doc)[0])


def test_office_work_keeps_the_signature_valid(
    device_doc: Doc[Any], make_editor: EditorFactory
) -> None:
    make_editor(device_doc).sign([[(0, 0, 0), (1, 1, 1)]], signer_name="C")
    office = make_editor(device_doc, role=Role.OFFICE, actor="office")
    office.set_planning(technician="anna")
    office.set_meta(external_ref="ERP-9")
    assert signature_valid(WorkOrder.from_doc(device_doc)[0])
    office.set_customer(phone="123")
    assert not signature_valid(WorkOrder.from_doc(device_doc)[0])


def test_unsigned_work_order_is_not_valid() -> None:
    assert not signature_valid(base())


def make_signature(name: str, strokes: Any = None) -> Signature:
    return Signature.model_validate(
        {
            "strokes": strokes or [[[0, 0, 0], [0.5, 1, 10]], [[0.25, 0.25, 0]]],
            "signer_name": name,
            "signed_at": T0,
            "content_hash": "0" * 64,
        }
    )


def test_svg_is_well_formed_with_one_path_per_stroke() -> None:
    svg = signature_svg(make_signature('Jan <&> "Co" \x01'), width=300, height=160)
    root = ET.fromstring(svg)
    assert root.tag == f"{SVG}svg"
    assert (root.get("width"), root.get("height")) == ("300", "160")
    paths = root.findall(f".//{SVG}path")
    assert [p.get("d") for p in paths] == ["M 0 0 L 150 120", "M 75 30 L 75 30"]
    texts = [t.text for t in root.findall(f"{SVG}text")]
    assert texts == ['Jan <&> "Co" \ufffd', "2024-05-01 08:00 UTC"]
    assert root.find(f"{SVG}title") is not None


def test_svg_without_name_and_with_bad_sizes() -> None:
    root = ET.fromstring(signature_svg(make_signature("")))
    assert root.findall(f"{SVG}text")[0].text == "(no name)"
    for width, height in ((0, 10), (10, -1), (float("inf"), 10), (True, 10)):
        with pytest.raises(InvalidValue):
            signature_svg(make_signature("x"), width=width, height=height)
