"""A field write the relay refuses: the device archives its replica and resyncs a fresh one."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pycrdt import Doc, Map

from crdtsync import Channel, Device, ErrorCode, memory_channel_pair
from crdtsync._updates import is_panic
from crdtsync.protocol import (
    Push,
    Resume,
    Role,
    SyncSession,
    SyncStep1,
    decode_frame,
    encode_frame,
)

from .apps import MapRules
from .device_harness import FAST, TIMEOUT, Network, network
from .test_relay import DOC, _history, doc_of, find_breaking_mutation
from .test_relay import content as relay_content


@pytest.fixture(params=["memory", "sqlite"])
async def net(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Network]:
    async with network(request.param, tmp_path, application=MapRules()) as n:
        yield n


def fields(doc: Doc[Any]) -> Map[Any]:
    return doc.get("fields", type=Map)


def locked(doc: Doc[Any]) -> Map[Any]:
    return doc.get("locked", type=Map)


def content(doc: Doc[Any]) -> dict[str, Any]:
    return {"fields": fields(doc).to_py(), "locked": locked(doc).to_py()}


async def test_offline_edits_with_a_refused_field_are_archived_and_the_replica_resynced(
    net: Network, tmp_path: Path
) -> None:
    path = tmp_path / "a.db"
    await net.relay.edit("wo-1", lambda doc: locked(doc).update({"price": 10}), tenant="acme")
    async with Device(path, net.connector("a"), documents=["wo-1"], backoff=FAST) as device:
        fields(device.doc("wo-1"))["base"] = "acknowledged"
        await device.wait_synced(TIMEOUT)
        old = device.doc("wo-1")
        old_client = old.client_id
        device.go_offline()
        await device.wait_for(lambda s: not s.connected, TIMEOUT)
        fields(old)["hours"] = 3
        locked(old)["price"] = 0  # devices may not write it
        fields(old)["after"] = "depends on the refused change"
        assert device.status.pending["wo-1"] == 3

        device.go_online()
        await device.wait_for(lambda s: bool(s.rejected) and s.in_sync, TIMEOUT)
        [rejection] = device.status.rejected
        assert rejection.document == "wo-1"
        assert rejection.code == ErrorCode.FORBIDDEN_FIELD
        assert "locked.price" in rejection.message
        assert rejection.discarded == 3
        fresh = device.doc("wo-1")
        assert fresh is not old
        assert fresh.client_id != old_client
        assert content(fresh) == {"fields": {"base": "acknowledged"}, "locked": {"price": 10.0}}
        assert device.status.pending == {"wo-1": 0}
        assert device.status.reconnects == 1  # the offline break only: recovery kept the link

        # The discarded changes are in the archive, marked as never acknowledged.
        archived = device.archived("wo-1")
        assert [row.kind for row in archived if row.unacknowledged] == ["update"] * 3
        assert {row.rejection for row in archived} == {rejection.seq}
        history: Doc[Any] = Doc()
        for row in archived:
            if row.data:
                history.apply_update(row.data)
        assert content(history) == {
            "fields": {
                "base": "acknowledged",
                "hours": 3.0,
                "after": "depends on the refused change",
            },
            "locked": {"price": 0.0},
        }

        # The fresh replica syncs as any other.
        fields(fresh)["hours"] = 4
        await device.wait_synced(TIMEOUT)
    relay_doc = await net.relay.read("wo-1", tenant="acme")
    assert content(relay_doc) == {
        "fields": {"base": "acknowledged", "hours": 4.0},
        "locked": {"price": 10.0},
    }

    async with Device(path, None) as reopened:  # all of it survives a restart
        assert content(reopened.doc("wo-1")) == content(relay_doc)
        assert [(r.seq, r.discarded) for r in reopened.status.rejected] == [(rejection.seq, 3)]
        assert len(reopened.archived()) == len(archived)


async def test_a_refused_live_edit_replaces_the_replica_and_retires_the_old_doc(
    net: Network, tmp_path: Path
) -> None:
    async with Device(
        tmp_path / "a.db", net.connector("a"), documents=["wo-1"], backoff=FAST
    ) as device:
        await device.wait_synced(TIMEOUT)
        old = device.doc("wo-1")
        locked(old)["price"] = 0
        seq = device.store.last_outbox_seq("wo-1")
        await device.wait_for(lambda s: bool(s.rejected) and s.in_sync, TIMEOUT)
        assert [(r.seq, r.code, r.discarded) for r in device.status.rejected] == [
            (seq, ErrorCode.FORBIDDEN_FIELD, 1)
        ]
        assert content(device.doc("wo-1")) == {"fields": {}, "locked": {}}

        # An edit through a stale reference is kept aside, never sent.
        fields(old)["stale"] = "reference"
        assert device.archived("wo-1")[-1].kind == "retired"
        assert device.status.pending == {"wo-1": 0}
        fields(device.doc("wo-1"))["fresh"] = "edit"
        await device.wait_synced(TIMEOUT)
        pushes = net.received("a", Push, "wo-1")
        assert len(pushes) == 2  # the refused one, then the fresh replica's edit
    relay_doc = await net.relay.read("wo-1", tenant="acme")
    assert content(relay_doc) == {"fields": {"fresh": "edit"}, "locked": {}}
    assert [r.reason for r in await net.store.rejections("t/acme/wo-1")] == ["locked.price"]  # type: ignore[union-attr]


async def test_a_refusal_with_more_edits_in_flight_still_ends_in_sync(
    net: Network, tmp_path: Path
) -> None:
    """Edits pushed right behind the refused one reach the relay after it closed the
    document (the relay then drops the connection); the device recovers all the same."""
    async with Device(
        tmp_path / "a.db", net.connector("a"), documents=["wo-1"], backoff=FAST
    ) as device:
        await device.wait_synced(TIMEOUT)
        doc = device.doc("wo-1")
        locked(doc)["price"] = 0
        fields(doc)["right"] = "behind"
        fields(doc)["and"] = "another"
        await device.wait_for(lambda s: bool(s.rejected) and s.in_sync, TIMEOUT)
        assert device.status.rejected[0].discarded == 3
        fields(device.doc("wo-1"))["fresh"] = "edit"
        await device.wait_synced(TIMEOUT)
    relay_doc = await net.relay.read("wo-1", tenant="acme")
    assert content(relay_doc) == {"fields": {"fresh": "edit"}, "locked": {}}


async def test_an_update_from_the_relay_that_makes_pycrdt_panic_rebuilds_the_replica(
    tmp_path: Path,
) -> None:
    """The replica is rebuilt from the file and asks for what it lacks on the same link."""
    history = _history()
    found = find_breaking_mutation(history, is_panic)
    if found is None:
        pytest.skip("no update among 20,000 mutations makes this pycrdt build panic")
    index, poison = found
    base = doc_of(*history[:index])
    device_end, relay_end = memory_channel_pair()
    links = [device_end]

    async def connect() -> Channel:
        if not links:
            raise OSError("one link only")
        return links.pop()

    relay = SyncSession(Role.RELAY)

    async def next_message() -> Any:
        async with asyncio.timeout(TIMEOUT):
            return decode_frame(await relay_end.recv()).message

    async with Device(tmp_path / "a.db", connect, documents=[DOC], backoff=FAST) as device:
        hello = await next_message()  # a reconnecting device resumes all at once...
        assert isinstance(hello, Resume)
        relay.receive_frame(encode_frame("", hello))
        await relay_end.send(relay.send_resumed([0]))  # ...and this one differs: in full
        step1 = await next_message()
        assert isinstance(step1, SyncStep1)
        relay.receive_frame(encode_frame(DOC, step1))
        await relay_end.send(relay.send_step2(DOC, base.get_update()))
        await relay_end.send(relay.send_step1(DOC, base.get_state()))
        await device.wait_for(lambda s: s.in_sync, TIMEOUT)

        await relay_end.send(relay.send_update(DOC, poison))
        again = await next_message()
        assert isinstance(again, SyncStep1)  # the rebuilt replica asks on the same link
        status = device.status
        assert status.connected
        assert status.reconnects == 0
        assert status.last_error is not None
        assert "invalid update" in status.last_error
        assert relay_content(device.doc(DOC)) == relay_content(base)
        fields(device.doc(DOC))["after"] = "the rebuild"  # and it keeps working
        pushed = await next_message()
        assert isinstance(pushed, Push)
