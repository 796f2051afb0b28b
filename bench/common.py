"""Shared pieces of the benchmark: clocks, relay processes, worker processes, channels.

Every relay (ours and the peer) runs as its own process on loopback; devices run
in worker processes started with the ``spawn`` method, so no state leaks from
the bench process into them. Timestamps taken in different processes are
compared on ``CLOCK_MONOTONIC``, which is one clock for the whole machine on
Linux.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

import psutil
import websockets
from websockets.asyncio.client import ClientConnection

from crdtsync import Channel, Connector, websocket_connector

__all__ = [
    "ROOT",
    "ByteCounter",
    "CountingChannel",
    "PeerChannel",
    "RelayProc",
    "Worker",
    "WorkerLink",
    "all_expect",
    "byte_counter",
    "clock",
    "counting_connector",
    "disk_bytes",
    "first_message",
    "peer_connect",
    "sleep_until",
    "start_workers",
]

ROOT = Path(__file__).resolve().parent.parent
_SPAWN = multiprocessing.get_context("spawn")


def clock() -> float:
    """Seconds on CLOCK_MONOTONIC: comparable between processes of one Linux machine."""
    return time.clock_gettime(time.CLOCK_MONOTONIC)


async def sleep_until(at: float) -> None:
    delay = at - clock()
    if delay > 0:
        await asyncio.sleep(delay)


def disk_bytes(db: Path) -> int:
    """Size of an SQLite database as it sits on disk: the file plus its WAL or journal."""
    total = 0
    for suffix in ("", "-wal", "-journal"):
        path = Path(f"{db}{suffix}")
        if path.exists():
            total += path.stat().st_size
    return total


# -- relay processes ------------------------------------------------------------------------------


@dataclass
class RelayProc:
    """A relay (ours: ``python -m server``; the peer: ``python -m bench.peer_server``)."""

    kind: str  # "ours" or "peer"
    db: Path
    port: int = 0
    process: subprocess.Popen[str] | None = None
    extra_args: list[str] = field(default_factory=list)

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def sync_url(self) -> str:
        """Ours: the native multiplexed endpoint. The peer: the base URL (+ "/doc")."""
        if self.kind == "ours":
            return f"ws://127.0.0.1:{self.port}/sync"
        return f"ws://127.0.0.1:{self.port}"

    def start(self) -> None:
        module = "server" if self.kind == "ours" else "bench.peer_server"
        args = [sys.executable, "-m", module, "--port", "0", "--db", str(self.db)]
        args += ["--log-level", os.environ.get("BENCH_RELAY_LOG", "warning"), *self.extra_args]
        log = self.db.with_name(f"{self.db.name}.log").open("a")
        self.process = subprocess.Popen(
            args, cwd=ROOT, stdout=subprocess.PIPE, stderr=log, text=True, env=os.environ.copy()
        )
        log.close()
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if " listening on http://" in line:
                self.port = int(line.strip().rsplit(":", 1)[1])
                return
        code = self.process.wait()
        raise RuntimeError(
            f"{self.kind} relay exited with {code} before listening (see {log.name})"
        )

    def rss(self) -> int:
        return int(psutil.Process(self.pid).memory_info().rss)

    def kill(self) -> None:
        """SIGKILL: no shutdown, no flush."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()
        if self.process.stdout is not None:
            self.process.stdout.close()

    def __enter__(self) -> RelayProc:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# -- worker processes -----------------------------------------------------------------------------


class WorkerLink:
    """The worker's end of its pipe to the bench process, usable from asyncio."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def send(self, message: Any) -> None:
        self.conn.send(message)

    async def recv(self) -> Any:
        return await asyncio.to_thread(self.conn.recv)

    async def expect(self, kind: str) -> Any:
        message = await self.recv()
        if not (isinstance(message, tuple) and message and message[0] == kind):
            raise RuntimeError(f"worker expected {kind!r}, got {message!r}")
        return message[1] if len(message) > 1 else None


WorkerMain = Callable[[WorkerLink, dict[str, Any]], Any]


def _worker_entry(target: WorkerMain, params: dict[str, Any], conn: Connection) -> None:
    log_dir = os.environ.get("BENCH_LOG_DIR")
    if log_dir:  # devices' warnings go to a file the bench scans, not into the table's stream
        name = multiprocessing.current_process().name
        logging.basicConfig(
            filename=Path(log_dir) / f"{name}.log",
            level=logging.WARNING,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
    link = WorkerLink(conn)
    try:
        result = asyncio.run(target(link, params))
        link.send(("result", result))
    except BaseException as exc:  # noqa: BLE001 (sent to the bench process, which raises it)
        with contextlib.suppress(OSError):
            link.send(("error", f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"))
        raise SystemExit(1) from None
    finally:
        conn.close()


@dataclass
class Worker:
    """A worker process and the bench process's end of its pipe."""

    name: str
    process: Any
    conn: Connection
    result: Any = None

    def send(self, message: Any) -> None:
        self.conn.send(message)

    def recv(self, timeout: float) -> Any:
        if not self.conn.poll(timeout):
            raise TimeoutError(f"worker {self.name} said nothing for {timeout} s")
        message = self.conn.recv()
        if isinstance(message, tuple) and message and message[0] == "error":
            raise RuntimeError(f"worker {self.name} failed: {message[1]}")
        return message

    def expect(self, kind: str, timeout: float) -> Any:
        message = self.recv(timeout)
        if not (isinstance(message, tuple) and message and message[0] == kind):
            raise RuntimeError(f"expected {kind!r} from worker {self.name}, got {message!r}")
        return message[1] if len(message) > 1 else None

    def join(self, timeout: float) -> Any:
        """Wait for the worker's result (skipping other messages) and for the process to end."""
        deadline = time.monotonic() + timeout
        while True:
            message = self.recv(max(0.0, deadline - time.monotonic()))
            if isinstance(message, tuple) and message and message[0] == "result":
                break
        self.result = message[1]
        self.process.join(10)
        return self.result

    def terminate(self) -> None:
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(5)
            if self.process.is_alive():
                self.process.kill()
                self.process.join(5)


