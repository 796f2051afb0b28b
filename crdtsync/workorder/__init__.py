"""The work-order domain: CRDT layout, typed models, edits, policy, signature, checks.

Pure domain code (pycrdt and pydantic, no I/O). The contract with the relay is
the layout in :mod:`.layout`; the relay calls :class:`WorkOrderWatch` and
:func:`check_changes` on device updates, :func:`missing_steps` on submissions,
and :func:`snapshot_json` / :func:`diff_snapshots` to show changes after sending.
"""

__all__: list[str] = []
