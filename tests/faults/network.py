"""A faulty network between devices and a restartable relay, for the fault schedules.

Each connection is a :class:`Link`: two in-memory channel pairs joined by a
pump each way. A pump delivers whole frames in order, as a websocket does; the
schedule can hold a direction (delay), re-deliver a frame it already delivered
(a duplicate), and cut the link abruptly, either dropping what is in flight or
(``late``) letting the relay still receive it afterwards, after the device has
already reconnected on a new link, as a half-open TCP connection does.

The relay's end of every link is a :class:`Tap`, which reads what the relay
reads and sees what it sends. Acks are cumulative per document (one Ack answers
every Push of that document up to its sequence, and the sequences a document's
Acks carry only grow); an Ack may also answer a document a Resume found in
sync (its entry named the sequence). The Tap checks both and records every
acknowledged update in the :class:`Ledger`: the relay's durability claims,
checked against its file after every restart.

:class:`RelayHost` runs a real :class:`Relay` on a real :class:`SQLiteStore`
file, and can stop it cleanly or crash it: a crash keeps exactly what SQLite
had committed at that instant (an online backup taken with no await between
the crash and the copy) and throws the rest away with the old process.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections import deque
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pycrdt import Array, Doc, Map, Text

from crdtsync import (
    Channel,
    ConnectionClosed,
    Connector,
    DecodeError,
    MemoryChannel,
    Relay,
    RelayConfig,
    SQLiteStore,
    StoredDocument,
    memory_channel_pair,
)
from crdtsync.protocol import Ack, Push, Resume, decode_frame
from crdtsync.store import build_doc

ABNORMAL = 1006  # what a websocket reports when the link died without a close frame


def content(doc: Doc[Any]) -> dict[str, Any]:
    """Everything the schedules write into a document, as plain Python."""
    return {
        "fields": doc.get("fields", type=Map).to_py(),
        "notes": str(doc.get("notes", type=Text)),
        "items": doc.get("items", type=Array).to_py(),
    }


# -- links -----------------------------------------------------------------------------------------


class _Direction:
    """Frames one way through a link: read from ``src``, delivered in order to ``dst``."""

    def __init__(self, src: MemoryChannel, dst: MemoryChannel) -> None:
        self.src = src
        self.dst = dst
        self.queue: deque[bytes] = deque()
        self.delivered: list[bytes] = []
        self.held = False
        self.dropping = False
        self.ended: tuple[int, str] | None = None  # src closed: close dst once the queue drains
        self._ready = asyncio.Event()

    def wake(self) -> None:
        self._ready.set()

    def drop(self) -> None:
        """Lose everything in flight and stop delivering."""
        self.dropping = True
        self.queue.clear()
        self.wake()

    async def read(self) -> None:
        try:
            while True:
                frame = await self.src.recv()
                if not self.dropping:
                    self.queue.append(frame)
                    self.wake()
        except ConnectionClosed as closed:
            self.ended = (closed.code or 1000, closed.reason)
            self.wake()

    async def deliver(self) -> None:
        while True:
            while not self.dropping and (self.held or not (self.queue or self.ended)):
                self._ready.clear()
                await self._ready.wait()
            if self.dropping:
                return
            if not self.queue:
                assert self.ended is not None
                await self.dst.close(*self.ended)
                return
            frame = self.queue.popleft()
            try:
                await self.dst.send(frame)
            except ConnectionClosed:
                self.drop()
                return
            self.delivered.append(frame)


class Link:
    """One connection through the network; ``device_end`` and ``relay_end`` are its ends."""

    def __init__(self, device: str, ledger: Ledger) -> None:
        self.device = device
        self.device_end, self._device_side = memory_channel_pair()
        self._relay_side, relay_inner = memory_channel_pair()
        self.relay_end = Tap(relay_inner, ledger)
        self.up = _Direction(self._device_side, self._relay_side)  # device -> relay
        self.down = _Direction(self._relay_side, self._device_side)  # relay -> device

    def start(self, tasks: asyncio.TaskGroup) -> None:
        for direction in (self.up, self.down):
            tasks.create_task(direction.read())
            tasks.create_task(direction.deliver())

    @property
    def held(self) -> bool:
        return self.up.held or self.down.held

    @property
    def closed(self) -> bool:
        return self.device_end.closed

    def hold(self, up: bool) -> None:
        (self.up if up else self.down).held = True

    def release(self) -> None:
        for direction in (self.up, self.down):
            direction.held = False
            direction.wake()

    def duplicate(self, up: bool, back: int) -> bool:
        """Deliver again a frame this direction already delivered (``back`` from the newest)."""
        direction = self.up if up else self.down
        if direction.dropping or direction.ended or not direction.delivered:
            return False
        direction.queue.append(direction.delivered[-1 - back % len(direction.delivered)])
        direction.wake()
        return True

    async def cut(self, *, late: bool = False) -> None:
        """Break the link without a close frame. Never suspends.

        The device sees the reset at once and loses what was on its way to it.
        Frames on their way to the relay are lost too, unless ``late``: then they
        stay held and reach the relay when released, followed by the reset.
        """
        self.down.drop()
        await self._device_side.close(ABNORMAL, "link cut")
        if late and not self.up.dropping:
            self.up.held = True
        else:
            self.up.drop()
            await self._relay_side.close(ABNORMAL, "link cut")


# -- the relay's side ------------------------------------------------------------------------------


@dataclass
class Ledger:
    """Updates the relay acknowledged, per document, and any Ack that answered nothing."""

    acked: dict[str, list[bytes]] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)


class Tap:
    """The relay's end of a link: pairs each Ack the relay sends with the Push it answers."""

    def __init__(self, inner: Channel, ledger: Ledger) -> None:
        self.inner = inner
        self.ledger = ledger
        self.live = True  # False once its relay crashed: a dead process claims nothing
        self._unacked: dict[str, deque[tuple[int, bytes]]] = {}
        self._resumed: dict[str, int] = {}  # documents a Resume named, with their sequence
        self._last_ack: dict[str, int] = {}

    async def recv(self) -> bytes:
        frame = await self.inner.recv()
        with contextlib.suppress(DecodeError):
            decoded = decode_frame(frame)
            message = decoded.message
            if isinstance(message, Push):
                queue = self._unacked.setdefault(decoded.document, deque())
                queue.append((message.seq, message.update))
            elif isinstance(message, Resume):
                for entry in message.entries:
                    self._resumed[entry.document] = entry.seq
        return frame

    async def send(self, data: bytes) -> None:
        if self.live:
            decoded = decode_frame(data)
            if isinstance(decoded.message, Ack):
                self._settle(decoded.document, decoded.message.seq)
        await self.inner.send(data)

    def _settle(self, document: str, seq: int) -> None:
        if seq < self._last_ack.get(document, 0):
            self.ledger.violations.append(f"Ack({document}, {seq}) after a higher one")
        self._last_ack[document] = seq
        queue = self._unacked.get(document, deque())
        answered = 0
        while queue and queue[0][0] <= seq:
            self.ledger.acked.setdefault(document, []).append(queue.popleft()[1])
            answered += 1
        if not answered and self._resumed.get(document) != seq:
            self.ledger.violations.append(f"Ack({document}, {seq}) answered no Push")

    async def close(self, code: int = 1000, reason: str = "") -> None:
        await self.inner.close(code, reason)


