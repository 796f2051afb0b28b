"""Workload sizes: the full run the targets refer to, and ``--quick`` for a smoke run."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["FULL", "QUICK", "Sizes"]


@dataclass(frozen=True, slots=True)
class Sizes:
    # W1 / W2 / ceiling
    ingest_devices: int = 5
    ingest_edits: int = 2_000
    # W3
    catchup_documents: int = 500
    catchup_changed_elsewhere: int = 50
    catchup_changed_offline: int = 50
    # W4
    fanout_devices: int = 50
    fanout_rate: float = 50.0
    fanout_seconds: float = 10.0
    fanout_processes: int = 4
    # W5
    memory_connections: int = 1_000
    memory_documents: int = 10_000
    memory_active: int = 100
    memory_edit_interval: float = 1.0  # seconds between edits of one active document
    memory_seconds: float = 10.0
    memory_processes: int = 4
    # API reads
    api_workorders: int = 10_000
    api_requests: int = 500
    # how long any one phase may take before the bench gives up on it
    timeout: float = 180.0

    @property
    def ingest_total(self) -> int:
        return self.ingest_devices * self.ingest_edits


FULL = Sizes()

QUICK = Sizes(
    ingest_edits=200,
    catchup_documents=40,
    catchup_changed_elsewhere=5,
    catchup_changed_offline=5,
    fanout_devices=8,
    fanout_rate=20.0,
    fanout_seconds=2.0,
    fanout_processes=2,
    memory_connections=60,
    memory_documents=300,
    memory_active=10,
    memory_seconds=2.0,
    memory_processes=2,
    api_workorders=1_000,
    api_requests=100,
    timeout=20.0,
)