@contextlib.contextmanager
def start_workers(
    target: WorkerMain, params: list[dict[str, Any]], prefix: str
) -> Iterator[list[Worker]]:
    """Start one spawned process per params dict; terminate any still running at the end."""
    workers: list[Worker] = []
    try:
        for index, p in enumerate(params):
            ours, theirs = _SPAWN.Pipe()
            process = _SPAWN.Process(
                target=_worker_entry, args=(target, p, theirs), name=f"{prefix}-{index}"
            )
            process.start()
            theirs.close()
            workers.append(Worker(f"{prefix}-{index}", process, ours))
        yield workers
    finally:
        for worker in workers:
            worker.terminate()
            worker.conn.close()


def all_expect(workers: list[Worker], kind: str, timeout: float) -> list[Any]:
    return [worker.expect(kind, timeout) for worker in workers]


def first_message(workers: list[Worker], timeout: float) -> tuple[Worker, Any]:
    """The first message any worker sends (errors raise)."""
    ready = wait([w.conn for w in workers], timeout)
    if not ready:
        raise TimeoutError(f"no worker said anything for {timeout} s")
    worker = next(w for w in workers if w.conn is ready[0])
    return worker, worker.recv(0)


# -- channels -------------------------------------------------------------------------------------


@dataclass
class ByteCounter:
    """Payload bytes of websocket messages, both directions, and the message count."""

    sent: int = 0
    received: int = 0
    messages: int = 0

    @property
    def total(self) -> int:
        return self.sent + self.received

    def snapshot(self) -> tuple[int, int]:
        return self.total, self.messages


def byte_counter() -> ByteCounter:
    return ByteCounter()


class CountingChannel:
    """A crdtsync Channel that counts the payload bytes crossing it."""

    def __init__(self, inner: Channel, counter: ByteCounter) -> None:
        self.inner = inner
        self.counter = counter

    async def send(self, data: bytes) -> None:
        self.counter.sent += len(data)
        self.counter.messages += 1
        await self.inner.send(data)

    async def recv(self) -> bytes:
        data = await self.inner.recv()
        self.counter.received += len(data)
        self.counter.messages += 1
        return data

    async def close(self, code: int = 1000, reason: str = "") -> None:
        await self.inner.close(code, reason)


def counting_connector(url: str, counter: ByteCounter) -> Connector:
    inner = websocket_connector(url)

    async def connect() -> Channel:
        return CountingChannel(await inner(), counter)

    return connect


class PeerChannel:
    """A pycrdt ``Channel`` over a websockets client connection, counting payload bytes.

    pycrdt's Provider iterates the channel until it ends: a closed connection
    ends the iteration.
    """

    def __init__(self, connection: ClientConnection, path: str, counter: ByteCounter) -> None:
        self.connection = connection
        self._path = path
        self.counter = counter

    @property
    def path(self) -> str:
        return self._path

    def __aiter__(self) -> PeerChannel:
        return self

    async def __anext__(self) -> bytes:
        try:
            return await self.recv()
        except websockets.ConnectionClosed:
            raise StopAsyncIteration from None

    async def send(self, message: bytes) -> None:
        self.counter.sent += len(message)
        self.counter.messages += 1
        with contextlib.suppress(websockets.ConnectionClosed):
            await self.connection.send(message)

    async def recv(self) -> bytes:
        data = await self.connection.recv()
        raw = data.encode() if isinstance(data, str) else data
        self.counter.received += len(raw)
        self.counter.messages += 1
        return raw

    async def close(self) -> None:
        await self.connection.close()


async def peer_connect(base_url: str, document: str, counter: ByteCounter) -> PeerChannel:
    """Open the peer's websocket for one document (y-websocket: one connection per document)."""
    connection = await websockets.connect(
        f"{base_url}/{document}", max_size=16 * 1024 * 1024, compression=None, open_timeout=30
    )
    return PeerChannel(connection, f"/{document}", counter)
