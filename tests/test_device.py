"""Device replicas over in-memory channels against an in-process relay.

Every connection is a real :func:`memory_channel_pair` whose relay end is served
by a real :class:`Relay` (over a :class:`MemoryStore` or a :class:`SQLiteStore`),
in a task group the ``network`` fixture owns. The relay end is wrapped in a
:class:`RelayEnd` that counts bytes and can hold back Acks; the connector has
an ``enabled`` switch that makes it fail like a machine without network.
Waits are on device status changes or on tasks, each with a timeout.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from pycrdt import Array, Doc, Map, Text

from crdtsync import (
    Backoff,
    Channel,
    ConnectionClosed,
    Connector,
    Device,
    DeviceError,
    LocalStore,
    MemoryStore,
    Relay,
    SQLiteStore,
    memory_channel_pair,
)
from crdtsync.protocol import Ack, decode_frame
from crdtsync.store import build_doc

TIMEOUT = 20.0
FAST = Backoff(initial=0.01, maximum=0.05)


# -- helpers ---------------------------------------------------------------------------------------


def content(doc: Doc[Any]) -> dict[str, Any]:
    """Everything the tests write into a document, as plain Python."""
    return {
        "fields": doc.get("fields", type=Map).to_py(),
        "notes": str(doc.get("notes", type=Text)),
        "items": doc.get("items", type=Array).to_py(),
    }


def fields_of(doc: Doc[Any]) -> Map[Any]:
    return doc.get("fields", type=Map)


class RelayEnd:
    """The relay's end of one connection: counts bytes both ways, optionally holds Acks.

    ``received`` counts what the device sent, ``sent`` what the relay sent. With
    ``hold_acks`` each Ack waits for a permit (:meth:`allow`) before it goes out;
    ``held`` reports ``(document, seq)`` of each Ack as it is held.
    """

    def __init__(self, inner: Channel, *, hold_acks: bool = False) -> None:
        self.inner = inner
        self.received = 0
        self.sent = 0
        self.hold_acks = hold_acks
        self.held: asyncio.Queue[tuple[str, int]] = asyncio.Queue()
        self._permits = 0
        self._wake = asyncio.Event()

    def allow(self, count: int = 1) -> None:
        self._permits += count
        self._wake.set()

    def stop_holding(self) -> None:
        self.hold_acks = False
        self._wake.set()

    async def send(self, data: bytes) -> None:
        if self.hold_acks:
            frame = decode_frame(data)
            if isinstance(frame.message, Ack):
                self.held.put_nowait((frame.document, frame.message.seq))
                while self.hold_acks and self._permits == 0:
                    self._wake.clear()
                    await self._wake.wait()
                if self.hold_acks:
                    self._permits -= 1
        await self.inner.send(data)
        self.sent += len(data)

    async def recv(self) -> bytes:
        data = await self.inner.recv()
        self.received += len(data)
        return data

    async def close(self, code: int = 1000, reason: str = "") -> None:
        await self.inner.close(code, reason)


class LinkResetOnSend:
    """Device end whose link breaks while sending its ``fail_at``-th frame (a reset socket)."""

    def __init__(self, inner: Channel, fail_at: int) -> None:
        self.inner = inner
        self.fail_at = fail_at
        self.frames = 0

    async def send(self, data: bytes) -> None:
        self.frames += 1
        if self.frames == self.fail_at:
            await self.inner.close(1006, "link reset")
            raise ConnectionClosed(1006, "link reset")
        await self.inner.send(data)

    async def recv(self) -> bytes:
        return await self.inner.recv()

    async def close(self, code: int = 1000, reason: str = "") -> None:
        await self.inner.close(code, reason)


class Network:
    """Connects devices to one in-process relay; every ``serve`` runs in the fixture's group."""

    def __init__(self, relay: Relay, tasks: asyncio.TaskGroup) -> None:
        self.relay = relay
        self._tasks = tasks
        self.enabled = True
        self.hold_acks = False
        self.before_connect: Callable[[], Awaitable[None]] | None = None
        self.wrap_device_end: Callable[[Channel], Channel] | None = None
        self.attempts: dict[str, int] = {}
        self.ends: dict[str, list[RelayEnd]] = {}
        self.serving: dict[str, list[asyncio.Task[None]]] = {}
        self.opened: asyncio.Queue[asyncio.Task[None]] = asyncio.Queue()  # each serve task

    def connector(self, device: str) -> Connector:
        async def connect() -> Channel:
            self.attempts[device] = self.attempts.get(device, 0) + 1
            if self.before_connect is not None:
                await self.before_connect()
            if not self.enabled:
                raise OSError("network is unreachable (simulated)")
            device_end, relay_end = memory_channel_pair()
            end = RelayEnd(relay_end, hold_acks=self.hold_acks)
            self.ends.setdefault(device, []).append(end)
            task = self._tasks.create_task(self.relay.serve(end, peer=device))
            self.serving.setdefault(device, []).append(task)
            self.opened.put_nowait(task)
            if self.wrap_device_end is not None:
                return self.wrap_device_end(device_end)
            return device_end

        return connect

    async def relay_content(self, name: str) -> dict[str, Any]:
        """What the relay's store holds for ``name``, once everything applied is committed."""
        await self.relay.flush()
        return content(build_doc(await self.relay.store.load(name)))

    async def shutdown(self) -> None:
        for ends in self.ends.values():
            for end in ends:
                end.stop_holding()
                await end.close(1001, "test over")


