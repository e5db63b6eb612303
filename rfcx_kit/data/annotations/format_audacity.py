"""Annotation format ``audacity``: Audacity label tracks (no header: start, end, label; an optional frequency line).

One entry of the annotation-format registry (``data/annotations/registry.py``): its reader, how its first line
is recognised, and where a folder holds it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from rfcx_kit.core.errors import DataError
from rfcx_kit.data.annotations.registry import AnnotationFormat
from rfcx_kit.data.annotations.table import assemble, numbers, read_text

SPECIES_COLUMNS = ()  # the species column when none is named: the first of these the table has


def read(path: Path, species: str | None = None) -> pd.DataFrame:
    if not path.is_file():
        raise DataError(f"{path}: file not found" if not path.exists() else f"{path}: not a file")
    lines = pd.Series(read_text(path).splitlines() or [""], dtype=object)  # an empty file: one blank line
    parts = lines.str.split("\t", n=2, expand=True).reindex(columns=[0, 1, 2]).fillna("")
    parts = parts.apply(lambda column: column.str.strip())
    parts.columns = ["start", "end", "label"]
    parts["_line"] = parts.index + 1
    blank = (parts[["start", "end", "label"]] == "").all(axis=1)
    is_freq = parts["start"] == "\\"
    labels = parts[~blank & ~is_freq].copy()
    labels["_row"] = np.arange(1, len(labels) + 1)
    freq = parts[is_freq].rename(columns={"end": "f_low", "label": "f_high"}).copy()
    # A frequency line carries the range of the label line just above it.
    orphan = ~(freq.index - 1).isin(labels.index)
    if orphan.any():
        line = int(freq["_line"][orphan].iloc[0])
        raise DataError(f"{path}: line {line}: a frequency line ('\\<tab>f_low<tab>f_high') must follow a label line")
    freq.index = freq.index - 1
    freq["_row"] = labels.loc[freq.index, "_row"]
    f_low = numbers(freq, path, "f_low").reindex(labels.index)
    f_high = numbers(freq, path, "f_high").reindex(labels.index)
    # Audacity writes -1 for an undefined edge of the spectral selection.
    f_low, f_high = f_low.where(f_low >= 0), f_high.where(f_high >= 0)
    columns = {"t_min": "start", "t_max": "end", "f_min": "f_low", "f_max": "f_high", "species": "label"}
    species = labels["label"]
    doubtful = species.str.endswith("?")
    label = pd.Series(np.where(doubtful, -1, 1), index=labels.index)
    return assemble(path, labels, columns, species=species.str.rstrip("?").str.strip(),
                     t_min=numbers(labels, path, "start"), t_max=numbers(labels, path, "end"), f_min=f_low,
                     f_max=f_high, label=label)


def detects(first: str) -> bool:
    """No header: two numbers and a label, tab-separated."""
    fields = [f.strip() for f in first.split("\t")]
    if len(fields) not in (2, 3):
        return False
    try:
        float(fields[0]), float(fields[1])
    except ValueError:
        return False
    return True


FORMAT = AnnotationFormat("audacity", read, detects, glob="*.txt", detect_order=20, title="Audacity label tracks (no header: start, end, label; an optional frequency line)")
