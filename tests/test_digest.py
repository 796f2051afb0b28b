"""State digests: equal when two replicas hold the same, different when they do not."""

from __future__ import annotations

import random
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from pycrdt import Doc, Map, Text

from crdtsync._digest import _merged, state_digest


def edits(doc: Doc[Any], rng: random.Random, count: int) -> list[bytes]:
    updates: list[bytes] = []
    subscription = doc.observe(lambda event: updates.append(event.update))
    text, fields = doc.get("notes", type=Text), doc.get("fields", type=Map)
    for _ in range(count):
        action = rng.randrange(4)
        if action == 0 or not len(text):
            text.insert(rng.randrange(len(text) + 1), rng.choice("abc"))
        elif action == 1:
            start = rng.randrange(len(text))
            del text[start : start + 1]
        else:
            fields[rng.choice("xyz")] = rng.randrange(10)
    doc.unobserve(subscription)
    return updates


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32), count=st.integers(1, 30))
def test_replicas_that_applied_the_same_updates_in_any_order_share_a_digest(
    seed: int, count: int
) -> None:
    rng = random.Random(seed)
    writers = [Doc() for _ in range(3)]
    streams = [edits(writer, rng, count) for writer in writers]
    left, right = Doc(), Doc()
    for update in (u for stream in streams for u in stream):
        left.apply_update(update)
    # Interleaved differently (each writer's own updates keep their order, as on the wire).
    queues = [list(stream) for stream in streams]
    while any(queues):
        queue = rng.choice([q for q in queues if q])
        right.apply_update(queue.pop(0))
    assert str(left.get("notes", type=Text)) == str(right.get("notes", type=Text))
    assert state_digest(left) == state_digest(right)
    # One more change on one side tells them apart; the same change on the other joins them.
    before = left.get_state()
    edits(left, rng, 1)
    assert state_digest(left) != state_digest(right)
    right.apply_update(left.get_update(before))
    assert state_digest(left) == state_digest(right)


def test_a_deletion_alone_changes_the_digest() -> None:
    doc: Doc[Any] = Doc()
    doc.get("notes", type=Text).insert(0, "hello")
    other: Doc[Any] = Doc()
    other.apply_update(doc.get_update())
    assert state_digest(doc) == state_digest(other)
    del doc.get("notes", type=Text)[0:1]  # the state vector stays the same
    assert doc.get_state() == other.get_state()
    assert state_digest(doc) != state_digest(other)


def test_empty_documents_share_a_digest() -> None:
    assert state_digest(Doc()) == state_digest(Doc())


def test_delete_runs_are_merged_before_hashing() -> None:
    assert _merged([(5, 2), (0, 3), (3, 2), (9, 0)]) == [(0, 7)]
    assert _merged([(0, 2), (4, 1)]) == [(0, 2), (4, 1)]
    assert _merged([(0, 5), (1, 2)]) == [(0, 5)]
