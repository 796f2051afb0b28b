"""The relay over in-memory channels, driven by hand-spoken devices.

Each test runs a real :class:`Relay` over a real store (MemoryStore, or a
SQLiteStore file where durability matters). Every ``relay.serve`` runs in a task
group the test owns (:func:`running`). Peers are :class:`RawPeer`: a DEVICE
:class:`SyncSession` plus one end of a :func:`memory_channel_pair` and pycrdt
documents, so the tests see exactly the frames the relay sends. Waits are on
received events, each under a timeout; the few bounded waits check that
something does *not* happen.
"""

from __future__ import annotations

import asyncio
import random
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from pycrdt import Array, Doc, Map, Text

from crdtsync import (
    Application,
    Channel,
    CloseCode,
    CompactionPolicy,
    ConnectionClosed,
    ErrorCode,
    MemoryChannel,
    MemoryStore,
    Principal,
    Relay,
    RelayConfig,
    SQLiteStore,
    Store,
    StoredDocument,
    StoreError,
    memory_channel_pair,
)
from crdtsync._updates import is_panic
from crdtsync.protocol import (
    AckReceived,
    Error,
    ErrorReceived,
    Event,
    Push,
    Role,
    StatusReceived,
    Synced,
    SyncRequested,
    SyncSession,
    SyncStep1,
    UpdateReceived,
    decode_frame,
    decode_message,
    encode_frame,
    write_var_string,
    write_var_uint,
)
from crdtsync.store import build_doc

TIMEOUT = 10.0
QUIET = 0.2  # bounded wait when checking that nothing arrives
DOC = "wo-1"

# -- documents -------------------------------------------------------------------------------------


def content(doc: Doc[Any]) -> tuple[dict[str, Any], str, list[Any]]:
    """Everything the tests write into a document, as plain Python."""
    return (
        doc.get("fields", type=Map).to_py(),
        str(doc.get("notes", type=Text)),
        doc.get("items", type=Array).to_py(),
    )