def _backup(source: Path, target: Path) -> None:
    """Copy what SQLite has committed in ``source`` (a consistent read, WAL included)."""
    src, dst = sqlite3.connect(source), sqlite3.connect(target)
    try:
        src.backup(dst)
    finally:
        dst.close()
        src.close()


def _replace(path: Path, image: Path) -> None:
    """Make ``image`` the database at ``path``, with no journal of the old one left."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    image.rename(path)


class RelayHost:
    """A relay on a SQLite file that can be stopped, crashed and started again on that file."""

    def __init__(self, path: Path, config: RelayConfig) -> None:
        self.path = path
        self.config = config
        self.relay: Relay | None = None
        self._stack: AsyncExitStack | None = None

    async def start(self) -> None:
        stack = AsyncExitStack()
        store = await stack.enter_async_context(SQLiteStore(self.path))
        self.relay = await stack.enter_async_context(Relay(store, self.config))
        self._stack = stack

    async def stop(self) -> None:
        """Leave the relay (it commits what it applied, closes connections 1001), then the store."""
        stack, self._stack, self.relay = self._stack, None, None
        if stack is not None:
            await stack.aclose()

    async def crash(self) -> None:
        """Keep what is committed at this instant; whatever the relay does afterwards is lost."""
        image = self.path.with_name(self.path.name + ".crash")
        image.unlink(missing_ok=True)
        self.relay = None
        _backup(self.path, image)
        await self.stop()
        _replace(self.path, image)

    async def load(self, name: str) -> StoredDocument:
        """What the file holds for ``name``, read through a store opened just for this."""
        async with SQLiteStore(self.path) as store:
            return await store.load(name)


def covers(stored: StoredDocument, updates: list[bytes]) -> bool:
    """True if applying ``updates`` on top of ``stored`` changes neither state nor content."""
    before = build_doc(stored)
    after = build_doc(
        StoredDocument(
            stored.name, stored.snapshot, stored.snapshot_seq, [*stored.updates, *updates]
        )
    )
    return before.get_state() == after.get_state() and content(before) == content(after)


# -- the network -----------------------------------------------------------------------------------


class Network:
    """Connects devices to whichever relay the host runs; refuses while it is down."""

    def __init__(self, host: RelayHost, tasks: asyncio.TaskGroup) -> None:
        self.host = host
        self.tasks = tasks
        self.ledger = Ledger()
        self.links: dict[str, Link] = {}  # the newest link of each device
        self.every_link: list[Link] = []  # old ones may still hold frames for the relay
        self._taps: list[Tap] = []

    @property
    def connections(self) -> int:
        return len(self.every_link)

    def connector(self, device: str) -> Connector:
        async def connect() -> Channel:
            relay = self.host.relay
            if relay is None:
                raise OSError("relay unreachable (simulated)")
            link = Link(device, self.ledger)
            link.start(self.tasks)
            self._taps.append(link.relay_end)
            self.links[device] = link
            self.every_link.append(link)
            peer = f"{device}#{len(self.every_link)}"
            self.tasks.create_task(relay.serve(link.relay_end, peer=peer))
            return link.device_end

        return connect

    async def cut(self, device: str, *, late: bool) -> bool:
        link = self.links.get(device)
        if link is None or link.closed:
            return False
        await link.cut(late=late)
        return True

    def release(self, device: str | None = None) -> None:
        """Let delayed frames go, on every link of ``device`` (or of every device)."""
        for link in self.every_link:
            if device is None or link.device == device:
                link.release()

    async def crash_relay(self) -> None:
        """Kill the relay: every link dies with it, and nothing it says from now on counts."""
        for tap in self._taps:
            tap.live = False
        self._taps = []
        for link in self.every_link:
            await link.cut()
        await self.host.crash()

    async def stop_relay(self) -> None:
        self._taps = []
        await self.host.stop()

    async def shutdown(self) -> None:
        for link in self.every_link:
            await link.cut()
        await self.host.stop()
