"""Fault schedules: devices edit while links, relays and devices fail; nothing may be lost.

Each example builds a real :class:`Relay` on a real SQLite file and 2 to 4 real
:class:`Device` replicas (each with its own SQLite file) sharing 2 to 4
documents, joined by the in-memory network of :mod:`tests.faults.network`, and
runs a hypothesis-drawn schedule of steps against them. Afterwards every fault
is healed, every device must reach ``wait_synced``, every replica must hold the
same content as the relay's file (read through a freshly opened store), and
that content must hold every edit any device made (map entries, text tokens,
array items, minus what was deleted on purpose).

Which faults, and why these: a device talks to the relay over one websocket,
which is TCP: within a connection frames are never reordered, duplicated or
corrupted by the network, so the schedules do not invent that. What does
happen, and is modelled here:

* a link dies abruptly (no close frame), losing whatever was in flight in
  either direction, including Acks for updates the relay already committed;
* a link stalls: frames one way are delayed for a while, then arrive in order;
* a half-open connection: the device has given up and reconnected, but the
  relay still receives frames of the old connection afterwards, interleaved
  with the new connection's (the only reordering a TCP transport allows, and
  it is across connections);
* a retrying layer delivers a frame twice on the same connection, in either
  direction (a replayed Push, a duplicated Ack, Update or SyncStep1);
* the relay stops cleanly, or crashes: only what SQLite committed at the crash
  survives; every update the relay acknowledged must be in it (checked right
  after each restart against the Acks the relay actually sent);
* a device goes offline and online, restarts, or is killed mid-connection;
  after a restart its replica must hold exactly what it held before.

Not modelled: replaying a frame of one connection on another. Ack sequence
numbers are a device's outbox row ids, not bound to a connection, so such a
replay forges an Ack; the protocol does not claim to resist forged traffic.
The relay compacts and evicts documents with tiny limits, so schedules also
cross those paths, and every Ack is matched to the Push it answers (Acks must
follow Push order on a connection). No sleeps to wait for something: waits are
on device status under timeouts. ``Run`` steps yield turns of the event loop;
``Pause`` steps are the schedule's own bounded delays (1-10 ms, during which
the store's thread commits and backoffs expire).

``CRDTSYNC_FAULTS_LONG=1`` runs many more schedules (see ``conftest``).
"""

from __future__ import annotations

import asyncio
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from pycrdt import Array, Doc, Map, Text

from crdtsync import Backoff, CompactionPolicy, Device, RelayConfig
from crdtsync.store import build_doc

from .conftest import TALLY, fault_settings, long_run_timeout
from .network import Network, RelayHost, content, covers

pytestmark = long_run_timeout

TIMEOUT = 20.0
SCHEDULE_TIMEOUT = 90.0  # a whole schedule, teardown included: a hang is a failure, not a stall
FAST = Backoff(initial=0.002, maximum=0.02)
# Small limits so schedules also go through compaction and idle eviction.
CONFIG = RelayConfig(
    compaction=CompactionPolicy(max_log_entries=6),
    maintenance_interval=0.005,
    idle_eviction_seconds=0.02,
)
TOKEN = re.compile(r"<[^<>]*>")

# -- steps -----------------------------------------------------------------------------------------

EDITS = ("set", "status", "unset", "insert", "erase", "append")


@dataclass(frozen=True)
class Edit:
    """One transaction of 1-3 edits by ``device`` on document ``doc``; ``pick`` chooses where."""

    device: int
    doc: int
    ops: tuple[tuple[str, int], ...]


@dataclass(frozen=True)
class Offline:
    device: int


@dataclass(frozen=True)
class Online:
    device: int


@dataclass(frozen=True)
class Cut:
    """The device's link dies; with ``late`` the relay still receives its in-flight frames later."""

    device: int
    late: bool


@dataclass(frozen=True)
class Hold:
    """Delay one direction of the device's link (``up``: towards the relay)."""

    device: int
    up: bool


@dataclass(frozen=True)
class Release:
    """Let the device's delayed frames go, including those of its half-open old links."""

    device: int