class Editor:
    """A pycrdt document whose every transaction's update is kept, in order."""

    def __init__(self, client_id: int | None = None) -> None:
        self.doc: Doc[Any] = Doc() if client_id is None else Doc(client_id=client_id)
        self.updates: list[bytes] = []
        self.doc.observe(lambda event: self.updates.append(event.update))

    def edit(self, i: int) -> bytes:
        """One transaction touching the map, the text and the array; returns its update."""
        fields = self.doc.get("fields", type=Map)
        notes = self.doc.get("notes", type=Text)
        items = self.doc.get("items", type=Array)
        with self.doc.transaction():
            fields[f"k{i % 5}"] = i
            fields[f"c{self.doc.client_id % 1000}-{i}"] = True
            notes.insert(len(notes) // 2, f"<{i}>")
            items.append(i)
        return self.updates[-1]

    def edits(self, start: int, count: int) -> list[bytes]:
        return [self.edit(i) for i in range(start, start + count)]

    @property
    def content(self) -> tuple[dict[str, Any], str, list[Any]]:
        return content(self.doc)


def doc_of(*updates: bytes) -> Doc[Any]:
    doc: Doc[Any] = Doc()
    for update in updates:
        doc.apply_update(update)
    return doc


def dependent_pair() -> tuple[bytes, bytes]:
    """Two inserts of one client; the second's origin is in the first (a real dependency)."""
    editor = Editor()
    notes = editor.doc.get("notes", type=Text)
    notes += "hello"
    notes += " world"
    return editor.updates[0], editor.updates[1]


async def stored_content(store: Store, name: str = DOC) -> tuple[dict[str, Any], str, list[Any]]:
    return content(build_doc(await store.load(name)))


# -- a device spoken by hand -----------------------------------------------------------------------


def is_ack(seq: int | None = None) -> Callable[[Event], bool]:
    return lambda e: isinstance(e, AckReceived) and (seq is None or e.seq == seq)


async def wait_until(predicate: Callable[[], bool], timeout: float = TIMEOUT) -> None:
    """Poll ``predicate`` while the event loop runs the relay (for relay-internal states)."""
    async with asyncio.timeout(timeout):
        while not predicate():  # noqa: ASYNC110 (relay-internal counters have no event)
            await asyncio.sleep(0.001)


def ack_seqs(events: Sequence[Event]) -> list[int]:
    return [e.seq for e in events if isinstance(e, AckReceived)]


def assert_cumulative_acks(seqs: list[int], last: int) -> None:
    """Acks are cumulative: strictly increasing, the last one covering every push."""
    assert seqs, "no Ack arrived"
    assert seqs == sorted(set(seqs)), seqs
    assert seqs[-1] == last


def wire_errors(frames: list[bytes]) -> list[ErrorCode | int]:
    """Codes of the Error frames among native ``frames``, read with the codec alone."""
    messages = [decode_frame(frame).message for frame in frames]
    return [m.error_code for m in messages if isinstance(m, Error)]


class RawPeer:
    """A DEVICE session over one memory channel end; events are read on demand, in order."""

    def __init__(self, channel: MemoryChannel, *, document: str | None = None) -> None:
        self.channel = channel
        self.session = SyncSession(Role.DEVICE, document=document)
        self.frames: list[bytes] = []  # every frame received, as sent by the relay
        self._backlog: deque[Event] = deque()

    async def open(self, name: str = DOC, doc: Doc[Any] | None = None) -> Doc[Any]:
        """Send SyncStep1, wait for the relay's answer; return a document holding its SyncStep2."""
        replica: Doc[Any] = doc if doc is not None else Doc()
        await self.channel.send(self.session.open_document(name, replica.get_state()))
        for event in await self.recv_events(lambda e: isinstance(e, SyncRequested)):
            if isinstance(event, UpdateReceived) and event.step2:
                replica.apply_update(event.update)
        return replica

    async def push(self, name: str, seq: int, update: bytes) -> None:
        await self.channel.send(self.session.send_push(name, seq, update))

    async def send_update(self, name: str, update: bytes) -> None:
        await self.channel.send(self.session.send_update(name, update))

    async def send_raw(self, frame: bytes) -> None:
        await self.channel.send(frame)

    async def next_event(self) -> Event:
        """The next event; raises ConnectionClosed when the relay closed the channel."""
        while not self._backlog:
            self.frames.append(await self.channel.recv())
            self._backlog.extend(self.session.receive_frame(self.frames[-1]))
        return self._backlog.popleft()

    async def recv_events(
        self, until: Callable[[Event], bool], timeout: float = TIMEOUT
    ) -> list[Event]:
        """Events up to and including the first one ``until`` accepts."""
        events: list[Event] = []
        async with asyncio.timeout(timeout):
            while True:
                events.append(await self.next_event())
                if until(events[-1]):
                    return events

    async def recv_until_closed(
        self, timeout: float = TIMEOUT
    ) -> tuple[list[Event], ConnectionClosed]:
        """Every event until the channel closes, and the close."""
        events: list[Event] = []
        async with asyncio.timeout(timeout):
            while True:
                try:
                    events.append(await self.next_event())
                except ConnectionClosed as closed:
                    return events, closed

    async def push_all(self, name: str, updates: Sequence[bytes], first_seq: int = 1) -> None:
        """Push every update (seqs from ``first_seq``) at once, then wait for the last Ack."""
        for seq, update in enumerate(updates, first_seq):
            await self.push(name, seq, update)
        await self.recv_events(is_ack(first_seq + len(updates) - 1))

    async def assert_quiet(self, what: Callable[[Event], bool], wait: float = QUIET) -> None:
        """Nothing ``what`` accepts arrives within ``wait`` seconds."""
        with pytest.raises(TimeoutError):
            await self.recv_events(what, timeout=wait)


@dataclass
class Harness:
    relay: Relay
    store: Store
    tasks: asyncio.TaskGroup

    def connect(
        self,
        *,
        document: str | None = None,
        capacity: int = 0,
        wrap: Callable[[Channel], Channel] | None = None,
        principal: Principal | None = None,
    ) -> RawPeer:
        """A new connection whose relay end (``wrap``-ped) is served in the test's task group."""
        peer_end, relay_end = memory_channel_pair(capacity)
        served: Channel = relay_end if wrap is None else wrap(relay_end)
        self.tasks.create_task(self.relay.serve(served, document=document, principal=principal))
        return RawPeer(peer_end, document=document)


@asynccontextmanager
async def running(
    store: Store, config: RelayConfig | None = None, application: Application | None = None
) -> AsyncIterator[Harness]:
    """Store, then a task group for the connections, then the relay (left first on exit)."""
    relay = Relay(store, config, application=application)
    async with store, asyncio.TaskGroup() as tasks, relay:
        yield Harness(relay, store, tasks)


@pytest.fixture(params=["memory-store", "sqlite-store"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], Store]:
    if request.param == "memory-store":
        return MemoryStore
    return lambda: SQLiteStore(tmp_path / "relay.db")


# -- opening ---------------------------------------------------------------------------------------


async def test_open_answers_with_step2_content_then_the_relay_state_vector() -> None:
    """SyncStep1 from a peer gets SyncStep2 (what the relay has) then SyncStep1."""
    writer = Editor()
    async with running(MemoryStore()) as h:
        first = h.connect()
        await first.open()
        await first.push_all(DOC, writer.edits(0, 5))

        peer = h.connect()
        await peer.channel.send(peer.session.open_document(DOC, Doc().get_state()))
        step2, synced, step1 = [await peer.next_event() for _ in range(3)]

    assert isinstance(step2, UpdateReceived)
    assert step2.step2
    assert content(doc_of(step2.update)) == writer.content
    assert isinstance(synced, Synced)
    assert isinstance(step1, SyncRequested)
    assert step1.state_vector == writer.doc.get_state()


async def test_open_sends_only_what_the_peer_lacks() -> None:
    """The SyncStep2 answer is the diff against the peer's state vector."""
    writer = Editor()
    async with running(MemoryStore()) as h:
        first = h.connect()
        await first.open()
        await first.push_all(DOC, writer.edits(0, 20))
        replica = doc_of(*writer.updates)
        await first.push_all(DOC, writer.edits(20, 2), first_seq=21)

        peer = h.connect()
        await peer.channel.send(peer.session.open_document(DOC, replica.get_state()))
        step2 = (await peer.recv_events(lambda e: isinstance(e, UpdateReceived)))[-1]
    assert isinstance(step2, UpdateReceived)
    assert len(step2.update) < len(writer.doc.get_update()) // 2
    replica.apply_update(step2.update)
    assert content(replica) == writer.content


# -- push and ack ----------------------------------------------------------------------------------


async def test_an_acked_push_is_already_in_the_store(make_store: Callable[[], Store]) -> None:
    """When the Ack arrives, the store holds the update: no flush, no waiting."""
    writer = Editor()
    async with running(make_store()) as h:
        peer = h.connect()
        await peer.open()
        update = writer.edit(0)
        await peer.push(DOC, 7, update)
        events = await peer.recv_events(is_ack())
        assert events == [AckReceived(DOC, 7)]
        assert await stored_content(h.store) == writer.content


async def test_acks_arrive_in_push_order_for_200_pushes() -> None:
    """Acks come in push order, and the last one covers every update."""
    writer = Editor()
    async with running(MemoryStore()) as h:
        peer = h.connect()
        await peer.open()
        for seq, update in enumerate(writer.edits(0, 200), 1):
            await peer.push(DOC, seq, update)
        seqs = ack_seqs(await peer.recv_events(is_ack(200)))
        assert_cumulative_acks(seqs, 200)
        assert await stored_content(h.store) == writer.content
        assert h.relay.stats.acks_sent == len(seqs)


async def test_one_commit_answers_each_connection_with_one_cumulative_ack() -> None:
    """Pushes that share a commit get one Ack per connection and document: the highest."""
    writer = Editor()
    store = GatedStore()
    async with running(store) as h:
        peer = h.connect()
        await peer.open()
        store.gate.clear()
        await peer.push(DOC, 1, writer.edit(0))
        await wait_until(lambda: store.appends_started == 1)
        for seq, update in enumerate(writer.edits(1, 30), 2):  # queued behind the first commit
            await peer.push(DOC, seq, update)
        await wait_until(lambda: h.relay.stats.updates_received == 31)
        store.gate.set()
        seqs = ack_seqs(await peer.recv_events(is_ack(31)))
        assert seqs == [1, 31]
        assert await stored_content(h.store) == writer.content


class GatedStore(MemoryStore):
    """A MemoryStore whose commits wait until ``gate`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.gate.set()
        self.appends_started = 0

    async def append(self, entries: Sequence[tuple[str, bytes]]) -> list[int]:
        self.appends_started += 1
        await self.gate.wait()
        return await super().append(entries)


async def test_no_ack_before_the_commit_returns() -> None:
    """While the store transaction is held open no Ack goes out; it follows the commit."""
    writer = Editor()
    store = GatedStore()
    async with running(store) as h:
        peer = h.connect()
        await peer.open()
        store.gate.clear()
        await peer.push(DOC, 1, writer.edit(0))
        await peer.assert_quiet(is_ack())
        assert store.appends_started >= 1  # the commit is in progress, held at the gate
        assert (await store.load(DOC)).empty
        store.gate.set()
        assert await peer.recv_events(is_ack()) == [AckReceived(DOC, 1)]
        assert await stored_content(store) == writer.content


async def test_concurrent_pushes_share_commits() -> None:
    """1000 pushes from 5 peers are all acked, in order, with fewer commits than updates."""
    editors = [Editor() for _ in range(5)]
    async with running(MemoryStore()) as h:
        peers = [h.connect() for _ in editors]
        for peer in peers:
            await peer.open()
        batches = [editor.edits(0, 200) for editor in editors]

        async def push_and_collect(peer: RawPeer, updates: list[bytes]) -> list[int]:
            for seq, update in enumerate(updates, 1):
                await peer.push(DOC, seq, update)
            return ack_seqs(await peer.recv_events(is_ack(200)))

        async with asyncio.TaskGroup() as pushing:
            acks = [
                pushing.create_task(push_and_collect(p, b))
                for p, b in zip(peers, batches, strict=True)
            ]
        for task in acks:
            assert_cumulative_acks(task.result(), 200)
        assert h.relay.stats.updates_stored == 1000
        assert h.relay.stats.commits < 1000
        merged = doc_of(*(u for batch in batches for u in batch))
        assert await stored_content(h.store) == content(merged)


async def test_a_duplicate_push_is_acked_twice_and_stored_once() -> None:
    """The same bytes pushed twice are both acknowledged; the log holds them once."""
    writer = Editor()
    async with running(MemoryStore()) as h:
        peer = h.connect()
        await peer.open()
        update = writer.edit(0)
        await peer.push(DOC, 1, update)
        await peer.push(DOC, 2, update)
        assert_cumulative_acks(ack_seqs(await peer.recv_events(is_ack(2))), 2)
        assert h.relay.stats.updates_stored == 1
        assert (await h.store.load(DOC)).updates == [update]


async def test_an_update_waiting_for_its_dependency_is_stored_before_its_ack() -> None:
    """An update pycrdt keeps pending (its origin is missing) is still durable when acked."""
    first, second = dependent_pair()
    async with running(MemoryStore()) as h:
        peer = h.connect()
        await peer.open()
        await peer.push(DOC, 1, second)
        await peer.recv_events(is_ack(1))
        stored = await h.store.load(DOC)
        rebuilt = build_doc(stored)
        rebuilt.apply_update(first)
        assert str(rebuilt.get("notes", type=Text)) == "hello world"


async def test_an_update_waiting_for_its_dependency_is_fanned_out() -> None:
    """Other peers get a pending update too, so they converge when the dependency comes."""
    first, second = dependent_pair()
    async with running(MemoryStore()) as h:
        sender, other = h.connect(), h.connect()
        await sender.open()
        replica = await other.open()
        await sender.push(DOC, 1, second)
        await sender.push(DOC, 2, first)
        await sender.recv_events(is_ack(2))
        # The two updates may reach the other peer merged into one frame.
        while str(replica.get("notes", type=Text)) != "hello world":
            events = await other.recv_events(lambda e: isinstance(e, UpdateReceived))
            for event in events:
                if isinstance(event, UpdateReceived):
                    replica.apply_update(event.update)


async def test_relay_compaction_keeps_an_update_waiting_for_its_dependency() -> None:
    """A room whose document holds a pending update is compacted once it is integrated."""
    first, second = dependent_pair()
    async with running(MemoryStore()) as h:
        peer = h.connect()
        await peer.open()
        await peer.push(DOC, 1, second)
        await peer.recv_events(is_ack(1))
        with pytest.raises(StoreError, match="waiting for a dependency"):
            await h.relay.compact(DOC)
        await h.relay.compact(DOC)  # not tried again before the log grows: no error
        assert (await h.store.load(DOC)).updates == [second]
        await peer.push(DOC, 2, first)
        await peer.recv_events(is_ack(2))
        await h.relay.compact(DOC)
        stored = await h.store.load(DOC)
        assert stored.snapshot is not None
        assert str(build_doc(stored).get("notes", type=Text)) == "hello world"


class LoadCountingStore(MemoryStore):
    """A MemoryStore that counts loads (the relay loads a document to compact it)."""

    def __init__(self) -> None:
        super().__init__()
        self.loads = 0
        self.loaded = asyncio.Condition()

    async def load(self, document: str) -> StoredDocument:
        async with self.loaded:
            self.loads += 1
            self.loaded.notify_all()
        return await super().load(document)


async def test_a_log_that_does_not_merge_is_kept_and_the_relay_keeps_running() -> None:
    """An accepted update pycrdt cannot merge: compaction is refused, the relay keeps acking,
    and maintenance tries again only once the log has grown.

    Before, pycrdt's ValueError escaped the maintenance task and stopped the relay.
    """
    unmergeable = bytes.fromhex(
        "0103b2f31900040119000401056e6f746573037730202801066669656c6473026b3001"
        "770276300801056974656d73017c0000000000"
    )
    config = RelayConfig(compaction=CompactionPolicy(max_log_entries=1), maintenance_interval=0.001)
    store = LoadCountingStore()
    async with running(store, config) as h:
        peer = h.connect()
        await peer.open()
        await peer.push_all(DOC, [unmergeable])
        with pytest.raises(StoreError, match="stored document"):
            await h.relay.compact(DOC)
        loads = store.loads
        writer = Editor()
        await peer.push(DOC, 2, writer.edit(0))  # the log grows: maintenance tries again
        assert await peer.recv_events(is_ack()) == [AckReceived(DOC, 2)]
        async with asyncio.timeout(TIMEOUT), store.loaded:
            await store.loaded.wait_for(lambda: store.loads > loads)
        await peer.push(DOC, 3, writer.edit(1))
        assert await peer.recv_events(is_ack()) == [AckReceived(DOC, 3)]
        assert (await store.load(DOC)).updates[0] == unmergeable


# -- fan-out ---------------------------------------------------------------------------------------


async def test_an_update_reaches_every_other_peer_and_never_its_sender() -> None:
    """A's update reaches B and C as Update messages; A only gets its Ack."""
    a_editor, b_editor = Editor(), Editor()
    async with running(MemoryStore()) as h:
        a, b, c = h.connect(), h.connect(), h.connect()
        for peer in (a, b, c):
            await peer.open()
        update = a_editor.edit(0)
        await a.push(DOC, 1, update)
        for peer in (b, c):
            received = await peer.recv_events(lambda e: isinstance(e, UpdateReceived))
            assert received == [UpdateReceived(DOC, update, None)]
        # A's stream: its Ack, then the next thing anyone else writes; never its own update.
        b_update = b_editor.edit(0)
        await b.push(DOC, 1, b_update)
        seen_by_a = await a.recv_events(lambda e: isinstance(e, UpdateReceived))
        assert seen_by_a == [AckReceived(DOC, 1), UpdateReceived(DOC, b_update, None)]


async def test_a_plain_update_is_stored_and_answered_with_a_status() -> None:
    """A native Update (no seq) is stored and fanned out; its sender gets SyncStatus."""
    writer = Editor()
    async with running(MemoryStore()) as h:
        sender, other = h.connect(), h.connect()
        await sender.open()
        await other.open()
        update = writer.edit(0)
        await sender.send_update(DOC, update)
        assert await sender.recv_events(lambda e: isinstance(e, StatusReceived)) == [
            StatusReceived(DOC, True)
        ]
        assert await other.recv_events(lambda e: isinstance(e, UpdateReceived)) == [
            UpdateReceived(DOC, update, None)
        ]
        assert await stored_content(h.store) == writer.content


# -- y-websocket framing ---------------------------------------------------------------------------


async def test_y_websocket_peer_syncs_with_native_peers_of_the_same_document() -> None:
    """Plain framing: the relay speaks first; updates flow both ways and are stored."""
    native_editor, yjs_editor = Editor(), Editor()
    async with running(MemoryStore()) as h:
        native = h.connect()
        await native.open("doc1")
        await native.push_all("doc1", native_editor.edits(0, 3))

        yjs = h.connect(document="doc1")
        first = decode_message(await yjs.channel.recv())
        assert first == SyncStep1(native_editor.doc.get_state())
        replica = await yjs.open("doc1")
        assert content(replica) == native_editor.content

        update = yjs_editor.edit(0)
        await yjs.send_update("doc1", update)
        assert await native.recv_events(lambda e: isinstance(e, UpdateReceived)) == [
            UpdateReceived("doc1", update, None)
        ]
        await h.relay.flush()
        expected = doc_of(*native_editor.updates, update)
        assert await stored_content(h.store, "doc1") == content(expected)

        back = native_editor.edit(3)
        await native.push("doc1", 4, back)
        assert await yjs.recv_events(lambda e: isinstance(e, UpdateReceived)) == [
            UpdateReceived("doc1", back, None)
        ]


# -- bad input -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BadInput:
    """What an offending peer does, and what it must get back."""

    send: Callable[[RawPeer], Any]  # async
    code: ErrorCode
    close: CloseCode
    config: RelayConfig = field(default_factory=RelayConfig)
    opens_first: bool = True


def _frame(document: str, kind: int, payload: bytes = b"") -> bytes:
    return write_var_string(document) + write_var_uint(kind) + payload


def _large_update(size: int) -> bytes:
    editor = Editor()
    editor.doc.get("notes", type=Text).insert(0, "x" * size)
    return editor.updates[-1]


BAD_INPUTS = {
    "malformed-frame": BadInput(
        lambda p: p.send_raw(b"\xff\xff"), ErrorCode.MALFORMED_FRAME, CloseCode.PROTOCOL_ERROR
    ),
    # Unknown types fail decoding: the session reports MALFORMED_FRAME (UNKNOWN_MESSAGE_TYPE
    # is never sent), closing with the same 1002.
    "unknown-message-type": BadInput(
        lambda p: p.send_raw(_frame(DOC, 42, b"\x00")),
        ErrorCode.MALFORMED_FRAME,
        CloseCode.PROTOCOL_ERROR,
    ),
    "update-that-does-not-decode": BadInput(
        lambda p: p.push(DOC, 1, b"\x01\x02\x03"), ErrorCode.INVALID_UPDATE, CloseCode.INVALID_DATA
    ),
    "frame-too-large": BadInput(
        lambda p: p.push(DOC, 1, _large_update(2000)),
        ErrorCode.FRAME_TOO_LARGE,
        CloseCode.MESSAGE_TOO_BIG,
        RelayConfig(max_frame_size=1024),
    ),
    "update-too-large": BadInput(
        lambda p: p.push(DOC, 1, _large_update(1000)),
        ErrorCode.UPDATE_TOO_LARGE,
        CloseCode.MESSAGE_TOO_BIG,
        RelayConfig(max_update_size=512),
    ),
    "push-for-a-document-never-opened": BadInput(
        lambda p: p.send_raw(encode_frame(DOC, Push(1, Editor().edit(0)))),
        ErrorCode.UNEXPECTED_MESSAGE,
        CloseCode.PROTOCOL_ERROR,
        opens_first=False,
    ),
    "invalid-document-name": BadInput(
        lambda p: p.send_raw(encode_frame("work order #1", SyncStep1(b"\x00"))),
        ErrorCode.INVALID_DOCUMENT_NAME,
        CloseCode.POLICY_VIOLATION,
        opens_first=False,
    ),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS.values()), ids=list(BAD_INPUTS))
