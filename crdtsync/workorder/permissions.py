"""Who may write what in a work order: a pure check over :class:`~.watch.FieldChange` lists.

:func:`check_changes` returns one :class:`Violation` per offending field (an
empty list means the changes are allowed). The relay rejects an update with
violations as a whole. Rules, for every role except ``relay`` (which may write
anything):

* ``viewer`` may write nothing.
* Roots outside the skeleton are violations (``unknown_root``).
* The layout must hold (``shape``): entries of ``tasks``/``hours``/``materials``/
  ``attachments`` are shared Maps, added once and never replaced, holding plain
  values; other map roots hold plain values only; text roots hold text only.
* ``meta.schema``, ``meta.id`` and ``meta.created_at`` are written once
  (``immutable``).
* ``state.sent_at`` and ``state.submission_id`` are the relay's
  (``relay_only``); ``state.status`` must be a known status, never ``sent``
  and never deleted (``status``).
* Devices: ``state.status`` only ``in_progress`` or ``completed``;
  ``state.processed_at`` and ``state.reopened_at`` never; nothing the policy's
  ``device_readonly`` lists (``readonly``); with ``technician`` given, only
  their own ``timers`` entry.
* Offices: not ``signature`` (only a device captures one) (``role``).

What is *not* checked here: edits after sending. They are kept and shown to the
office as changes after submission (see :func:`~.submission.diff_snapshots`), not refused.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

from pydantic import BaseModel, ConfigDict

from .layout import COLLECTION_ROOTS, SIGNATURE_KEY, TEXT_ROOTS, WORKORDER_ROOTS
from .models import DEVICE_STATUSES, Status
from .policy import Policy
from .watch import ChangeAction, FieldChange

__all__ = ["Role", "Violation", "ViolationCode", "check_changes"]


class Role(StrEnum):
    """Who writes: a technician's device, the office, a read-only viewer, or the relay."""

    DEVICE = "device"
    OFFICE = "office"
    VIEWER = "viewer"
    RELAY = "relay"


class ViolationCode(StrEnum):
    """Why a change is refused (see the module docstring)."""

    READ_ONLY_ROLE = "read_only_role"
    UNKNOWN_ROOT = "unknown_root"
    SHAPE = "shape"
    IMMUTABLE = "immutable"
    RELAY_ONLY = "relay_only"
    STATUS = "status"
    READONLY = "readonly"
    ROLE = "role"


class Violation(BaseModel):
    """A refused write: ``field`` names it (``customer.name``, ``state.status=sent``)."""

    model_config = ConfigDict(frozen=True)

    field: str
    code: ViolationCode
    message: str


_IMMUTABLE_META = frozenset({"schema", "id", "created_at"})
_RELAY_STATE = frozenset({"sent_at", "submission_id"})
_OFFICE_STATE = frozenset({"processed_at", "reopened_at"})
_STATUSES = frozenset(status.value for status in Status)


def _shape(change: FieldChange) -> str | None:
    if change.action is ChangeAction.OPAQUE:
        return "content of a type this root does not hold"
    if change.root in TEXT_ROOTS:
        if change.action is not ChangeAction.EDIT or change.path:
            return "a text root holds only text"
        inserts = [item.get("insert") for item in change.new_value if isinstance(item, dict)]
        if any(value is not None and not isinstance(value, str) for value in inserts):
            return "a text root holds only text, not embeds"
        return None
    if change.action is ChangeAction.EDIT:
        return "a map root holds no lists or texts"
    if change.root in COLLECTION_ROOTS:
        if not change.path:
            if change.action is ChangeAction.UPDATE:
                return "an entry is never replaced; edit its keys"
            if change.action is ChangeAction.ADD and not change.shared:
                return "an entry must be a shared map"
            if change.shared and any(isinstance(v, (dict, list)) for v in _values(change)):
                return "an entry holds plain values only"
            return None
        if len(change.path) > 1 or change.shared:
            return "an entry holds plain values only"
        return None
    if change.path or change.shared:
        return "this root holds plain values only"
    if change.root == "signature" and change.key != SIGNATURE_KEY:
        return f"the signature root holds only {SIGNATURE_KEY!r}"
    return None


def _values(change: FieldChange) -> Iterable[object]:
    value = change.new_value
    return value.values() if isinstance(value, dict) else ()


def _state_rule(change: FieldChange, role: Role) -> tuple[str, ViolationCode, str] | None:
    key = change.key
    if key in _RELAY_STATE:
        return change.field, ViolationCode.RELAY_ONLY, "only the relay records submissions"
    if key in _OFFICE_STATE and role is Role.DEVICE:
        return change.field, ViolationCode.READONLY, "only the office processes and reopens"
    if key != "status":
        return None
    value = change.new_value
    shown = f"state.status={value}"
    if change.action is ChangeAction.DELETE:
        return change.field, ViolationCode.STATUS, "the status cannot be deleted"
    if not isinstance(value, str) or value not in _STATUSES:
        return shown, ViolationCode.STATUS, "not a known status"
    if value == Status.SENT:
        return shown, ViolationCode.STATUS, "only the relay marks a work order sent"
    if role is Role.DEVICE and value not in DEVICE_STATUSES:
        return shown, ViolationCode.STATUS, "devices set only in_progress or completed"
    return None


def _violation(
    change: FieldChange, role: Role, policy: Policy, technician: str | None
) -> tuple[str, ViolationCode, str] | None:
    if role is Role.VIEWER:
        return change.field, ViolationCode.READ_ONLY_ROLE, "viewers may not write"
    if change.action is ChangeAction.NEW_ROOT or change.root not in WORKORDER_ROOTS:
        return change.root, ViolationCode.UNKNOWN_ROOT, "not a root of a work order"
    reason = _shape(change)
    if reason is not None:
        return change.field, ViolationCode.SHAPE, reason
    immutable = change.root == "meta" and change.key in _IMMUTABLE_META and not change.path
    if immutable and change.action is not ChangeAction.ADD:
        return change.field, ViolationCode.IMMUTABLE, "written once, when created"
    if change.root == "state" and not change.path:
        rule = _state_rule(change, role)
        if rule is not None:
            return rule
    if role is Role.OFFICE and change.root == "signature":
        return change.field, ViolationCode.ROLE, "only a device captures a signature"
    if role is Role.DEVICE:
        if policy.is_device_readonly(change.root, change.top_key):
            return change.field, ViolationCode.READONLY, "devices may not write this field"
        if technician is not None and change.root == "timers" and change.top_key != technician:
            return change.field, ViolationCode.READONLY, "a device runs only its own timer"
    return None


def check_changes(
    changes: Iterable[FieldChange],
    role: Role,
    policy: Policy | None = None,
    *,
    technician: str | None = None,
) -> list[Violation]:
    """The violations among ``changes`` for ``role`` under ``policy`` (default ``Policy()``).

    One violation per (field, code), in the order first seen. ``technician``
    (the device's technician) additionally limits a device to its own timer.
    """
    policy = policy or Policy()
    seen: set[tuple[str, ViolationCode]] = set()
    violations: list[Violation] = []
    if role is Role.RELAY:
        return violations
    for change in changes:
        found = _violation(change, role, policy, technician)
        if found is None or (found[0], found[1]) in seen:
            continue
        seen.add((found[0], found[1]))
        violations.append(Violation(field=found[0], code=found[1], message=found[2]))
    return violations
