"""Shared fixtures: a real relay process on a free loopback port with a real SQLite file."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from crdtsync import Channel, Connector, websocket_connector

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class RelayProcess:
    """A relay run as ``python -m server`` in its own process, killable and restartable."""

    db: Path
    token: str | None = None
    port: int = 0
    process: subprocess.Popen[str] | None = None
    extra_args: list[str] = field(default_factory=list)

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def sync_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/sync"

    def yjs_url(self, document: str = "") -> str:
        base = f"ws://127.0.0.1:{self.port}/yjs"
        return f"{base}/{document}" if document else base

    def start(self) -> None:
        """Start on ``self.port`` (0 the first time: a free port, then kept for restarts)."""
        args = [sys.executable, "-m", "server", "--port", str(self.port), "--db", str(self.db)]
        args += ["--log-level", "warning", *self.extra_args]
        if self.token:
            args += ["--token", self.token]
        self.process = subprocess.Popen(
            args, cwd=ROOT, stdout=subprocess.PIPE, stderr=None, text=True, env=os.environ.copy()
        )
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.startswith("crdtsync relay listening on "):
                self.port = int(line.rsplit(":", 1)[1])
                return
        raise RuntimeError(f"relay exited with {self.process.wait()} before listening")

    def kill(self) -> None:
        """SIGKILL: no shutdown, no flush; what is on disk is what was committed."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
        if self.process is not None and self.process.stdout is not None:
            self.process.stdout.close()

    def restart(self) -> None:
        self.kill()
        self.start()

    def connector(self, token: str | None = None) -> Connector:
        """Connects to the relay's current port, so devices follow it across restarts."""

        async def connect() -> Channel:
            return await websocket_connector(self.sync_url, token=token or self.token)()

        return connect


@pytest.fixture
def relay_process(tmp_path: Path) -> Iterator[RelayProcess]:
    relay = RelayProcess(db=tmp_path / "relay.db")
    relay.start()
    try:
        yield relay
    finally:
        relay.stop()
