"""THE ANNOTATION-FORMAT REGISTRY: every table format ``rfcx-kit labels import`` reads.

Each format is one file in this folder, ``format_<name>.py``, holding its reader ``read(path, species_column) ->
rows of data.annotations.table.TABLE_COLUMNS``, a test of a table's first line ``detects(first_line) -> bool`` and a
module-level ``FORMAT = AnnotationFormat(...)`` that names it, the files a folder holds it in and where it stands
in the order ``--format auto`` tries the formats in (a generic CSV after Arbimon's, which may share its columns).

Adding a format: a new ``format_<name>.py`` and its test; nothing else changes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from rfcx_kit.core.errors import DataError
from rfcx_kit.core.registry import discover


@dataclass(frozen=True)
class AnnotationFormat:
    """One annotation table format.

    Attributes:
        name: what ``--format`` calls it.
        read: ``(path, species_column or None) -> rows`` (``TABLE_COLUMNS``; errors name file, row and column).
        detects: ``(the table's first non-blank line) -> bool``.
        glob: the files of an input folder that may hold it (``*.txt``).
        detect_order: ``--format auto`` tries the formats by this number, lowest first.
        title: how the help and errors name it.
    """

    name: str
    read: Callable[[Path, str | None], pd.DataFrame]
    detects: Callable[[str], bool]
    glob: str
    detect_order: int
    title: str = ""


def formats() -> dict[str, AnnotationFormat]:
    """Every registered format by name, in the order ``--format auto`` tries them."""
    found = discover("rfcx_kit.data.annotations", "format_", "FORMAT")
    return {f.name: f for f in sorted(found, key=lambda f: (f.detect_order, f.name))}


def get_format(name: str) -> AnnotationFormat:
    known = formats()
    if name not in known:
        raise DataError(f"unknown label format {name!r}; expected one of auto, {', '.join(known)}")
    return known[name]


def detect_format(path: Path) -> str | None:
    """A table's format told from its first non-blank line (the first registered format that recognises it), or
    None: none of them."""
    from rfcx_kit.data.annotations.table import read_text

    try:
        text = read_text(path)
    except OSError:
        return None
    first = next((line for line in text.splitlines() if line.strip()), "")
    return next((f.name for f in formats().values() if f.detects(first)), None)
