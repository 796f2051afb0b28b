"""The device's own SQLite file: outbox accounting, rejections, sync time, reopening."""

from __future__ import annotations

from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from pycrdt import Doc, Text

from crdtsync import ErrorCode, LocalStore, StoreError
from crdtsync.store import build_doc, merge


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "device.db"


@pytest.fixture
def local(path: Path) -> Iterator[LocalStore]:
    store = LocalStore(path)
    try:
        yield store
    finally:
        store.close()


def text_updates(*pieces: str) -> tuple[Doc[Any], list[bytes]]:
    """A document whose text is the pieces appended one transaction each, and those updates."""
    doc: Doc[Any] = Doc()
    text = doc.get("notes", type=Text)
    updates: list[bytes] = []
    doc.observe(lambda event: updates.append(event.update))
    for piece in pieces:
        text += piece
    return doc, updates


def notes(doc: Doc[Any]) -> str:
    return str(doc.get("notes", type=Text))


def test_record_local_returns_increasing_seqs_and_counts_pending(local: LocalStore) -> None:
    """Each local change gets a larger outbox sequence and adds one pending row."""
    seqs = [local.record_local("a", b"a1"), local.record_local("b", b"b1")]
    seqs += [local.record_local("a", b"a2"), local.record_local("a", b"a3")]
    assert all(earlier < later for earlier, later in pairwise(seqs))
    assert local.pending("a") == 3
    assert local.pending("b") == 1
    assert local.pending("c") == 0


def test_remote_updates_do_not_enter_the_outbox(local: LocalStore) -> None:
    """Updates received from the relay are stored but never pending."""
    local.record_remote("a", b"r1")
    seq = local.record_local("a", b"l1")
    local.record_remote("a", b"r2")
    assert local.pending("a") == 1
    assert local.last_outbox_seq("a") == seq


def test_acknowledge_drops_rows_up_to_seq_only_for_that_document(local: LocalStore) -> None:
    """An Ack for seq removes that document's rows up to seq, not later ones, not others."""
    a1 = local.record_local("a", b"a1")
    b1 = local.record_local("b", b"b1")
    a2 = local.record_local("a", b"a2")
    a3 = local.record_local("a", b"a3")
    b2 = local.record_local("b", b"b2")

    assert local.acknowledge("a", a2) == 1
    assert local.last_outbox_seq("a") == a3
    assert local.pending("b") == 2
    assert local.last_outbox_seq("b") == b2
    assert local.acknowledge("b", b1) == 1
    assert local.acknowledge("a", a1) == 1  # an old Ack changes nothing
    assert local.acknowledge("a", a3) == 0
    assert local.pending_all() == {"b": 1}


def test_pending_all_counts_per_document_and_omits_empty_ones(local: LocalStore) -> None:
    """pending_all maps every document with pending rows to its count."""
    assert local.pending_all() == {}
    local.record_local("a", b"a1")
    local.record_local("b", b"b1")
    last_a = local.record_local("a", b"a2")
    local.record_local("c", b"c1")
    local.acknowledge("c", 10**9)
    local.record_remote("d", b"d1")
    assert local.pending_all() == {"a": 2, "b": 1}
    local.acknowledge("a", last_a)
    assert local.pending_all() == {"b": 1}


def test_last_outbox_seq_is_the_highest_pending_seq_or_zero(local: LocalStore) -> None:
    """last_outbox_seq is 0 with nothing pending, else the newest pending row."""
    assert local.last_outbox_seq("a") == 0
    first = local.record_local("a", b"a1")
    local.record_local("b", b"b1")
    assert local.last_outbox_seq("a") == first
    second = local.record_local("a", b"a2")
    assert local.last_outbox_seq("a") == second
    local.acknowledge("a", second)
    assert local.last_outbox_seq("a") == 0


