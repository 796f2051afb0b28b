"""Sizes of the fault suite: modest in CI, a long run with ``CRDTSYNC_FAULTS_LONG=1``.

CI runs a fixed, derandomized set of examples so a failure reproduces on every
machine. The long run explores with fresh randomness (failures are kept in the
local hypothesis database and replayed first on the next run) and lifts the
per-test timeout. ``CRDTSYNC_FAULTS_EXAMPLES`` overrides how many examples each
property test tries. The totals are printed at the end of the session.
"""

from __future__ import annotations

import os
from collections import Counter

import pytest
from hypothesis import HealthCheck, settings

LONG = os.environ.get("CRDTSYNC_FAULTS_LONG", "") not in ("", "0")
_OVERRIDE = os.environ.get("CRDTSYNC_FAULTS_EXAMPLES", "")

#: What the suite tried, summed over the session (schedules, steps, fuzz inputs by outcome).
TALLY: Counter[str] = Counter()
#: Odd things the suite met that are not failures of crdtsync, reported at the end.
FINDINGS: list[str] = []


def size(ci: int, long: int) -> int:
    """``ci`` normally, ``long`` in the long run."""
    return long if LONG else ci


def fault_settings(ci: int, long: int) -> settings:
    """Hypothesis settings for a fault property: ``ci`` or ``long`` examples, no deadline."""
    examples = int(_OVERRIDE) if _OVERRIDE else size(ci, long)
    return settings(
        max_examples=examples,
        deadline=None,
        derandomize=not LONG,
        print_blob=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


#: The long run takes as long as it takes; CI keeps the project's per-test timeout.
long_run_timeout = pytest.mark.timeout(0 if LONG else 120)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not TALLY:
        return
    mode = "long run" if LONG else "CI sizes"
    terminalreporter.section(f"fault suite ({mode})")
    for key in sorted(TALLY):
        terminalreporter.write_line(f"{key}: {TALLY[key]}")
    for finding in FINDINGS[:10]:
        terminalreporter.write_line(f"finding: {finding}")
