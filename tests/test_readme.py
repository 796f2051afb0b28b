"""The README's Python examples: they compile, their imports exist, and the domain one runs."""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest

from crdtsync.workorder import Policy, RequiredSteps

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)


def test_the_readme_has_python_examples() -> None:
    assert len(BLOCKS) >= 4


@pytest.mark.parametrize("block", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_each_example_compiles_and_imports_what_exists(block: str) -> None:
    tree = compile(
        block, "README.md", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT | ast.PyCF_ONLY_AST
    )
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            module = importlib.import_module(node.module)
            for alias in node.names:
                assert hasattr(module, alias.name), f"{node.module} has no {alias.name}"


def test_the_work_order_domain_example_runs() -> None:
    [block] = [b for b in BLOCKS if "create_workorder(office" in b]
    namespace: dict[str, object] = {"policy": Policy(required=RequiredSteps(signature=True))}
    exec(compile(block, "README.md", "exec"), namespace)
    assert namespace["problems"] == []
