"""The device's file beyond updates: blobs and uploads, submissions, the archive, migration."""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from crdtsync import ErrorCode, LocalStore, StoreError
from crdtsync.store import build_doc, merge

from .test_local import notes, text_updates


@pytest.fixture
def local(tmp_path: Path) -> Iterator[LocalStore]:
    store = LocalStore(tmp_path / "device.db")
    try:
        yield store
    finally:
        store.close()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_a_blob_is_stored_once_and_its_upload_queued_once(local: LocalStore) -> None:
    data = b"photo bytes"
    assert local.add_blob("wo-1", sha(data), data)
    assert not local.add_blob("wo-1", sha(data), data)  # queued already: nothing changes
    assert local.add_blob("wo-2", sha(data), data)  # another document uploads it for itself
    assert local.uploads() == [
        ("wo-1", sha(data), len(data), "pending", 0, None),
        ("wo-2", sha(data), len(data), "pending", 0, None),
    ]
    assert local.blob(sha(data)) == data
    assert local.blob_chunk(sha(data), 6, 100) == b"bytes"
    assert local.blob("0" * 64) is None
    with pytest.raises(StoreError):
        local.blob_chunk("0" * 64, 0, 10)


def test_a_failed_upload_is_queued_again_by_adding_the_blob_again(local: LocalStore) -> None:
    data = b"x" * 10
    local.add_blob("wo-1", sha(data), data)
    local.update_upload("wo-1", sha(data), "failed", 1, "refused twice")
    assert local.uploads()[0][3:] == ("failed", 1, "refused twice")
    assert local.add_blob("wo-1", sha(data), data)
    assert local.uploads()[0][3:] == ("pending", 0, None)


def test_removing_an_upload_keeps_bytes_another_upload_needs(local: LocalStore) -> None:
    data = b"shared"
    local.add_blob("wo-1", sha(data), data)
    local.add_blob("wo-2", sha(data), data)
    local.remove_upload("wo-1", sha(data))
    assert local.blob(sha(data)) == data
    local.remove_upload("wo-2", sha(data))
    assert local.blob(sha(data)) is None


def test_submissions_keep_their_order_status_and_last_answer(local: LocalStore) -> None:
    local.add_submission("k1", "wo-1", '{"a": 1}', 10.0)
    local.add_submission("k2", "wo-2", "{}", 5.0)  # an earlier clock does not reorder them
    local.set_submission("k1", "waiting", '{"status": "waiting"}')
    local.set_submission("k1", "sent")  # no answer given: the last one stays
    with pytest.raises(StoreError):
        local.add_submission("k1", "wo-1", "{}", 11.0)  # keys are unique
    assert local.submissions() == [
        ("k1", "wo-1", '{"a": 1}', 10.0, "sent", '{"status": "waiting"}'),
        ("k2", "wo-2", "{}", 5.0, "queued", None),
    ]


def test_replacing_a_document_archives_its_log_and_outbox(local: LocalStore) -> None:
    doc, updates = text_updates("one ", "two ", "three ", "four")
    local.add_document("wo-1")
    acked = local.record_local("wo-1", updates[0])
    local.record_remote("wo-1", updates[1])
    local.acknowledge("wo-1", acked)
    folded = local.record_local("wo-1", updates[2])
    stored = local.load("wo-1")
    local.compact("wo-1", merge(stored), stored.last_seq)  # 'folded' is in the snapshot now
    last = local.record_local("wo-1", updates[3])
    local.record_local("wo-2", b"other document")

    discarded = local.replace_document("wo-1", last, ErrorCode.FORBIDDEN_FIELD, "may not write x")
    assert discarded == 2
    assert local.load("wo-1").empty
    assert local.pending_all() == {"wo-2": 1}
    assert local.rejected() == [
        ("wo-1", last, int(ErrorCode.FORBIDDEN_FIELD), "may not write x", 2)
    ]
    rows = local.archived("wo-1")
    assert [(r[2], r[3], r[5], r[6]) for r in rows] == [
        (stored.last_seq, "snapshot", False, last),
        (folded, "update", True, last),  # pending: kept in the log, though in the snapshot too
        (last, "update", True, last),
    ]
    # The archive rebuilds exactly what the replica held.
    archived = build_doc(
        type(stored)("wo-1", rows[0][4], rows[0][2], [rows[1][4], rows[2][4]], last_seq=last)
    )
    assert notes(archived) == notes(doc)
    assert local.archived() == rows
    local.archive_retired("wo-1", b"late", last, "edit to a replaced replica")
    assert local.archived("wo-1")[-1][2:7] == (0, "retired", b"late", True, last)


def test_withdrawn_documents_are_remembered(local: LocalStore) -> None:
    local.add_document("wo-1")
    local.add_document("wo-2")
    local.set_withdrawn("wo-2", True)
    assert local.withdrawn() == ["wo-2"]
    local.set_withdrawn("wo-2", False)
    assert local.withdrawn() == []


def test_a_file_of_the_first_format_gains_the_new_tables_and_columns(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as db:
        db.executescript(
            """
            CREATE TABLE updates (seq INTEGER PRIMARY KEY AUTOINCREMENT, document TEXT NOT NULL,
                                  data BLOB NOT NULL);
            CREATE TABLE outbox (seq INTEGER PRIMARY KEY, document TEXT NOT NULL);
            CREATE TABLE rejected (seq INTEGER NOT NULL, document TEXT NOT NULL,
                                   code INTEGER NOT NULL, message TEXT NOT NULL, at REAL NOT NULL);
            CREATE TABLE documents (name TEXT PRIMARY KEY, last_synced REAL);
            INSERT INTO documents (name) VALUES ('wo-1');
            INSERT INTO rejected VALUES (3, 'wo-1', 5, 'old refusal', 1.0);
            """
        )
    db.close()
    store = LocalStore(path)
    try:
        assert store.documents() == ["wo-1"]
        assert store.withdrawn() == []
        assert store.rejected() == [("wo-1", 3, 5, "old refusal", 0)]
        assert store.add_blob("wo-1", sha(b"x"), b"x")
    finally:
        store.close()