@pytest.fixture(params=["memory-store", "sqlite-store"])
async def network(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Network]:
    store = MemoryStore() if request.param == "memory-store" else SQLiteStore(tmp_path / "relay.db")
    async with store, Relay(store) as relay, asyncio.TaskGroup() as tasks:
        net = Network(relay, tasks)
        try:
            yield net
        finally:
            await net.shutdown()


# -- offline, no relay at all ----------------------------------------------------------------------


async def test_edits_without_a_relay_persist_and_reload(tmp_path: Path) -> None:
    path = tmp_path / "tablet.db"
    docs = ["wo-1", "wo-2"]
    async with Device(path, None, documents=docs) as device:
        status = device.status
        assert not status.online
        assert not status.connected
        with pytest.raises(DeviceError):
            device.go_online()
        for i, name in enumerate(docs):
            doc = device.open(name)
            fields_of(doc)["customer"] = f"customer {i}"
            fields_of(doc)["status"] = "open"
            doc.get("notes", type=Text).insert(0, "pump replaced")
            doc.get("notes", type=Text).insert(4, " (grundfos)")
            doc.get("items", type=Array).extend(["valve", "seal"])
            del fields_of(doc)["status"]
        expected = {name: content(device.doc(name)) for name in docs}
        assert device.status.pending == {"wo-1": 6, "wo-2": 6}

    async with Device(path, None) as reopened:
        assert reopened.documents == docs
        assert {name: content(reopened.doc(name)) for name in docs} == expected
        assert reopened.status.pending == {"wo-1": 6, "wo-2": 6}
        assert reopened.status.last_sync is None
        fields_of(reopened.doc("wo-1"))["status"] = "closed"
        assert reopened.status.pending["wo-1"] == 7


async def test_opening_an_unknown_document_by_doc_is_an_error(tmp_path: Path) -> None:
    async with Device(tmp_path / "tablet.db", None) as device:
        with pytest.raises(DeviceError):
            device.doc("wo-404")
    with pytest.raises(DeviceError):
        _ = device.store


# -- outbox and acknowledgements -------------------------------------------------------------------


