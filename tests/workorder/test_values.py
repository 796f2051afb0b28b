"""crdtsync.workorder._values: text diffs by character, UTF-8 offsets, JSON checks, errors."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pycrdt import Doc, Text

from crdtsync.exceptions import InvalidValue
from crdtsync.workorder import HoursEntry
from crdtsync.workorder._values import (
    apply_text,
    check_json,
    check_text,
    text_ops,
    utf8_offset,
    validate,
)


@given(st.text(), st.text())
def test_apply_text_reaches_the_target(old: str, new: str) -> None:
    doc: Doc[Any] = Doc()
    text = doc.get("t", type=Text)
    text.insert(0, old)
    with doc.transaction():
        apply_text(text, new)
    assert str(text) == new


def test_text_ops_replace_a_long_change_whole_and_keep_prefix_and_suffix() -> None:
    old = "intro " + "a" + "0" * 2000 + "b" + " outro"
    new = "intro " + "c" + "0" * 3000 + "d" + " outro"
    assert text_ops(old, new) == [(6, 2002, "c" + "0" * 3000 + "d")]
    assert text_ops("0" * 2000 + "a", "0" * 3000) == [(2000, 1, "0" * 1000)]


def test_text_ops_keep_unchanged_runs() -> None:
    assert text_ops("hello world", "hello brave world") == [(6, 0, "brave ")]
    assert text_ops("abc", "abc") == []
    assert text_ops("a😀c", "a😀d") == [(2, 1, "d")]


def test_utf8_offset() -> None:
    assert [utf8_offset("aé😀b", i) for i in range(5)] == [0, 1, 3, 7, 8]


@pytest.mark.parametrize(
    "value", [float("nan"), 2**60, {1: "a"}, object(), [1, [2, {"a": float("inf")}]]]
)
def test_check_json_refuses(value: object) -> None:
    with pytest.raises(InvalidValue):
        check_json(value, "answers.q")


def test_check_json_bounds_size() -> None:
    check_json([1, "a", None, True, {"k": [1.5]}], "answers.q")
    with pytest.raises(InvalidValue, match="items"):
        check_json(list(range(20_000)), "answers.q")


def test_check_text() -> None:
    assert check_text("ok", "f") == "ok"
    for bad in (1, "\udc00", "x" * 11):
        with pytest.raises(InvalidValue):
            check_text(bad, "f", max_length=10)


def test_validate_names_the_field() -> None:
    with pytest.raises(InvalidValue) as info:
        validate(HoursEntry, {"id": "h", "date": "x"}, "hours.h")
    assert info.value.field == "hours.h.date"