@dataclass(frozen=True)
class Duplicate:
    device: int
    up: bool
    back: int


@dataclass(frozen=True)
class RestartRelay:
    crash: bool


@dataclass(frozen=True)
class RestartDevice:
    device: int
    kill: bool


@dataclass(frozen=True)
class Run:
    """Let the event loop take ``turns`` turns."""

    turns: int


@dataclass(frozen=True)
class Pause:
    """Let ``ms`` milliseconds pass: the store's thread commits, Acks go out, backoffs expire."""

    ms: int


@dataclass(frozen=True)
class Sync:
    """Wait until the device is in sync, if nothing stops it from getting there."""

    device: int


Step = (
    Edit
    | Offline
    | Online
    | Cut
    | Hold
    | Release
    | Duplicate
    | RestartRelay
    | RestartDevice
    | Run
    | Pause
    | Sync
)

device_ids = st.integers(0, 3)
edits = st.builds(
    Edit,
    device_ids,
    st.integers(0, 3),
    st.lists(st.tuples(st.sampled_from(EDITS), st.integers(0, 1000)), min_size=1, max_size=3).map(
        tuple
    ),
)
faults = st.one_of(
    st.builds(Offline, device_ids),
    st.builds(Online, device_ids),
    st.builds(Cut, device_ids, st.booleans()),
    st.builds(Hold, device_ids, st.booleans()),
    st.builds(Release, device_ids),
    st.builds(Duplicate, device_ids, st.booleans(), st.integers(0, 8)),
    st.builds(RestartRelay, st.booleans()),
    st.builds(RestartDevice, device_ids, st.booleans()),
)
progress = st.one_of(
    st.builds(Run, st.integers(1, 30)),
    st.builds(Pause, st.integers(1, 10)),
    st.builds(Sync, device_ids),
)
# A schedule is rounds of a few edits, one fault, and one chance to make progress.
rounds = st.tuples(st.lists(edits, max_size=3), faults, progress).map(
    lambda round_: [*round_[0], round_[1], round_[2]]
)
schedules: st.SearchStrategy[list[Step]] = st.lists(rounds, min_size=3, max_size=15).map(
    lambda rounds_: [step for round_ in rounds_ for step in round_]
)

# -- what must come out ----------------------------------------------------------------------------


@dataclass
class Expected:
    """Every edit made to one document, as the merged content must show it."""

    keys: dict[str, str] = field(default_factory=dict)  # unique keys, minus deleted ones
    statuses: set[str] = field(default_factory=set)  # every value written to the shared key
    tokens: set[str] = field(default_factory=set)  # text tokens inserted, minus erased ones
    items: list[str] = field(default_factory=list)  # every array item appended

    def problems(self, name: str, merged: dict[str, Any]) -> list[str]:
        found: list[str] = []
        fields = dict(merged["fields"])
        status = fields.pop("status", None)
        if fields != self.keys:
            found.append(f"{name}: map entries {fields} != {self.keys}")
        if (status is None) != (not self.statuses) or (status and status not in self.statuses):
            found.append(f"{name}: status {status!r} not one of {sorted(self.statuses)}")
        tokens = TOKEN.findall(merged["notes"])
        if "".join(tokens) != merged["notes"] or sorted(tokens) != sorted(self.tokens):
            found.append(f"{name}: text {merged['notes']!r} != tokens {sorted(self.tokens)}")
        items = merged["items"]
        if sorted(items) != sorted(self.items):
            found.append(f"{name}: items {items} != {self.items}")
        for author in {item.split(".")[0] for item in self.items}:
            mine = [item for item in items if item.startswith(f"{author}.")]
            if mine != [item for item in self.items if item.startswith(f"{author}.")]:
                found.append(f"{name}: items of {author} out of order: {mine}")
        return found