async def test_pending_grows_offline_and_drops_to_zero_after_sync(
    network: Network, tmp_path: Path
) -> None:
    async with Device(
        tmp_path / "a.db", network.connector("a"), documents=["wo-1", "wo-2"], online=False
    ) as device:
        for i in range(5):
            fields_of(device.open("wo-1"))[f"k{i}"] = f"v{i}"
            assert device.status.pending["wo-1"] == i + 1
        device.open("wo-2").get("notes", type=Text).insert(0, "hello")
        assert device.status.pending == {"wo-1": 5, "wo-2": 1}
        assert device.store.pending_all() == {"wo-1": 5, "wo-2": 1}
        assert network.attempts == {}  # offline: the device never tried to connect

        device.go_online()
        await device.wait_synced(TIMEOUT)
        assert device.status.pending == {"wo-1": 0, "wo-2": 0}
        assert device.store.pending_all() == {}
        assert device.store.last_outbox_seq("wo-1") == 0
        expected = {name: content(device.doc(name)) for name in ["wo-1", "wo-2"]}
    for name, value in expected.items():
        assert await network.relay_content(name) == value


def test_local_store_acknowledges_exactly_up_to_seq_and_per_document(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "a.db")
    try:
        a = [store.record_local("wo-a", bytes([i])) for i in range(3)]
        b = [store.record_local("wo-b", bytes([i])) for i in range(2)]
        store.record_remote("wo-a", b"remote")
        assert a == sorted(a)
        assert len(set(a + b)) == 5
        assert store.acknowledge("wo-a", a[1]) == 1
        assert store.last_outbox_seq("wo-a") == a[2]
        assert store.pending("wo-b") == 2  # an Ack for one document leaves the others alone
        assert store.acknowledge("wo-a", a[1]) == 1  # idempotent
        assert store.acknowledge("wo-b", max(a + b)) == 0
        assert store.pending_all() == {"wo-a": 1}
        assert len(store.load("wo-a").updates) == 4  # acks drop outbox rows, never content
    finally:
        store.close()


async def test_acks_remove_exactly_the_acknowledged_outbox_rows(
    network: Network, tmp_path: Path
) -> None:
    network.hold_acks = True
    async with Device(
        tmp_path / "a.db", network.connector("a"), documents=["wo-1", "wo-2"], online=False
    ) as device:
        for i in range(3):
            fields_of(device.open("wo-1"))[f"k{i}"] = str(i)
        fields_of(device.open("wo-2"))["other"] = "x"
        resume_seq = {name: device.store.last_outbox_seq(name) for name in ["wo-1", "wo-2"]}

        device.go_online()
        await device.wait_for(lambda s: s.connected, TIMEOUT)
        end = network.ends["a"][-1]
        document, seq = await asyncio.wait_for(end.held.get(), TIMEOUT)
        assert seq == resume_seq[document]  # the resume diff is tagged with the newest row

        # An edit made after the resume went out is pushed on its own, with a later seq.
        fields_of(device.doc(document))["late"] = "edit"
        late_seq = device.store.last_outbox_seq(document)
        assert late_seq > seq
        expected_before = {"wo-1": 3, "wo-2": 1}
        expected_before[document] += 1
        assert device.status.pending == expected_before  # nothing goes before its Ack

        end.allow(1)
        await device.wait_for(lambda s: s.pending[document] == 1, TIMEOUT)
        assert device.store.last_outbox_seq(document) == late_seq  # only the late edit is left
        other = "wo-2" if document == "wo-1" else "wo-1"
        assert device.status.pending[other] == expected_before[other]

        end.stop_holding()
        await device.wait_synced(TIMEOUT)
        assert device.store.pending_all() == {}


# -- two devices, concurrent offline edits ---------------------------------------------------------


def edit_offline(device: Device, tag: str, docs: list[str]) -> None:
    for name in docs:
        doc = device.doc(name)
        fields_of(doc)[f"{tag}-status"] = "done"
        fields_of(doc)["priority"] = f"set by {tag}"
        doc.get("notes", type=Text).insert(len("Report: "), f"<{tag}>")
        doc.get("items", type=Array).append(f"{tag}-1")
        doc.get("items", type=Array).append(f"{tag}-2")
        if tag == "a":
            del fields_of(doc)["customer"]


