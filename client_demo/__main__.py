"""``crdtsync-demo`` / ``python -m client_demo``: two technicians work through an outage.

The script starts a relay (``python -m server``) on a fresh SQLite file, then
runs two devices, each with its own local database, on the same work orders:

1. both sync, then lose their connection;
2. offline, both register hours, edit the same notes and tick tasks;
3. the relay is killed with SIGKILL and restarted on the same port and file;
4. the devices come back online (in either order), reconnect by themselves
   and converge;
5. a third, fresh device reads everything back from the relay.

It exits 0 only if every edit of every device is present everywhere.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from pycrdt import Array, Doc, Map, Text

from crdtsync import Backoff, Device, websocket_connector

__all__ = ["main"]

WORK_ORDERS = ["wo-1001", "wo-1002", "wo-1003"]


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


class Relay:
    """The relay as a child process on a fixed file; kill and restart keep the port."""

    def __init__(self, db: Path) -> None:
        self.db = db
        self.port = 0
        self.process: subprocess.Popen[str] | None = None

    def start(self) -> None:
        args = [sys.executable, "-m", "server", "--port", str(self.port), "--db", str(self.db)]
        self.process = subprocess.Popen(
            [*args, "--log-level", "warning"], stdout=subprocess.PIPE, text=True
        )
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.startswith("crdtsync relay listening on "):
                self.port = int(line.rsplit(":", 1)[1])
                return
        raise SystemExit("the relay did not start")

    def kill(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/sync"


def skeleton(doc: Doc[Any]) -> None:
    """The work order's containers. These are root types, which Yjs identifies by name, so
    creating them on two replicas is safe; the hazard the design warns about is nested
    containers created lazily under a shared key (the work-order model avoids those)."""
    doc.get("fields", type=Map)
    doc.get("notes", type=Text)
    doc.get("hours", type=Array)


def content(doc: Doc[Any]) -> dict[str, Any]:
    return {
        "fields": dict(doc.get("fields", type=Map)),
        "notes": str(doc.get("notes", type=Text)),
        "hours": [dict(entry) for entry in doc.get("hours", type=Array)],
    }


async def run(seed: int, workdir: Path) -> bool:
    rng = random.Random(seed)
    relay = Relay(workdir / "relay.db")
    relay.start()
    say(f"relay listening on {relay.url}, storing in {relay.db}")

    async def connect() -> Any:
        return await websocket_connector(relay.url)()

    backoff = Backoff(initial=0.1, maximum=0.5)
    expected_hours: dict[str, list[str]] = {name: [] for name in WORK_ORDERS}
    try:
        async with (
            Device(workdir / "anna.db", connect, documents=WORK_ORDERS, backoff=backoff) as anna,
            Device(workdir / "bram.db", connect, documents=WORK_ORDERS, backoff=backoff) as bram,
        ):
            for device in (anna, bram):
                await device.wait_synced(20)
            for name in WORK_ORDERS:
                with anna.open(name).transaction():
                    skeleton(anna.open(name))
                    anna.open(name).get("fields", type=Map)["status"] = "planned"
            await anna.wait_synced(20)
            await bram.wait_for(
                lambda s: all(len(bram.open(n).get("fields", type=Map)) for n in WORK_ORDERS), 20
            )
            say("both devices synced; the connection drops")
            anna.go_offline()
            bram.go_offline()

            for name in WORK_ORDERS:
                for device, who in ((anna, "anna"), (bram, "bram")):
                    doc = device.open(name)
                    for _ in range(rng.randint(2, 5)):
                        entry_id = f"{who}-{len(expected_hours[name])}"
                        with doc.transaction():
                            doc.get("hours", type=Array).append(
                                Map({"id": entry_id, "by": who, "minutes": rng.randint(15, 240)})
                            )
                        expected_hours[name].append(entry_id)
                    doc.get("notes", type=Text).insert(0, f"[{who}] checked the boiler. ")
                anna.open(name).get("fields", type=Map)["status"] = "in_progress"
            say(
                f"offline edits queued: anna {anna.status.total_pending} pending, "
                f"bram {bram.status.total_pending} pending"
            )

            say("relay killed with SIGKILL and restarted on the same file")
            relay.kill()
            relay.start()

            first, second = (anna, bram) if rng.random() < 0.5 else (bram, anna)
            first.go_online()
            await first.wait_synced(30)
            say(f"{first.name} back online and synced")
            second.go_online()
            await second.wait_synced(30)
            say(f"{second.name} back online and synced")
            await first.wait_for(
                lambda s: all(
                    content(first.open(n)) == content(second.open(n)) for n in WORK_ORDERS
                ),
                30,
            )

        async with Device(workdir / "office.db", connect, documents=WORK_ORDERS) as office:
            await office.wait_synced(30)
            ok = True
            for name in WORK_ORDERS:
                merged = content(office.open(name))
                got = sorted(entry["id"] for entry in merged["hours"])
                missing = sorted(set(expected_hours[name]) - set(got))
                both_notes = "[anna]" in merged["notes"] and "[bram]" in merged["notes"]
                good = not missing and both_notes and len(got) == len(expected_hours[name])
                ok &= good
                say(
                    f"{name}: {len(got)}/{len(expected_hours[name])} hour entries, "
                    f"notes from both: {both_notes}, status {merged['fields'].get('status')}"
                    + ("" if good else f"  MISSING {missing}")
                )
            return ok
    finally:
        relay.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="crdtsync-demo", description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=int(os.environ.get("CRDTSYNC_SEED", "7")))
    parser.add_argument("--workdir", type=Path, help="keep databases here (default: a temp dir)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="crdtsync-demo-") as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        ok = asyncio.run(run(args.seed, workdir))
    say("nothing lost" if ok else "EDITS WERE LOST")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
