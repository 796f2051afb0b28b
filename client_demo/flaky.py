"""A flaky link: a websocket proxy between devices and the relay that delays and drops.

Each device connection is forwarded message by message to the relay. The link
behaves like a bad mobile network, within what a real network can do to a
websocket: messages are delayed (in order: TCP never reorders), and now and
then the connection drops, losing every message still in flight in either
direction. It never drops a single message from a live connection, because no
network can (a websocket over TCP delivers all of a connection's messages in
order, or the connection fails).

``async with FlakyLink(upstream_url, seed=...) as link`` listens on a free
loopback port (``link.url``); ``link.cut()`` drops every connection now,
``link.down()`` / ``link.up()`` switch the whole link off (connections are
refused) and on, and ``link.drop_when(predicate)`` makes the connection die
just as the next matching message from upstream would be delivered (that
message is lost with it, as when the signal goes the moment an answer is
under way).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from types import TracebackType
from typing import Self

from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.http11 import Request, Response

__all__ = ["FlakyLink", "LinkStats", "Trap"]

#: Decides, for a message from upstream, whether the connection dies instead of delivering it.
Trap = Callable[[str | bytes], bool]


@dataclass(slots=True)
class LinkStats:
    connections: int = 0
    refused: int = 0
    cuts: int = 0
    messages: int = 0
    lost_in_flight: int = 0
    delayed_ms: list[float] = field(default_factory=list)


class FlakyLink:
    """Forwards websocket connections to ``upstream`` with delays and drops."""

    def __init__(
        self,
        upstream: str,
        *,
        seed: int = 0,
        max_delay: float = 0.05,
        cut_probability: float = 0.0,
    ) -> None:
        self.upstream = upstream.rstrip("/")
        self.max_delay = max_delay
        self.cut_probability = cut_probability  # per forwarded message
        self.stats = LinkStats()
        self._rng = random.Random(seed)
        self._server: Server | None = None
        self._live: set[ServerConnection] = set()
        self._up = True
        self._trap: Trap | None = None
        self.sprung = asyncio.Event()
        self.port = 0

    @property
    def url(self) -> str:
        """Where devices connect (the same path and query as they would use upstream)."""
        return f"ws://127.0.0.1:{self.port}"

    async def __aenter__(self) -> Self:
        self._server = await serve(
            self._handle,
            "127.0.0.1",
            0,
            compression=None,
            max_size=None,
            process_request=self._admit,
        )
        self.port = next(iter(self._server.sockets)).getsockname()[1]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    def cut(self) -> int:
        """Drop every live connection now (as a lost signal would); returns how many."""
        cut = 0
        for connection in list(self._live):
            connection.transport.abort()
            cut += 1
        self.stats.cuts += cut
        return cut

    def down(self) -> None:
        """No signal: drop every connection and refuse new ones until :meth:`up`."""
        self._up = False
        self.cut()

    def up(self) -> None:
        self._up = True

    @property
    def is_up(self) -> bool:
        """False between :meth:`down` and :meth:`up`."""
        return self._up

    def drop_when(self, trap: Trap) -> None:
        """Cut the connection instead of delivering the next upstream message ``trap``
        accepts (once; :attr:`sprung` is set when it happens)."""
        self.sprung.clear()
        self._trap = trap

    def _springs(self, message: str | bytes) -> bool:
        if self._trap is None or not self._trap(message):
            return False
        self._trap = None
        self.sprung.set()
        return True

    def _admit(self, connection: ServerConnection, request: Request) -> Response | None:
        """While the link is down, the handshake fails (as with no signal at all)."""
        if self._up:
            return None
        self.stats.refused += 1
        return connection.respond(HTTPStatus.SERVICE_UNAVAILABLE, "no signal\n")

    async def _handle(self, downstream: ServerConnection) -> None:
        request = downstream.request
        path = request.path if request is not None else "/"
        headers = {}
        if request is not None and "Authorization" in request.headers:
            headers["Authorization"] = request.headers["Authorization"]
        try:
            upstream = await connect(
                self.upstream + path, additional_headers=headers, compression=None, max_size=None
            )
        except (OSError, InvalidHandshake, InvalidStatus, TimeoutError):
            self.stats.refused += 1
            downstream.transport.abort()
            return
        self.stats.connections += 1
        self._live.add(downstream)
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self._pump(downstream, upstream, downstream, trapped=False))
                tasks.create_task(self._pump(upstream, downstream, downstream, trapped=True))
        except* ConnectionClosed:
            pass
        finally:
            self._live.discard(downstream)
            upstream.transport.abort()
            downstream.transport.abort()

    async def _pump(
        self,
        source: ServerConnection | ClientConnection,
        target: ServerConnection | ClientConnection,
        downstream: ServerConnection,
        *,
        trapped: bool,
    ) -> None:
        """Forward ``source`` to ``target`` in order, each message after a random delay
        (``trapped``: messages go past the trap of :meth:`drop_when` first)."""
        queue: asyncio.Queue[tuple[float, str | bytes] | None] = asyncio.Queue()
        loop = asyncio.get_running_loop()

        async def deliver() -> None:
            while (item := await queue.get()) is not None:
                due, message = item
                await asyncio.sleep(max(0.0, due - loop.time()))
                await target.send(message)

        async with asyncio.TaskGroup() as tasks:
            delivering = tasks.create_task(deliver())
            try:
                async for message in source:
                    self.stats.messages += 1
                    unlucky = self.cut_probability and self._rng.random() < self.cut_probability
                    if unlucky or (trapped and self._springs(message)):
                        self.stats.lost_in_flight += queue.qsize() + 1
                        self.stats.cuts += 1
                        downstream.transport.abort()
                        break
                    delay = self._rng.uniform(0, self.max_delay)
                    self.stats.delayed_ms.append(delay * 1000)
                    queue.put_nowait((loop.time() + delay, message))
            finally:
                queue.put_nowait(None)
                with contextlib.suppress(ConnectionClosed):
                    await delivering
                # The close of one side ends the other: with the same code, or, when the
                # connection just died, by dying too.
                code = source.close_code
                if code is None or code in (1005, 1006, 1015):
                    target.transport.abort()
                else:
                    with contextlib.suppress(ConnectionClosed):
                        await target.close(code, source.close_reason or "")