def _edit(doc: Doc[Any], expected: Expected, op: str, pick: int, tag: str) -> None:
    """Apply one edit to ``doc`` as its device sees it, and note what it must leave behind."""
    fields = doc.get("fields", type=Map)
    notes = doc.get("notes", type=Text)
    if op == "set":
        fields[tag] = f"v-{tag}"
        expected.keys[tag] = f"v-{tag}"
    elif op == "status":
        fields["status"] = tag
        expected.statuses.add(tag)
    elif op == "unset":
        keys = sorted(key for key in fields if key != "status")
        if keys:
            key = keys[pick % len(keys)]
            del fields[key]
            expected.keys.pop(key, None)
    elif op == "insert":
        text = str(notes)
        boundaries = [0, *(match.end() for match in TOKEN.finditer(text))]
        token = f"<{tag}>"
        notes.insert(boundaries[pick % len(boundaries)], token)
        expected.tokens.add(token)
    elif op == "erase":
        matches = list(TOKEN.finditer(str(notes)))
        if matches:
            match = matches[pick % len(matches)]
            del notes[match.start() : match.end()]
            expected.tokens.discard(match.group())
    else:
        doc.get("items", type=Array).append(tag)
        expected.items.append(tag)


# -- running a schedule ----------------------------------------------------------------------------


class World:
    """A relay host, a network and the devices of one schedule."""

    def __init__(self, root: Path, devices: int, docs: int, tasks: asyncio.TaskGroup) -> None:
        self.root = root
        self.host = RelayHost(root / "relay.db", CONFIG)
        self.net = Network(self.host, tasks)
        self.names = [f"d{i}" for i in range(devices)]
        self.docs = [f"wo-{i + 1}" for i in range(docs)]
        self.devices: list[Device] = []
        self.expected = {name: Expected() for name in self.docs}
        self.edits = 0
        self.faults: list[str] = []
        self.merged: dict[str, dict[str, Any]] = {}

    def device(self, index: int) -> tuple[str, Device]:
        index %= len(self.devices)
        return self.names[index], self.devices[index]

    async def open_device(self, index: int, *, online: bool = True) -> Device:
        name = self.names[index]
        device = Device(
            self.root / f"{name}.db",
            self.net.connector(name),
            documents=self.docs,
            online=online,
            backoff=FAST,
            seed=index,
            name=name,
        )
        await device.__aenter__()
        return device

    async def start(self) -> None:
        await self.host.start()
        self.devices = [await self.open_device(i) for i in range(len(self.names))]

    async def step(self, step: Step) -> None:
        match step:
            case Edit(device=i, doc=d, ops=ops):
                name, device = self.device(i)
                document = self.docs[d % len(self.docs)]
                doc = device.doc(document)
                with doc.transaction():
                    for op, pick in ops:
                        self.edits += 1
                        _edit(doc, self.expected[document], op, pick, f"{name}.{self.edits}")
            case Offline(device=i):
                device = self.device(i)[1]
                if device.status.online:
                    device.go_offline()
                    self.faults.append("offline")
            case Online(device=i):
                self.device(i)[1].go_online()
            case Cut(device=i, late=late):
                if await self.net.cut(self.device(i)[0], late=late):
                    self.faults.append("late cut" if late else "cut")
            case Hold(device=i, up=up):
                link = self.net.links.get(self.device(i)[0])
                if link is not None and not link.closed:
                    link.hold(up)
                    self.faults.append("hold")
            case Release(device=i):
                self.net.release(self.device(i)[0])
            case Duplicate(device=i, up=up, back=back):
                link = self.net.links.get(self.device(i)[0])
                if link is not None and link.duplicate(up, back):
                    self.faults.append("duplicate")
            case RestartRelay(crash=crash):
                await self.restart_relay(crash)
            case RestartDevice(device=i, kill=kill):
                await self.restart_device(i % len(self.devices), kill)
            case Run(turns=turns):
                for _ in range(turns):
                    await asyncio.sleep(0)
            case Pause(ms=ms):
                await asyncio.sleep(ms / 1000)
            case Sync(device=i):
                name, device = self.device(i)
                link = self.net.links.get(name)
                if device.status.online and not (link is not None and link.held):
                    await device.wait_synced(TIMEOUT)

    async def restart_relay(self, crash: bool) -> None:
        if crash:
            await self.net.crash_relay()
            self.faults.append("relay crash")
        else:
            await self.net.stop_relay()
            self.faults.append("relay restart")
        await self.check_acknowledged_updates_survived()
        await self.host.start()

    async def check_acknowledged_updates_survived(self) -> None:
        assert not self.net.ledger.violations, self.net.ledger.violations
        for name, updates in self.net.ledger.acked.items():
            stored = await self.host.load(name)
            assert covers(stored, updates), f"{name}: an acknowledged update is not in the file"

    async def restart_device(self, index: int, kill: bool) -> None:
        name, device = self.names[index], self.devices[index]
        before = {document: content(device.doc(document)) for document in self.docs}
        online = device.status.online
        if kill:  # the process dies: its connection is reset, nothing is closed politely
            await self.net.cut(name, late=True)
        await device.__aexit__(None, None, None)
        self.devices[index] = device = await self.open_device(index, online=online)
        after = {document: content(device.doc(document)) for document in self.docs}
        assert after == before, f"{name} lost local state across a restart"
        self.faults.append("device kill" if kill else "device restart")

    async def heal_and_check(self) -> None:
        """Undo every fault, wait for everyone to sync, and compare every replica."""
        self.net.release()
        for device in self.devices:
            device.go_online()
        for device in self.devices:
            await _wait(device, lambda status: status.in_sync, "in sync")
        relay = self.host.relay
        assert relay is not None
        await relay.flush()
        merged = {name: content(build_doc(await self.host.load(name))) for name in self.docs}
        for device in self.devices:
            try:
                await _wait(
                    device,
                    lambda _, d=device: all(content(d.doc(n)) == merged[n] for n in self.docs),
                    "the relay's content",
                )
            except AssertionError as exc:
                differ = {n: (content(device.doc(n)), merged[n]) for n in self.docs}
                differ = {n: pair for n, pair in differ.items() if pair[0] != pair[1]}
                raise AssertionError(f"{exc}; replica vs relay: {differ}") from None
            assert device.status.rejected == []
        problems = [
            p for name in self.docs for p in self.expected[name].problems(name, merged[name])
        ]
        assert not problems, problems
        await self.check_acknowledged_updates_survived()
        self.merged = merged

    async def close_and_reopen(self) -> None:
        """After shutdown, the relay's file and every device's file hold the merged content."""
        for device in self.devices:
            await device.__aexit__(None, None, None)
        self.devices = []
        await self.net.shutdown()
        for name in self.docs:
            assert content(build_doc(await self.host.load(name))) == self.merged[name]
        for device_name in self.names:
            async with Device(self.root / f"{device_name}.db", None) as reopened:
                for name in self.docs:
                    assert content(reopened.doc(name)) == self.merged[name], device_name


