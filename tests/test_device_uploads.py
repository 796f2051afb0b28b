"""Blobs on a device: stored in its file, uploaded in chunks, resumed from the relay's count."""

from __future__ import annotations

import hashlib
import os
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pycrdt import Map

from crdtsync import Device, DeviceError, LocalStore, RelayConfig, UploadState
from crdtsync.protocol import BlobPut, BlobQuery, Frame, Push

from .apps import MapRules
from .device_harness import FAST, TIMEOUT, Network, network

CHUNK = 1000


@pytest.fixture(params=["memory", "sqlite"])
async def net(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Network]:
    async with network(request.param, tmp_path, application=MapRules()) as n:
        yield n


def chunked(path: Path, net: Network, name: str = "tablet", **options: object) -> Device:
    return Device(
        path,
        net.connector(name),
        documents=["wo-1"],
        backoff=FAST,
        blob_chunk_size=CHUNK,
        blob_window=2,
        **options,  # type: ignore[arg-type]
    )


async def relay_blob(net: Network, sha: str) -> bytes | None:
    return await net.store.get_blob(f"t/acme/blobs/{sha}")  # type: ignore[union-attr]


async def test_a_blob_is_stored_on_the_device_and_uploaded_in_chunks(
    net: Network, tmp_path: Path
) -> None:
    data = os.urandom(4 * CHUNK + 123)
    async with chunked(tmp_path / "a.db", net) as device:
        sha = device.add_blob("wo-1", data)
        assert sha == hashlib.sha256(data).hexdigest()
        assert device.blob(sha) == data
        assert device.status.uploads_pending == {"wo-1": 1}
        await device.wait_for(lambda s: not s.uploads_pending, TIMEOUT)
        assert device.upload("wo-1", sha) is not None
        assert device.uploads() == [device.upload("wo-1", sha)]
        assert device.uploads()[0].state is UploadState.UPLOADED
        puts = net.received("tablet", BlobPut, "wo-1")
        assert [p.offset for p in puts] == [0, 1000, 2000, 3000, 4000]
        assert len(net.received("tablet", BlobQuery)) == 1
    assert await relay_blob(net, sha) == data


async def test_add_blob_needs_a_document_the_device_holds(net: Network, tmp_path: Path) -> None:
    async with chunked(tmp_path / "a.db", net) as device:
        with pytest.raises(DeviceError):
            device.add_blob("wo-404", b"x")


async def test_an_upload_cut_off_resumes_from_what_the_relay_holds(
    net: Network, tmp_path: Path
) -> None:
    data = os.urandom(10 * CHUNK)

    def fourth_chunk(frame: Frame) -> bool:
        return isinstance(frame.message, BlobPut) and frame.message.offset == 3 * CHUNK

    async with chunked(tmp_path / "a.db", net) as device:
        await device.wait_synced(TIMEOUT)
        net.cut_after = fourth_chunk
        device.go_offline()
        await device.wait_for(lambda s: not s.connected, TIMEOUT)
        device.go_online()
        await device.wait_synced(TIMEOUT)
        net.cut_after = None  # only the next link breaks
        sha = device.add_blob("wo-1", data)
        await device.wait_for(lambda s: s.reconnects >= 2 and not s.uploads_pending, TIMEOUT)
        first, second = net.taps["tablet"][1], net.taps["tablet"][2]
        assert [p.offset for p in first.messages(BlobPut)] == [0, 1000, 2000, 3000]
        # The next link asks first, then sends only what the relay lacks.
        assert [q.sha256 for q in second.messages(BlobQuery)] == [sha]
        assert [p.offset for p in second.messages(BlobPut)] == [4000 + i * CHUNK for i in range(6)]
    assert await relay_blob(net, sha) == data


