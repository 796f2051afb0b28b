"""The demo's flaky link, between real devices and a real relay process."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from pycrdt import Map

from client_demo.flaky import FlakyLink
from crdtsync import Backoff, Device, websocket_connector

from ..conftest import RelayProcess

pytestmark = pytest.mark.e2e

TIMEOUT = 60.0
FAST = Backoff(initial=0.02, maximum=0.2)


def fields(device: Device) -> dict[str, Any]:
    return device.doc("notes").get("m", type=Map).to_py()


async def test_devices_converge_through_delays_and_dropped_connections(
    relay_process: RelayProcess, tmp_path: Path
) -> None:
    async with FlakyLink(
        f"ws://127.0.0.1:{relay_process.port}", seed=7, cut_probability=0.02
    ) as link:
        connector = websocket_connector(f"{link.url}/sync")
        async with (
            Device(tmp_path / "a.db", connector, documents=["notes"], backoff=FAST, seed=1) as a,
            Device(tmp_path / "b.db", connector, documents=["notes"], backoff=FAST, seed=2) as b,
        ):
            await a.wait_synced(TIMEOUT)
            await b.wait_synced(TIMEOUT)
            for i in range(150):
                a.open("notes").get("m", type=Map)[f"a{i}"] = i
                b.open("notes").get("m", type=Map)[f"b{i}"] = i
                await asyncio.sleep(0)  # let the connections move between edits
                if i == 75:
                    assert link.cut() >= 1  # both devices lose their connection mid-run
            link.cut_probability = 0.0  # let it settle
            await a.wait_for(lambda s: len(fields(a)) == 300 and s.in_sync, TIMEOUT)
            await b.wait_for(lambda s: len(fields(b)) == 300 and s.in_sync, TIMEOUT)
    assert fields(a) == fields(b)
    assert link.stats.cuts >= 1
    assert link.stats.messages > 0


async def test_a_link_that_is_down_refuses_until_it_is_up_again(
    relay_process: RelayProcess, tmp_path: Path
) -> None:
    async with FlakyLink(f"ws://127.0.0.1:{relay_process.port}", seed=1) as link:
        connector = websocket_connector(f"{link.url}/sync")
        async with Device(tmp_path / "a.db", connector, documents=["notes"], backoff=FAST) as a:
            await a.wait_synced(TIMEOUT)
            link.down()
            # Offline, and at least one reconnect attempt refused by the dead link.
            await a.wait_for(
                lambda s: not s.connected and (s.last_error or "").startswith("connect failed"),
                TIMEOUT,
            )
            a.open("notes").get("m", type=Map)["offline"] = 1
            assert a.status.total_pending == 1
            link.up()
            await a.wait_synced(TIMEOUT)
    assert link.stats.refused >= 1


async def test_a_trap_drops_the_connection_with_the_message_it_caught(
    relay_process: RelayProcess, tmp_path: Path
) -> None:
    async with FlakyLink(f"ws://127.0.0.1:{relay_process.port}", seed=3) as link:
        connector = websocket_connector(f"{link.url}/sync")
        async with Device(tmp_path / "a.db", connector, documents=["notes"], backoff=FAST) as a:
            await a.wait_synced(TIMEOUT)
            connections = link.stats.connections
            link.drop_when(lambda message: isinstance(message, bytes))  # the Ack, say
            a.open("notes").get("m", type=Map)["x"] = 1
            await asyncio.wait_for(link.sprung.wait(), TIMEOUT)
            await a.wait_synced(TIMEOUT)  # reconnected by itself; the change went again
    assert link.stats.connections > connections
    assert link.stats.cuts == 1
    assert fields(a) == {"x": 1}