async def _wait(device: Device, predicate: Callable[[Any], bool], what: str) -> None:
    try:
        await device.wait_for(predicate, TIMEOUT)
    except TimeoutError:
        raise AssertionError(f"{device.name} never got {what}: {device.status}") from None


async def run_schedule(devices: int, docs: int, schedule: list[Step]) -> World:
    with tempfile.TemporaryDirectory() as root:
        async with asyncio.timeout(SCHEDULE_TIMEOUT), asyncio.TaskGroup() as tasks:
            world = World(Path(root), devices, docs, tasks)
            try:
                await world.start()
                for step in schedule:
                    await world.step(step)
                await world.heal_and_check()
                await world.close_and_reopen()
            finally:
                for device in world.devices:
                    await device.__aexit__(None, None, None)
                await world.net.shutdown()
    return world


@fault_settings(ci=80, long=3_000)
@given(st.integers(2, 4), st.integers(2, 4), schedules)
def test_every_edit_survives_any_schedule_of_faults(
    devices: int, docs: int, schedule: list[Step]
) -> None:
    world = asyncio.run(run_schedule(devices, docs, schedule))
    TALLY["schedules run"] += 1
    TALLY["schedule steps run"] += len(schedule)
    TALLY["schedule edits made"] += world.edits
    TALLY["schedule connections opened"] += world.net.connections
    for fault in world.faults:
        TALLY[f"schedule fault: {fault}"] += 1
