"""Every module of the relay deployment declares its public surface, and it resolves."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import server

MODULES = sorted(info.name for info in pkgutil.walk_packages(server.__path__, prefix="server."))


@pytest.mark.parametrize("name", MODULES)
def test_module_has_a_docstring_and_an_explicit_all(name: str) -> None:
    module = importlib.import_module(name)
    assert module.__doc__, f"{name} has no docstring"
    exported = getattr(module, "__all__", None)
    assert exported is not None, f"{name} has no __all__"
    for symbol in exported:
        assert hasattr(module, symbol), f"{name}.__all__ names missing {symbol}"


def test_the_modules_are_all_found() -> None:
    for expected in ("server.officedb", "server.tenants", "server.api.problems", "server.metrics"):
        assert expected in MODULES
