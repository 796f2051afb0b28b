"""Every module of the library declares its public surface, and the package root exports it."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import crdtsync

MODULES = sorted(info.name for info in pkgutil.walk_packages(crdtsync.__path__, prefix="crdtsync."))


@pytest.mark.parametrize("name", MODULES)
def test_module_has_a_docstring_and_an_explicit_all(name: str) -> None:
    module = importlib.import_module(name)
    assert module.__doc__, f"{name} has no docstring"
    exported = getattr(module, "__all__", None)
    assert exported is not None, f"{name} has no __all__"
    for symbol in exported:
        assert hasattr(module, symbol), f"{name}.__all__ names missing {symbol}"


def test_the_root_exports_the_device_and_field_api() -> None:
    for name in crdtsync.__all__:
        assert hasattr(crdtsync, name), name
    expected = {
        "Device",
        "DeviceStatus",
        "Upload",
        "UploadState",
        "SubmissionState",
        "SubmissionStatus",
        "ArchivedUpdate",
        "Rejection",
        "FieldDevice",
        "AssignedWorkOrder",
        "assigned_documents",
        "SubmissionBlocked",
        "WorkOrderLocked",
    }
    assert expected <= set(crdtsync.__all__)


def test_the_device_module_reexports_its_private_parts_publicly() -> None:
    from crdtsync import device

    for name in device.__all__:
        assert getattr(crdtsync, name) is getattr(device, name)