async def test_a_blob_the_relay_holds_costs_one_query(net: Network, tmp_path: Path) -> None:
    data = os.urandom(3 * CHUNK)
    async with chunked(tmp_path / "a.db", net, "a") as a:
        a.add_blob("wo-1", data)
        await a.wait_for(lambda s: s.connected and not s.uploads_pending, TIMEOUT)
    async with chunked(tmp_path / "b.db", net, "b") as b:
        sha = b.add_blob("wo-1", data)
        assert b.add_blob("wo-1", data) == sha  # idempotent: one upload
        await b.wait_for(lambda s: s.connected and not s.uploads_pending, TIMEOUT)
        assert len(net.received("b", BlobQuery)) == 1
        assert net.received("b", BlobPut) == []


async def test_a_refused_blob_restarts_once_then_fails_with_a_reason(tmp_path: Path) -> None:
    config = RelayConfig(max_blob_size=2 * CHUNK)
    async with (
        network("memory", tmp_path, application=MapRules(), config=config) as net,
        chunked(tmp_path / "a.db", net) as device,
    ):
        sha = device.add_blob("wo-1", os.urandom(5 * CHUNK))
        await device.wait_for(lambda s: bool(s.uploads_failed), TIMEOUT)
        failed = device.status.uploads_failed
        assert [(u.document, u.sha256, u.state) for u in failed] == [
            ("wo-1", sha, UploadState.FAILED)
        ]
        assert failed[0].reason is not None
        assert "refused" in failed[0].reason
        assert device.status.uploads_pending == {}
        assert len(net.received("tablet", BlobQuery)) == 2  # the first try and one restart
        # The connection stays usable for edits meanwhile.
        device.doc("wo-1").get("fields", type=Map)["after"] = "refusal"
        await device.wait_synced(TIMEOUT)
        assert device.retry_uploads() == 1
        assert device.status.uploads_pending == {"wo-1": 1}


async def test_edits_are_not_stuck_behind_a_large_upload(net: Network, tmp_path: Path) -> None:
    """Chunks in flight are bounded by the window: an edit's Push follows at most that
    many chunks sent after the ones the relay had when the edit was made."""
    chunks = 200
    async with chunked(tmp_path / "a.db", net) as device:
        await device.wait_synced(TIMEOUT)
        device.add_blob("wo-1", os.urandom(chunks * CHUNK))
        await device.wait_for(lambda s: len(net.received("tablet", BlobPut)) >= 1, TIMEOUT)
        had = len(net.received("tablet", BlobPut))
        device.doc("wo-1").get("fields", type=Map)["status"] = "in progress"
        await device.wait_for(lambda s: not s.uploads_pending and s.in_sync, TIMEOUT)
        kinds = [type(f.message) for f in net.taps["tablet"][0].received]
        push = kinds.index(Push)
        assert kinds[:push].count(BlobPut) <= had + 2
        assert kinds.count(BlobPut) == chunks


async def test_a_queued_upload_survives_a_restart(net: Network, tmp_path: Path) -> None:
    data = os.urandom(2 * CHUNK + 1)
    path = tmp_path / "a.db"
    async with chunked(path, net, online=False) as device:
        sha = device.add_blob("wo-1", data)
    store = LocalStore(path)
    try:
        assert store.uploads() == [("wo-1", sha, len(data), "pending", 0, None)]
    finally:
        store.close()
    async with chunked(path, net) as device:
        assert device.status.uploads_pending == {"wo-1": 1}
        await device.wait_for(lambda s: not s.uploads_pending, TIMEOUT)
    assert await relay_blob(net, sha) == data


async def test_cancel_upload_forgets_it_and_its_bytes(net: Network, tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    async with chunked(path, net, online=False) as device:
        sha = device.add_blob("wo-1", b"photo")
        assert device.cancel_upload("wo-1", sha)
        assert not device.cancel_upload("wo-1", sha)
        assert device.blob(sha) is None
        assert device.status.uploads_pending == {}
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT COUNT(*) FROM blobs").fetchone() == (0,)
