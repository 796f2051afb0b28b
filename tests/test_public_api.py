"""The library's public surface and its layering, checked from the source.

* ``crdtsync`` exports exactly what its ``__all__`` lists, every module declares
  ``__all__``, and nothing private is exported.
* ``crdtsync.protocol`` imports no I/O library (it is sans-I/O).
* ``server`` and ``client_demo`` use only the public API: the package root and
  its public subpackages, never a private module.
* ``crdtsync`` never imports ``server`` or ``client_demo``.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
from pathlib import Path

import pytest

import crdtsync

ROOT = Path(__file__).resolve().parent.parent
MODULES = sorted(info.name for info in pkgutil.walk_packages(crdtsync.__path__, prefix="crdtsync."))
IO_LIBRARIES = {"asyncio", "socket", "websockets", "aiosqlite", "sqlite3", "selectors", "ssl"}


def imports_of(path: Path) -> set[str]:
    """Absolute module names ``path`` imports (relative imports resolved within its package)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def test_the_root_exports_exactly_its_all_and_nothing_private() -> None:
    for name in crdtsync.__all__:
        assert hasattr(crdtsync, name), name
        assert not name.startswith("_") or name == "__version__"
    public = {n for n in vars(crdtsync) if not n.startswith("_") and not _is_module(n)}
    assert public <= set(crdtsync.__all__) | {"annotations"}


def _is_module(name: str) -> bool:
    return type(getattr(crdtsync, name)).__name__ == "module"


@pytest.mark.parametrize("name", MODULES)
def test_every_module_declares_its_surface(name: str) -> None:
    module = importlib.import_module(name)
    assert module.__doc__, f"{name} has no docstring"
    exported = getattr(module, "__all__", None)
    assert exported is not None, f"{name} has no __all__"
    for symbol in exported:
        assert hasattr(module, symbol), f"{name}.__all__ names missing {symbol}"


def test_the_protocol_imports_no_io_library() -> None:
    for path in sorted((ROOT / "crdtsync" / "protocol").glob("*.py")):
        top_level = {name.split(".")[0] for name in imports_of(path)}
        assert not top_level & IO_LIBRARIES, (path.name, top_level & IO_LIBRARIES)


@pytest.mark.parametrize("package", ["server", "client_demo"])
def test_apps_use_only_the_public_api(package: str) -> None:
    for path in sorted((ROOT / package).rglob("*.py")):
        for name in imports_of(path):
            if name == "crdtsync" or not name.startswith("crdtsync."):
                continue
            parts = name.split(".")
            private = [p for p in parts[1:] if p.startswith("_") and p != "__version__"]
            assert not private, (path, name)


def test_the_library_never_imports_its_apps() -> None:
    for path in sorted((ROOT / "crdtsync").rglob("*.py")):
        for name in imports_of(path):
            assert name.split(".")[0] not in ("server", "client_demo", "bench"), (path, name)


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
