"""The public surface: everything exported exists, nothing private leaks, errors are rooted."""

from __future__ import annotations

import crdtsync.exceptions
import crdtsync.workorder
from crdtsync.exceptions import CrdtsyncError, WorkOrderError


def test_all_names_resolve_and_are_sorted() -> None:
    names = crdtsync.workorder.__all__
    assert len(names) == len(set(names))
    for name in names:
        assert hasattr(crdtsync.workorder, name), name
    assert not [name for name in names if name.startswith("_")]


def test_public_members_are_exported() -> None:
    public = {
        name
        for name, value in vars(crdtsync.workorder).items()
        if not name.startswith("_") and not isinstance(value, type(crdtsync))
    }
    assert public - {"annotations"} <= set(crdtsync.workorder.__all__)


def test_error_family() -> None:
    for name in (
        "WorkOrderError",
        "InvalidValue",
        "EntryNotFound",
        "WorkOrderLocked",
        "EditNotAllowed",
        "SkeletonError",
        "SubmissionBlocked",
    ):
        error = getattr(crdtsync.workorder, name)
        assert issubclass(error, WorkOrderError)
        assert issubclass(error, CrdtsyncError)
        assert name in crdtsync.exceptions.__all__
        assert name in (crdtsync.exceptions.__doc__ or "")
