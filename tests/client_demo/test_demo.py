"""The demo end to end, as CI runs it: ``python -m client_demo --fast`` in its own process.

It starts its own relay process on a fresh SQLite file, three devices behind flaky
links and the office, kills the relay with SIGKILL on the way, and must end with
exit status 0 and the line ``nothing lost`` (the verification through the office
API found every edit of the ledger).
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from ..conftest import ROOT

pytestmark = pytest.mark.e2e


@pytest.mark.timeout(180)
def test_the_fast_demo_ends_with_nothing_lost() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "client_demo", "--fast", "--seed", "7"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=150,
        env={**os.environ, "COLUMNS": "120"},
        check=False,
    )
    lines = result.stdout.splitlines()
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert lines[-1] == "nothing lost"
    text = result.stdout
    assert "cannot send 1001: missing [signature]" in text  # refused on the device
    assert "answer lost" in text
    assert "asked again with the same key" in text
    assert "SIGKILL after" in text
    assert "restarted on the same port and file" in text
    assert "shuts down with 5 unsent changes" in text
    assert "1006 was reassigned while he was offline" in text
    assert "\x1b[" not in text  # not a terminal: plain lines