async def test_bad_input_closes_only_the_offender(case: BadInput) -> None:
    """The offender gets a typed Error and its close code; others and the store are untouched."""
    writer = Editor()
    async with running(MemoryStore(), case.config) as h:
        healthy = h.connect()
        await healthy.open()
        await healthy.push_all(DOC, writer.edits(0, 3))
        before = await stored_content(h.store)

        offender = h.connect()
        if case.opens_first:
            await offender.open()
        await case.send(offender)
        events, closed = await offender.recv_until_closed()
        assert wire_errors(offender.frames) == [case.code]
        assert closed.code == case.close
        assert not any(isinstance(e, AckReceived) for e in events)

        await h.relay.flush()
        assert await stored_content(h.store) == before == writer.content
        more = writer.edit(3)
        await healthy.push(DOC, 4, more)
        assert await healthy.recv_events(is_ack()) == [AckReceived(DOC, 4)]
        assert await stored_content(h.store) == writer.content
        assert h.relay.stats.protocol_errors == 1


async def test_an_invalid_document_name_error_is_readable_by_a_device_session() -> None:
    """A device's session reads the INVALID_DOCUMENT_NAME Error the relay sends."""
    async with running(MemoryStore()) as h:
        offender = h.connect()
        await offender.send_raw(encode_frame("work order #1", SyncStep1(b"\x00")))
        events, closed = await offender.recv_until_closed()
    assert closed.code == CloseCode.POLICY_VIOLATION
    assert [e.code for e in events if isinstance(e, ErrorReceived)] == [
        ErrorCode.INVALID_DOCUMENT_NAME
    ]


