"""Devices against a real in-process relay, with the relay's end of each link observable.

A :class:`Network` runs a real :class:`Relay` (over a MemoryStore or an
SQLiteStore, with an optional application) and connects devices to it over
:func:`memory_channel_pair`. Every ``relay.serve`` runs in the fixture's task
group. The relay's end of each connection is a :class:`Tap`: it decodes what
the device sent (so tests count BlobPut chunks or Submit frames), and can cut
the link right after a chosen frame reached the relay, or swallow a frame the
relay sends and cut the link instead (a lost answer). Waits are on device
status changes or events, each with a timeout; there are no sleeps.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from crdtsync import (
    Application,
    Backoff,
    Channel,
    ConnectionClosed,
    Connector,
    MemoryStore,
    Principal,
    Relay,
    RelayConfig,
    SQLiteStore,
    Store,
    memory_channel_pair,
)
from crdtsync.protocol import Frame, Message, decode_frame

TIMEOUT = 20.0
FAST = Backoff(initial=0.01, maximum=0.05)
DEVICE = Principal(role="device", tenant="acme", subject="anna", credential="c-anna")

FramePredicate = Callable[[Frame], bool]


class Tap:
    """The relay's end of one link. ``received`` holds every frame the device sent that
    reached the relay, decoded, in order; ``sent`` every frame the relay sent that left.

    ``cut_after(frame)``: once a frame it accepts reached the relay, the link breaks
    at the relay's next read (so the relay has handled that frame completely).
    ``swallow(frame)``: a frame from the relay it accepts is dropped and the link breaks.
    """

    def __init__(
        self,
        inner: Channel,
        *,
        cut_after: FramePredicate | None = None,
        swallow: FramePredicate | None = None,
    ) -> None:
        self.inner = inner
        self.cut_after = cut_after
        self.swallow = swallow
        self.received: list[Frame] = []
        self.sent: list[Frame] = []
        self.cut = asyncio.Event()
        self._cut_next = False

    async def _break(self) -> None:
        self.cut.set()
        await self.inner.close(1006, "link cut")
        raise ConnectionClosed(1006, "link cut")

    async def recv(self) -> bytes:
        if self._cut_next:
            await self._break()
        data = await self.inner.recv()
        frame = decode_frame(data)
        self.received.append(frame)
        if self.cut_after is not None and self.cut_after(frame):
            self._cut_next = True
        return data

    async def send(self, data: bytes) -> None:
        frame = decode_frame(data)
        if self.swallow is not None and self.swallow(frame):
            await self._break()
        await self.inner.send(data)
        self.sent.append(frame)

    async def close(self, code: int = 1000, reason: str = "") -> None:
        await self.inner.close(code, reason)

    def messages(self, kind: type[Message], document: str | None = None) -> list[Any]:
        """Messages of ``kind`` the relay received (of ``document``, or any), in order."""
        return [
            f.message
            for f in self.received
            if isinstance(f.message, kind) and document in (None, f.document)
        ]


class Network:
    """Connects devices to one in-process relay."""

    def __init__(self, relay: Relay, store: Store, tasks: asyncio.TaskGroup) -> None:
        self.relay = relay
        self.store = store
        self._tasks = tasks
        self.enabled = True
        self.cut_after: FramePredicate | None = None  # for the next links
        self.swallow: FramePredicate | None = None
        self.taps: dict[str, list[Tap]] = {}
        self.connected: dict[str, asyncio.Event] = {}

    def connector(self, device: str, principal: Principal = DEVICE) -> Connector:
        async def connect() -> Channel:
            if not self.enabled:
                raise OSError("network is unreachable (simulated)")
            device_end, relay_end = memory_channel_pair()
            tap = Tap(relay_end, cut_after=self.cut_after, swallow=self.swallow)
            self.taps.setdefault(device, []).append(tap)
            self._tasks.create_task(self.relay.serve(tap, peer=device, principal=principal))
            self.connected.setdefault(device, asyncio.Event()).set()
            return device_end

        return connect

    def received(self, device: str, kind: type[Message], document: str | None = None) -> list[Any]:
        """Messages of ``kind`` the relay received from ``device`` over all its links."""
        return [m for tap in self.taps.get(device, []) for m in tap.messages(kind, document)]

    async def shutdown(self) -> None:
        for taps in self.taps.values():
            for tap in taps:
                await tap.close(1001, "test over")


@asynccontextmanager
async def network(
    kind: str,
    tmp_path: Path,
    *,
    application: Application | None = None,
    config: RelayConfig | None = None,
) -> AsyncIterator[Network]:
    """A relay over a ``memory`` or ``sqlite`` store, serving devices until the block ends."""
    store: MemoryStore | SQLiteStore = (
        MemoryStore() if kind == "memory" else SQLiteStore(tmp_path / "relay.db")
    )
    async with (
        store,
        Relay(store, config, application=application) as relay,
        asyncio.TaskGroup() as tasks,
    ):
        net = Network(relay, store, tasks)
        try:
            yield net
        finally:
            await net.shutdown()