@pytest.mark.parametrize("first", ["a", "b"])
async def test_concurrent_offline_edits_converge_in_either_order(
    network: Network, tmp_path: Path, first: str
) -> None:
    docs = ["wo-1", "wo-2"]
    async with (
        Device(tmp_path / "a.db", network.connector("a"), documents=docs, backoff=FAST) as a,
        Device(tmp_path / "b.db", network.connector("b"), documents=docs, backoff=FAST) as b,
    ):
        for name in docs:
            base = a.doc(name)
            with base.transaction():
                fields_of(base)["customer"] = "ACME"
                base.get("notes", type=Text).insert(0, "Report: ")
                base.get("items", type=Array).append("base")
        await a.wait_synced(TIMEOUT)
        await b.wait_for(
            lambda s: s.in_sync and all(content(b.doc(n)) == content(a.doc(n)) for n in docs),
            TIMEOUT,
        )
        for device in (a, b):
            device.go_offline()
            await device.wait_for(lambda s: not s.connected, TIMEOUT)

        edit_offline(a, "a", docs)
        edit_offline(b, "b", docs)
        assert a.status.pending == {"wo-1": 6, "wo-2": 6}
        assert b.status.pending == {"wo-1": 5, "wo-2": 5}

        order = (a, b) if first == "a" else (b, a)
        for device in order:
            device.go_online()
            await device.wait_synced(TIMEOUT)
        # The device that synced first receives the other's edits live.
        await order[0].wait_for(
            lambda _: all(content(a.doc(n)) == content(b.doc(n)) for n in docs), TIMEOUT
        )
        assert a.status.in_sync
        assert b.status.in_sync

        for name in docs:
            merged = content(a.doc(name))
            assert set(merged["fields"]) == {"a-status", "b-status", "priority"}
            assert merged["fields"]["priority"] in {"set by a", "set by b"}
            notes = merged["notes"]
            assert notes.startswith("Report: ")
            assert sorted([notes[8:11], notes[11:14]]) == ["<a>", "<b>"]
            assert len(notes) == len("Report: <a><b>")
            items = merged["items"]
            assert items[0] == "base"
            assert sorted(items) == sorted(["base", "a-1", "a-2", "b-1", "b-2"])
            assert items.index("a-1") < items.index("a-2")
            assert items.index("b-1") < items.index("b-2")
            assert await network.relay_content(name) == merged


# -- resume sends only what is missing -------------------------------------------------------------


async def test_resume_sends_only_what_is_missing(network: Network, tmp_path: Path) -> None:
    names = [f"wo-{i:02d}" for i in range(50)]
    async with Device(
        tmp_path / "a.db", network.connector("a"), documents=names, backoff=FAST
    ) as a:
        for i, name in enumerate(names):
            doc = a.doc(name)
            with doc.transaction():
                for k in range(10):
                    fields_of(doc)[f"f{k}"] = f"value {k} of order {i}"
                doc.get("notes", type=Text).insert(0, f"order {i}: " + "checked the pump. " * 20)
        await a.wait_synced(TIMEOUT)

        async with Device(
            tmp_path / "b.db", network.connector("b"), documents=names, backoff=FAST
        ) as b:
            await b.wait_synced(TIMEOUT)
            assert all(content(b.doc(n)) == content(a.doc(n)) for n in names)
            total = sum(len(a.doc(n).get_update()) for n in names)
            bound = total // 5
            assert network.ends["b"][0].sent > bound  # a full first sync does carry the documents

            a.go_offline()
            await a.wait_for(lambda s: not s.connected, TIMEOUT)
            fields_of(a.doc("wo-17"))["f3"] = "changed offline"
            a.go_online()
            await a.wait_synced(TIMEOUT)
            await b.wait_for(
                lambda _: fields_of(b.doc("wo-17")).get("f3") == "changed offline", TIMEOUT
            )

            assert len(network.ends["a"]) == 2
            resumed = network.ends["a"][1]
            assert 0 < resumed.received < bound, (resumed.received, total)
            assert 0 < resumed.sent < bound, (resumed.sent, total)


