"""``crdtsync-relay`` / ``python -m server``: serve the relay with uvicorn, or manage tenants.

``crdtsync-relay [--port ...] [--db ...]`` serves. Once listening it prints one
line, ``crdtsync relay listening on http://HOST:PORT``, with the real port
(useful with ``--port 0``). ``crdtsync-relay tenant ...`` and
``crdtsync-relay key ...`` are the admin commands of :mod:`server.admin`.

On SIGINT/SIGTERM the live event streams are ended first (so that uvicorn's
graceful shutdown does not wait on them), open responses get
``shutdown_grace_seconds`` to finish, then the app's lifespan closes the relay.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

import uvicorn
from pydantic import SecretStr

from .admin import COMMANDS, admin_main
from .app import create_app
from .logs import configure_logging
from .settings import RelaySettings

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="crdtsync-relay",
        description="Run the crdtsync relay (sync endpoints, office API, SQLite store).",
        epilog="Admin commands: 'crdtsync-relay tenant --help', 'crdtsync-relay key --help'.",
    )
    parser.add_argument("--host", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (default 8765; 0 picks a free one)")
    parser.add_argument("--db", type=Path, help="SQLite file (default ./crdtsync.db)")
    parser.add_argument("--token", help="require this token on the sync endpoints")
    parser.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    parser.add_argument(
        "--log-format", choices=["text", "json"], help="json: one JSON object per line"
    )
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
            "log_format": args.log_format,
        }.items()
        if value is not None
    }
    if args.token is not None:
        overrides["token"] = SecretStr(args.token)
    return RelaySettings(**overrides)


class _Server(uvicorn.Server):
    """uvicorn, plus a hook run when an exit signal arrives (before connections drain)."""

    def __init__(self, config: uvicorn.Config, on_exit: Any) -> None:
        super().__init__(config)
        self._on_exit = on_exit

    def handle_exit(self, sig: int, frame: Any) -> None:
        super().handle_exit(sig, frame)
        self._on_exit()


async def serve(settings: RelaySettings) -> None:
    app = create_app(settings)
    loop = asyncio.get_running_loop()

    def end_streams() -> None:
        office = getattr(app.state, "office", None)
        if office is not None:
            loop.call_soon_threadsafe(office.events.close)

    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        ws="websockets-sansio",
        ws_max_size=settings.max_frame_size,
        log_level=settings.log_level,
        log_config=None if settings.log_format == "json" else uvicorn.config.LOGGING_CONFIG,
        lifespan="on",
        timeout_graceful_shutdown=settings.shutdown_grace_seconds,
    )
    server = _Server(config, end_streams)
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
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in COMMANDS:
        sys.exit(admin_main(argv))
    settings = settings_from_args(argv)
    configure_logging(settings.log_level, settings.log_format)
    try:
        asyncio.run(serve(settings))
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
