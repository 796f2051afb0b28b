"""The peer relay: pycrdt-websocket's WebsocketServer with rooms persisted by SQLiteYStore.

``python -m bench.peer_server --port 0 --db FILE`` serves y-websocket on
``ws://127.0.0.1:PORT/{document}`` (one connection per document) with uvicorn,
the same ASGI server and websocket implementation as our relay, and prints
``peer relay listening on http://127.0.0.1:PORT`` once listening.

The server is configured the way pycrdt-websocket and pycrdt-store document it,
with their defaults: a room's ``YRoom`` gets an ``SQLiteYStore`` (one per
document, all in one SQLite file, configured through the ``db_path`` class
attribute); when a room is created its document is loaded from the store
before any client is served, then the room starts writing every update.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import logging
import signal
from pathlib import Path

import anyio
import uvicorn
from pycrdt import Doc
from pycrdt.store import SQLiteYStore, YDocNotFound
from pycrdt.websocket import ASGIServer, WebsocketServer, YRoom, exception_logger

__all__ = ["PeerWebsocketServer", "main", "store_class"]

log = logging.getLogger("bench.peer")


def store_class(db: Path) -> type[SQLiteYStore]:
    """pycrdt-store is configured by subclassing: the database file is a class attribute."""
    return type("BenchSQLiteYStore", (SQLiteYStore,), {"db_path": str(db)})


class PeerWebsocketServer(WebsocketServer):
    """WebsocketServer whose rooms load from, and write to, an SQLiteYStore."""

    def __init__(self, store: type[SQLiteYStore]) -> None:
        super().__init__(
            rooms_ready=False, auto_clean_rooms=True, exception_handler=exception_logger, log=log
        )
        self.store = store
        self._locks: dict[str, anyio.Lock] = {}

    async def get_room(self, name: str) -> YRoom:
        lock = self._locks.setdefault(name, anyio.Lock())
        async with lock:
            room = self.rooms.get(name)
            if room is None:
                ystore = self.store(path=name, log=log)
                room = YRoom(
                    ready=False,
                    ystore=ystore,
                    exception_handler=exception_logger,
                    log=log,
                    ydoc=Doc(),
                )
                self.rooms[name] = room
                await self.start_room(room)
                await ystore.started.wait()
                with contextlib.suppress(YDocNotFound):  # a new document: nothing stored yet
                    await ystore.apply_updates(room.ydoc)
                room.ready = True  # from here on the room writes every update to the store
                await room.ydoc_observed.wait()
            else:
                await self.start_room(room)
            return room


async def _create_database(store: type[SQLiteYStore]) -> None:
    """Create the file once, before rooms open it concurrently (their init races otherwise)."""
    ystore = store(path="__init__", log=log)
    async with ystore:
        assert ystore.db_initialized is not None
        await ystore.db_initialized.wait()


def _dump_tasks() -> None:
    """SIGUSR1: log every asyncio task's stack (to see where a stalled peer waits)."""
    out = io.StringIO()
    for task in asyncio.all_tasks():
        task.print_stack(limit=8, file=out)
    log.warning("tasks:\n%s", out.getvalue())


async def serve(host: str, port: int, db: Path, log_level: str) -> None:
    asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, _dump_tasks)
    store = store_class(db)
    await _create_database(store)
    websocket_server = PeerWebsocketServer(store)
    app = ASGIServer(websocket_server)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        ws="websockets-sansio",
        ws_max_size=16 * 1024 * 1024,
        log_level=log_level,
        lifespan="off",
    )
    server = uvicorn.Server(config)
    async with websocket_server:
        task = asyncio.create_task(server.serve())
        while not server.started and not task.done():  # noqa: ASYNC110 (no started event)
            await asyncio.sleep(0.02)
        if server.started:
            bound = server.servers[0].sockets[0].getsockname()[1]
            print(f"peer relay listening on http://{host}:{bound}", flush=True)
        await task


def main() -> None:
    parser = argparse.ArgumentParser(prog="bench.peer_server", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--db", type=Path, required=True)
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args()
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.host, args.port, args.db, args.log_level))


if __name__ == "__main__":
    main()
