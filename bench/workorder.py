"""Work-order-sized documents: a map of 30 fields, a ~1 KB text, an array of 20 parts."""

from __future__ import annotations

import random
from typing import Any

from pycrdt import Array, Doc, Map, Text

__all__ = ["change_elsewhere", "change_offline", "fill", "has_mark", "is_filled"]

_WORDS = [
    "pump",
    "valve",
    "filter",
    "compressor",
    "bearing",
    "seal",
    "gasket",
    "motor",
    "belt",
    "sensor",
    "relay",
    "fuse",
    "replaced",
    "inspected",
    "cleaned",
    "tightened",
    "adjusted",
    "leaking",
    "noisy",
    "worn",
    "cracked",
    "ok",
    "customer",
    "site",
    "basement",
    "roof",
    "unit",
    "north",
    "south",
    "east",
    "west",
    "floor",
    "panel",
    "access",
]


def _words(rng: random.Random, count: int) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(count))


def fill(doc: Doc[Any], index: int) -> None:
    """Write a work order into an empty document, in one transaction."""
    rng = random.Random(index)
    fields = doc.get("fields", type=Map)
    notes = doc.get("notes", type=Text)
    parts = doc.get("parts", type=Array)
    with doc.transaction():
        fields["number"] = f"WO-{100000 + index}"
        fields["status"] = "scheduled"
        fields["priority"] = rng.randint(1, 5)
        for n in range(27):
            fields[f"field_{n:02d}"] = _words(rng, rng.randint(2, 5))
        notes += _words(rng, 150)[:1024]
        parts.extend([f"P-{rng.randint(1000, 9999)} {_words(rng, 3)}" for _ in range(20)])


def is_filled(doc: Doc[Any]) -> bool:
    return len(doc.get("fields", type=Map)) >= 30 and len(doc.get("parts", type=Array)) >= 20


def change_elsewhere(doc: Doc[Any], index: int) -> None:
    """Another device closes the work order: a few fields and a line of notes."""
    fields = doc.get("fields", type=Map)
    notes = doc.get("notes", type=Text)
    with doc.transaction():
        fields["status"] = "done"
        fields["closed_by"] = "tech-bob"
        fields["mark_elsewhere"] = f"b{index}"
        notes += f"\nclosed: replaced filter, unit {index} running normally"


def change_offline(doc: Doc[Any], index: int) -> None:
    """The offline device records its visit: a few fields and one more part."""
    fields = doc.get("fields", type=Map)
    parts = doc.get("parts", type=Array)
    with doc.transaction():
        fields["status"] = "in_progress"
        fields["visited_by"] = "tech-anna"
        fields["mark_offline"] = f"a{index}"
        parts.append(f"P-{5000 + index} seal kit")


def has_mark(doc: Doc[Any], key: str, value: str) -> bool:
    return doc.get("fields", type=Map).get(key) == value
