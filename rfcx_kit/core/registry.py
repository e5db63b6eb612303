"""One way to find a registry's entries: every ``<prefix>*.py`` module of a package folder, each holding one entry.

The metric (``core/metrics/metric_*.py``), annotation-format (``data/annotations/format_*.py``) and layout
(``data/layouts/layout_*.py``) registries find their entries here, so a new entry is a new file and nothing else.
"""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path
from typing import Any


def discover(package: str, prefix: str, attribute: str) -> list[Any]:
    """``attribute`` of every module ``package.<prefix>*`` in the package's folder, in module-name order."""
    folder = Path(importlib.import_module(package).__file__).parent  # a package being imported is already there
    names = sorted(info.name for info in pkgutil.iter_modules([str(folder)]) if info.name.startswith(prefix))
    return [getattr(importlib.import_module(f"{package}.{name}"), attribute) for name in names]
