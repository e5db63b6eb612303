"""The slow marker's lists name real tests: a renamed module or test would silently fall into the fast loop."""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import SLOW_MODULES, SLOW_TESTS

HERE = Path(__file__).resolve().parent


def test_every_slow_module_and_test_exists() -> None:
    for module in SLOW_MODULES:
        assert (HERE / module).is_file(), module
    for node in SLOW_TESTS:
        module, _, name = node.partition("::")
        tree = ast.parse((HERE / module).read_text())
        names = {f.name for f in ast.walk(tree) if isinstance(f, ast.FunctionDef)}
        assert name in names, node