# -- connection management -------------------------------------------------------------------------


def test_backoff_delay_is_jittered_within_bounds_and_capped() -> None:
    backoff = Backoff(initial=0.5, maximum=8.0, factor=2.0)
    rng = random.Random(20240611)
    for attempt in [*range(10), 31, 32, 33, 10_000]:
        ceiling = min(backoff.maximum, backoff.initial * backoff.factor ** min(attempt, 32))
        delays = [backoff.delay(attempt, rng) for _ in range(300)]
        assert all(ceiling / 10 <= d <= ceiling for d in delays), attempt
        assert max(delays) <= backoff.maximum
        # Jittered: spread over most of the allowed range, not one value.
        assert max(delays) - min(delays) > 0.5 * (ceiling - ceiling / 10)
    assert backoff.delay(0, random.Random(1)) <= backoff.initial
    assert backoff.delay(10_000, random.Random(1)) >= backoff.maximum / 10
    seeded = [Backoff().delay(n, random.Random(7)) for n in range(8)]
    assert seeded == [Backoff().delay(n, random.Random(7)) for n in range(8)]


async def test_device_retries_while_the_network_is_down_then_syncs(
    network: Network, tmp_path: Path
) -> None:
    network.enabled = False
    async with Device(
        tmp_path / "a.db", network.connector("a"), documents=["wo-1"], backoff=FAST
    ) as device:
        fields_of(device.doc("wo-1"))["k"] = "written with no network"
        await device.wait_for(
            lambda s: s.last_error is not None and network.attempts.get("a", 0) >= 3, TIMEOUT
        )
        status = device.status
        assert status.online
        assert not status.connected
        assert status.last_error is not None
        assert "connect failed" in status.last_error
        assert status.pending == {"wo-1": 1}
        assert status.last_sync is None

        network.enabled = True
        await device.wait_synced(TIMEOUT)
        assert device.status.last_error is None
    assert (await network.relay_content("wo-1"))["fields"] == {"k": "written with no network"}


async def test_go_offline_closes_the_connection_and_edits_keep_working(
    network: Network, tmp_path: Path
) -> None:
    async with Device(
        tmp_path / "a.db", network.connector("a"), documents=["wo-1"], backoff=FAST
    ) as device:
        await device.wait_synced(TIMEOUT)
        device.go_offline()
        await device.wait_for(lambda s: not s.connected, TIMEOUT)
        await asyncio.wait_for(network.serving["a"][0], TIMEOUT)  # the relay side ended too
        assert not device.status.online

        fields_of(device.doc("wo-1"))["x"] = "1"
        fields_of(device.doc("wo-1"))["y"] = "2"
        status = device.status
        assert status.pending == {"wo-1": 2}
        assert not status.connected
        assert network.attempts == {"a": 1}  # offline means no reconnect attempts

        device.go_online()
        await device.wait_synced(TIMEOUT)
        assert device.status.reconnects == 1
    assert (await network.relay_content("wo-1"))["fields"] == {"x": "1", "y": "2"}


async def test_go_offline_while_connecting_does_not_connect(
    network: Network, tmp_path: Path
) -> None:
    connecting, release = asyncio.Event(), asyncio.Event()

    async def slow_network() -> None:
        connecting.set()
        await release.wait()

    network.before_connect = slow_network
    async with Device(
        tmp_path / "a.db", network.connector("a"), documents=["wo-1"], backoff=FAST
    ) as device:
        await asyncio.wait_for(connecting.wait(), TIMEOUT)
        device.go_offline()
        network.before_connect = None
        release.set()
        # The channel that opened after going offline is closed at once, never used.
        serving = await asyncio.wait_for(network.opened.get(), TIMEOUT)
        await asyncio.wait_for(serving, TIMEOUT)
        assert not device.status.connected
        assert not device.status.online

        device.go_online()
        await device.wait_synced(TIMEOUT)


