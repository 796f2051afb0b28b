"""Hypothesis strategies for garbage documents: updates from a client that writes anything."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st
from pycrdt import Array, Doc, Map, Text

from crdtsync.workorder import WORKORDER_ROOTS

KEYS = [
    "status",
    "name",
    "email",
    "date",
    "start",
    "end",
    "kind",
    "sha256",
    "current",
    "schema",
    "title",
    "quantity",
    "x",
]
PLAUSIBLE = st.sampled_from(
    [
        "2024-05-01",
        "2024-05-01T08:00:00+00:00",
        "2024-05-01T08:00:00",
        "in_progress",
        "sent",
        "photo",
        "work",
        "ab" * 32,
        "image/png",
        "",
    ]
)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats()
    | st.text(max_size=12)
    | PLAUSIBLE
)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(KEYS), inner),
    max_leaves=8,
)
ROOT_NAMES = st.sampled_from([*WORKORDER_ROOTS, "evil", "extra"])
ROOT_TYPES = st.sampled_from(["map", "text", "array"])


@st.composite
def values(draw: st.DrawFn) -> Any:
    kind = draw(st.sampled_from(["json", "json", "map", "text", "array"]))
    if kind == "map":
        return Map(draw(st.dictionaries(st.sampled_from(KEYS), JSON, max_size=5)))
    if kind == "text":
        return Text(draw(st.text(max_size=10)))
    if kind == "array":
        return Array(draw(st.lists(JSON, max_size=3)))
    return draw(JSON)


@st.composite
def garbage_updates(draw: st.DrawFn, names: st.SearchStrategy[str] = ROOT_NAMES) -> bytes:
    """An update from a client that writes anything anywhere (in roots drawn from ``names``)."""
    doc: Doc[Any] = Doc()
    for _ in range(draw(st.integers(1, 6))):
        name, kind = draw(names), draw(ROOT_TYPES)
        if kind == "map":
            root = doc.get(name, type=Map)
            keys = st.sampled_from([*KEYS, "e1", "e2", "1", "2", "anna", "technician", "id"])
            for key in draw(st.lists(keys, max_size=4)):
                root[key] = draw(values())
        elif kind == "text":
            doc.get(name, type=Text).insert(0, draw(st.text(max_size=10)))
        else:
            doc.get(name, type=Array).extend(draw(st.lists(JSON, max_size=3)))
    return doc.get_update()
