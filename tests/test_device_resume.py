"""Coming back with many documents: one Resume, and only what differs syncs in full."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pycrdt import Doc, Map, Text

from crdtsync import Device
from crdtsync.protocol import Push, Resume, Resumed, SyncStep1, SyncStep2, Update

from .device_harness import FAST, TIMEOUT, Network, network

NAMES = [f"wo/{i}" for i in range(40)]


@pytest.fixture(params=["memory", "sqlite"])
async def net(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Network]:
    async with network(request.param, tmp_path) as n:
        yield n


def notes(doc: Doc[Any]) -> Text:
    return doc.get("notes", type=Text)


def sent(net: Network, device: str, link: int, kind: type) -> list[Any]:
    """What the relay sent to ``device`` on its ``link``-th connection, of one kind."""
    return [f for f in net.taps[device][link].sent if isinstance(f.message, kind)]


async def test_a_device_back_with_nothing_new_exchanges_no_document_content(
    net: Network, tmp_path: Path
) -> None:
    async with Device(tmp_path / "a.db", net.connector("a"), documents=NAMES, backoff=FAST) as a:
        for name in NAMES:
            notes(a.doc(name)).insert(0, f"{name} notes")  # deletions too, below
            del notes(a.doc(name))[0:1]
        await a.wait_synced(TIMEOUT)
        a.go_offline()
        await a.wait_for(lambda s: not s.connected, TIMEOUT)
        a.go_online()
        await a.wait_synced(TIMEOUT)
    second = net.taps["a"][1]
    assert [type(f.message) for f in second.received] == [Resume]
    assert [f.message for f in second.sent] == [Resumed(())]
    assert net.relay.stats.resumed >= len(NAMES)


async def test_only_documents_that_changed_on_either_side_sync_in_full(
    net: Network, tmp_path: Path
) -> None:
    connector = net.connector("a")
    async with Device(tmp_path / "a.db", connector, documents=NAMES, backoff=FAST) as a:
        for name in NAMES:
            notes(a.doc(name)).insert(0, "x")
        await a.wait_synced(TIMEOUT)
        a.go_offline()
        await a.wait_for(lambda s: not s.connected, TIMEOUT)
        notes(a.doc("wo/1")).insert(0, "mine ")  # changed here, offline
        await net.relay.edit(
            "wo/2", lambda doc: notes(doc).insert(0, "theirs "), tenant="acme"
        )  # there
        a.go_online()
        await a.wait_synced(TIMEOUT)
        assert str(notes(a.doc("wo/2"))) == "theirs x"
    assert str(notes(await net.relay.read("wo/1", tenant="acme"))) == "mine x"
    second = net.taps["a"][1]
    resumed = [f.message for f in second.sent if isinstance(f.message, Resumed)]
    assert resumed == [Resumed((1, 2))]
    full = {f.document for f in second.received if isinstance(f.message, SyncStep1)}
    assert full == {"wo/1", "wo/2"}
    assert {f.document for f in second.sent if isinstance(f.message, SyncStep2)} == full
    assert {f.document for f in second.received if isinstance(f.message, Push)} == {"wo/1"}


async def test_an_edit_made_while_the_resume_is_under_way_still_goes_out(
    net: Network, tmp_path: Path
) -> None:
    async with Device(tmp_path / "a.db", net.connector("a"), documents=["wo/1"], backoff=FAST) as a:
        a.doc("wo/1").get("m", type=Map)["before"] = 1
        await a.wait_synced(TIMEOUT)
        a.go_offline()
        await a.wait_for(lambda s: not s.connected, TIMEOUT)
        a.go_online()
        a.doc("wo/1").get("m", type=Map)["during"] = 2  # before the relay's answer arrives
        await a.wait_synced(TIMEOUT)
    relay_doc = await net.relay.read("wo/1", tenant="acme")
    assert relay_doc.get("m", type=Map).to_py() == {"before": 1.0, "during": 2.0}


async def test_other_peers_still_receive_updates_for_documents_resumed_in_sync(
    net: Network, tmp_path: Path
) -> None:
    async with (
        Device(tmp_path / "a.db", net.connector("a"), documents=["wo/1"], backoff=FAST) as a,
        Device(tmp_path / "b.db", net.connector("b"), documents=["wo/1"], backoff=FAST) as b,
    ):
        await a.wait_synced(TIMEOUT)
        await b.wait_synced(TIMEOUT)
        a.go_offline()
        await a.wait_for(lambda s: not s.connected, TIMEOUT)
        a.go_online()
        await a.wait_synced(TIMEOUT)  # resumed in sync: joined the room without a SyncStep2
        b.doc("wo/1").get("m", type=Map)["from b"] = 1
        await a.wait_for(lambda s: "from b" in a.doc("wo/1").get("m", type=Map), TIMEOUT)
    assert any(isinstance(f.message, Update) for f in net.taps["a"][1].sent)


async def test_edits_queued_together_leave_as_one_push(net: Network, tmp_path: Path) -> None:
    async with Device(tmp_path / "a.db", net.connector("a"), documents=["wo/1"], backoff=FAST) as a:
        await a.wait_synced(TIMEOUT)
        fields = a.doc("wo/1").get("m", type=Map)
        for i in range(50):  # no await between them: the writer finds them all queued
            fields[f"k{i}"] = i
        await a.wait_synced(TIMEOUT)
        assert a.status.pending == {"wo/1": 0}
    pushes = net.received("a", Push, "wo/1")
    assert len(pushes) == 1
    assert pushes[0].seq == max(p.seq for p in pushes)
    relay_doc = await net.relay.read("wo/1", tenant="acme")
    assert len(relay_doc.get("m", type=Map)) == 50