# -- updates that break pycrdt ---------------------------------------------------------------------


def _history() -> list[bytes]:
    """Updates of a fixed client (so mutations are reproducible), with deletes."""
    editor = Editor(client_id=424242)
    fields = editor.doc.get("fields", type=Map)
    notes = editor.doc.get("notes", type=Text)
    items = editor.doc.get("items", type=Array)
    for i in range(12):
        with editor.doc.transaction():
            notes.insert(len(notes) // 2, f"w{i} ")
            fields[f"k{i}"] = f"v{i}"
            items.append(i)
        if i % 3 == 2:
            with editor.doc.transaction():
                del notes[0]
                del items[0]
    return editor.updates


def find_breaking_mutation(
    history: list[bytes],
    breaks: Callable[[BaseException], bool],
    *,
    seed: int = 0,
    resize: bool = False,
) -> tuple[int, bytes] | None:
    """``(i, mutated history[i])`` that ``breaks`` pycrdt when applied after ``history[:i]``.

    Deterministic: 1 to 3 byte edits drawn from ``random.Random(seed)`` (replace or
    nudge a byte; with ``resize`` also insert or drop one), biased to the head of the
    update where counts and clocks live; at most 20,000 candidates.
    """
    rng = random.Random(seed)
    for _ in range(20_000):
        i = rng.randrange(1, len(history))
        candidate = bytearray(history[i])
        for _ in range(rng.randint(1, 3)):
            at = min(rng.randrange(len(candidate)), rng.randrange(len(candidate)))
            edit = rng.randrange(4 if resize else 2)
            if edit == 0:
                candidate[at] = rng.randrange(256)
            elif edit == 1:
                candidate[at] = (candidate[at] + rng.choice((1, -1))) % 256
            elif edit == 2:
                candidate.insert(at, rng.randrange(256))
            elif len(candidate) > 2:
                del candidate[at]
        doc = doc_of(*history[:i])
        try:
            doc.apply_update(bytes(candidate))
        except BaseException as exc:
            if breaks(exc):
                return i, bytes(candidate)
            if not (isinstance(exc, Exception) or is_panic(exc)):
                raise
    return None


async def test_an_update_that_makes_pycrdt_panic_is_refused_and_the_room_recovers() -> None:
    """A panicking update closes its sender (1007); store, room and other peers are intact."""
    history = _history()
    found = find_breaking_mutation(history, is_panic)
    if found is None:
        pytest.skip("no update among 20,000 mutations makes this pycrdt build panic")
    index, poison = found
    async with running(MemoryStore()) as h:
        healthy = h.connect()
        await healthy.open()
        await healthy.push_all(DOC, history[:index])
        original = content(doc_of(*history[:index]))

        offender = h.connect()
        await offender.open()
        await offender.push(DOC, 1, poison)
        events, closed = await offender.recv_until_closed()
        assert [e.code for e in events if isinstance(e, ErrorReceived)] == [
            ErrorCode.INVALID_UPDATE
        ]
        assert closed.code == CloseCode.INVALID_DATA
        assert h.relay.stats.rejected_updates == 1
        assert await stored_content(h.store) == original

        newcomer = h.connect()
        assert content(await newcomer.open()) == original

        await healthy.push(DOC, index + 1, history[index])
        assert await healthy.recv_events(is_ack()) == [AckReceived(DOC, index + 1)]
        assert await newcomer.recv_events(lambda e: isinstance(e, UpdateReceived)) == [
            UpdateReceived(DOC, history[index], None)
        ]
        assert await stored_content(h.store) == content(doc_of(*history[: index + 1]))


async def test_an_update_that_makes_pycrdt_raise_runtime_error_is_refused() -> None:
    """An update pycrdt rejects with RuntimeError is refused like any invalid update."""
    history = _history()
    found = find_breaking_mutation(
        history, lambda exc: type(exc) is RuntimeError, seed=3, resize=True
    )
    if found is None:
        pytest.skip("no update among 20,000 mutations makes pycrdt raise RuntimeError")
    index, poison = found
    async with running(MemoryStore()) as h:
        peer = h.connect()
        await peer.open()
        await peer.push_all(DOC, history[:index])
        await peer.push(DOC, index + 1, poison)
        events, closed = await peer.recv_until_closed()
        assert [e.code for e in events if isinstance(e, ErrorReceived)] == [
            ErrorCode.INVALID_UPDATE
        ]
        assert closed.code == CloseCode.INVALID_DATA


# -- slow consumers --------------------------------------------------------------------------------


class StalledLink:
    """The relay's end of a peer whose network stalled: every send waits for ``flowing``."""

    def __init__(self, inner: Channel, flowing: asyncio.Event) -> None:
        self.inner = inner
        self.flowing = flowing

    async def send(self, data: bytes) -> None:
        await self.flowing.wait()
        await self.inner.send(data)

    async def recv(self) -> bytes:
        return await self.inner.recv()

    async def close(self, code: int = 1000, reason: str = "") -> None:
        await self.inner.close(code, reason)


@pytest.mark.parametrize(
    "link",
    ["stalled-link", "bounded-memory-channel"],
)
async def test_a_peer_that_never_reads_is_disconnected_as_a_slow_consumer(link: str) -> None:
    """A stalled peer is cut off (SLOW_CONSUMER, 1013); the pushing peer is acked throughout."""
    writer = Editor()
    config = RelayConfig(send_queue_size=16, max_commit_batch=8)
    flowing = asyncio.Event()
    async with running(MemoryStore(), config) as h:
        if link == "stalled-link":
            stalled = h.connect(wrap=lambda end: StalledLink(end, flowing))
        else:  # the relay's writer blocks once one frame is in flight
            flowing.set()
            stalled = h.connect(capacity=1)
        await stalled.channel.send(stalled.session.open_document(DOC, Doc().get_state()))
        fast = h.connect()
        await fast.open()

        updates = writer.edits(0, 500)
        for seq, update in enumerate(updates, 1):
            await fast.push(DOC, seq, update)
        assert_cumulative_acks(ack_seqs(await fast.recv_events(is_ack(500))), 500)
        assert h.relay.stats.slow_consumers == 1
        assert await stored_content(h.store) == writer.content

        flowing.set()  # the link recovers: what was still queued goes out, then the close
        received, closed = await stalled.recv_until_closed()
        assert closed.code == CloseCode.TRY_AGAIN_LATER
        assert [e.code for e in received if isinstance(e, ErrorReceived)] == [
            ErrorCode.SLOW_CONSUMER
        ]
        fanned_out = [e for e in received if isinstance(e, UpdateReceived) and not e.step2]
        assert len(fanned_out) <= config.send_queue_size


# -- eviction and compaction -----------------------------------------------------------------------


async def test_an_idle_room_is_compacted_and_evicted_and_reloads_whole(
    make_store: Callable[[], Store],
) -> None:
    """After eviction the store holds a snapshot with all content; re-opening gets it all."""
    config = RelayConfig(
        idle_eviction_seconds=0.05,
        maintenance_interval=0.02,
        compaction=CompactionPolicy(max_log_entries=10),
    )
    writer = Editor()
    async with running(make_store(), config) as h:
        peer = h.connect()
        await peer.open()
        await peer.push_all(DOC, writer.edits(0, 50))
        await peer.channel.close()

        async with asyncio.timeout(TIMEOUT):
            while DOC in h.relay.documents_loaded:  # noqa: ASYNC110 (no eviction event)
                await asyncio.sleep(0.01)
        stored = await h.store.load(DOC)
        assert stored.snapshot is not None
        assert len(stored.updates) <= 1  # eviction folds the log into the snapshot
        assert content(build_doc(stored)) == writer.content
        assert h.relay.stats.evictions >= 1
        assert h.relay.stats.compactions >= 1

        newcomer = h.connect()
        assert content(await newcomer.open()) == writer.content
        assert DOC in h.relay.documents_loaded


# -- store failures --------------------------------------------------------------------------------


class FailingStore(MemoryStore):
    """A MemoryStore whose appends fail while ``failing`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.failing = False

    async def append(self, entries: Sequence[tuple[str, bytes]]) -> list[int]:
        if self.failing:
            raise StoreError("disk full (simulated)")
        return await super().append(entries)


async def test_a_store_failure_is_never_acked_and_a_resend_succeeds() -> None:
    """A failed commit disconnects the pusher (STORE_FAILURE, 1011) without an Ack."""
    writer = Editor()
    store = FailingStore()
    async with running(store) as h:
        peer = h.connect()
        await peer.open()
        first = writer.edit(0)
        await peer.push_all(DOC, [first])

        store.failing = True
        second = writer.edit(1)
        await peer.push(DOC, 2, second)
        events, closed = await peer.recv_until_closed()
        assert not any(isinstance(e, AckReceived) for e in events)
        assert [e.code for e in events if isinstance(e, ErrorReceived)] == [ErrorCode.STORE_FAILURE]
        assert closed.code == CloseCode.INTERNAL_ERROR
        assert await stored_content(store) == content(doc_of(first))

        store.failing = False
        again = h.connect()
        assert content(await again.open()) == content(doc_of(first))
        await again.push(DOC, 2, second)
        assert await again.recv_events(is_ack()) == [AckReceived(DOC, 2)]
        assert await stored_content(store) == writer.content


# -- shutdown --------------------------------------------------------------------------------------


async def test_leaving_the_relay_closes_connections_going_away_with_acked_updates_stored(
    tmp_path: Path,
) -> None:
    """Shutdown closes every connection with 1001; every acked update is in the file."""
    path = tmp_path / "relay.db"
    editors = [Editor() for _ in range(3)]
    outcomes: list[tuple[list[Event], ConnectionClosed]] = []
    async with SQLiteStore(path) as store, asyncio.TaskGroup() as tasks:
        async with Relay(store) as relay:
            h = Harness(relay, store, tasks)
            peers = [h.connect() for _ in editors]
            for peer in peers:
                await peer.open()
            for peer, editor in zip(peers, editors, strict=True):
                await peer.push_all(DOC, editor.edits(0, 20))
            for peer, editor in zip(peers, editors, strict=True):
                for seq, update in enumerate(editor.edits(20, 30), 21):
                    await peer.push(DOC, seq, update)
        for peer in peers:
            outcomes.append(await peer.recv_until_closed())

    acked: list[bytes] = []
    for (events, closed), editor in zip(outcomes, editors, strict=True):
        assert closed.code == CloseCode.GOING_AWAY
        last = max([20, *(e.seq for e in events if isinstance(e, AckReceived))])
        acked += editor.updates[:last]
    async with SQLiteStore(path) as reopened:
        stored = build_doc(await reopened.load(DOC))
    state = stored.get_state()
    for update in acked:  # an update whose structs are all present leaves the state alone
        stored.apply_update(update)
    assert stored.get_state() == state


async def test_serve_after_shutdown_closes_the_channel_going_away() -> None:
    """A connection offered to a relay that has stopped is closed with 1001 at once."""
    async with MemoryStore() as store:
        async with Relay(store) as relay:
            pass
        peer_end, relay_end = memory_channel_pair()
        await relay.serve(relay_end)
        with pytest.raises(ConnectionClosed) as closed:
            await peer_end.recv()
        assert closed.value.code == CloseCode.GOING_AWAY