async def test_a_link_reset_while_sending_reconnects_and_resends(
    network: Network, tmp_path: Path
) -> None:
    # Frame 1 is the Resume; frame 2 the two edits below, one merged Push: the link dies
    # sending it.
    network.wrap_device_end = lambda end: LinkResetOnSend(end, fail_at=2)
    async with Device(
        tmp_path / "a.db", network.connector("a"), documents=["wo-1"], backoff=FAST
    ) as device:
        await device.wait_synced(TIMEOUT)
        network.wrap_device_end = None
        fields_of(device.doc("wo-1"))["first"] = "1"
        fields_of(device.doc("wo-1"))["second"] = "2"
        await device.wait_for(lambda s: s.reconnects >= 1 and s.in_sync, TIMEOUT)
        assert len(network.ends["a"]) == 2
    assert (await network.relay_content("wo-1"))["fields"] == {"first": "1", "second": "2"}


async def test_last_sync_is_set_after_a_full_sync_and_kept(
    network: Network, tmp_path: Path
) -> None:
    path = tmp_path / "a.db"
    async with Device(path, network.connector("a"), documents=["wo-1"], online=False) as device:
        fields_of(device.doc("wo-1"))["k"] = "v"
        assert device.status.last_sync is None
        device.go_online()
        await device.wait_synced(TIMEOUT)
        assert isinstance(device.status.last_sync, float)
    async with Device(path, None) as reopened:
        assert isinstance(reopened.status.last_sync, float)


async def test_a_document_opened_while_connected_is_synced_too(
    network: Network, tmp_path: Path
) -> None:
    async with Device(
        tmp_path / "a.db", network.connector("a"), documents=["wo-1"], backoff=FAST
    ) as a:
        await a.wait_synced(TIMEOUT)
        fields_of(a.open("wo-2"))["opened"] = "while connected"
        assert a.status.synced["wo-2"] is False
        await a.wait_synced(TIMEOUT)
        assert a.status.synced == {"wo-1": True, "wo-2": True}
        async with Device(
            tmp_path / "b.db", network.connector("b"), documents=["wo-2"], backoff=FAST
        ) as b:
            await b.wait_synced(TIMEOUT)
            assert fields_of(b.doc("wo-2")).to_py() == {"opened": "while connected"}
    assert (await network.relay_content("wo-2"))["fields"] == {"opened": "while connected"}


async def test_remote_updates_are_applied_and_stored_on_the_device(
    network: Network, tmp_path: Path
) -> None:
    path_a = tmp_path / "a.db"
    async with (
        Device(path_a, network.connector("a"), documents=["wo-1"], backoff=FAST) as a,
        Device(tmp_path / "b.db", network.connector("b"), documents=["wo-1"], backoff=FAST) as b,
    ):
        await a.wait_synced(TIMEOUT)
        await b.wait_synced(TIMEOUT)
        doc = b.doc("wo-1")
        with doc.transaction():
            fields_of(doc)["technician"] = "Kim"
            doc.get("notes", type=Text).insert(0, "arrived 9:40")
            doc.get("items", type=Array).append("filter")
        fields_of(doc)["status"] = "in progress"
        await a.wait_for(lambda _: content(a.doc("wo-1")) == content(b.doc("wo-1")), TIMEOUT)
        expected = content(a.doc("wo-1"))
        assert a.status.pending == {"wo-1": 0}  # remote changes never enter the outbox
    async with Device(path_a, None) as reopened:
        assert content(reopened.doc("wo-1")) == expected
