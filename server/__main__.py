"""``crdtsync-relay`` / ``python -m server``: serve the relay with uvicorn.

Once listening it prints one line, ``crdtsync relay listening on http://HOST:PORT``,
with the real port (useful with ``--port 0``).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path
from typing import Any

import uvicorn
from pydantic import SecretStr

from .app import create_app
from .settings import RelaySettings

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="crdtsync-relay", description="Run the crdtsync relay (sync endpoints, SQLite store)."
    )
    parser.add_argument("--host", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (default 8765; 0 picks a free one)")
    parser.add_argument("--db", type=Path, help="SQLite file (default ./crdtsync.db)")
    parser.add_argument("--token", help="require this token on the sync endpoints")
    parser.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    return parser


def settings_from_args(argv: list[str] | None = None) -> RelaySettings:
    args = _parser().parse_args(argv)
    overrides: dict[str, Any] = {
        key: value
        for key, value in {
            "host": args.host,
            "port": args.port,
            "db": args.db,
            "log_level": args.log_level,
        }.items()
        if value is not None
    }
    if args.token is not None:
        overrides["token"] = SecretStr(args.token)
    return RelaySettings(**overrides)


async def serve(settings: RelaySettings) -> None:
    config = uvicorn.Config(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        ws="websockets-sansio",
        ws_max_size=settings.max_frame_size,
        log_level=settings.log_level,
        lifespan="on",
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started and not task.done():  # noqa: ASYNC110 (uvicorn has no started event)
        await asyncio.sleep(0.02)
    if server.started:
        port = server.servers[0].sockets[0].getsockname()[1]
        print(f"crdtsync relay listening on http://{settings.host}:{port}", flush=True)
        if settings.token is None:
            print("crdtsync relay: no token set, running open", flush=True)
    await task


def main(argv: list[str] | None = None) -> None:
    settings = settings_from_args(argv)
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        asyncio.run(serve(settings))
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
