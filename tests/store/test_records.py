"""Blobs, submission records and rejected updates: MemoryStore and SQLiteStore alike."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from crdtsync import MemoryStore, SQLiteStore
from crdtsync.store import RejectedUpdate, SubmissionRecord

Factory = Callable[[], Any]


@pytest.fixture(params=["memory", "sqlite"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Factory:
    if request.param == "memory":
        shared = MemoryStore()  # "reopening" a memory store keeps its contents
        return lambda: shared
    return lambda: SQLiteStore(tmp_path / "records.db")


@pytest.fixture
async def store(make_store: Factory) -> AsyncIterator[Any]:
    async with make_store() as opened:
        yield opened


def blob(size: int = 10_000) -> tuple[bytes, str]:
    data = os.urandom(size)
    return data, hashlib.sha256(data).hexdigest()


async def test_a_blob_sent_in_chunks_is_stored_once_complete(store: Any) -> None:
    data, sha = blob()
    key = f"t/a/{sha}"
    for offset in range(0, len(data), 3000):
        progress = await store.put_blob_chunk(
            key, sha, len(data), offset, data[offset : offset + 3000]
        )
    assert progress.complete
    assert progress.have == len(data)
    assert await store.get_blob(key) == data
    again = await store.put_blob_chunk(key, sha, len(data), 0, data)
    assert again.complete
    assert await store.get_blob(key) == data


async def test_an_upload_resumes_where_it_stopped_even_after_reopening(make_store: Factory) -> None:
    data, sha = blob()
    key = f"t/a/{sha}"
    async with make_store() as store:
        assert (await store.put_blob_chunk(key, sha, len(data), 0, data[:4000])).have == 4000
        assert await store.get_blob(key) is None
    async with make_store() as store:
        progress = await store.blob_progress(key, len(data))
        assert (progress.have, progress.complete) == (4000, False)
        final = await store.put_blob_chunk(key, sha, len(data), 4000, data[4000:])
        assert final.complete
        assert await store.get_blob(key) == data


async def test_overlapping_and_early_chunks_are_taken_only_where_they_continue(store: Any) -> None:
    data, sha = blob(1000)
    key = f"t/a/{sha}"
    await store.put_blob_chunk(key, sha, 1000, 0, data[:400])
    assert (await store.put_blob_chunk(key, sha, 1000, 0, data[:400])).have == 400  # duplicate
    assert (await store.put_blob_chunk(key, sha, 1000, 700, data[700:])).have == 400  # a gap
    assert (await store.put_blob_chunk(key, sha, 1000, 300, data[300:600])).have == 600  # overlap
    assert (await store.put_blob_chunk(key, sha, 1000, 600, data[600:])).complete
    assert await store.get_blob(key) == data


async def test_bytes_that_do_not_hash_to_the_name_are_refused_and_dropped(store: Any) -> None:
    data, sha = blob(500)
    key = f"t/a/{sha}"
    tampered = bytes([data[0] ^ 1]) + data[1:]
    progress = await store.put_blob_chunk(key, sha, 500, 0, tampered)
    assert progress.refused
    assert not progress.complete
    assert (await store.blob_progress(key, 500)).have == 0
    assert await store.get_blob(key) is None
    assert (await store.put_blob_chunk(key, sha, 500, 0, data)).complete


async def test_a_changed_size_restarts_the_upload(store: Any) -> None:
    data, sha = blob(800)
    key = f"t/a/{sha}"
    await store.put_blob_chunk(key, sha, 900, 0, data[:300])  # a wrong size first
    assert (await store.blob_progress(key, 800)).have == 0
    assert (await store.put_blob_chunk(key, sha, 800, 0, data)).complete


async def test_an_empty_blob_completes(store: Any) -> None:
    sha = hashlib.sha256(b"").hexdigest()
    assert (await store.put_blob_chunk(f"t/a/{sha}", sha, 0, 0, b"")).complete
    assert await store.get_blob(f"t/a/{sha}") == b""


async def test_missing_blobs_lists_what_is_not_complete_in_order(store: Any) -> None:
    data, sha = blob(100)
    await store.put_blob_chunk(f"t/a/{sha}", sha, 100, 0, data)
    await store.put_blob_chunk(f"t/a/{'0' * 64}", "0" * 64, 100, 0, data[:50])
    keys = [f"t/b/{sha}", f"t/a/{sha}", f"t/a/{'0' * 64}"]
    assert await store.missing_blobs(keys) == [keys[0], keys[2]]
    assert await store.missing_blobs([]) == []


def record(key: str, accepted: bool = True, document: str = "wo/1") -> SubmissionRecord:
    return SubmissionRecord(
        document, key, accepted, f'{{"key": "{key}"}}', "h" * 64, b"\x00\x00", 1.5
    )


async def test_a_submission_is_recorded_once_per_document_and_key(make_store: Factory) -> None:
    async with make_store() as store:
        first = await store.add_submission(record("k1"))
        again = await store.add_submission(record("k1", accepted=False))
        assert again == first
        assert first.id > 0
        second = await store.add_submission(record("k2", accepted=False))
        other = await store.add_submission(record("k1", document="wo/2"))
        assert second.id > first.id
        assert other.document == "wo/2"
    async with make_store() as store:
        assert await store.find_submission("wo/1", "k1") == first
        assert await store.find_submission("wo/1", "nope") is None
        assert [r.key for r in await store.submissions("wo/1")] == ["k1", "k2"]
        assert [r.accepted for r in await store.submissions("wo/1")] == [True, False]


async def test_rejected_updates_are_kept_for_audit(store: Any) -> None:
    await store.add_rejection(RejectedUpdate("wo/1", "device:anna", "customer.name", b"\x01", 2.0))
    await store.add_rejection(RejectedUpdate("wo/2", "device:bram", "meta.number", b"\x02", 3.0))
    everything = await store.rejections()
    assert [(r.document, r.reason, r.update) for r in everything] == [
        ("wo/1", "customer.name", b"\x01"),
        ("wo/2", "meta.number", b"\x02"),
    ]
    assert [r.who for r in await store.rejections("wo/2")] == ["device:bram"]
