"""The relay the demo runs against: a child process it can SIGKILL, or one that runs already.

:class:`LocalRelay` runs ``python -m server`` on a SQLite file in the demo's
work directory. The first start binds a free port; :meth:`LocalRelay.kill`
sends SIGKILL (no shutdown, no flush: what is on disk is what was committed)
and :meth:`LocalRelay.start` brings it back **on the same port and file**, so
devices reconnect to the address they know, by themselves. The tenant and its
office key come from the relay's own command line (``tenant create``), as a
user would make them.

:class:`ExternalRelay` is a relay given by ``--relay URL --office-key KEY``: the
demo uses it as it is and cannot kill it (that step of the day is skipped).

Both expose :class:`RelayState` for the live view: up or down, the process id,
how often it was killed and restarted, and what ``GET /healthz`` said last.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["DemoError", "ExternalRelay", "LocalRelay", "Relay", "RelayState", "create_tenant"]

READY = "crdtsync relay listening on "


class DemoError(Exception):
    """The demo cannot go on (a relay that does not start, an API that refuses a step)."""


@dataclass(slots=True)
class RelayState:
    """What the live view shows about the relay."""

    where: str
    up: bool = False
    pid: int | None = None
    kills: int = 0
    starts: int = 0
    health: dict[str, Any] = field(default_factory=dict)
    killable: bool = True


class LocalRelay:
    """``python -m server`` on ``db`` as a child process (its log goes to ``log``);
    :meth:`start` keeps its port."""

    def __init__(self, db: Path, log: Path) -> None:
        self.db = db
        self.port = 0
        self._log = log
        self._process: subprocess.Popen[str] | None = None
        self.state = RelayState(where=str(db.name))

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start the relay (a free port the first time, the same port afterwards) and return
        once it listens. DemoError if it exits before that."""
        args = [sys.executable, "-m", "server", "--port", str(self.port), "--db", str(self.db)]
        with self._log.open("a") as stderr:  # the child keeps its own copy of the descriptor
            self._process = subprocess.Popen(
                [*args, "--log-level", "warning"],
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
                env=os.environ.copy(),
            )
        assert self._process.stdout is not None
        for line in self._process.stdout:
            if line.startswith(READY):
                self.port = int(line.rsplit(":", 1)[1])
                self.state.up = True
                self.state.pid = self._process.pid
                self.state.starts += 1
                self.state.where = f"127.0.0.1:{self.port}, {self.db.name}"
                return
        code = self._process.wait()
        raise DemoError(f"the relay exited with status {code} before listening")

    def kill(self) -> None:
        """SIGKILL the relay and wait for it to be gone."""
        process = self._process
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGKILL)
            process.wait(10)
        self.state.up = False
        self.state.pid = None
        self.state.kills += 1
        self.state.health = {}
        self._close_pipe()

    def stop(self) -> None:
        """Stop it gently (SIGTERM, then SIGKILL after 10 s). Safe to call twice."""
        process = self._process
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
        self.state.up = False
        self._close_pipe()

    def _close_pipe(self) -> None:
        if self._process is not None and self._process.stdout is not None:
            self._process.stdout.close()


class ExternalRelay:
    """A relay that runs already (``--relay URL``); the demo never stops or kills it."""

    def __init__(self, url: str) -> None:
        self.http_url = url.rstrip("/")
        if self.http_url.startswith("https://"):
            self.ws_url = "wss://" + self.http_url.removeprefix("https://")
        else:
            self.ws_url = "ws://" + self.http_url.removeprefix("http://")
        self.state = RelayState(where=self.http_url, up=True, killable=False)

    def start(self) -> None:
        self.state.up = True

    def kill(self) -> None:
        raise DemoError("an external relay cannot be killed by the demo")

    def stop(self) -> None:
        """Nothing to do: the relay is not the demo's."""


Relay = LocalRelay | ExternalRelay


def create_tenant(db: Path, name: str) -> str:
    """Create a tenant on ``db`` with the relay's command line; return its office key."""
    result = subprocess.run(
        [sys.executable, "-m", "server", "tenant", "create", name, "--db", str(db)],
        capture_output=True,
        text=True,
        check=False,
        env=os.environ.copy(),
    )
    if result.returncode != 0:
        raise DemoError(f"tenant create failed: {result.stderr.strip()}")
    try:
        key = json.loads(result.stdout)["office_key"]
    except (ValueError, KeyError, TypeError) as exc:
        raise DemoError(f"tenant create printed no office key: {result.stdout!r}") from exc
    return str(key)
