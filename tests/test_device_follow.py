"""Following a directory document, and documents whose access the relay withdraws."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

import pytest
from pycrdt import Doc, Map

from crdtsync import Device, SubmissionStatus
from crdtsync.protocol import BlobQuery, Push, Submit, SyncStep1

from .apps import MapRules
from .device_harness import FAST, TIMEOUT, Network, network


@pytest.fixture(params=["memory", "sqlite"])
async def net(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Network]:
    async with network(request.param, tmp_path, application=MapRules()) as n:
        yield n


def listed(doc: Doc[Any]) -> Iterable[str]:
    return sorted(doc.get("docs", type=Map).keys())


def fields(doc: Doc[Any]) -> Map[Any]:
    return doc.get("fields", type=Map)


async def office_edit(net: Network, name: str, **values: Any) -> None:
    await net.relay.edit(name, lambda doc: fields(doc).update(values), tenant="acme")


async def office_list(net: Network, *names: str, remove: bool = False) -> None:
    def change(doc: Doc[Any]) -> None:
        docs = doc.get("docs", type=Map)
        for name in names:
            if remove:
                del docs[name]
            else:
                docs[name] = True

    await net.relay.edit("dir", change, tenant="acme")


def frames_for(net: Network, device: str, name: str) -> int:
    return sum(1 for tap in net.taps.get(device, []) for f in tap.received if f.document == name)


# -- following -------------------------------------------------------------------------------------


async def test_follow_opens_what_the_directory_lists_after_it_syncs(
    net: Network, tmp_path: Path
) -> None:
    await office_list(net, "wo-1", "wo-2")
    await office_edit(net, "wo-1", customer="ACME")
    async with Device(tmp_path / "a.db", net.connector("a"), backoff=FAST) as device:
        device.follow("dir", listed)
        await device.wait_for(lambda s: s.in_sync and {"wo-1", "wo-2"} <= set(s.synced), TIMEOUT)
        assert device.documents == ["dir", "wo-1", "wo-2"]
        assert fields(device.doc("wo-1")).to_py() == {"customer": "ACME"}


async def test_follow_picks_up_a_document_listed_while_the_device_was_offline(
    net: Network, tmp_path: Path
) -> None:
    path = tmp_path / "a.db"
    await office_list(net, "wo-1")
    async with Device(path, net.connector("a"), backoff=FAST) as device:
        device.follow("dir", listed)
        await device.wait_for(lambda s: s.in_sync and "wo-1" in s.synced, TIMEOUT)
        device.go_offline()
        await device.wait_for(lambda s: not s.connected, TIMEOUT)

        await office_list(net, "wo-7")
        await office_edit(net, "wo-7", task="replace the pump")
        assert "wo-7" not in device.documents  # offline: planning changes arrive only on sync

        device.go_online()
        await device.wait_for(
            lambda s: (
                s.in_sync and "wo-7" in device.documents and "task" in fields(device.doc("wo-7"))
            ),
            TIMEOUT,
        )
        assert fields(device.doc("wo-7")).to_py() == {"task": "replace the pump"}

    # After a restart the app follows again; what the local replica lists opens at once.
    async with Device(path, None) as offline:
        offline.follow("dir", listed)
        assert offline.documents == ["dir", "wo-1", "wo-7"]


async def test_follow_skips_names_that_are_not_document_names(net: Network, tmp_path: Path) -> None:
    await office_list(net, "wo-1", "not a name!")
    async with Device(tmp_path / "a.db", net.connector("a"), backoff=FAST) as device:
        device.follow("dir", listed)
        await device.wait_for(lambda s: s.in_sync and "wo-1" in s.synced, TIMEOUT)
        assert device.documents == ["dir", "wo-1"]


# -- withdrawn access ------------------------------------------------------------------------------


async def withdraw(net: Network, device: Device, name: str) -> None:
    assert net.relay.withdraw(lambda who, doc: doc != name, "unassigned") == 1
    await device.wait_for(lambda s: name in s.withdrawn, TIMEOUT)


async def test_a_withdrawn_document_stops_syncing_and_keeps_its_data(
    net: Network, tmp_path: Path
) -> None:
    path = tmp_path / "a.db"
    docs = ["wo-1", "wo-2"]
    async with Device(path, net.connector("a"), documents=docs, backoff=FAST) as device:
        fields(device.doc("wo-2"))["customer"] = "ACME"
        await device.wait_synced(TIMEOUT)
        await withdraw(net, device, "wo-2")
        status = device.status
        assert status.connected
        assert status.reconnects == 0  # only that document closed
        assert status.synced["wo-2"] is False
        assert status.in_sync  # withdrawn documents are left out
        assert status.last_error is not None
        assert "withdrawn" in status.last_error
        before = frames_for(net, "a", "wo-2")

        fields(device.doc("wo-2"))["late"] = "edit"  # kept, queued, not sent
        fields(device.doc("wo-1"))["other"] = "edit"  # the rest syncs as before
        await device.wait_synced(TIMEOUT)
        assert device.status.pending == {"wo-1": 0, "wo-2": 1}
        assert fields(device.doc("wo-2")).to_py() == {"customer": "ACME", "late": "edit"}
        assert frames_for(net, "a", "wo-2") == before

    async with Device(path, net.connector("a"), backoff=FAST) as device:
        await device.wait_synced(TIMEOUT)
        assert device.status.withdrawn == ["wo-2"]  # remembered: not opened by itself
        assert net.taps["a"][-1].messages(SyncStep1, "wo-2") == []

        device.open("wo-2")  # the app asks for it again; the relay allows it now
        await device.wait_synced(TIMEOUT)
        assert device.status.withdrawn == []
        assert device.status.pending == {"wo-1": 0, "wo-2": 0}
    relay_doc = await net.relay.read("wo-2", tenant="acme")
    assert fields(relay_doc).to_py() == {"customer": "ACME", "late": "edit"}


async def test_a_document_the_relay_refuses_to_open_is_withdrawn_quietly(
    net: Network, tmp_path: Path
) -> None:
    async with Device(
        tmp_path / "a.db", net.connector("a"), documents=["wo-1"], backoff=FAST
    ) as device:
        await device.wait_synced(TIMEOUT)
        device.open("secret/1")
        await device.wait_for(lambda s: "secret/1" in s.withdrawn, TIMEOUT)
        fields(device.doc("secret/1"))["x"] = 1
        fields(device.doc("wo-1"))["y"] = 2
        await device.wait_synced(TIMEOUT)
        assert device.status.connected
        assert device.status.reconnects == 0
        assert net.taps["a"][0].messages(Push, "secret/1") == []


async def test_uploads_and_submissions_of_a_withdrawn_document_wait_for_it(
    net: Network, tmp_path: Path
) -> None:
    docs = ["wo-1", "wo-2"]
    async with Device(
        tmp_path / "a.db", net.connector("a"), documents=docs, backoff=FAST
    ) as device:
        await device.wait_synced(TIMEOUT)
        await withdraw(net, device, "wo-2")
        device.add_blob("wo-2", os.urandom(2000))
        key = device.submit("wo-2", {})
        other = device.submit("wo-1", {})
        assert (await device.wait_submission(other, TIMEOUT)).status is SubmissionStatus.ACCEPTED
        assert device.status.uploads_pending == {"wo-2": 1}
        assert device.submission(key).status is SubmissionStatus.QUEUED
        assert net.received("a", BlobQuery, "wo-2") == []
        assert net.received("a", Submit, "wo-2") == []

        device.open("wo-2")
        assert (await device.wait_submission(key, TIMEOUT)).status is SubmissionStatus.ACCEPTED
        assert device.status.uploads_pending == {}
        assert device.status.reconnects == 0


async def test_a_followed_directory_readmits_a_document_it_lists_again(
    net: Network, tmp_path: Path
) -> None:
    await office_list(net, "wo-1", "wo-2")
    async with Device(tmp_path / "a.db", net.connector("a"), backoff=FAST) as device:
        device.follow("dir", listed)
        await device.wait_for(lambda s: s.in_sync and "wo-2" in s.synced, TIMEOUT)

        await withdraw(net, device, "wo-2")
        await office_edit(net, "dir", unrelated="change")  # still listed: stays withdrawn
        await device.wait_for(lambda _: "unrelated" in fields(device.doc("dir")), TIMEOUT)
        assert device.status.withdrawn == ["wo-2"]

        await office_list(net, "wo-2", remove=True)
        await device.wait_for(
            lambda _: "wo-2" not in device.doc("dir").get("docs", type=Map), TIMEOUT
        )
        assert device.status.withdrawn == ["wo-2"]

        await office_edit(net, "wo-2", reassigned=True)
        await office_list(net, "wo-2")
        await device.wait_for(
            lambda s: not s.withdrawn and s.in_sync and "reassigned" in fields(device.doc("wo-2")),
            TIMEOUT,
        )