def test_reject_moves_the_row_to_rejected(local: LocalStore) -> None:
    """A rejected change leaves the outbox and is listed with its code and message."""
    kept = local.record_local("a", b"a1")
    refused = local.record_local("a", b"a2")
    local.reject("a", refused, ErrorCode.INVALID_UPDATE, "pycrdt refused it")
    assert local.pending("a") == 1
    assert local.last_outbox_seq("a") == kept
    assert local.rejected() == [
        ("a", refused, int(ErrorCode.INVALID_UPDATE), "pycrdt refused it", 0)
    ]


def test_mark_synced_records_last_synced(local: LocalStore) -> None:
    """last_synced is None until mark_synced, then the time given."""
    local.add_document("a")
    local.add_document("b")
    assert local.last_synced() is None
    local.mark_synced(1_700_000_000.5)
    assert local.last_synced() == 1_700_000_000.5
    local.mark_synced(1_700_000_100.0)
    assert local.last_synced() == 1_700_000_100.0


def test_updates_load_back_in_order_as_the_document(local: LocalStore) -> None:
    """Local and remote updates of a document rebuild its content, in order."""
    original, updates = text_updates("visit ", "pump ", "replaced ", "ok")
    local.record_local("wo-1", updates[0])
    local.record_remote("wo-1", updates[1])
    local.record_local("wo-2", b"unrelated")
    local.record_local("wo-1", updates[2])
    local.record_remote("wo-1", updates[3])
    stored = local.load("wo-1")
    assert stored.updates == updates
    assert notes(build_doc(stored)) == notes(original) == "visit pump replaced ok"


def test_compaction_keeps_the_content_and_the_outbox(local: LocalStore) -> None:
    """Compacting the device log keeps content and later updates, and leaves the outbox alone:
    acknowledged rows go into the snapshot, pending ones stay (also in the snapshot)."""
    original, updates = text_updates("a", "b", "c", "d", "e")
    seqs = [local.record_local("wo-1", update) for update in updates[:3]]
    local.acknowledge("wo-1", seqs[0])
    stored = local.load("wo-1")
    local.compact("wo-1", merge(stored), stored.last_seq)
    for update in updates[3:]:
        local.record_local("wo-1", update)
    reloaded = local.load("wo-1")
    assert reloaded.snapshot_seq == seqs[-1]
    assert reloaded.updates == updates[1:]  # the acknowledged first one is only in the snapshot
    assert notes(build_doc(reloaded)) == notes(original) == "abcde"
    assert local.pending("wo-1") == 4


def test_data_survives_closing_and_reopening(path: Path) -> None:
    """Outbox, rejections, documents, sync time and updates are on disk after close."""
    _, updates = text_updates("first ", "second")
    store = LocalStore(path)
    store.add_document("wo-1")
    acked = store.record_local("wo-1", updates[0])
    refused = store.record_local("wo-1", b"bad")
    pending = store.record_local("wo-1", updates[1])
    store.acknowledge("wo-1", acked)
    store.reject("wo-1", refused, ErrorCode.INVALID_UPDATE, "no")
    store.mark_synced(1234.5)
    store.close()

    reopened = LocalStore(path)
    try:
        assert reopened.documents() == ["wo-1"]
        assert reopened.pending_all() == {"wo-1": 1}
        assert reopened.last_outbox_seq("wo-1") == pending
        assert reopened.rejected() == [("wo-1", refused, int(ErrorCode.INVALID_UPDATE), "no", 0)]
        assert reopened.last_synced() == 1234.5
        stored = reopened.load("wo-1")
        assert stored.updates == [updates[0], b"bad", updates[1]]
        assert reopened.record_local("wo-1", b"next") > pending
    finally:
        reopened.close()


def test_a_file_that_is_not_a_database_raises_store_error(path: Path) -> None:
    """Opening garbage surfaces as StoreError, not sqlite3.Error."""
    path.write_bytes(b"definitely not SQLite \x00\xff" * 200)
    with pytest.raises(StoreError):
        LocalStore(path)
