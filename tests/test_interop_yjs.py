"""Interop: a stock Yjs client (npm ``yjs`` + ``y-websocket``) against ``/yjs/{doc}``.

The Node side is ``tests/interop/yjs_client.mjs``; its dependencies are pinned in
``tests/interop/package-lock.json`` and installed here with ``npm ci``.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from pathlib import Path

import pytest
from pycrdt import Map, Text

from crdtsync import Device

from .conftest import RelayProcess

INTEROP = Path(__file__).parent / "interop"

pytestmark = pytest.mark.interop


@pytest.fixture(scope="session")
def node_client() -> Path:
    """The Node client script, with its npm dependencies installed (once per session)."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("Node.js and npm are not installed: the stock Yjs client cannot run")
    if not (INTEROP / "node_modules" / "y-websocket").is_dir():
        result = subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund"],
            cwd=INTEROP,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if result.returncode != 0:
            pytest.fail(f"npm ci failed in {INTEROP}:\n{result.stderr[-2000:]}")
    return INTEROP / "yjs_client.mjs"


async def run_node(script: Path, *args: str, timeout: float = 60) -> dict[str, object]:
    process = await asyncio.create_subprocess_exec(
        "node", str(script), *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout)
    lines = [line for line in stdout.decode().splitlines() if line.startswith("{")]
    assert lines, f"node printed no result (exit {process.returncode}): {stderr.decode()[-2000:]}"
    result: dict[str, object] = json.loads(lines[-1])
    assert process.returncode == 0, (result, stderr.decode()[-2000:])
    assert result.get("ok"), (result, stderr.decode()[-2000:])
    return result


async def test_stock_yjs_client_and_python_device_exchange_edits(
    relay_process: RelayProcess, node_client: Path, tmp_path: Path
) -> None:
    """Edits from a stock Yjs client reach a Python device through the relay, and back."""
    document = "interop-1"
    async with Device(tmp_path / "py.db", relay_process.connector(), documents=[document]) as dev:
        await dev.wait_synced(20)
        doc = dev.open(document)
        root = doc.get("root", type=Map)
        notes = doc.get("notes", type=Text)
        with doc.transaction():
            root["from_python"] = "hello from python"
            notes += "python was here. "
        await dev.wait_synced(20)

        result = await run_node(
            node_client,
            "--url", relay_process.yjs_url(),
            "--doc", document,
            "--write", "from_node=hello from node",
            "--expect", "from_python=hello from python",
            "--text",
            "--timeout-ms", "30000",
        )  # fmt: skip
        assert result["root"] == {
            "from_python": "hello from python",
            "from_node": "hello from node",
        }
        assert "python was here." in str(result["notes"])
        assert "hello from node" in str(result["notes"])

        await dev.wait_for(lambda _: root.get("from_node") == "hello from node", 20)
        assert "hello from node" in str(notes)
        assert "python was here." in str(notes)

    # The relay stored the Node client's edits: a fresh device gets them from disk.
    async with Device(tmp_path / "fresh.db", relay_process.connector(), documents=[document]) as d:
        await d.wait_synced(20)
        assert d.open(document).get("root", type=Map).get("from_node") == "hello from node"


async def test_stock_yjs_clients_converge_through_the_relay(
    relay_process: RelayProcess, node_client: Path
) -> None:
    """Two stock Yjs clients on the same document see each other's edits."""
    common = ["--url", relay_process.yjs_url(), "--doc", "interop-2", "--timeout-ms", "30000"]
    first, second = await asyncio.gather(
        run_node(node_client, *common, "--write", "a=1", "--expect", "b=2"),
        run_node(node_client, *common, "--write", "b=2", "--expect", "a=1"),
    )
    assert first["root"] == second["root"] == {"a": "1", "b": "2"}
